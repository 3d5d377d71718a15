"""The Dispatcher: hands the committed records to every sink, each from its own cursor."""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import Any, Callable, Mapping, Sequence

from ..model import Recorded, Snapshot, value
from ._common import SinkError

log = logging.getLogger("portbell.sinks")

# ---------------------------------------------------------------- dispatch

BACKOFF_MIN_S = 1.0
BACKOFF_MAX_S = 60.0

Source = Callable[[int, int], Sequence[Recorded]]  # (after_id, limit) -> the records after it, oldest first


@value(mutable=True)
class _Lane:
    """One sink and its cursor: the id of the last record it took, and when to try again."""

    sink: Sink
    sent: int
    failures: int = 0  # in the current streak
    retry_at: float = 0.0
    error: str | None = None
    dropped: int = 0  # in the current streak
    dropped_total: int = 0
    delivered_late: int = 0


class Dispatcher:
    """Hands the committed records to every sink, each from its own cursor, isolated from each other.

    The queue of each sink is the record: `source(after_id, limit)` reads it (the daemon
    passes the store), and each lane keeps the id of the last record its sink took
    (`cursors()`, which the daemon keeps in the store, so a crash, a clean stop or a full
    disk only delays a record: the next start reads on from each sink's cursor). A sink
    may say how many records it can take now (`room()`: the hook's bounded queue) and
    how far it has really finished (`done_through(sent)`: a hook run still waiting or
    running is not done); the rest waits in the record.

    A sink that raises is logged once per failure streak (its name and the error) and
    retried on later polls after a backoff that doubles from 1 s up to 60 s, from its
    cursor, so each sink still sees records in order; a raising one never keeps the others
    from their records. Sinks are served one after the other on the caller's thread; call
    it from one thread (the poll loop's). Without a source (tests, `watch`), the last
    `max_pending` records are kept in memory and a sink further behind loses the oldest,
    counted and logged.
    """

    def __init__(
        self,
        sinks: Sequence[Sink],
        *,
        source: Source | None = None,
        cursors: Mapping[str, int] | None = None,
        newest: int = 0,
        clock: Callable[[], float] = time.monotonic,
        max_pending: int = 10_000,
    ) -> None:
        if max_pending < 1:
            raise ValueError("max_pending must be at least 1")
        cursors = cursors or {}
        self._lanes = [_Lane(s, min(cursors.get(s.name, newest), newest)) for s in sinks]
        self._source = source
        self._log: deque[Recorded] = deque()  # without a source: the recent records
        self._clock = clock
        self.max_pending = max_pending
        self._snapshot: Snapshot | None = None
        self._newest = newest

    @property
    def sinks(self) -> list[Sink]:
        return [lane.sink for lane in self._lanes]

    def dispatch(self, records: Sequence[Recorded], snapshot: Snapshot | None) -> None:
        """`records`: committed since the last call (maybe none); `snapshot`: None when the sample failed."""
        batch = tuple(records)
        before = self._newest
        if batch:
            self._newest = max(self._newest, batch[-1].id)
            if self._source is None:
                self._remember(batch)
        if snapshot is not None:
            self._snapshot = snapshot
        now: float | None = None
        for lane in self._lanes:
            if lane.failures:
                if now is None:
                    now = self._clock()
                if now < lane.retry_at:
                    continue
            fresh = lane.sent >= before  # not behind: this batch is all it is owed
            owed = tuple(r for r in batch if r.id > lane.sent) if fresh else self._owed(lane)
            self._emit(lane, owed, snapshot)

    def _owed(self, lane: _Lane) -> tuple[Recorded, ...]:
        if lane.sent >= self._newest:
            return ()
        if self._source is not None:
            try:
                return tuple(self._source(lane.sent, self.max_pending))
            except Exception as err:  # the record cannot be read now: try on the next poll
                log.warning("sink %s: cannot read the record from its cursor: %s", lane.sink.name, err)
                return ()
        return tuple(r for r in self._log if r.id > lane.sent)

    def _remember(self, batch: tuple[Recorded, ...]) -> None:
        self._log.extend(batch)
        while len(self._log) > self.max_pending:
            gone = self._log.popleft()
            for lane in self._lanes:
                if lane.sent < gone.id:
                    if not lane.dropped:
                        log.warning(
                            "sink %s: %d records held while it fails, dropping the oldest from now on",
                            lane.sink.name, self.max_pending,
                        )  # fmt: skip
                    lane.sent = gone.id
                    lane.dropped += 1
                    lane.dropped_total += 1

    def _emit(self, lane: _Lane, batch: tuple[Recorded, ...], snapshot: Snapshot | None) -> bool:
        room = getattr(lane.sink, "room", None)
        if room is not None and batch:
            batch = batch[: max(room(), 0)]  # the rest waits in the record
        held = bool(lane.failures)
        try:
            lane.sink.emit(batch, snapshot)
        except Exception as err:
            delivered = min(max(int(getattr(err, "delivered", 0) or 0), 0), len(batch))
            if delivered:
                lane.sent = batch[delivered - 1].id
                if held:
                    lane.delivered_late += delivered
            self._failed(lane, err)
            return False
        if batch:
            lane.sent = batch[-1].id
        if held:
            self._recovered(lane, len(batch))
        return True

    def _failed(self, lane: _Lane, err: Exception) -> None:
        lane.failures += 1
        lane.error = str(err) or type(err).__name__
        delay = min(BACKOFF_MAX_S, BACKOFF_MIN_S * 2 ** (lane.failures - 1))
        lane.retry_at = self._clock() + delay
        if lane.failures == 1:
            log.warning(
                "sink %s failed: %s; its %d undelivered records wait in the record, retrying with backoff",
                lane.sink.name, lane.error, self._behind(lane),
                exc_info=not isinstance(err, (SinkError, OSError)),  # a bug in a sink deserves its traceback
            )  # fmt: skip
        else:
            log.debug("sink %s failed again (%d in a row): %s", lane.sink.name, lane.failures, lane.error)

    def _recovered(self, lane: _Lane, count: int) -> None:
        lost = f", {lane.dropped} dropped while the queue was full" if lane.dropped else ""
        log.warning(
            "sink %s works again after %d failures; delivered %d held records%s",
            lane.sink.name, lane.failures, count + lane.delivered_late, lost,
        )  # fmt: skip
        lane.failures = 0
        lane.retry_at = 0.0
        lane.error = None
        lane.dropped = 0
        lane.delivered_late = 0

    def _behind(self, lane: _Lane) -> int:
        if self._source is None:
            return sum(1 for r in self._log if r.id > lane.sent)
        return max(self._newest - lane.sent, 0)

    def cursors(self) -> dict[str, int]:
        """Per sink, the record id through which it has finished with everything (what the daemon keeps)."""
        out = {}
        for lane in self._lanes:
            done = getattr(lane.sink, "done_through", None)
            out[lane.sink.name] = min(done(lane.sent), lane.sent) if done is not None else lane.sent
        return out

    def status(self) -> list[dict[str, Any]]:
        """Per sink: name, ok, pending (records behind), failures (this streak), error, dropped (since start)."""
        return [
            {
                "name": lane.sink.name,
                "ok": not lane.failures,
                "pending": self._behind(lane),
                "failures": lane.failures,
                "error": lane.error,
                "dropped": lane.dropped_total,
            }
            for lane in self._lanes
        ]

    def close(self, *, stopping: bool = True) -> None:
        """One last try for what a sink is behind (backoff ignored), then close every sink; never raises.

        What is still owed stays in the record, after the sink's cursor (`cursors()`, read after
        this). `stopping=False` is a reload: the sinks built next take over, so a sink that has a
        `handover()` (the Prometheus textfile: it keeps saying the daemon is up) is handed over
        instead of closed."""
        for lane in self._lanes:
            if self._behind(lane) and not self._emit(lane, self._owed(lane), self._snapshot):
                log.warning("sink %s: %d records not yet delivered (they wait in the record)", lane.sink.name, self._behind(lane))
            finish = lane.sink.close if stopping else getattr(lane.sink, "handover", lane.sink.close)
            try:
                finish()
            except Exception:
                log.exception("sink %s: error while closing", lane.sink.name)
