"""What it costs a warm sampler to attribute one new listener to its process.
Imports: portbell.daemon.model, and the sibling helpers and measure modules.

Two cases, reported apart because the sampler searches processes newest first:
- a brand-new process opens the listener: it is the newest, so found at once;
- an old process (started before the load) opens it: every newer process is
  searched before it.
Each repetition settles the sampler, creates the listener, waits for its owner to
say it is listening, then times the one sample() call that first sees it and
checks that this snapshot names the right pid.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from helpers import Helper
from measure import timed
from portbell.daemon.model import Key, Snapshot, Transport
from portbell.daemon.words import owners_tag

LOOPBACK = "127.0.0.1"
SETTLE_SAMPLES = 3  # enough to absorb the previous repetition's teardown
CHASE_SAMPLES = 50  # when the first sample misses, how long we keep looking (for the report)


@dataclass
class Attribution:
    cpu_ms: list[float] = field(default_factory=list)  # of the first sample that saw the listener
    wall_ms: list[float] = field(default_factory=list)
    first_sample_ok: int = 0  # repetitions where that first sample already named the right pid
    problems: list[str] = field(default_factory=list)

    @property
    def reps(self) -> int:
        return len(self.wall_ms)

    def to_dict(self) -> dict:
        return {
            "reps": self.reps,
            "first_sample_ok": self.first_sample_ok,
            "cpu_ms": {"median": _median(self.cpu_ms), "max": max(self.cpu_ms, default=None), "all": self.cpu_ms},
            "wall_ms": {"median": _median(self.wall_ms), "max": max(self.wall_ms, default=None), "all": self.wall_ms},
            "problems": self.problems,
        }

    @property
    def median_cpu_ms(self) -> float | None:
        return _median(self.cpu_ms)

    @property
    def median_wall_ms(self) -> float | None:
        return _median(self.wall_ms)


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _owned_by(snapshot: Snapshot, port: int, pid: int) -> tuple[bool, str]:
    listener = snapshot.listeners.get(Key(Transport.TCP, LOOPBACK, port))
    if listener is None:
        return False, "not in the snapshot"
    if pid not in listener.pids:
        return False, f"attributed to {owners_tag(listener)}"
    return True, ""


def _measure_one(sampler, port: int, pid: int, result: Attribution) -> None:
    snapshot, cpu_ms, wall_ms = timed(sampler.sample)
    result.cpu_ms.append(cpu_ms)
    result.wall_ms.append(wall_ms)
    ok, why = _owned_by(snapshot, port, pid)
    if ok:
        result.first_sample_ok += 1
        return
    # Keep sampling to tell "late" from "never" in the report; these samples are not timed.
    for extra in range(1, CHASE_SAMPLES + 1):
        if _owned_by(sampler.sample(), port, pid)[0]:
            result.problems.append(f"port {port} pid {pid}: first sample: {why}; attributed {extra} samples later")
            return
    result.problems.append(f"port {port} pid {pid}: first sample: {why}; still not after {CHASE_SAMPLES} more")


def _settle(sampler) -> None:
    for _ in range(SETTLE_SAMPLES):
        sampler.sample()


def by_new_process(sampler, reps: int) -> Attribution:
    result = Attribution()
    for _ in range(reps):
        _settle(sampler)
        child = Helper("listen")
        try:
            (port,) = child.expect("ready", timeout_s=30)
            _measure_one(sampler, int(port), child.pid, result)
        finally:
            child.stop()
    return result


def by_old_process(sampler, veteran: Helper, reps: int) -> Attribution:
    result = Attribution()
    for _ in range(reps):
        _settle(sampler)
        (port,) = veteran.ask("open", "port")
        try:
            _measure_one(sampler, int(port), veteran.pid, result)
        finally:
            veteran.ask("close", "closed")
    return result

