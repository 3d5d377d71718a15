"""The record: one SQLite database in WAL mode, read and written through Store.

The daemon is the only writer of listeners and events, one transaction per
poll, committed before any sink or face sees them. The tray and the command
line open it read-only for history and notice news cheaply through
`PRAGMA data_version`; they write only decisions (trust, mute).

A file that is not a portbell database (corrupt, or another program's) is moved
aside by the writer, never deleted; a database from a newer portbell is refused.
What fails once it is open (a damaged page or row, busy past the timeout, a disk
error) is a StoreError naming the file, from every method: never a traceback.
"""

from __future__ import annotations

import functools
import json
import sqlite3
import time
import types
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

from ..model import (
    Event,
    EventKind,
    Exposure,
    Key,
    Listener,
    Recorded,
    Snapshot,
    Transport,
    iso,
    parse_iso,
    value,
)
from ..rules import Rule, Verdict, program_of, traces
from .holders import ident
from .schema import connect, failed, transaction


def _ts(moment: datetime) -> float:
    return moment.timestamp()


def _dt(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, timezone.utc)


def _names(li: Listener) -> str:
    return " ".join(sorted({o.name for o in li.owners if o.name}))


@value
class Holding:
    """One stretch of time a listener held a port, from the history."""

    listener: Listener
    opened_at: datetime | None  # None: before the history begins
    closed_at: datetime | None  # None: still open


def _errors_as_store_errors(decoding: frozenset[str]):
    """Every public method of the class raises StoreError for an SQLite error, and so do those named
    in `decoding` for a row that does not decode (ValueError, KeyError, TypeError: a damaged record).
    ProgrammingError and InterfaceError stay as they are: portbell misused SQLite, a bug to report."""

    def guard(name: str, method):
        @functools.wraps(method)
        def guarded(self, *args, **kw):
            try:
                return method(self, *args, **kw)
            except (sqlite3.ProgrammingError, sqlite3.InterfaceError):
                raise
            except sqlite3.Error as err:
                raise failed(err, self.path, writing=not self.readonly) from err
            except (ValueError, KeyError, TypeError) as err:
                if name not in decoding:
                    raise
                raise failed(err, self.path, writing=not self.readonly) from err

        return guarded

    def decorate(cls):
        for name, method in list(vars(cls).items()):
            if not name.startswith("_") and isinstance(method, types.FunctionType):
                setattr(cls, name, guard(name, method))
        return cls

    return decorate


@_errors_as_store_errors(decoding=frozenset({"recorded", "events", "history", "last_holder", "current_since", "daemon_info", "decisions"}))
class Store:
    def __init__(self, conn: sqlite3.Connection, path: Path, readonly: bool) -> None:
        self.conn = conn
        self.path = path
        self.readonly = readonly

    # ------------------------------------------------------------ opening

    @classmethod
    def open(cls, path: Path, *, readonly: bool = False, daemon: bool = False) -> Store:
        """Open (the writer creates and migrates; readers never change the file). `daemon`: the
        caller holds the record's instance lock, and may move a damaged record aside under readers."""
        return cls(connect(path, readonly=readonly, daemon=daemon), path, readonly)

    def close(self) -> None:
        self.conn.close()

    def replaced(self) -> bool:
        """Whether the path now names another file than the one this store reads (the daemon moved
        a damaged record aside and began a new one), or none at all."""
        return ident(self.path) != self.conn.ident

    def data_version(self) -> int:
        """Changes whenever another connection commits: the cheap way to notice news."""
        return self.conn.execute("PRAGMA data_version").fetchone()[0]

    # ------------------------------------------------------------ the daemon's state

    def meta(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def recorded(self) -> Snapshot | None:
        """The listeners as last committed, with the coverage they were seen under; None before the first baseline."""
        coverage = self.meta("coverage")
        if coverage is None:
            return None
        sampler, complete = json.loads(coverage)
        rows = self.conn.execute("SELECT data FROM listeners").fetchall()
        listeners = [Listener.from_dict(json.loads(data)) for (data,) in rows]
        at = _dt(float(self.meta("recorded_at") or 0)) or datetime.now(timezone.utc)
        return Snapshot({li.key: li for li in listeners}, at, complete=complete, sampler=sampler)

    def record(
        self,
        snapshot: Snapshot,
        events: Sequence[tuple[Event, Verdict]],
        *,
        baseline: bool = False,
        found_at_start: bool = False,
        refresh: bool = False,
    ) -> list[Recorded]:
        """Commit one poll: its events, the listeners now, the memory. All or nothing.

        `refresh` (the coverage changed): every listener's stored attributes become the
        snapshot's too, also those whose owner difference was taken silently."""
        return self.record_polls([(snapshot, events, baseline, found_at_start, refresh)])

    def record_polls(self, polls: Sequence[tuple]) -> list[Recorded]:
        """Commit several polls, oldest first, in one transaction (what waited for a full disk):
        each is (snapshot, [(event, verdict)], baseline, found_at_start, refresh)."""
        out: list[Recorded] = []
        with transaction(self.conn):
            for snapshot, events, baseline, found_at_start, refresh in polls:
                out += self._record_one(snapshot, events, baseline, found_at_start, refresh)
        return out

    def _record_one(self, snapshot, events, baseline, found_at_start, refresh) -> list[Recorded]:
        out: list[Recorded] = []
        now = _ts(snapshot.taken_at)
        for event, verdict in events:
            li = event.listener
            cur = self.conn.execute(
                "INSERT INTO events (at, kind, transport, address, port, program, names, listener, previous,"
                " alert, reason, baseline, found_at_start) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    _ts(event.at), str(event.kind), str(li.transport), li.address, li.port,
                    program_of(li), _names(li), json.dumps(li.to_dict()),
                    json.dumps(event.previous.to_dict()) if event.previous else None,
                    int(verdict.alert), verdict.reason, int(baseline), int(found_at_start),
                ),
            )
            out.append(Recorded(cur.lastrowid, event, verdict.alert, verdict.reason, baseline, found_at_start))
            if event.kind is EventKind.CLOSED:
                self.conn.execute(
                    "DELETE FROM listeners WHERE transport = ? AND address = ? AND port = ?",
                    (str(li.transport), li.address, li.port),
                )
            else:
                since = now if event.kind is EventKind.OPENED else None
                self.conn.execute(
                    "INSERT INTO listeners (transport, address, port, data, since) VALUES (?,?,?,?,?)"
                    " ON CONFLICT DO UPDATE SET data = excluded.data",
                    (str(li.transport), li.address, li.port, json.dumps(li.to_dict()), since or now),
                )
                self._remember(li, now)
        if refresh:
            self.conn.executemany(
                "UPDATE listeners SET data = ? WHERE transport = ? AND address = ? AND port = ?",
                [(json.dumps(li.to_dict()), str(li.transport), li.address, li.port) for li in snapshot.listeners.values()],
            )
        self._set_coverage(snapshot)
        return out

    def _set_coverage(self, snapshot: Snapshot) -> None:
        self._put("coverage", json.dumps([snapshot.sampler, snapshot.complete]))
        self._put("recorded_at", str(_ts(snapshot.taken_at)))

    def _put(self, key: str, value: str) -> None:
        self.conn.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT DO UPDATE SET value = excluded.value", (key, value))

    def _remember(self, li: Listener, now: float) -> None:
        """The novelty memory (rules.traces says what a listener leaves), for every program,
        a nameless one's uid too: its loopback ports are judged by it."""
        (key, program), (_, exposure, transport, random_port) = traces(li)
        self.conn.execute(
            "INSERT INTO seen_keys VALUES (?,?,?,?,?,?) ON CONFLICT DO UPDATE SET last_seen = excluded.last_seen",
            (str(key.transport), key.address, key.port, program, now, now),
        )
        self.conn.execute(
            "INSERT INTO seen_programs VALUES (?,?,?,?,?,?) ON CONFLICT DO UPDATE SET last_seen = excluded.last_seen",
            (program, str(exposure), str(transport), int(random_port), now, now),
        )

    def set_meta(self, key: str, value: str) -> None:
        with transaction(self.conn):
            self._put(key, value)

    def cursors(self) -> dict[str, int]:
        """Per sink, the id of the last record it has finished with (`sink:<name>` in meta)."""
        rows = self.conn.execute("SELECT key, value FROM meta WHERE key LIKE 'sink:%'").fetchall()
        return {key[5:]: int(value) for key, value in rows if value.isdigit()}

    def set_cursors(self, cursors: dict[str, int]) -> None:
        with transaction(self.conn):
            for name, record_id in cursors.items():
                self._put(f"sink:{name}", str(record_id))

    def heartbeat(self, info: dict) -> None:
        with transaction(self.conn):
            self._put("daemon", json.dumps(info))

    def prune(self, *, older_than: datetime, max_rows: int) -> int:
        with transaction(self.conn):
            n = self.conn.execute("DELETE FROM events WHERE at < ?", (_ts(older_than),)).rowcount
            n += self.conn.execute(
                "DELETE FROM events WHERE id <= (SELECT id FROM events ORDER BY id DESC LIMIT 1 OFFSET ?)", (max_rows,)
            ).rowcount
        return n

    # ------------------------------------------------------------ memory (rules.Memory)

    def key_seen(self, key: Key, program: str) -> bool:
        return (
            self.conn.execute(
                "SELECT 1 FROM seen_keys WHERE transport = ? AND address = ? AND port = ? AND program = ?",
                (str(key.transport), key.address, key.port, program),
            ).fetchone()
            is not None
        )

    def program_seen(self, program: str, exposure: Exposure, transport: Transport, *, random_port: bool) -> bool:
        sql = "SELECT 1 FROM seen_programs WHERE program = ? AND exposure = ? AND transport = ?"
        args: tuple = (program, str(exposure), str(transport))
        if random_port:
            sql += " AND random_port = 1"
        return self.conn.execute(sql, args).fetchone() is not None

    # ------------------------------------------------------------ reading the history

    def events(
        self,
        *,
        since: datetime | None = None,
        port: int | None = None,
        process: str | None = None,
        after_id: int = 0,
        alerts_only: bool = False,
        limit: int | None = None,
        first: int | None = None,
    ) -> list[Recorded]:
        """The history, oldest first; `limit`: only the newest that many; `first`: only the oldest
        that many (a sink reading on from its cursor)."""
        sql = "SELECT id, at, kind, listener, previous, alert, reason, baseline, found_at_start FROM events WHERE id > ?"
        args: list = [after_id]
        if since is not None:
            sql += " AND at >= ?"
            args.append(_ts(since))
        if port is not None:
            sql += " AND port = ?"
            args.append(port)
        if process is not None:  # the program's name, or its exe's exact path; never a substring
            if "/" in process or "\\" in process:
                sql += " AND program = ?"
                args.append(process)
            else:
                sql += " AND instr(' ' || names || ' ', ?) > 0"
                args.append(f" {process} ")
        if alerts_only:
            sql += " AND alert = 1"
        sql += " ORDER BY id"
        if first is not None:
            sql += f" LIMIT {int(first)}"
        elif limit is not None:
            sql = f"SELECT * FROM ({sql.replace('ORDER BY id', 'ORDER BY id DESC')} LIMIT {int(limit)}) ORDER BY id"
        return [self._row(r) for r in self.conn.execute(sql, args)]

    @staticmethod
    def _row(row) -> Recorded:
        rid, at, kind, listener, previous, alert, reason, baseline, found = row
        event = Event(
            EventKind(kind),
            _dt(at),
            Listener.from_dict(json.loads(listener)),
            Listener.from_dict(json.loads(previous)) if previous else None,
        )
        return Recorded(rid, event, bool(alert), reason, bool(baseline), bool(found))

    def last_id(self) -> int:
        return self.conn.execute("SELECT coalesce(max(id), 0) FROM events").fetchone()[0]

    def history(self, port: int, transport: str | None = None) -> list[Holding]:
        """Who held a port, from when to when: opened/closed pairs per key, oldest first."""
        sql = "SELECT id, at, kind, listener, previous, alert, reason, baseline, found_at_start FROM events WHERE port = ?"
        args: list = [port]
        if transport:
            sql += " AND transport = ?"
            args.append(transport)
        open_: dict[Key, tuple[Listener, datetime | None]] = {}
        out: list[Holding] = []
        for rec in map(self._row, self.conn.execute(sql + " ORDER BY id", args)):
            ev = rec.event
            start = None if rec.baseline else ev.at
            if ev.kind is EventKind.OPENED:
                open_[ev.key] = (ev.listener, start)
            elif ev.kind is EventKind.CHANGED:
                was, since = open_.pop(ev.key, (ev.previous, None))
                out.append(Holding(was or ev.previous, since, ev.at))
                open_[ev.key] = (ev.listener, ev.at)
            else:
                was, since = open_.pop(ev.key, (ev.listener, None))
                out.append(Holding(was, since, ev.at))
        out.extend(Holding(li, since, None) for li, since in open_.values())
        out.sort(key=lambda h: (h.closed_at is None, h.closed_at or datetime.max.replace(tzinfo=timezone.utc)))
        return out

    def last_holder(self, transport: str, port: int) -> tuple[Listener, datetime] | None:
        """The last listener that closed on this port, and when (the doctor's seam)."""
        row = self.conn.execute(
            "SELECT listener, at FROM events WHERE port = ? AND transport = ? AND kind = 'closed' ORDER BY id DESC LIMIT 1",
            (port, transport),
        ).fetchone()
        return (Listener.from_dict(json.loads(row[0])), _dt(row[1])) if row else None

    def current_since(self) -> dict[Key, datetime]:
        return {
            Key(Transport(t), a, p): _dt(since)
            for t, a, p, since in self.conn.execute("SELECT transport, address, port, since FROM listeners")
        }

    def daemon_info(self) -> dict | None:
        data = self.meta("daemon")
        return json.loads(data) if data else None

    def counts(self) -> dict[str, int]:
        events, alerts = self.conn.execute("SELECT count(*), coalesce(sum(alert), 0) FROM events").fetchone()
        listeners = self.conn.execute("SELECT count(*) FROM listeners").fetchone()[0]
        return {"listeners": listeners, "events": events, "alerts": alerts}

    # ------------------------------------------------------------ decisions

    def add_decision(self, rule: Rule) -> int:
        with transaction(self.conn):
            cur = self.conn.execute(
                "INSERT INTO decisions (action, program, port_low, port_high, exposures, transport, user, until, pid,"
                " started_at, source, created_at, unit) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    rule.action, rule.program,
                    rule.ports[0] if rule.ports else None, rule.ports[1] if rule.ports else None,
                    ",".join(rule.exposures) if rule.exposures else None,
                    str(rule.transport) if rule.transport else None, rule.user,
                    _ts(rule.until) if rule.until else None, rule.pid, iso(rule.started_at),
                    rule.source, time.time(), rule.unit,
                ),
            )
        return cur.lastrowid

    def remove_decision(self, rule_id: int) -> bool:
        with transaction(self.conn):
            return self.conn.execute("DELETE FROM decisions WHERE id = ?", (rule_id,)).rowcount > 0

    def decisions(self) -> tuple[Rule, ...]:
        rows = self.conn.execute(
            "SELECT id, action, program, port_low, port_high, exposures, transport, user, until, pid, started_at, source, unit"
            " FROM decisions ORDER BY id"
        ).fetchall()
        return tuple(
            Rule(
                action=action,
                program=program,
                ports=(low, high) if low is not None else None,
                exposures=tuple(Exposure(e) for e in exposures.split(",")) if exposures else None,
                transport=Transport(transport) if transport else None,
                user=user,
                unit=unit,
                until=_dt(until),
                pid=pid,
                started_at=parse_iso(started_at),
                id=rid,
                source=source,
            )
            for rid, action, program, low, high, exposures, transport, user, until, pid, started_at, source, unit in rows
        )
