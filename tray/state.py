"""What the tray knows: the daemon's record (read-only) and the tray's own small state file.

The record is opened read-only and polled with `PRAGMA data_version`, one
cheap query a second; only when another connection committed is anything read.
It is reopened when the file is replaced (a new database after a corrupt one
was moved aside) or after a read error, and waited for when it does not exist
yet (the daemon was just started). A daemon restart needs nothing: the file
stays.

The tray's own state (which alert it last notified, which the user last saw,
until when notifications are paused) lives in `tray.json` in the state
directory, mode 0600, replaced atomically. The tray writes nothing else but
decisions into the record.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
from datetime import datetime
from pathlib import Path

from ..daemon import paths
from ..daemon.model import Key, Listener, Recorded, iso, parse_iso, value
from ..daemon.rules import Rule
from ..daemon.errors import StoreError
from ..daemon.record import Store

log = logging.getLogger("portbell.tray")

UNSEEN_CAP = 100  # the count of unseen alerts stops at 100 (the icon says "9+" long before)
STATE_VERSION = 1


# ------------------------------------------------------------------ tray.json


@value(mutable=True)
class TrayState:
    notified_id: int | None = None  # the last alert event handled for notifications
    seen_id: int | None = None  # the last event the user has seen (menu "mark as seen", Show recent events)
    paused_until: datetime | None = None

    @classmethod
    def load(cls, path: Path) -> TrayState:
        try:
            data = json.loads(paths.read_text(path))  # never through a symbolic link
            if data.get("version") != STATE_VERSION:
                raise ValueError(f"version {data.get('version')!r}")
            return cls(
                notified_id=_int_or_none(data.get("notified_id")),
                seen_id=_int_or_none(data.get("seen_id")),
                paused_until=parse_iso(data.get("paused_until")),
            )
        except FileNotFoundError:
            return cls()
        except (OSError, ValueError, TypeError, AttributeError) as err:
            log.warning("ignoring the tray's state file %s (%s); starting afresh", path, err)
            return cls()

    def save(self, path: Path) -> None:
        data = {
            "version": STATE_VERSION,
            "notified_id": self.notified_id,
            "seen_id": self.seen_id,
            "paused_until": iso(self.paused_until),
        }
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        paths.write_atomic(path, json.dumps(data))


def _int_or_none(value) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"not an id: {value!r}")
    return value


# ------------------------------------------------------------------ the record


@value
class Reading:
    """The record as last read."""

    listeners: tuple[Listener, ...]
    since: dict[Key, datetime]
    complete: bool
    rules: tuple[Rule, ...]
    last_id: int


class Record:
    """The daemon's record, read-only, reopened when needed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.store: Store | None = None
        self._ident: tuple[int, int] | None = None
        self._version: int | None = None
        self.reading: Reading | None = None
        self.generation = 0  # bumped when a different database file is opened

    def close(self) -> None:
        if self.store is not None:
            try:
                self.store.close()
            except (StoreError, sqlite3.Error):
                pass
            self.store = None
        self._version = None

    def refresh(self) -> bool:
        """Read the record if something was committed since the last call; True when `reading` changed."""
        if self.store is None or self.store.replaced():
            self.close()
            if not os.path.exists(self.path):  # no database (yet): the daemon creates it
                self._ident = None
                if self.reading is not None:
                    self.reading = None
                    return True
                return False
            try:
                self.store = Store.open(self.path, readonly=True)
            except StoreError as err:
                log.debug("record not readable yet: %s", err)
                return False
            ident = self.store.conn.ident
            if self._ident is not None and ident != self._ident:
                log.warning("the record %s was replaced: reading the new one", self.path)
            if ident != self._ident:
                self.generation += 1
            self._ident = ident
        try:
            version = self.store.data_version()
            if version == self._version and self.reading is not None:
                return False
            snap = self.store.recorded()
            if snap is None:  # the daemon has not committed a first sample yet
                self._version = version
                return False
            listeners = tuple(snap.sorted())  # the one order (model.order)
            reading = Reading(listeners, self.store.current_since(), snap.complete, self.store.decisions(), self.store.last_id())
        except (sqlite3.Error, StoreError, ValueError, KeyError) as err:
            log.warning("cannot read the record (%s); will reopen it", err)
            self.close()
            return False
        self._version = version
        changed = reading != self.reading
        self.reading = reading
        return changed

    def alerts_after(self, after_id: int, limit: int | None = None) -> list[Recorded]:
        if self.store is None:
            return []
        try:
            return self.store.events(after_id=after_id, alerts_only=True, limit=limit)
        except (StoreError, sqlite3.Error) as err:  # the store's failures; sqlite3's own: a misuse
            log.warning("cannot read events: %s", err)
            self.close()
            return []

    def unseen(self, seen_id: int) -> int:
        return len(self.alerts_after(seen_id, limit=UNSEEN_CAP))
