"""A Prometheus textfile for node_exporter's textfile collector. Imports: daemon.model, sinks._common.

    # HELP portbell_listeners Listening sockets now, by exposure and transport.
    # TYPE portbell_listeners gauge
    portbell_listeners{exposure="loopback",transport="tcp"} 14
    ... every exposure x transport, zeros included
    # TYPE portbell_events_total counter
    portbell_events_total{kind="opened"} 3      (opened, closed, changed; since the daemon started)
    # TYPE portbell_alerts_total counter
    portbell_alerts_total 1
    portbell_view_complete 1                    (1 when the sampler sees every owner)
    portbell_start_time_seconds 1795683600      (counters reset when this changes)

No pid, program or per-listener labels: their cardinality is unbounded.

The file is written only when its content changed, atomically: a temporary
file in the same directory (named `.portbell-*.tmp`, which the collector
ignores since it reads only `*.prom`), mode 0644 so node_exporter's user can
read it, then os.replace. There is deliberately no "last sample" timestamp:
it would change the file every poll. So the file's mtime says when something
last changed, not whether the daemon is alive; watch the service for that.
The directory must exist (a typo should not create directories); a missing
one raises SinkError and the Dispatcher retries.

Counters count each record once, by id (ids grow): a batch the Dispatcher
retries after a failed write is not counted twice. Baseline records count as
`opened` events like any other. A poll with no records and the same counts
returns without formatting anything.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Sequence

from ..model import EventKind, Exposure, Recorded, Snapshot, Transport
from ..paths import write_atomic
from ._common import SinkError

FILE_MODE = 0o644


class PrometheusSink:
    name = "prometheus"

    def __init__(self, path: str | os.PathLike[str], *, started_at: float | None = None) -> None:
        self.path = Path(path)
        self.started_at = int(time.time() if started_at is None else started_at)
        self._events = {kind: 0 for kind in EventKind}
        self._alerts = 0
        self._last_id: int | None = None
        self._listeners: tuple[int, ...] | None = None  # counts in (exposure, transport) order
        self._complete = True
        self._written: tuple | None = None  # the state the file on disk shows

    def emit(self, records: Sequence[Recorded], snapshot: Snapshot | None) -> None:
        for record in records:
            if self._last_id is not None and record.id <= self._last_id:
                continue  # counted before a failed write: this is the retry
            self._last_id = record.id
            self._events[record.event.kind] += 1
            self._alerts += record.alert
        if snapshot is not None:
            self._listeners = _counts(snapshot)
            self._complete = snapshot.complete
        state = (self._listeners, tuple(self._events.values()), self._alerts, self._complete)
        if state == self._written:
            return
        self._write(render(self._listeners, self._events, self._alerts, self._complete, self.started_at))
        self._written = state

    def _write(self, text: str) -> None:
        try:
            write_atomic(self.path, text, FILE_MODE)
        except OSError as err:
            raise SinkError(f"cannot write {self.path}: {err.strerror or err}", sink=self.name, path=str(self.path)) from err

    def close(self) -> None:
        """The file stays: node_exporter keeps serving the last state, and its mtime tells how old it is."""


PAIRS = [(e, t) for e in Exposure for t in Transport]


def _counts(snapshot: Snapshot) -> tuple[int, ...]:
    counts = dict.fromkeys(PAIRS, 0)
    for li in snapshot.listeners.values():
        counts[(li.exposure, li.transport)] += 1
    return tuple(counts.values())


def render(listeners: tuple[int, ...] | None, events: dict[EventKind, int], alerts: int, complete: bool, started_at: int) -> str:
    lines = [
        "# HELP portbell_listeners Listening sockets now, by exposure and transport.",
        "# TYPE portbell_listeners gauge",
    ]
    if listeners is not None:  # no snapshot yet: say nothing rather than zero
        lines += [f'portbell_listeners{{exposure="{e}",transport="{t}"}} {n}' for (e, t), n in zip(PAIRS, listeners)]
    lines += [
        "# HELP portbell_events_total Events recorded since the daemon started, by kind.",
        "# TYPE portbell_events_total counter",
        *(f'portbell_events_total{{kind="{kind}"}} {n}' for kind, n in events.items()),
        "# HELP portbell_alerts_total Events the notification policy alerted on since the daemon started.",
        "# TYPE portbell_alerts_total counter",
        f"portbell_alerts_total {alerts}",
        "# HELP portbell_view_complete 1 when the sampler sees every listener's owner, 0 for a partial view.",
        "# TYPE portbell_view_complete gauge",
        f"portbell_view_complete {int(complete)}",
        "# HELP portbell_start_time_seconds When the daemon started, in seconds since the epoch.",
        "# TYPE portbell_start_time_seconds gauge",
        f"portbell_start_time_seconds {started_at}",
    ]
    return "\n".join(lines) + "\n"
