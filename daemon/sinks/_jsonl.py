"""JSON lines in osquery's differential shape. Imports: daemon.model, sinks._common.

One line per row, the way osquery logs a scheduled query's differential results
in "event" format, so Filebeat's osquery module, Fluent Bit or Vector pick them
up with the parsers they already have:

    {"name": "portbell_listeners", "hostIdentifier": "ana-laptop",
     "calendarTime": "Thu Nov 26 09:00:00 2026 UTC", "unixTime": 1795683600,
     "epoch": 0, "counter": 17, "numerics": false, "action": "added",
     "columns": {"transport": "tcp", "port": "8000", ...}}

`opened` is one `added` row, `closed` one `removed` row (the listener as last
seen), `changed` a `removed` row of the previous state followed by an `added`
row of the new one. `counter` is the event's id in the store: both rows of a
change share it. Times are the event's. Columns are strings, as osquery's are
with `numerics: false`: booleans "1"/"0", unknowns "" (osquery's empty value).
Owners: `pid`, `name`, `exe`, `cmdline` (joined by spaces), `user`, `uid`,
`started_at` describe the first owner; `pids` lists every known pid and
`owners` counts them, for sockets several processes share.

Files: opened with O_APPEND (whole lines in one write each batch), created
mode 0600 in a directory created 0700 when missing. Before each write the path
is compared with the open descriptor (device and inode): when logrotate moved
the file away, or removed it, a new one is created at the path. With
`copytruncate` O_APPEND keeps writing at the new end. fsync policy: with
`fsync = true` (the default) each batch is fsynced after it is written. Events
are rare (one batch per poll that saw changes, a burst is one batch), so this
costs nothing in steady state and a line the daemon handed over survives a
power cut. Delivery is at least once: a batch retried after a failure may
repeat lines, and `counter` tells them apart. A write cut short (disk full) is
followed, on the next write, by a newline so the torn line never swallows the
next.
"""

from __future__ import annotations

import json
import os
import socket
from datetime import timezone
from pathlib import Path
from typing import Any, Sequence

from ..model import EventKind, Listener, Recorded, Snapshot, iso
from ._common import SinkError, first_owner

QUERY_NAME = "portbell_listeners"


def _flag(value: bool) -> str:
    return "1" if value else "0"


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def columns(listener: Listener, record: Recorded) -> dict[str, str]:
    owner = first_owner(listener)
    ev = record.event
    cols = {
        "transport": str(listener.transport),
        "family": str(listener.family),
        "address": listener.address,
        "port": str(listener.port),
        "exposure": str(listener.exposure),
        "dual_stack": _flag(listener.dual_stack),
        "pid": _text(owner.pid if owner else None),
        "pids": ",".join(str(p) for p in listener.pids),
        "owners": str(len(listener.owners)),
        "name": _text(owner.name if owner else None),
        "exe": _text(owner.exe if owner else None),
        "cmdline": " ".join(owner.cmdline) if owner and owner.cmdline else "",
        "user": _text(owner.user if owner else None),
        "uid": _text(owner.uid if owner else None),
        "started_at": _text(iso(owner.started_at) if owner else None),
        "id": str(record.id),
        "kind": str(ev.kind),
        "at": _text(iso(ev.at)),
        "alert": _flag(record.alert),
        "reason": record.reason,
        "baseline": _flag(record.baseline),
        "found_at_start": _flag(record.found_at_start),
    }
    return cols


def rows(record: Recorded, host: str) -> list[dict[str, Any]]:
    """The osquery differential rows for one record, in order."""
    ev = record.event
    at = ev.at.astimezone(timezone.utc)
    head = {
        "name": QUERY_NAME,
        "hostIdentifier": host,
        "calendarTime": at.strftime("%a %b %d %H:%M:%S %Y UTC"),
        "unixTime": int(at.timestamp()),
        "epoch": 0,
        "counter": record.id,
        "numerics": False,
    }
    if ev.kind is EventKind.OPENED:
        changes = [("added", ev.listener)]
    elif ev.kind is EventKind.CLOSED:
        changes = [("removed", ev.listener)]
    else:
        changes = [("removed", ev.previous or ev.listener), ("added", ev.listener)]
    return [{**head, "action": action, "columns": columns(li, record)} for action, li in changes]


class JsonLinesSink:
    name = "jsonl"

    def __init__(self, path: str | os.PathLike[str], *, host: str | None = None, fsync: bool = True) -> None:
        self.path = Path(path)
        self.host = host or socket.gethostname()
        self.fsync = fsync
        self._fd: int | None = None
        self._torn = False  # the last write stopped mid-line

    def emit(self, records: Sequence[Recorded], snapshot: Snapshot | None) -> None:
        if not records:
            return
        chunks: list[bytes] = [b"\n"] if self._torn else []
        ends: list[int] = []  # where each record's lines end in the data
        size = len(chunks[0]) if chunks else 0
        for record in records:
            for row in rows(record, self.host):
                line = (json.dumps(row, separators=(",", ":")) + "\n").encode("utf-8")
                chunks.append(line)
                size += len(line)
            ends.append(size)
        data = b"".join(chunks)
        written = 0
        try:
            fd = self._open()
            while written < len(data):
                written += os.write(fd, data[written:])
            self._torn = False
            if self.fsync:
                os.fsync(fd)
        except OSError as err:
            self._close_fd()
            if written:
                self._torn = data[written - 1 : written] != b"\n"
            delivered = sum(1 for end in ends if end <= written)
            raise SinkError(
                f"cannot write {self.path}: {err.strerror or err}", sink=self.name, path=str(self.path), delivered=delivered
            ) from err

    def _open(self) -> int:
        """The open descriptor, reopened when the path no longer names the file it points at."""
        if self._fd is not None:
            try:
                st = os.stat(self.path)
                mine = os.fstat(self._fd)
                if (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino):
                    return self._fd
            except FileNotFoundError:
                pass
            self._close_fd()  # rotated away or removed: start a new file at the path
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
        return self._fd

    def _close_fd(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                os.close(fd)
            except OSError:
                pass

    def close(self) -> None:
        self._close_fd()

