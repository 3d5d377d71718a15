"""Sinks: where committed events go besides the store. Imports: daemon.model, daemon.errors; platformdirs and
the private sink modules lazily, in build().

The daemon commits each poll's events to the store first, then hands the
committed records to the sinks through one Dispatcher:

    problems = sinks.validate(config.get("sinks", {}))     # [] when valid
    dispatcher = sinks.Dispatcher(sinks.build(config.get("sinks", {}), host=None))
    every poll:  dispatcher.dispatch(records, snapshot)    # even with no records
    at the end:  dispatcher.close()

A sink has a `name`, `emit(records, snapshot)` and `close()`. `emit` gets the
records committed since its last successful emit, oldest first, and the
current snapshot (None when the sample failed: keep the last view). It is
called every poll, usually with no records, and must then return at once
unless it follows the snapshot (the Prometheus textfile does, and rewrites
its file when a count changed and at its heartbeat). `emit` never waits long: sockets have
timeouts and the hook runs its program in background threads. When it cannot
deliver it raises (SinkError, with `delivered` = how many of the batch did get
through); the Dispatcher keeps the rest and retries.

Configuration: the `[sinks]` table of the TOML file, one sub-table per sink.
A sink runs when its table is present and `enabled` is not false; with no
`[sinks]` table nothing is sent anywhere.

    [sinks.jsonl]        path = <user state dir>/portbell/events.jsonl, fsync = true,
                         format = "portbell" | "osquery", mode = "0600" | "0640"
    [sinks.syslog]       socket = "/dev/log", facility = "user"   (kern, user, mail, daemon, auth,
                         syslog, lpr, news, uucp, cron, authpriv, ftp, local0..local7)
    [sinks.hook]         argv = [...] (required), timeout_s = 10, max_concurrent = 4,
                         only_alerts = true, max_queued = 1000
    [sinks.prometheus]   path = ".../portbell.prom" (required, must end in .prom)

Every table also takes `enabled` (default true). Paths must be absolute (`~`
is expanded). Each sink module's docstring describes its format.

Delivery is at least once and in order per sink, across crashes, clean stops
and full disks: each sink reads the record from its own cursor (kept in the
store), a record reaches a sink after its commit, and a batch retried after a
partial failure resumes after what the sink reported delivered.
"""

from __future__ import annotations

import difflib
import logging
import os
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol, Sequence

from ..model import Recorded, Snapshot
from ._common import SinkError

__all__ = ["Sink", "SinkError", "Dispatcher", "validate", "build", "default_jsonl_path", "NAMES"]

log = logging.getLogger("portbell.sinks")


class Sink(Protocol):
    name: str

    def emit(self, records: Sequence[Recorded], snapshot: Snapshot | None) -> None: ...

    def close(self) -> None: ...


# ---------------------------------------------------------------- configuration

_REQUIRED = object()
FACILITY_NAMES = (
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv", "ftp",
    *(f"local{i}" for i in range(8)),
)  # fmt: skip
Check = Callable[[Any], "str | None"]  # the problem with a value, or None


def _bool(value: Any) -> str | None:
    return None if isinstance(value, bool) else "must be true or false"


def _positive_int(value: Any) -> str | None:
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= 1
    return None if ok else "must be a whole number of at least 1"


def _positive_number(value: Any) -> str | None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0 and value != float("inf")
    return None if ok else "must be a number of seconds greater than 0"


def _path(value: Any) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return "must be a path (a non-empty string)"
    if not os.path.isabs(os.path.expanduser(value)):
        return f"must be an absolute path (or start with ~), got {value!r}"
    return None


def _prom_path(value: Any) -> str | None:
    problem = _path(value)
    if problem is None and not value.endswith(".prom"):
        return f"must end in .prom (node_exporter's textfile collector reads only *.prom files), got {value!r}"
    return problem


def _argv(value: Any) -> str | None:
    if isinstance(value, str):
        return (
            "must be a non-empty list of strings, not one string: hooks never run through a shell, "
            'so write the program and its arguments as a list, e.g. argv = ["/usr/local/bin/notify", "--urgent"]'
        )
    if not isinstance(value, (list, tuple)) or not value or not all(isinstance(a, str) for a in value):
        return "must be a non-empty list of strings"
    if not value[0]:
        return "must start with the program to run, not an empty string"
    return None


def _format(value: Any) -> str | None:
    if value in ("portbell", "osquery"):
        return None
    return (
        'must be "portbell" (portbell\'s columns: exposure, owner, alert) or "osquery" '
        f"(osquery's listening_ports columns and differential rows), not {value!r}"
    )


FILE_MODES = {"0600": 0o600, "600": 0o600, "0o600": 0o600, "0640": 0o640, "640": 0o640, "0o640": 0o640}


def file_mode(value: Any) -> int | None:
    """The mode a `mode` value asks for: "0640", "640", 0o640 (TOML's octal); None when it is not allowed."""
    if isinstance(value, str):
        return FILE_MODES.get(value.strip())
    if isinstance(value, int) and not isinstance(value, bool) and value in (0o600, 0o640):
        return value
    return None


def _mode(value: Any) -> str | None:
    if file_mode(value) is not None:
        return None
    hint = ""
    if isinstance(value, int) and not isinstance(value, bool) and value in (600, 640):
        hint = f' ({value} is a decimal number here: write "0{value}" or 0o{value})'
    return (
        'must be "0600" (only the daemon\'s user reads the file) or "0640" (its group too, for a log '
        f"shipper running as its own user), as a string or as TOML's octal 0o640; not {value!r}{hint}"
    )


def _facility(value: Any) -> str | None:
    return None if value in FACILITY_NAMES else f"must be one of {', '.join(FACILITY_NAMES)}"


# sink -> key -> (check, default); _REQUIRED keys must be present when the sink is enabled
SPECS: dict[str, dict[str, tuple[Check, Any]]] = {
    "jsonl": {
        "enabled": (_bool, True),
        "path": (_path, None),
        "fsync": (_bool, True),
        "format": (_format, "portbell"),
        "mode": (_mode, "0600"),
    },
    "syslog": {"enabled": (_bool, True), "socket": (_path, "/dev/log"), "facility": (_facility, "user")},
    "hook": {
        "enabled": (_bool, True),
        "argv": (_argv, _REQUIRED),
        "timeout_s": (_positive_number, 10.0),
        "max_concurrent": (_positive_int, 4),
        "only_alerts": (_bool, True),
        "max_queued": (_positive_int, 1000),
    },
    "prometheus": {"enabled": (_bool, True), "path": (_prom_path, _REQUIRED)},
}
NAMES = tuple(SPECS)  # also the order sinks are built and served in


def _unknown(where: str, key: str, allowed) -> str:
    allowed = sorted(allowed)
    close = difflib.get_close_matches(key, allowed, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"{where}.{key}: unknown key (allowed: {', '.join(allowed)}){hint}"


def validate(tables: Mapping[str, Any]) -> list[str]:
    """Everything wrong with a `[sinks]` table, one sentence each naming its key; [] when valid."""
    if not isinstance(tables, Mapping):
        return ["sinks: must be a table, e.g. [sinks.jsonl]"]
    problems: list[str] = []
    for name, table in tables.items():
        where = f"sinks.{name}"
        spec = SPECS.get(name)
        if spec is None:
            problems.append(_unknown("sinks", name, SPECS).replace("unknown key", "unknown sink"))
            continue
        if not isinstance(table, Mapping):
            problems.append(f"{where}: must be a table, e.g. [{where}]")
            continue
        for key, value in table.items():
            if key not in spec:
                problems.append(_unknown(where, key, spec))
                continue
            problem = spec[key][0](value)
            if problem:
                problems.append(f"{where}.{key}: {problem}")
        if table.get("enabled", True) is not False:
            for key, (_, default) in spec.items():
                if default is _REQUIRED and key not in table:
                    problems.append(f"{where}.{key}: required when {where} is enabled")
    return problems


def default_jsonl_path() -> Path:
    from ..paths import state_dir

    return state_dir() / "events.jsonl"


def _options(name: str, table: Mapping[str, Any]) -> dict[str, Any]:
    return {key: table.get(key, default) for key, (_, default) in SPECS[name].items() if key != "enabled"}


def build(tables: Mapping[str, Any], *, host: str | None = None) -> list[Sink]:
    """The enabled sinks, in NAMES order. Call validate() first: an invalid table raises ValueError here."""
    problems = validate(tables)
    if problems:
        raise ValueError("invalid [sinks] configuration: " + "; ".join(problems))
    made: list[Sink] = []
    for name in NAMES:
        table = tables.get(name)
        if table is None or table.get("enabled", True) is False:
            continue
        opts = _options(name, table)
        if name == "jsonl":
            from ._jsonl import JsonLinesSink

            path = Path(os.path.expanduser(opts["path"])) if opts["path"] else default_jsonl_path()
            made.append(JsonLinesSink(path, host=host, fsync=opts["fsync"], format=opts["format"], mode=file_mode(opts["mode"])))
        elif name == "syslog":
            from ._syslog import SyslogSink

            made.append(SyslogSink(os.path.expanduser(opts["socket"]), facility=opts["facility"], host=host))
        elif name == "hook":
            from ._hook import HookSink

            made.append(
                HookSink(
                    opts["argv"],
                    timeout_s=float(opts["timeout_s"]),
                    max_concurrent=opts["max_concurrent"],
                    only_alerts=opts["only_alerts"],
                    max_queued=opts["max_queued"],
                )
            )
        elif name == "prometheus":
            from ._prometheus import PrometheusSink

            made.append(PrometheusSink(os.path.expanduser(opts["path"])))
    return made


# ---------------------------------------------------------------- dispatch

BACKOFF_MIN_S = 1.0
BACKOFF_MAX_S = 60.0

Source = Callable[[int, int], Sequence[Recorded]]  # (after_id, limit) -> the records after it, oldest first


@dataclass
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
