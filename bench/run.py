"""portbell's sampler benchmark: CPU per sample of SockDiagSampler, PsutilSampler and the raw
psutil.net_connections(), and the cost of attributing one new listener, at four machine scales
built and torn down here. See bench/README.md.

    .venv/bin/python bench/run.py [--quick] [--scales idle,listeners,established,processes] [--json] [--no-daemon]

Then, unless --no-cli, it runs bench/cli.py (portbell who and ls against the bare interpreter),
and unless --no-daemon, bench/daemon.py (the daemon's CPU share and resident memory).

It is a measurement, not a test: it exits 0 when a target fails (and prints FAIL), 1 only when
it could not measure (a scale could not be built, or a helper process was left behind).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import psutil

import attribution
import helpers
import report
import scales
from measure import repeat, timed
from portbell.daemon.samplers._psutil import PsutilSampler
from portbell.daemon.samplers._sockdiag import SockDiagSampler

RESULTS = Path(__file__).resolve().parent / "results" / "latest.json"


@dataclass(frozen=True, slots=True)
class Plan:
    """How many calls to time. Each block stops at max_n calls or its budget, whichever first."""

    sockdiag_n: int
    sockdiag_budget_s: float
    moved_n: int
    moved_budget_s: float
    psutil_n: int
    psutil_budget_s: float
    reps: int  # attribution repetitions per case


FULL = Plan(sockdiag_n=3000, sockdiag_budget_s=3.0, moved_n=500, moved_budget_s=1.5,
            psutil_n=200, psutil_budget_s=6.0, reps=10)
QUICK = Plan(sockdiag_n=300, sockdiag_budget_s=0.5, moved_n=100, moved_budget_s=0.3,
             psutil_n=20, psutil_budget_s=1.0, reps=3)


def progress(text: str) -> None:
    print(f"bench: {text}", file=sys.stderr, flush=True)


def net_connections() -> object:
    return psutil.net_connections(kind="inet")


def move_pid_counter() -> None:
    """Create (and join) a thread: the kernel hands out a pid, as on any busy desktop, which
    makes the sampler re-list /proc on its next sample. Runs outside the timed region."""
    thread = threading.Thread(target=int)
    thread.start()
    thread.join()


def sockdiag_probe() -> dict:
    """The machine's listeners right now, from a sampler of its own (the timed one stays untouched)."""
    with SockDiagSampler() as sampler:
        return sampler.sample().listeners


def fresh_first_sample() -> dict:
    """What a daemon's first sample costs on this machine state: every owner is looked up."""
    sampler = SockDiagSampler()
    try:
        _, cpu_ms, wall_ms = timed(sampler.sample)
    finally:
        sampler.close()
    return {"cpu_ms": cpu_ms, "wall_ms": wall_ms}


def compare(sockdiag: SockDiagSampler, portable: PsutilSampler, attempts: int = 3) -> dict:
    """Both samplers must list the same keys, and psutil's one pid per socket must be among ours.

    Other programs may open and close listeners meanwhile (a shared machine, a test suite):
    a real disagreement persists, a race does not, so a disagreement is reported only when
    every attempt shows one."""
    for attempt in range(1, attempts + 1):
        result = _compare_once(sockdiag, portable)
        if result["agree"]:
            break
    return {**result, "attempts": attempt}


def _compare_once(sockdiag: SockDiagSampler, portable: PsutilSampler) -> dict:
    """Only keys that sockdiag saw unchanged just before and just after psutil's sample are
    held against each other; the others are counted as `moving`."""
    before = sockdiag.sample().listeners
    theirs = portable.sample().listeners
    after = sockdiag.sample().listeners
    stable = {k for k in before.keys() & after.keys() if before[k] == after[k]}
    moving = (before.keys() | after.keys()) - stable
    seen = theirs.keys() - moving
    only_ours = sorted(str(k) for k in stable - seen)
    only_theirs = sorted(str(k) for k in seen - stable)
    owner_mismatch = sorted(str(k) for k in stable & seen if not set(theirs[k].pids) <= set(after[k].pids))
    ours = helpers.started_pids()
    return {
        "sockdiag": len(after),
        "psutil": len(theirs),
        "others": sum(1 for li in after.values() if not ours & set(li.pids)),  # not the benchmark's
        "moving": len(moving),
        "agree": not (only_ours or only_theirs or owner_mismatch),
        "only_sockdiag": only_ours[:10],
        "only_psutil": only_theirs[:10],
        "owner_mismatch": owner_mismatch[:10],
    }


def measure_scale(name: str, sockdiag: SockDiagSampler, portable: PsutilSampler,
                  veteran: helpers.Helper, plan: Plan) -> dict:
    progress(f"{name}: building the load")
    with scales.SCALES[name]() as load:
        progress(f"{name}: {load['added']}; timing samplers")
        # Warm-up: the first samples after the load appeared attribute its sockets.
        for _ in range(3):
            sockdiag.sample()
        portable.sample()
        net_connections()
        result: dict = {"load": load}
        result["sockdiag"] = repeat(sockdiag.sample, max_n=plan.sockdiag_n, budget_s=plan.sockdiag_budget_s).to_dict()
        result["sockdiag_pid_moved"] = repeat(
            sockdiag.sample, max_n=plan.moved_n, budget_s=plan.moved_budget_s, before_each=move_pid_counter
        ).to_dict()
        result["sockdiag_fresh_first"] = fresh_first_sample()
        result["psutil_sampler"] = repeat(portable.sample, max_n=plan.psutil_n, budget_s=plan.psutil_budget_s).to_dict()
        result["net_connections"] = repeat(net_connections, max_n=plan.psutil_n, budget_s=plan.psutil_budget_s).to_dict()
        result["same_listeners"] = compare(sockdiag, portable)
        progress(f"{name}: attributing new listeners")
        result["attribution"] = {
            "new process": attribution.by_new_process(sockdiag, plan.reps).to_dict(),
            "old process": attribution.by_old_process(sockdiag, veteran, plan.reps).to_dict(),
        }
    progress(f"{name}: torn down")
    return result


def busyness() -> tuple[float, int]:
    """The 1-minute load average and the listener count: other work on the machine skews the numbers."""
    return os.getloadavg()[0], len(sockdiag_probe())


def machine(before: tuple[float, int]) -> dict:
    """The machine, and how busy it was at the start (`before`, from busyness()) and now."""
    (load_start, listeners_start), (load_end, listeners_end) = before, busyness()
    info = {
        "kernel": platform.release(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "psutil": psutil.__version__,
        "euid": os.geteuid(),
        "processes": len(psutil.pids()),
    }
    info["summary"] = f"Linux {info['kernel']}, {info['cpus']} CPUs, Python {info['python']}, psutil {info['psutil']}"
    info["loadavg_1min"] = {"start": load_start, "end": load_end}
    info["listeners"] = {"start": listeners_start, "end": listeners_end}
    return info


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples and repetitions (a smoke run)")
    parser.add_argument("--scales", default=",".join(scales.SCALES),
                        help=f"comma-separated subset of {','.join(scales.SCALES)} (default: all)")
    parser.add_argument("--json", action="store_true", help="print the JSON results instead of the markdown")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"where to write the JSON (default {RESULTS})")
    parser.add_argument("--no-cli", dest="cli", action="store_false",
                        help="skip bench/cli.py, the wall time of portbell who and ls (~15 s)")
    parser.add_argument("--no-daemon", dest="daemon", action="store_false",
                        help="skip bench/daemon.py, the daemon-level benchmark that otherwise runs afterwards (~4 min)")
    args = parser.parse_args(argv)
    args.scales = [s.strip() for s in args.scales.split(",") if s.strip()]
    unknown = [s for s in args.scales if s not in scales.SCALES]
    if unknown or not args.scales:
        parser.error(f"unknown scale(s) {unknown}; choose from {', '.join(scales.SCALES)}")
    return args


def _stop_on_signal(signum, _frame) -> None:
    # Turn SIGTERM/SIGHUP into an exception so the `finally` blocks tear the helpers down.
    raise SystemExit(128 + signum)


def run(args: argparse.Namespace) -> dict:
    plan = QUICK if args.quick else FULL
    started_at = datetime.now(timezone.utc)
    started = time.monotonic()
    before = busyness()
    results: dict[str, dict] = {}
    errors: dict[str, str] = {}
    sockdiag, portable = SockDiagSampler(), PsutilSampler()
    try:
        # Started before any load, so at every scale it is older than the load's processes.
        veteran = helpers.Helper("veteran")
        veteran.expect("ready")
        for name in args.scales:
            try:
                results[name] = measure_scale(name, sockdiag, portable, veteran, plan)
            except (scales.ScaleError, helpers.HelperError) as err:
                errors[name] = str(err)
                progress(f"{name}: ERROR {err}")
    finally:
        helpers.stop_all()
        sockdiag.close()
    return {
        "version": 1,
        "started_at": started_at.isoformat(),
        "mode": "quick" if args.quick else "full",
        "plan": asdict(plan),
        "machine": machine(before),
        "scales": results,
        "errors": errors,
        "targets": report.targets(results, [s for s in args.scales if s in results]),
        "teardown": {"leftover_pids": helpers.leftovers(), "sockstat_tcp": scales.tcp_sockstat()},
        "duration_s": time.monotonic() - started,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _stop_on_signal)
    signal.signal(signal.SIGHUP, _stop_on_signal)
    try:
        doc = run(args)
    except KeyboardInterrupt:  # run()'s finally has already stopped the helpers
        progress("interrupted; nothing written")
        return 130
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps(doc, indent=2) if args.json else report.markdown(doc))
    progress(f"results written to {args.out}")
    status = 1 if doc["errors"] or doc["teardown"]["leftover_pids"] else 0
    if args.cli:  # its own process too; its figures go where the daemon's do (stderr with --json)
        sys.stdout.flush()
        cli = subprocess.run(
            [sys.executable, str(Path(__file__).with_name("cli.py")), *(["--runs", "10"] if args.quick else [])],
            stdout=sys.stderr if args.json else None,
        )
        status = max(status, cli.returncode)
    if args.daemon:  # its own process: its own helpers, signals and results file (bench/results/daemon.json)
        sys.stdout.flush()
        daemon = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("daemon.py")), *(["--quick"] if args.quick else [])],
            stdout=sys.stderr if args.json else None,  # stdout stays one JSON document
        )
        try:
            status = max(status, daemon.wait())
        except KeyboardInterrupt:  # Ctrl-C reached it too: let it tear its daemons down
            daemon.wait()
            return 130
    return status


if __name__ == "__main__":
    sys.exit(main())
