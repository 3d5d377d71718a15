"""Timing calls: CPU time and wall time per call, summed up. Imports: the standard library.

CPU time is the process's CPU clock (user + system, so the kernel's work on a
netlink dump or a /proc read counts), read around each call. The benchmark runs
no other threads while it times, so that clock is the call's own cost.
"""

from __future__ import annotations

import gc
import statistics
import time
from dataclasses import dataclass
from typing import Callable


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, round(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


@dataclass(frozen=True, slots=True)
class Summary:
    """Milliseconds."""

    median: float
    p90: float
    mean: float
    max: float

    @classmethod
    def of(cls, values_ms: list[float]) -> "Summary":
        return cls(statistics.median(values_ms), percentile(values_ms, 90), statistics.fmean(values_ms), max(values_ms))

    def to_dict(self) -> dict[str, float]:
        return {"median": self.median, "p90": self.p90, "mean": self.mean, "max": self.max}


@dataclass(frozen=True, slots=True)
class Timing:
    n: int
    cpu: Summary
    wall: Summary

    def to_dict(self) -> dict:
        return {"n": self.n, "cpu_ms": self.cpu.to_dict(), "wall_ms": self.wall.to_dict()}


def timed(call: Callable[[], object]) -> tuple[object, float, float]:
    """Run `call` once: (its result, CPU ms, wall ms)."""
    wall0 = time.perf_counter_ns()
    cpu0 = time.process_time_ns()
    result = call()
    cpu1 = time.process_time_ns()
    wall1 = time.perf_counter_ns()
    return result, (cpu1 - cpu0) / 1e6, (wall1 - wall0) / 1e6


def repeat(
    call: Callable[[], object],
    *,
    max_n: int,
    budget_s: float,
    min_n: int = 5,
    before_each: Callable[[], object] | None = None,
) -> Timing:
    """Time `call` up to `max_n` times, stopping early once `budget_s` of wall time is
    spent (but never before `min_n` calls): slow calls get fewer, still useful, samples.
    `before_each` runs outside the timed region."""
    gc.collect()  # so garbage left by the previous block is not collected on this one's clock
    cpu: list[float] = []
    wall: list[float] = []
    stop_at = time.monotonic() + budget_s
    while len(cpu) < max_n and (len(cpu) < min_n or time.monotonic() < stop_at):
        if before_each is not None:
            before_each()
        _, cpu_ms, wall_ms = timed(call)
        cpu.append(cpu_ms)
        wall.append(wall_ms)
    return Timing(len(cpu), Summary.of(cpu), Summary.of(wall))
