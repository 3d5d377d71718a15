"""portbell's command-line benchmark: the wall time of `portbell who PORT` and `portbell ls` against
the interpreter's own start-up (`python -c pass` from the same environment), in one run. See
bench/README.md.

    .venv/bin/python bench/cli.py [--runs N] [--json]

Each round runs every command once, in the same order (interleaved), so a machine that gets busier
during the run slows every command alike; the medians over the rounds are compared. `who` asks
about a listener of the benchmark's own on 127.0.0.1; `ss -tulnp` and `lsof` run for scale when
present. The commands run with the user's environment (a daemon the user runs is used as it would
be). Targets (PRODUCT.md, "Performance"): who <= 2.5x and ls <= 4x the bare interpreter.

A measurement, not a test: a missed target prints FAIL and the exit status stays 0 (1 when a
command failed, so there was nothing to measure).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

TARGETS = {"who": 2.5, "ls": 4.0}


def commands(port: int) -> dict[str, list[str]]:
    python = sys.executable
    portbell = str(Path(python).with_name("portbell"))
    if not os.access(portbell, os.X_OK):
        raise SystemExit(f"bench: {portbell} is missing: run `make test` (or pip install -e .) first")
    cmds = {
        "python": [python, "-c", "pass"],
        "who": [portbell, "who", str(port)],
        "ls": [portbell, "ls"],
    }
    if shutil.which("ss"):
        cmds["ss"] = ["ss", "-tulnp"]
    if shutil.which("lsof"):
        cmds["lsof"] = ["lsof", "-nP", f"-iTCP:{port}", "-sTCP:LISTEN"]
    return cmds


# The user's environment, except PYTHONDONTWRITEBYTECODE: an installed package has its bytecode
# (pip compiles a wheel's modules), and without it every run would compile portbell from source.
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def run_once(argv: list[str]) -> float:
    """Wall milliseconds of one run; SystemExit when the command fails."""
    started = time.perf_counter()
    done = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV)
    took = (time.perf_counter() - started) * 1000
    if done.returncode != 0 and argv[0] not in ("ss", "lsof"):
        raise SystemExit(f"bench: {' '.join(argv)} failed ({done.returncode}): {done.stderr.decode(errors='replace')[-500:]}")
    return took


def measure(cmds: dict[str, list[str]], runs: int, warmup: int = 3) -> dict[str, list[float]]:
    for _ in range(warmup):  # the page cache, .pyc files (written by the first run), the dentry cache
        for argv in cmds.values():
            run_once(argv)
    times: dict[str, list[float]] = {name: [] for name in cmds}
    for _ in range(runs):
        for name, argv in cmds.items():
            times[name].append(run_once(argv))
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="wall time of portbell who / ls against python -c pass")
    parser.add_argument("--runs", type=int, default=30, help="rounds (default 30)")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON document")
    args = parser.parse_args(argv)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        cmds = commands(port)
        load_before = os.getloadavg()
        times = measure(cmds, args.runs)
        load_after = os.getloadavg()
    medians = {name: statistics.median(values) for name, values in times.items()}
    ratios = {name: medians[name] / medians["python"] for name in TARGETS}
    verdicts = {name: ratios[name] <= limit for name, limit in TARGETS.items()}
    result = {
        "runs": args.runs,
        "load_before": load_before,
        "load_after": load_after,
        "cores": os.cpu_count(),
        "median_ms": medians,
        "min_ms": {name: min(values) for name, values in times.items()},
        "ratio": ratios,
        "pass": verdicts,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{args.runs} interleaved rounds; load average {load_before[0]:.2f} before, {load_after[0]:.2f} after ({os.cpu_count()} cores)")
    print(f"{'command':<8} {'median ms':>10} {'min ms':>8}")
    for name, values in times.items():
        print(f"{name:<8} {medians[name]:>10.1f} {min(values):>8.1f}")
    for name, limit in TARGETS.items():
        verdict = "PASS" if verdicts[name] else "FAIL"
        print(f"{verdict} {name}: {ratios[name]:.2f}x python -c pass (target <= {limit:g}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
