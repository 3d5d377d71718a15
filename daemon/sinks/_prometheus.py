"""A Prometheus textfile for node_exporter's textfile collector.

    # HELP portbell_listeners Listening sockets now, by exposure and transport.
    # TYPE portbell_listeners gauge
    portbell_listeners{exposure="loopback",transport="tcp"} 14
    ... every exposure x transport, zeros included
    # TYPE portbell_events_total counter
    portbell_events_total{kind="opened"} 3      (opened, closed, changed)
    # TYPE portbell_alerts_total counter
    portbell_alerts_total 1
    portbell_up 1                               (0 once the daemon stopped cleanly)
    portbell_last_sample_timestamp_seconds 1795683605.123   (the last sample that worked)
    portbell_view_complete 1                    (1 when the sampler sees every owner)
    portbell_sampler_info{sampler="sockdiag"} 1
    portbell_start_time_seconds 1795683600      (when this daemon process started)
    # portbell: counted through event 17 at 2026-11-26T09:00:05.000000+00:00

No pid, program or per-listener labels: their cardinality is unbounded.

Freshness: the file is rewritten when a count changes and, in any case, every
HEARTBEAT_S (15 s, the period the daemon tells its record it is alive), so its
mtime (node_exporter's `node_textfile_mtime_seconds{file=...}`) says whether
the daemon is alive, and `portbell_last_sample_timestamp_seconds` whether its
sampler still works (a failing sample keeps the last good one's time). A clean
stop writes `portbell_up 0`; a crash leaves `portbell_up 1` in a file that no
longer gets younger. A configuration reload hands the file to the next sink
without writing 0.

Counters survive a restart and a reload: a new sink continues from the counts
in the file the last one wrote (recognised by its `# portbell:` line; any other
file, or none, starts from zero, which Prometheus' rate() reads as a reset).
Each record is counted once: a batch the Dispatcher retries after a failed
write, or records handed over again after a crash, are recognised by id and
event time (an id at or below the last counted one with an event time at or
before its time). Baseline records count as `opened` events like any other.

The file is written atomically: a temporary file in the same directory
(named `.portbell-*.tmp`, which the collector ignores since it reads only
`*.prom`), mode 0644 so node_exporter's user can read it, then os.replace.
The directory must exist (a typo should not create directories); a missing one
raises SinkError and the Dispatcher retries.
"""

from __future__ import annotations

import os
import re
import time
from datetime import datetime
from pathlib import Path
from typing import Callable, Sequence

from ..model import EventKind, Exposure, Recorded, Snapshot, Transport, field, value
from ..paths import write_atomic
from ._common import SinkError

FILE_MODE = 0o644
HEARTBEAT_S = 15.0
PROCESS_STARTED = time.time()  # this module is imported when the daemon builds its sinks, at start
STATE_LINE = "# portbell: counted through event"
_STATE = re.compile(r"^# portbell: counted through event (\d+) at (\S+)$", re.M)
_EVENTS = re.compile(r'^portbell_events_total\{kind="(\w+)"\} (\d+)$', re.M)
_ALERTS = re.compile(r"^portbell_alerts_total (\d+)$", re.M)
_LABEL_VALUE = re.compile(r"[^\w.+-]")


@value(mutable=True)
class Counts:
    """What the counters say, and the last record counted, (id, event time)."""

    events: dict[EventKind, int] = field(factory=lambda: dict.fromkeys(EventKind, 0))
    alerts: int = 0
    last: tuple[int, datetime] | None = None

    def add(self, record: Recorded) -> bool:
        """Count a record unless it was counted before; True when it was new."""
        at = record.event.at
        if self.last is not None and record.id <= self.last[0] and at <= self.last[1]:
            return False
        self.last = (record.id, at)
        self.events[record.event.kind] += 1
        self.alerts += record.alert
        return True


def load(path: Path) -> Counts:
    """The counts a previous portbell left in its textfile; zeros when there is none or it is not ours."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return Counts()
    state = _STATE.search(text)
    if state is None:
        return Counts()
    counts = Counts()
    try:
        counts.last = (int(state.group(1)), datetime.fromisoformat(state.group(2)))
    except ValueError:
        return Counts()
    for kind, n in _EVENTS.findall(text):
        if kind in EventKind.__members__.values():
            counts.events[EventKind(kind)] = int(n)
    alerts = _ALERTS.search(text)
    counts.alerts = int(alerts.group(1)) if alerts else 0
    return counts


class PrometheusSink:
    name = "prometheus"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        started_at: float | None = None,
        heartbeat_s: float = HEARTBEAT_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = Path(path)
        self.started_at = int(PROCESS_STARTED if started_at is None else started_at)
        self.heartbeat_s = heartbeat_s
        self._clock = clock
        self.counts = load(self.path)
        self._listeners: tuple[int, ...] | None = None  # counts in (exposure, transport) order
        self._complete: bool | None = None
        self._sampler: str | None = None
        self._sampled_at: float | None = None
        self._written: tuple | None = None  # the state the file on disk shows
        self._next_write = 0.0  # monotonic time of the next heartbeat rewrite

    def emit(self, records: Sequence[Recorded], snapshot: Snapshot | None) -> None:
        for record in records:
            self.counts.add(record)
        if snapshot is not None:
            self._listeners = _counts(snapshot)
            self._complete = snapshot.complete
            self._sampler = snapshot.sampler or "unknown"
            self._sampled_at = snapshot.taken_at.timestamp()
        state = self._state()
        now = self._clock()
        if state == self._written and now < self._next_write:
            return
        self._write(self.render(up=True))
        self._written = state
        self._next_write = now + self.heartbeat_s

    def _state(self) -> tuple:
        return (self._listeners, tuple(self.counts.events.values()), self.counts.alerts, self._complete, self._sampler)

    def render(self, *, up: bool) -> str:
        return render(
            self._listeners, self.counts, up=up, sampled_at=self._sampled_at, complete=self._complete,
            sampler=self._sampler, started_at=self.started_at,
        )  # fmt: skip

    def _write(self, text: str) -> None:
        try:
            write_atomic(self.path, text, FILE_MODE)
        except OSError as err:
            raise SinkError(f"cannot write {self.path}: {err.strerror or err}", sink=self.name, path=str(self.path)) from err

    def handover(self) -> None:
        """A reload: the file stays as it is (up), and the next sink continues its counts."""
        if self._written is not None and self._state() != self._written:
            self._write(self.render(up=True))

    def close(self) -> None:
        """The daemon stops: the last counts with `portbell_up 0`. node_exporter keeps serving them."""
        self._write(self.render(up=False))


PAIRS = [(e, t) for e in Exposure for t in Transport]


def _counts(snapshot: Snapshot) -> tuple[int, ...]:
    counts = dict.fromkeys(PAIRS, 0)
    for li in snapshot.listeners.values():
        counts[(li.exposure, li.transport)] += 1
    return tuple(counts.values())


def render(
    listeners: tuple[int, ...] | None,
    counts: Counts,
    *,
    up: bool,
    sampled_at: float | None,
    complete: bool | None,
    sampler: str | None,
    started_at: int,
) -> str:
    """The textfile. What no sample has told yet (before the first one) is left out rather than zero."""
    lines = [
        "# HELP portbell_listeners Listening sockets now, by exposure and transport.",
        "# TYPE portbell_listeners gauge",
    ]
    if listeners is not None:
        lines += [f'portbell_listeners{{exposure="{e}",transport="{t}"}} {n}' for (e, t), n in zip(PAIRS, listeners)]
    lines += [
        "# HELP portbell_events_total Events recorded, by kind (kept across daemon restarts).",
        "# TYPE portbell_events_total counter",
        *(f'portbell_events_total{{kind="{kind}"}} {n}' for kind, n in counts.events.items()),
        "# HELP portbell_alerts_total Events the notification policy alerted on (kept across daemon restarts).",
        "# TYPE portbell_alerts_total counter",
        f"portbell_alerts_total {counts.alerts}",
        "# HELP portbell_up 1 while the daemon runs (the file is rewritten every 15 s), 0 after a clean stop.",
        "# TYPE portbell_up gauge",
        f"portbell_up {int(up)}",
    ]
    if sampled_at is not None:
        lines += [
            "# HELP portbell_last_sample_timestamp_seconds When the last successful sample was taken, in seconds since the epoch.",
            "# TYPE portbell_last_sample_timestamp_seconds gauge",
            f"portbell_last_sample_timestamp_seconds {sampled_at:.3f}",
        ]
    if complete is not None:
        lines += [
            "# HELP portbell_view_complete 1 when the sampler sees every listener's owner, 0 for a partial view.",
            "# TYPE portbell_view_complete gauge",
            f"portbell_view_complete {int(complete)}",
        ]
    if sampler is not None:
        lines += [
            "# HELP portbell_sampler_info The sampler the daemon uses (sockdiag: netlink; psutil: portable).",
            "# TYPE portbell_sampler_info gauge",
            f'portbell_sampler_info{{sampler="{_LABEL_VALUE.sub("_", sampler)}"}} 1',
        ]
    lines += [
        "# HELP portbell_start_time_seconds When the daemon process started, in seconds since the epoch.",
        "# TYPE portbell_start_time_seconds gauge",
        f"portbell_start_time_seconds {started_at}",
    ]
    if counts.last is not None:
        lines.append(f"{STATE_LINE} {counts.last[0]} at {counts.last[1].isoformat()}")
    return "\n".join(lines) + "\n"
