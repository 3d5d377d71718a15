"""portbell's daemon benchmark: the daemon-level targets of PRODUCT.md ("Performance"), measured
on a real `portbell daemon` process started here in private temporary directories.
See bench/README.md, "The daemon".

    .venv/bin/python bench/daemon.py [--quick] [--parts cpu,memory] [--json] [--out PATH] [--keep]

1. CPU: the daemon at a 1 s interval, after a warm-up, over a 60 s window: on the machine as it
   is (`idle`), then with 10,000 established loopback connections (the `established` scale of
   scales.py). Share of one core and CPU ms per sample.
2. Memory: a fresh daemon at a 0.1 s interval while a helper opens and closes 20,000 listeners
   on 127.0.0.1 in bursts of 100, each burst waiting until the daemon has recorded it
   (polling the daemon's database read-only). RSS along the way, its slope over the second
   half, and the size of the database.

Like run.py it is a measurement, not a test: it exits 0 when a target fails (and prints FAIL),
1 only when it could not measure (the daemon or a helper failed, or a process was left behind).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import helpers
import report
import scales
from measure import percentile
from run import _stop_on_signal, busyness, machine, progress

RESULTS = Path(__file__).resolve().parent / "results" / "daemon.json"

# PRODUCT.md, "Performance": the daemon-level targets.
CPU_SHARE_LIMIT_PCT = 0.05  # of one core, at a 1 s interval
RSS_LIMIT_KB = 40 * 1024
FLAT_GROWTH_LIMIT_KB = 1024  # growth over the second half of the cycles that still counts as flat

FOREIGN_CPU_WARN = 0.05  # cores used by other programs during a CPU window beyond which we warn
CLK_TCK = os.sysconf("SC_CLK_TCK")
CPUCLOCK_SCHED = 2  # linux/posix-timers.h: the process clock that counts every nanosecond on a CPU


@dataclass(frozen=True, slots=True)
class Plan:
    cpu_interval_s: float
    warmup_s: float
    window_s: float
    mem_interval_s: float
    mem_warmup_s: float
    cycles: int  # listener open/close cycles
    burst: int  # listeners opened (then closed) together
    settle_s: float  # after the last cycle, before the end RSS


FULL = Plan(cpu_interval_s=1.0, warmup_s=10.0, window_s=60.0, mem_interval_s=0.1, mem_warmup_s=10.0,
            cycles=20_000, burst=100, settle_s=3.0)
QUICK = Plan(cpu_interval_s=1.0, warmup_s=3.0, window_s=10.0, mem_interval_s=0.1, mem_warmup_s=3.0,
             cycles=2_000, burst=100, settle_s=1.0)

PARTS = ("cpu", "memory")


class DaemonError(RuntimeError):
    """The daemon under test failed to start, died, or did not record what it should have."""


# ---------------------------------------------------------------------------------------------
# The daemon under test
# ---------------------------------------------------------------------------------------------

_LIBC = ctypes.CDLL(None, use_errno=True)
PR_SET_PDEATHSIG = 1


def _die_with_us(parent: int):
    """preexec_fn: the daemon gets SIGTERM when the benchmark dies, even by SIGKILL (the daemon
    has no stdin pipe to notice it by, unlike the load helpers)."""

    def preexec() -> None:
        _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the benchmark died before prctl took effect
            os._exit(1)

    return preexec


_daemon_groups: set[int] = set()  # every daemon started leads its own process group


class Daemon:
    """`python -m portbell.daemon daemon --quiet --interval S` with PORTBELL_STATE_DIR,
    PORTBELL_RUNTIME_DIR and PORTBELL_CONFIG in a private directory: it never touches the
    user's record, lock or configuration (the config file does not exist: defaults)."""

    def __init__(self, root: Path, name: str, interval_s: float) -> None:
        self.dir = root / name
        self.dir.mkdir(mode=0o700)
        self.database = self.dir / "state" / "portbell.db"
        env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")}
        env.update(
            PORTBELL_STATE_DIR=str(self.dir / "state"),
            PORTBELL_RUNTIME_DIR=str(self.dir / "run"),
            PORTBELL_CONFIG=str(self.dir / "config.toml"),
        )
        self.log_path = self.dir / "daemon.log"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "portbell.daemon", "daemon", "--quiet", "--interval", f"{interval_s:g}"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                start_new_session=True,
                preexec_fn=_die_with_us(os.getpid()),  # noqa: PLW1509 (the benchmark runs no threads)
            )
        self.pid = self.proc.pid
        self.interval_s = interval_s
        _daemon_groups.add(self.pid)
        self.db: sqlite3.Connection | None = None

    def __repr__(self) -> str:
        return f"daemon (pid {self.pid})"

    def log_tail(self, lines: int = 5) -> str:
        try:
            return " | ".join(self.log_path.read_text(errors="replace").strip().splitlines()[-lines:])
        except OSError:
            return ""

    def alive(self) -> None:
        if self.proc.poll() is not None:
            raise DaemonError(f"{self} exited with status {self.proc.returncode}: {self.log_tail()}")

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        """Until the first poll is committed: the heartbeat row exists (written after the first
        step). Then keep one read-only connection for the counts."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.alive()
            if self.database.exists():
                try:
                    db = sqlite3.connect(f"file:{self.database}?mode=ro", uri=True, timeout=5, isolation_level=None)
                    row = db.execute("SELECT value FROM meta WHERE key = 'daemon'").fetchone()
                except sqlite3.Error:  # not created or migrated yet
                    row = None
                    db = None
                if row is not None:
                    self.db = db
                    return
                if db is not None:
                    db.close()
            time.sleep(0.05)
        raise DaemonError(f"{self} recorded no first sample within {timeout_s:g} s: {self.log_tail()}")

    # ----------------------------------------------------------------- what /proc says

    def cpu_ns(self) -> int:
        """The process CPU clock (what clock_getcpuclockid(3) gives): user + system of every
        thread, the exited ones included, in nanoseconds. /proc/<pid>/stat counts in ticks
        (10 ms), a third of the whole budget of a 60 s window; it is kept as a cross-check."""
        return time.clock_gettime_ns((~self.pid << 3) | CPUCLOCK_SCHED)

    def stat_ticks(self) -> int:
        """utime + stime from /proc/<pid>/stat, in clock ticks."""
        with open(f"/proc/{self.pid}/stat", "rb") as f:
            data = f.read()
        rest = data[data.rfind(b")") + 2 :].split()
        return int(rest[11]) + int(rest[12])

    def status(self) -> dict[str, int]:
        """VmRSS and VmHWM in kB, voluntary context switches (one per wait between polls), threads."""
        out = {}
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                name, _, value = line.partition(":")
                if name in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "voluntary_ctxt_switches", "Threads"):
                    out[name] = int(value.split()[0])
        return out

    # ----------------------------------------------------------------- what it recorded

    def last_event_id(self) -> int:
        return self.db.execute("SELECT coalesce(max(id), 0) FROM events").fetchone()[0]

    def events_since(self, after_id: int, kind: str) -> list[int]:
        """Ports of the TCP events on 127.0.0.1 of `kind` recorded after event `after_id`."""
        rows = self.db.execute(
            "SELECT port FROM events WHERE id > ? AND kind = ? AND transport = 'tcp' AND address = '127.0.0.1'",
            (after_id, kind),
        )
        return [port for (port,) in rows]

    def counts(self) -> dict[str, int]:
        events, listeners = self.db.execute("SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM listeners)").fetchone()
        return {"events": events, "listeners": listeners}

    def database_bytes(self) -> dict[str, int]:
        sizes = {}
        for suffix in ("", "-wal", "-shm"):
            try:
                sizes["db" + suffix] = os.path.getsize(str(self.database) + suffix)
            except OSError:
                sizes["db" + suffix] = 0
        return sizes

    # ----------------------------------------------------------------- stopping

    def stop(self, timeout_s: float = 15.0) -> int | None:
        """SIGTERM (the daemon's clean stop), then SIGKILL to its group. Returns its status."""
        if self.db is not None:
            self.db.close()
            self.db = None
        if self.proc.returncode is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                progress(f"{self} ignored SIGTERM for {timeout_s:g} s: SIGKILL")
                helpers._kill_group(self.pid)  # still unreaped, so the group id is still ours
                self.proc.wait()
        return self.proc.returncode


# The reference: a Python loop that only waits as the daemon's loop does (threading.Event.wait),
# measured over the same windows. Its CPU is what a wake-up alone costs on this machine.
_WAIT_ONLY = "import threading\nevent = threading.Event()\nwhile True:\n    event.wait({interval})\n"


class WaitOnly:
    def __init__(self, interval_s: float) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", _WAIT_ONLY.format(interval=interval_s)],
            stdin=subprocess.DEVNULL, start_new_session=True,
            preexec_fn=_die_with_us(os.getpid()),  # noqa: PLW1509 (the benchmark runs no threads)
        )
        self.pid = self.proc.pid
        _daemon_groups.add(self.pid)

    def cpu_ns(self) -> int:
        return time.clock_gettime_ns((~self.pid << 3) | CPUCLOCK_SCHED)

    def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            self.proc.wait()


# ---------------------------------------------------------------------------------------------
# The machine around it
# ---------------------------------------------------------------------------------------------


def machine_ticks() -> tuple[int, int]:
    """(busy, total) clock ticks of all CPUs since boot, from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:9]]  # user nice system idle iowait irq softirq steal
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def last_pid() -> int:
    with open("/proc/loadavg") as f:
        return int(f.read().split()[-1])


def pid_max() -> int:
    with open("/proc/sys/kernel/pid_max") as f:
        return int(f.read())


def other_portbell_daemons(ours: set[int]) -> list[int]:
    """Other `portbell daemon` processes on the machine (someone's tests, the user's own daemon)."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) in ours or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                args = f.read().split(b"\0")
        except OSError:
            continue
        if b"daemon" in args and any(b"portbell" in a for a in args):
            found.append(int(name))
    return sorted(found)


# ---------------------------------------------------------------------------------------------
# 1. CPU
# ---------------------------------------------------------------------------------------------


def sleep_watching(daemon: Daemon, seconds: float) -> None:
    """Sleep (the benchmark must cost nothing meanwhile), checking once a second that the daemon lives."""
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        time.sleep(min(1.0, left))
        daemon.alive()


def per_interval(daemon: Daemon, t0: float, cpu0: int, event0: int, plan: Plan) -> dict:
    """Sleep through the window, waking once per interval (on a fixed grid, like the daemon) to
    read the daemon's CPU clock and its last event id: each interval then holds one sample, and
    the intervals in which the daemon recorded no event show what a sample costs when nothing
    happens. (The daemon's phase drifts against ours, so now and then an interval holds two
    samples and the next none: medians, not means.)"""
    cpu_ms: list[float] = []
    quiet_ms: list[float] = []
    n = round(plan.window_s / plan.cpu_interval_s)
    last_cpu, last_event = cpu0, event0
    for k in range(1, n + 1):
        time.sleep(max(0.0, t0 + k * plan.cpu_interval_s - time.monotonic()))
        cpu, event = daemon.cpu_ns(), daemon.last_event_id()
        cpu_ms.append((cpu - last_cpu) / 1e6)
        if event == last_event:
            quiet_ms.append(cpu_ms[-1])
        last_cpu, last_event = cpu, event
        daemon.alive()
    return {
        "cpu_ms": cpu_ms,
        "median_ms": statistics.median(cpu_ms),
        "p90_ms": percentile(cpu_ms, 90),
        "max_ms": max(cpu_ms),
        "quiet_n": len(quiet_ms),
        "quiet_median_ms": statistics.median(quiet_ms) if quiet_ms else None,
        "quiet_mean_ms": statistics.fmean(quiet_ms) if quiet_ms else None,
    }


def cpu_window(daemon: Daemon, reference: WaitOnly, plan: Plan) -> dict:
    """The daemon's CPU over one window, with what the machine did meanwhile."""
    progress(f"cpu: warm-up {plan.warmup_s:g} s")
    sleep_watching(daemon, plan.warmup_s)
    first_event = daemon.last_event_id()
    load0 = os.getloadavg()[0]
    busy0, total0 = machine_ticks()
    pid0 = last_pid()
    st0 = daemon.status()
    ticks0 = daemon.stat_ticks()
    t0 = time.monotonic()
    cpu0 = daemon.cpu_ns()
    ref0 = reference.cpu_ns()
    progress(f"cpu: measuring for {plan.window_s:g} s")
    ticks = per_interval(daemon, t0, cpu0, first_event, plan)
    ref1 = reference.cpu_ns()
    cpu1 = daemon.cpu_ns()
    t1 = time.monotonic()
    ticks1 = daemon.stat_ticks()
    st1 = daemon.status()
    pid1 = last_pid()
    busy1, total1 = machine_ticks()
    load1 = os.getloadavg()[0]

    elapsed = t1 - t0
    cpu_ms = (cpu1 - cpu0) / 1e6
    samples = round(elapsed / plan.cpu_interval_s)  # the loop keeps a fixed period
    cpus = os.cpu_count() or 1
    machine_cores = (busy1 - busy0) / max(1, total1 - total0) * cpus  # cores busy, on average
    daemon_cores = cpu_ms / 1e3 / elapsed
    counts = daemon.counts()
    return {
        "window_s": elapsed,
        "samples": samples,
        "wakeups": st1["voluntary_ctxt_switches"] - st0["voluntary_ctxt_switches"],
        "cpu_ms": cpu_ms,
        "share_pct": daemon_cores * 100,
        "cpu_ms_per_sample": cpu_ms / samples if samples else None,
        "stat_ticks_ms": (ticks1 - ticks0) * 1000 / CLK_TCK,  # utime+stime, 10 ms resolution
        "wait_only_ms_per_wakeup": (ref1 - ref0) / 1e6 / samples if samples else None,
        "per_interval": ticks,
        "rss_kb": st1["VmRSS"],
        "threads": st1["Threads"],
        "events_recorded": daemon.last_event_id() - first_event,  # other programs' listeners coming and going
        "listeners": counts["listeners"],
        "pids_created": (pid1 - pid0) % pid_max(),  # each makes the daemon's sampler re-list /proc sooner
        "loadavg_1min": {"start": load0, "end": load1},
        "machine_busy_cores": machine_cores,
        "foreign_cores": max(0.0, machine_cores - daemon_cores - (ref1 - ref0) / 1e9 / elapsed),
    }


def measure_cpu(root: Path, plan: Plan) -> dict:
    """One daemon at a 1 s interval: a window on the machine as it is, then one with 10,000
    established loopback connections held by the helpers of scales.py."""
    out: dict = {}
    reference = WaitOnly(plan.cpu_interval_s)
    daemon = Daemon(root, "cpu", plan.cpu_interval_s)
    try:
        daemon.wait_ready()
        progress(f"cpu: {daemon} ready; idle window")
        out["idle"] = cpu_window(daemon, reference, plan)
        progress(f"cpu: idle: {out['idle']['share_pct']:.3f}% of one core; building 10,000 established connections")
        with scales.established() as load:
            daemon.alive()
            progress(f"cpu: {load['added']}; established window")
            out["established"] = cpu_window(daemon, reference, plan)
            out["established"]["load"] = load
        progress(f"cpu: established: {out['established']['share_pct']:.3f}% of one core; load torn down")
    finally:
        status = daemon.stop()
        reference.stop()
    out["daemon"] = {"pid": daemon.pid, "interval_s": plan.cpu_interval_s, "exit_status": status}
    if status != 0:
        raise DaemonError(f"{daemon} exited with status {status} on SIGTERM: {daemon.log_tail()}")
    return out


# ---------------------------------------------------------------------------------------------
# 2. Memory
# ---------------------------------------------------------------------------------------------


def wait_recorded(daemon: Daemon, after_id: int, kind: str, ports: set[int], timeout_s: float = 20.0) -> float:
    """Until the daemon has recorded a `kind` event for every port; returns the wait in seconds."""
    started = time.monotonic()
    deadline = started + timeout_s
    while True:
        missing = ports - set(daemon.events_since(after_id, kind))
        if not missing:
            return time.monotonic() - started
        if time.monotonic() >= deadline:
            daemon.alive()
            raise DaemonError(f"{daemon} recorded {len(ports) - len(missing)} of {len(ports)} '{kind}' events "
                              f"within {timeout_s:g} s (missing ports {sorted(missing)[:5]}...)")
        time.sleep(0.01)


def slope_kb_per_1000(points: list[tuple[int, int]]) -> float | None:
    """Least-squares slope of RSS (kB) against cycles, per 1,000 cycles."""
    if len(points) < 2:
        return None
    n = len(points)
    mx = sum(c for c, _ in points) / n
    my = sum(r for _, r in points) / n
    sxx = sum((c - mx) ** 2 for c, _ in points)
    sxy = sum((c - mx) * (r - my) for c, r in points)
    return sxy / sxx * 1000 if sxx else None


def measure_memory(root: Path, plan: Plan) -> dict:
    """A fresh daemon at a short interval; a helper (load.py's `veteran`) opens `burst` listeners,
    waits until the daemon has recorded them all opened, closes them, waits until all are recorded
    closed: `burst` cycles. RSS every 5% of the way; checkpoints at each quarter."""
    every = max(plan.burst, plan.cycles // 20 // plan.burst * plan.burst)
    quarters = {plan.cycles * q // 4 for q in (1, 2, 3, 4)}
    churner = helpers.Helper("veteran")  # answers `open` with `port P`, and `close` closes them all
    churner.expect("ready")
    daemon = Daemon(root, "memory", plan.mem_interval_s)
    series: list[dict] = []
    waits: list[float] = []
    try:
        daemon.wait_ready()
        progress(f"memory: {daemon} ready at a {plan.mem_interval_s:g} s interval; warm-up {plan.mem_warmup_s:g} s")
        sleep_watching(daemon, plan.mem_warmup_s)
        started = time.monotonic()
        cpu0 = daemon.cpu_ns()

        events_at_start = daemon.counts()["events"]

        def point(label: str, cycles: int) -> None:
            st = daemon.status()
            counts = daemon.counts()
            series.append({"label": label, "cycles": cycles, "elapsed_s": time.monotonic() - started,
                           "rss_kb": st["VmRSS"], "hwm_kb": st["VmHWM"], "anon_kb": st["RssAnon"],
                           # ours are exactly one opened and one closed event per cycle
                           "other_events": counts["events"] - events_at_start - 2 * cycles,
                           "listeners": counts["listeners"]})

        point("start", 0)
        done = 0
        while done < plan.cycles:
            mark = daemon.last_event_id()
            churner.proc.stdin.write(b"open\n" * plan.burst)
            churner.proc.stdin.flush()
            ports = {int(churner.expect("port")[0]) for _ in range(plan.burst)}
            if len(ports) != plan.burst:
                raise DaemonError(f"the helper reported {len(ports)} distinct ports for {plan.burst} listeners")
            waits.append(wait_recorded(daemon, mark, "opened", ports))
            mark = daemon.last_event_id()
            churner.ask("close", "closed")
            waits.append(wait_recorded(daemon, mark, "closed", ports))
            done += plan.burst
            if done % every == 0 or done in quarters:
                point(f"{done:,} cycles" if done in quarters else "", done)
            if done % (plan.cycles // 4 or 1) == 0:
                progress(f"memory: {done:,} cycles, RSS {series[-1]['rss_kb'] / 1024:.1f} MB")
        churn_s = time.monotonic() - started
        cpu_ms = (daemon.cpu_ns() - cpu0) / 1e6
        sleep_watching(daemon, plan.settle_s)
        point("end", done)
        counts = daemon.counts()
        sizes = daemon.database_bytes()
    finally:
        churner.stop()
        status = daemon.stop()
    sizes_after = daemon.database_bytes()  # after the daemon's clean stop: the WAL checkpointed
    if status != 0:
        raise DaemonError(f"{daemon} exited with status {status} on SIGTERM: {daemon.log_tail()}")

    half = plan.cycles // 2
    at = {p["cycles"]: p["rss_kb"] for p in series if p["label"] != "end"}
    second_half = [(p["cycles"], p["rss_kb"]) for p in series if p["cycles"] >= half and p["label"] != "end"]
    others_at = {p["cycles"]: p["other_events"] for p in series if p["label"] != "end"}
    end_kb = series[-1]["rss_kb"]
    return {
        "daemon": {"pid": daemon.pid, "interval_s": plan.mem_interval_s, "exit_status": status},
        "cycles": done,
        "burst": plan.burst,
        "series": series,
        "start_kb": series[0]["rss_kb"],
        "end_kb": end_kb,
        "peak_kb": series[-1]["hwm_kb"],
        "second_half_growth_kb": at[plan.cycles] - at[half],
        "second_half_slope_kb_per_1000": slope_kb_per_1000(second_half),
        "first_half_growth_kb": at[half] - series[0]["rss_kb"],
        "other_events": {"first_half": others_at[half], "second_half": others_at[plan.cycles] - others_at[half],
                         "after": series[-1]["other_events"] - others_at[plan.cycles]},
        "max_listeners": max(p["listeners"] for p in series),
        "churn_s": churn_s,
        "daemon_cpu_ms": cpu_ms,
        "wait_s": {"median": sorted(waits)[len(waits) // 2], "max": max(waits)},
        "events_recorded": counts["events"] - events_at_start,
        "events_total": counts["events"],
        "database_bytes": {"running": sizes, "after_stop": sizes_after},
    }


# ---------------------------------------------------------------------------------------------
# Targets, report
# ---------------------------------------------------------------------------------------------


def _target(text: str, limit: str, measured: str, verdict: str, note: str = "") -> dict:
    return {"target": text, "limit": limit, "measured": measured, "verdict": verdict, "note": note}


def targets(doc: dict, plan: Plan) -> list[dict]:
    out = []
    cpu = doc["cpu"]
    for name, text in (("idle", "the machine as it is"), ("established", "10,000 established loopback connections")):
        label = f"daemon CPU at a {plan.cpu_interval_s:g} s interval, {text}"
        limit = f"<= {CPU_SHARE_LIMIT_PCT}% of one core"
        window = cpu.get(name)
        if window is None:
            out.append(_target(label, limit, "-", "SKIP", "not measured"))
            continue
        share = window["share_pct"]
        out.append(_target(label, limit, f"{share:.3f}% ({window['cpu_ms_per_sample']:.3f} ms per sample)",
                           "PASS" if share <= CPU_SHARE_LIMIT_PCT else "FAIL"))
    mem = doc["memory"]
    label = f"daemon resident memory after {mem['cycles']:,} listener open/close cycles" if mem else \
        "daemon resident memory after listener open/close cycles"
    limit = f"end <= {RSS_LIMIT_KB // 1024} MB and second-half growth < {FLAT_GROWTH_LIMIT_KB // 1024} MB"
    if not mem:
        out.append(_target(label, limit, "-", "SKIP", "not measured"))
    else:
        end, growth = mem["end_kb"], mem["second_half_growth_kb"]
        problems = []
        if end > RSS_LIMIT_KB:
            problems.append("end RSS over the limit")
        if growth >= FLAT_GROWTH_LIMIT_KB:
            problems.append("not flat")
        others = mem["other_events"]["second_half"]
        if others:
            problems.append(f"other programs' listeners made {others} events in the second half "
                            f"(at most {mem['max_listeners']} listeners recorded at once): part of the growth may be theirs")
        out.append(_target(label, limit, f"end {end / 1024:.1f} MB, second-half growth {growth:+d} KB",
                           "FAIL" if end > RSS_LIMIT_KB or growth >= FLAT_GROWTH_LIMIT_KB else "PASS", "; ".join(problems)))
    return out


def markdown(doc: dict) -> str:
    plan = doc["plan"]
    m = doc["machine"]
    lines = [f"# portbell daemon benchmark ({doc['mode']} run, {m['summary']})", ""]
    lines += [f"Machine before/after the run: load average (1 min) {m['loadavg_1min']['start']:.2f} / "
              f"{m['loadavg_1min']['end']:.2f}, listeners {m['listeners']['start']} / {m['listeners']['end']}"
              + (f", other portbell daemons running: pids {m['other_portbell_daemons']}" if m["other_portbell_daemons"] else "")
              + ".", ""]
    cpu = doc["cpu"]
    busy = [name for name, w in cpu.items() if w["foreign_cores"] > FOREIGN_CPU_WARN or w["events_recorded"]]
    if busy:
        lines += [(f"WARNING: other programs were busy during the CPU window(s) {', '.join(busy)} "
                   "(see \"other programs\", \"events\" and \"pids created\"): they make the daemon work more "
                   "(a new pid makes its sampler re-list /proc) and share the cores."), ""]
    mem = doc["memory"]
    if mem and sum(mem["other_events"].values()):
        lines += [(f"WARNING: other programs' listeners made {sum(mem['other_events'].values())} events during the memory "
                   f"run ({mem['other_events']['second_half']} in its second half; at most {mem['max_listeners']} listeners "
                   "recorded at once): the daemon held and recorded those too."), ""]
    if cpu:
        lines += [(f"Daemon CPU at a {plan['cpu_interval_s']:g} s interval over {plan['window_s']:g} s, after a "
                   f"{plan['warmup_s']:g} s warm-up (process CPU clock: user + system, all threads)."), ""]
        header = ["load", "samples (wakeups)", "daemon CPU ms (stat ticks)", "share of one core %", "CPU ms per sample",
                  "per sample median / p90 / max ms", "median with no event (n)", "wait-only loop ms per wake-up",
                  "RSS MB", "events", "pids created", "load avg start / end", "other programs, cores"]
        rows = []
        for name, w in cpu.items():
            each = w["per_interval"]
            quiet = "-" if each["quiet_median_ms"] is None else f"{each['quiet_median_ms']:.3f} ({each['quiet_n']})"
            rows.append([
                name, f"{w['samples']} ({w['wakeups']})", f"{w['cpu_ms']:.1f} ({w['stat_ticks_ms']:.0f})",
                f"{w['share_pct']:.3f}", f"{w['cpu_ms_per_sample']:.3f}",
                f"{each['median_ms']:.3f} / {each['p90_ms']:.3f} / {each['max_ms']:.3f}", quiet,
                f"{w['wait_only_ms_per_wakeup']:.3f}",
                f"{w['rss_kb'] / 1024:.1f}",
                str(w["events_recorded"]), str(w["pids_created"]),
                f"{w['loadavg_1min']['start']:.2f} / {w['loadavg_1min']['end']:.2f}", f"{w['foreign_cores']:.2f}",
            ])
        lines += report._table(header, rows) + [""]
        lines += [("per sample = the daemon's CPU in each 1 s interval of the window (one sample each); "
                   "with no event = in the intervals where it recorded nothing; "
                   "events = what the daemon recorded during the window (other programs' listeners); pids created = "
                   "processes and threads started on the machine (each makes the sampler re-list /proc within 5 samples); "
                   "wait-only loop = a Python process that only does threading.Event().wait(1 s), as the daemon's loop "
                   "does, measured over the same window: the cost of a wake-up alone on this machine."), ""]
    if mem:
        lines += [(f"Daemon resident memory at a {mem['daemon']['interval_s']:g} s interval: a helper opens "
                   f"{mem['burst']} listeners on 127.0.0.1, waits until the daemon has recorded them, closes them, "
                   f"waits again; {mem['cycles']:,} cycles in {mem['churn_s']:.0f} s "
                   f"(wait per half-burst median {mem['wait_s']['median'] * 1000:.0f} ms, "
                   f"max {mem['wait_s']['max'] * 1000:.0f} ms)."), ""]
        header = ["point", "cycles", "elapsed s", "VmRSS MB", "RssAnon MB", "VmHWM MB", "other programs' events so far",
                  "listeners recorded"]
        rows = [[p["label"], f"{p['cycles']:,}", f"{p['elapsed_s']:.0f}", f"{p['rss_kb'] / 1024:.2f}",
                 f"{p['anon_kb'] / 1024:.2f}", f"{p['hwm_kb'] / 1024:.2f}", str(p["other_events"]), str(p["listeners"])]
                for p in mem["series"] if p["label"]]
        lines += report._table(header, rows) + [""]
        slope = mem["second_half_slope_kb_per_1000"]
        db = mem["database_bytes"]
        fitted = sum(1 for p in mem["series"] if p["cycles"] >= mem["cycles"] // 2 and p["label"] != "end")
        lines += [(f"RSS growth: first half {mem['first_half_growth_kb']:+d} KB, second half "
                   f"{mem['second_half_growth_kb']:+d} KB (slope {slope:+.1f} KB per 1,000 cycles, "
                   f"least squares over {fitted} points)."),
                  (f"Database (disk, not RSS): {mem['events_total']:,} events ({mem['events_recorded']:,} during the cycles); "
                   f"{db['running']['db'] / 1e6:.1f} MB + WAL {db['running']['db-wal'] / 1e6:.1f} MB while running, "
                   f"{db['after_stop']['db'] / 1e6:.1f} MB after the daemon stopped. "
                   f"Daemon CPU during the cycles: {mem['daemon_cpu_ms'] / 1000:.1f} s "
                   f"({mem['daemon_cpu_ms'] / max(1, mem['events_recorded']):.2f} ms per event)."), ""]
    lines += ["Targets (PRODUCT.md, Performance; daemon targets):", ""]
    for t in doc["targets"]:
        note = f"  [{t['note']}]" if t["note"] else ""
        lines.append(f"    {t['verdict']:4}  {t['target']}: {t['measured']} (target {t['limit']}){note}")
    lines.append("")
    for name, error in doc["errors"].items():
        lines.append(f"ERROR  {name}: {error}")
    left = doc["teardown"]["leftover"]
    lines.append("Teardown: " + ("no daemon or helper process left (ps)" if not left else f"LEFTOVER processes {left}")
                 + f"; daemon exit statuses {doc['teardown']['daemon_exit']}; "
                 + ("temporary directory kept at " + doc["teardown"]["kept"] if doc["teardown"]["kept"] else "temporary directory removed") + ".")
    lines.append(f"Run took {doc['duration_s']:.0f} s.")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Run
# ---------------------------------------------------------------------------------------------


def leftovers(timeout_s: float = 5.0) -> list[str]:
    """`ps` lines of any process in a group that a daemon or a helper of ours led."""
    groups = _daemon_groups | helpers.started_pids()
    deadline = time.monotonic() + timeout_s
    while True:
        out = subprocess.run(["ps", "-eo", "pid=,pgid=,args="], capture_output=True, text=True, check=True).stdout
        found = [line.strip() for line in out.splitlines() if int(line.split()[1]) in groups]
        if not found or time.monotonic() >= deadline:
            return found
        time.sleep(0.1)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short windows and 2,000 cycles (a smoke run)")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {','.join(PARTS)} (default: all)")
    parser.add_argument("--json", action="store_true", help="print the JSON results instead of the markdown")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"where to write the JSON (default {RESULTS})")
    parser.add_argument("--keep", action="store_true", help="keep the daemons' temporary directories (databases, logs)")
    args = parser.parse_args(argv)
    args.parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    if not args.parts or any(p not in PARTS for p in args.parts):
        parser.error(f"--parts: choose from {', '.join(PARTS)}")
    return args


def run(args: argparse.Namespace) -> dict:
    plan = QUICK if args.quick else FULL
    started_at = datetime.now(timezone.utc)
    started = time.monotonic()
    before = busyness()
    root = Path(tempfile.mkdtemp(prefix="portbell-bench-daemon-"))
    doc: dict = {"cpu": {}, "memory": {}}
    errors: dict[str, str] = {}
    try:
        if "cpu" in args.parts:
            try:
                doc["cpu"] = measure_cpu(root, plan)
            except (DaemonError, scales.ScaleError, helpers.HelperError) as err:
                errors["cpu"] = str(err)
                progress(f"cpu: ERROR {err}")
        if "memory" in args.parts:
            try:
                doc["memory"] = measure_memory(root, plan)
            except (DaemonError, helpers.HelperError) as err:
                errors["memory"] = str(err)
                progress(f"memory: ERROR {err}")
    finally:
        helpers.stop_all()
        kept = str(root) if args.keep else ""
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    cpu = doc["cpu"]
    exits = {k: v["daemon"]["exit_status"] for k, v in (("cpu", cpu), ("memory", doc["memory"])) if v}
    windows = {k: v for k, v in cpu.items() if k != "daemon"}
    result = {
        "version": 1,
        "started_at": started_at.isoformat(),
        "mode": "quick" if args.quick else "full",
        "plan": asdict(plan),
        "machine": {
            **machine(before),
            "other_portbell_daemons": other_portbell_daemons(_daemon_groups),
        },
        "cpu": windows,
        "cpu_daemon": cpu.get("daemon"),
        "memory": doc["memory"],
        "errors": errors,
        "teardown": {"leftover": leftovers(), "daemon_exit": exits, "kept": kept},
    }
    result["targets"] = targets(result, plan)
    result["duration_s"] = time.monotonic() - started
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _stop_on_signal)
    signal.signal(signal.SIGHUP, _stop_on_signal)
    try:
        doc = run(args)
    except KeyboardInterrupt:  # run()'s finally blocks have stopped the daemon and the helpers
        progress("interrupted; nothing written")
        return 130
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps(doc, indent=2) if args.json else markdown(doc))
    progress(f"results written to {args.out}")
    return 1 if doc["errors"] or doc["teardown"]["leftover"] else 0


if __name__ == "__main__":
    sys.exit(main())
