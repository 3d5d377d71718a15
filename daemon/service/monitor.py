"""The Monitor: a sampler and the pure diff, with the baseline rules; and the plain poll loop.

Baseline rules (PRODUCT.md, Vocabulary):
- the first good sample is a baseline: recorded, not reported;
- a change of coverage (sampler, complete/partial view) never drops an opened or
  closed event: keys come from the kernel and are always complete. Only a
  `changed` whose difference is the owners (what the view could see) is taken
  silently (`Poll.refresh`: the record takes the new attributes, no news); a
  change of exposure or dual-stack under the same key is still reported;
- a failed sample is not an empty one: the last good snapshot stays, so the
  next good sample is compared with it and nothing is reported closed.
"""

from __future__ import annotations

import logging
import threading
from typing import Callable

from ..errors import SampleError
from ..model import Event, EventKind, Snapshot, field, value
from ..snapshot import diff

log = logging.getLogger("portbell")


@value
class Poll:
    snapshot: Snapshot | None  # None when the sample failed
    events: list[Event] = field(factory=list)
    baseline: bool = False  # this snapshot starts a new baseline: nothing to report
    refresh: bool = False  # coverage changed: store every listener's attributes as they are now
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
            log.info("view changed from %s to %s: owner differences taken silently", previous.coverage, snap.coverage)
            return Poll(snap, [e for e in diff(previous, snap) if not _visibility_only(e)], refresh=True)
        return Poll(snap, diff(previous, snap))


def _visibility_only(event: Event) -> bool:
    """A `changed` whose only difference may come from what the view could see (owners, and
    what is learned from them: unit, forwarder, candidates), not from the socket itself."""
    if event.kind is not EventKind.CHANGED or event.previous is None:
        return False
    was, now = event.previous, event.listener
    return (was.exposure, was.dual_stack) == (now.exposure, now.dual_stack)


def run(monitor: Monitor, interval_s: float, stop: threading.Event, handle: Callable[[Poll], None]) -> None:
    """Poll every `interval_s` seconds until `stop` is set; the wait wakes at once when it is."""
    while not stop.is_set():
        handle(monitor.poll())
        stop.wait(interval_s)
