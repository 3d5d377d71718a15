"""The Monitor: a sampler and the pure diff, with the baseline rules; and the plain poll loop.

Baseline rules (PRODUCT.md, Vocabulary):
- the first good sample is a baseline: recorded, not reported;
- a change of coverage (sampler, complete/partial view) re-baselines silently;
- a failed sample is not an empty one: the last good snapshot stays, so the
  next good sample is compared with it and nothing is reported closed.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Callable

from ..errors import SampleError
from ..model import Event, Snapshot
from ..snapshot import diff

log = logging.getLogger("portbell")


@dataclass(frozen=True, slots=True)
class Poll:
    snapshot: Snapshot | None  # None when the sample failed
    events: list[Event] = field(default_factory=list)
    baseline: bool = False  # this snapshot starts a new baseline: nothing to report
    error: str | None = None


class Monitor:
    def __init__(self, sampler) -> None:
        self.sampler = sampler
        self.current: Snapshot | None = None
        self.failures = 0

    def poll(self) -> Poll:
        try:
            snap = self.sampler.sample()
        except SampleError as err:
            self.failures += 1
            if self.failures == 1 or self.failures % 60 == 0:
                log.warning("sample failed (%d in a row), keeping the last good one: %s", self.failures, err)
            return Poll(None, error=str(err))
        if self.failures:
            log.info("sampling works again after %d failures", self.failures)
            self.failures = 0
        previous, self.current = self.current, snap
        if previous is None:
            return Poll(snap, baseline=True)
        if previous.coverage != snap.coverage:
            log.info("view changed from %s to %s: new baseline", previous.coverage, snap.coverage)
            return Poll(snap, baseline=True)
        return Poll(snap, diff(previous, snap))


def run(monitor: Monitor, interval_s: float, stop: threading.Event, handle: Callable[[Poll], None]) -> None:
    """Poll every `interval_s` seconds until `stop` is set; the wait wakes at once when it is."""
    while not stop.is_set():
        handle(monitor.poll())
        stop.wait(interval_s)
