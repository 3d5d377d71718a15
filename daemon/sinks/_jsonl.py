"""JSON lines in osquery's differential shape.

One line per row, the way osquery logs a scheduled query's differential results
in "event" format, so Filebeat's osquery module, Fluent Bit or Vector pick them
up with the parsers they already have:

    {"name": "portbell_listeners", "hostIdentifier": "ana-laptop",
     "calendarTime": "Tue Dec  1 09:00:00 2026 UTC", "unixTime": 1796115600,
     "epoch": 0, "counter": 17, "numerics": false,
     "decorations": {"username": "ana", "portbell_version": "0.1.0"},
     "columns": {"transport": "tcp", "port": "8000", ...}, "action": "added"}

The envelope means what osquery's means:

- `calendarTime` is C's asctime of the event's UTC time plus " UTC" (the day
  padded with a space: `Tue Dec  1`), `unixTime` the same instant in seconds.
- `epoch` is 0 (osquery's default `schedule_epoch`).
- `counter` counts runs, not rows: 0 marks the first run, portbell's baseline
  at its very first start (every listener then is an `added` row), so a
  shipper can skip it as it skips osquery's. Every row of one sample shares its
  counter, and later samples have greater ones: the record id of the sample's
  first event, so it grows by more than one where osquery's grows by one per
  run (osquery's log skips the runs that found nothing, too).
- `numerics` is false: every column value is a string.
- `decorations`: `username` (the user the daemon runs as) and
  `portbell_version`, as osquery's decorator queries add host facts.

Columns, by `format`:

- `portbell` (the default): portbell's own facts. Booleans "1"/"0", unknowns ""
  (osquery's empty value). Owners: `pid`, `name`, `exe`, `cmdline` (joined by
  spaces), `user`, `uid`, `started_at` describe the first owner; `pids` lists
  every known pid and `owners` counts them. Plus the record: `id`, `kind`, `at`,
  `alert`, `reason`, `baseline`, `found_at_start`. `opened` is one `added` row,
  `closed` one `removed` row (the listener as last seen), `changed` a `removed`
  row of the previous state followed by an `added` row of the new one.
- `osquery`: exactly osquery's `listening_ports` columns, a row per process,
  and osquery's differential rows (see sinks/_osquery.py).

Files: opened with O_APPEND (whole lines in one write each batch), mode 0600
(or 0640 with `mode = "0640"`, so a shipper running as its own user in the
file's group can read it; it is set on the file whatever the umask, also on
a file that existed with another mode), in a directory created 0700 (0750)
when missing. Before each write the path is compared with the open descriptor
(device and inode): when logrotate moved the file away, or removed it, a new
one is created at the path. With `copytruncate` O_APPEND keeps writing at the
new end. fsync policy: with `fsync = true` (the default) each batch is fsynced
after it is written. Events are rare (one batch per poll that saw changes, a
burst is one batch), so this costs nothing in steady state and a line the
daemon handed over survives a power cut. Delivery is at least once: a batch
retried after a failure may repeat lines (`columns.id` tells them apart in
the portbell format). A write cut short (disk full) is followed, on the next
write, by a newline so the torn line never swallows the next.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

from .. import __version__
from ..model import EventKind, Listener, Recorded, Snapshot, iso
from . import _osquery
from ._common import SinkError, first_owner

QUERY_NAMES = {"portbell": "portbell_listeners", "osquery": "portbell_listening_ports"}
FORMATS = tuple(QUERY_NAMES)
MODES = (0o600, 0o640)


def _flag(value: bool) -> str:
    return "1" if value else "0"


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def calendar_time(at: datetime) -> str:
    """osquery's calendarTime: asctime of the UTC time, plus " UTC" (`Tue Dec  1 09:00:00 2026 UTC`)."""
    return time.asctime(at.astimezone(timezone.utc).timetuple()) + " UTC"


def columns(listener: Listener, record: Recorded) -> dict[str, str]:
    """portbell's columns for one listener of a record."""
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


def portbell_changes(record: Recorded) -> list[tuple[str, dict[str, str]]]:
    ev = record.event
    if ev.kind is EventKind.OPENED:
        changes = [("added", ev.listener)]
    elif ev.kind is EventKind.CLOSED:
        changes = [("removed", ev.listener)]
    else:
        changes = [("removed", ev.previous or ev.listener), ("added", ev.listener)]
    return [(action, columns(li, record)) for action, li in changes]


def _username() -> str:
    try:
        import pwd

        return pwd.getpwuid(os.geteuid()).pw_name
    except (ImportError, KeyError, AttributeError):
        import getpass

        try:
            return getpass.getuser()
        except Exception:
            return ""


class Runs:
    """osquery's `counter` for each record: 0 for the baseline run, else the id of its run's first record.

    A run is one sample: its records share the event time. A batch retried
    after a partial write resumes mid-run; the run's counter is remembered, so
    its rows still share it.
    """

    def __init__(self) -> None:
        self._last: tuple[datetime, int] | None = None  # (event time, counter) of the newest run seen

    def counter(self, record: Recorded) -> int:
        if record.baseline:
            return 0
        at = record.event.at
        if self._last is not None and self._last[0] == at:
            return self._last[1]
        self._last = (at, record.id)
        return record.id


def rows(record: Recorded, host: str, *, format: str = "portbell", counter: int | None = None,
         decorations: dict[str, str] | None = None, netns: str | None = None) -> list[dict[str, Any]]:
    """The osquery differential rows for one record, in order."""
    at = record.event.at.astimezone(timezone.utc)
    head = {
        "name": QUERY_NAMES[format],
        "hostIdentifier": host,
        "calendarTime": calendar_time(at),
        "unixTime": int(at.timestamp()),
        "epoch": 0,
        "counter": Runs().counter(record) if counter is None else counter,
        "numerics": False,
    }
    if decorations:
        head["decorations"] = decorations
    changes = _osquery.changes(record, netns) if format == "osquery" else portbell_changes(record)
    return [{**head, "columns": cols, "action": action} for action, cols in changes]


class JsonLinesSink:
    name = "jsonl"

    def __init__(self, path: str | os.PathLike[str], *, host: str | None = None, fsync: bool = True,
                 format: str = "portbell", mode: int = 0o600) -> None:  # fmt: skip
        if format not in FORMATS:
            raise ValueError(f"format must be one of {', '.join(FORMATS)}, not {format!r}")
        if mode not in MODES:
            raise ValueError(f"mode must be 0600 or 0640, not {mode:#o}")
        self.path = Path(path)
        self.host = host or socket.gethostname()
        self.fsync = fsync
        self.format = format
        self.mode = mode
        self.decorations = {"username": _username(), "portbell_version": __version__}
        self._netns = _osquery.net_namespace() if format == "osquery" else None
        self._runs = Runs()
        self._fd: int | None = None
        self._torn = False  # the last write stopped mid-line

    def emit(self, records: Sequence[Recorded], snapshot: Snapshot | None) -> None:
        if not records:
            return
        chunks: list[bytes] = [b"\n"] if self._torn else []
        ends: list[int] = []  # where each record's lines end in the data
        size = len(chunks[0]) if chunks else 0
        for record in records:
            counter = self._runs.counter(record)
            made = rows(record, self.host, format=self.format, counter=counter, decorations=self.decorations, netns=self._netns)
            for row in made:
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
                st = os.lstat(self.path)
                mine = os.fstat(self._fd)
                if (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino):
                    return self._fd
            except FileNotFoundError:
                pass
            self._close_fd()  # rotated away or removed: start a new file at the path
        self.path.parent.mkdir(mode=0o750 if self.mode & 0o040 else 0o700, parents=True, exist_ok=True)
        # never through a symbolic link (O_NOFOLLOW), and only into a regular file
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
        fd = os.open(self.path, flags, self.mode)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise OSError(f"{self.path} is not a regular file")
            # the umask may have taken bits away, or the file existed with another mode: ours get ours
            if stat.S_IMODE(st.st_mode) != self.mode and hasattr(os, "fchmod") and st.st_uid == os.geteuid():
                os.fchmod(fd, self.mode)
        except OSError:
            os.close(fd)
            raise
        self._fd = fd
        return fd

    def _close_fd(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                os.close(fd)
            except OSError:
                pass

    def close(self) -> None:
        self._close_fd()

