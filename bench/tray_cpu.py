"""The tray's CPU share of one core while the daemon is idle (target: at most 0.1%).

    .venv/bin/python bench/tray_cpu.py [--seconds 60] [--backend appindicator|gtk] [--json]

Starts a private virtual desktop (Xvfb, a session bus, dunst, trayer: tests/desktop/vdesk.py, so
the Debian packages of tests/desktop/setup.sh are needed), a daemon sampling every second and the
tray, each in private folders (as root, the daemon in a network namespace of its own, so
that other programs opening ports on this machine do not make it busy); lets the tray settle, then measures the tray's CPU time (user +
system, from /proc through psutil) over the window. Nothing listens or closes on purpose meanwhile:
the daemon is idle (it still samples every second and writes its heartbeat every 15 s, which the
tray notices through PRAGMA data_version). The daemon's own share is printed for comparison.
Exit status 0 when measured, whatever the verdict; 1 when it could not be measured.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

TARGET_PERCENT = 0.1


def cpu_seconds(proc) -> float:
    """CPU time of all its threads: the scheduler's own count in nanoseconds where Linux gives it
    (/proc/PID/task/*/schedstat), else the tick-sampled user + system times."""
    try:
        tasks = os.listdir(f"/proc/{proc.pid}/task")
        total = 0
        for tid in tasks:
            with open(f"/proc/{proc.pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        return total / 1e9
    except (OSError, ValueError, IndexError):
        t = proc.cpu_times()
        return t.user + t.system


def last_event(db: Path) -> int:
    import sqlite3

    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return conn.execute("SELECT coalesce(max(id), 0) FROM events").fetchone()[0]


def by_thread(pid: int) -> dict[str, float]:
    out: dict[str, float] = {}
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                name = f"{f.read().strip()}-{tid}"
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                out[name] = int(f.read().split()[0]) / 1e9
    except (OSError, ValueError, IndexError):
        pass
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="the measured window (default 60)")
    parser.add_argument("--backend", default="appindicator", choices=("appindicator", "gtk"))
    parser.add_argument("--settle", type=float, default=5.0, help="seconds to let the tray settle first (default 5)")
    parser.add_argument("--shared-network", action="store_true", help="leave the daemon in this machine's network namespace (it then sees every other program's listeners)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    import psutil

    from desktop import vdesk

    gaps = vdesk.missing()
    if gaps:
        print(f"tray_cpu: cannot run: missing {', '.join(gaps)} (run `bash tests/desktop/setup.sh` as root)", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="portbell-tray-bench-") as tmp:
        folder = Path(tmp)
        desktop = vdesk.VirtualDesktop(folder / "desktop")
        try:
            desktop.start()
            env = dict(
                desktop.env,
                PORTBELL_STATE_DIR=str(folder / "state"),
                PORTBELL_RUNTIME_DIR=str(folder / "run"),
                PORTBELL_CONFIG=str(folder / "config.toml"),
                PYSTRAY_BACKEND=args.backend,
                PORTBELL_TRAY_MENU_DUMP=str(folder / "menu.txt"),
            )
            # The daemon in a network namespace of its own (as root): other programs' listeners on this
            # machine are not news there, so the daemon is idle for real. The tray needs no namespace.
            isolate = ["unshare", "--net", "--"] if hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("unshare") and not args.shared_network else []
            daemon = desktop.spawn("daemon", [*isolate, sys.executable, "-m", "portbell.daemon", "daemon", "--quiet"], env=env)
            tray = desktop.spawn("tray", [sys.executable, "-m", "portbell.daemon", "tray"], env=env)
            vdesk.poll(lambda: (folder / "menu.txt").exists() and "Exposed to the network" in (folder / "menu.txt").read_text(), 60, 0.2, "the tray's first menu")
            print(f"tray_cpu: tray (pid {tray.pid}, {args.backend}) and daemon (pid {daemon.pid}) up; settling {args.settle:g}s, then measuring {args.seconds:g}s", file=sys.stderr)
            time.sleep(args.settle)
            t_proc, d_proc = psutil.Process(tray.pid), psutil.Process(daemon.pid)
            e0 = last_event(folder / "state" / "portbell.db")
            th0 = by_thread(tray.pid)
            t0, d0, w0 = cpu_seconds(t_proc), cpu_seconds(d_proc), time.monotonic()
            time.sleep(args.seconds)
            t1, d1, w1 = cpu_seconds(t_proc), cpu_seconds(d_proc), time.monotonic()
            th1 = by_thread(tray.pid)
            events = last_event(folder / "state" / "portbell.db") - e0
            if tray.poll() is not None or daemon.poll() is not None:
                print("tray_cpu: the tray or the daemon exited during the measurement", file=sys.stderr)
                return 1
            rss = t_proc.memory_info().rss
        finally:
            desktop.stop()
    wall = w1 - w0
    tray_pct = 100.0 * (t1 - t0) / wall
    daemon_pct = 100.0 * (d1 - d0) / wall
    result = {
        "backend": args.backend,
        "seconds": round(wall, 1),
        "tray_cpu_s": round(t1 - t0, 4),
        "tray_percent_of_one_core": round(tray_pct, 4),
        "target_percent": TARGET_PERCENT,
        "pass": tray_pct <= TARGET_PERCENT,
        "tray_rss_mb": round(rss / 2**20, 1),
        "daemon_percent_of_one_core": round(daemon_pct, 4),
        "events_meanwhile": events,
        "daemon_network": "private namespace" if isolate else "this machine's",
        "cpus": os.cpu_count(),
        "tray_threads_cpu_s": {k: round(v - th0.get(k, 0.0), 4) for k, v in th1.items()},
    }
    if args.json:
        print(json.dumps(result))
    else:
        verdict = "PASS" if result["pass"] else "FAIL"
        print(f"tray CPU, daemon idle, {wall:.0f} s, {args.backend} backend: {t1 - t0:.3f} s = {tray_pct:.3f}% of one core "
              f"(target <= {TARGET_PERCENT}%): {verdict}")
        print(f"  tray resident memory {result['tray_rss_mb']} MB; the daemon meanwhile: {daemon_pct:.3f}% of one core")
        print("  by thread: " + ", ".join(f"{k} {v * 1000:.1f} ms" for k, v in result["tray_threads_cpu_s"].items()))
        if events:
            print(f"  note: the daemon recorded {events} events meanwhile (other programs on this machine opened or "
                  "closed listeners): the machine was not idle, and the tray read and redrew for them")
    return 0


if __name__ == "__main__":
    sys.exit(main())
