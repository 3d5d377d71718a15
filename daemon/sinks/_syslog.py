"""RFC 5424 syslog to the local socket.

One message per record, e.g.

    <12>1 2026-11-26T09:00:00.000000Z ana-laptop portbell 812 opened
    [portbell@32473 id="17" kind="opened" at="2026-11-26T09:00:00.000000Z" transport="tcp" address="0.0.0.0" port="8000"
    exposure="all-interfaces" pid="4242" name="python3" alert="1" reason="not trusted"]
    python3 (4242) is now listening on tcp 0.0.0.0:8000 (all-interfaces); alert: not trusted

- PRI: the configured facility (default `user`) and a severity from the event:
  warning when the policy alerts, notice for other opened/changed, info for
  closed, baselines and listeners found at start.
- TIMESTAMP is the event's time in UTC; PROCID the daemon's pid; MSGID the kind.
- `at` in the structured data is the event's time again, the same text as the
  TIMESTAMP. The header's may not survive: rsyslog's imuxsock and journald put
  the time of arrival there by default, which for an event handed over late
  (after a full disk, or again after a crash) is not when it happened. `at`
  reaches every consumer that keeps the structured data (rsyslog's
  mmpstrucdata parses it as `$!rfc5424-sd!portbell@32473!at`).
- SD-ID `portbell@32473`: 32473 is the Private Enterprise Number RFC 5612
  reserves for examples; portbell has no PEN of its own. Param values escape
  `"`, `\\` and `]` with a backslash (RFC 5424, 6.3.3). A `changed` event adds
  `previous_exposure`, `previous_pid`, `previous_name`. Fields that are
  unknown are left out rather than sent empty.
- MSG is a readable sentence, UTF-8 without a BOM (RFC 5424's MSG-ANY), with
  control characters escaped so one event is one line.

Transport: AF_UNIX SOCK_DGRAM to `socket` (default /dev/log), one datagram per
message, as syslog(3) does. When the socket is a stream (EPROTOTYPE on
connect, syslog-ng's `unix-stream()`), SOCK_STREAM with octet-counting framing
(RFC 6587: `LEN SP MSG`). Sends time out after a second so the loop is never
held. A missing or refusing socket raises SinkError: the Dispatcher keeps the
records and retries; a send that fails on an old connection (the syslog daemon
restarted) reconnects once at once.
"""

from __future__ import annotations

import errno
import os
import socket
from datetime import timezone
from typing import Sequence

from ..model import EventKind, Recorded, Snapshot
from ._common import SinkError, first_owner, printable, sentence

APP_NAME = "portbell"
SD_ID = "portbell@32473"
SEND_TIMEOUT_S = 1.0

FACILITIES = {
    "kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6, "news": 7,
    "uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11,
    **{f"local{i}": 16 + i for i in range(8)},
}  # fmt: skip

WARNING, NOTICE, INFO = 4, 5, 6


def severity(record: Recorded) -> int:
    if record.alert:
        return WARNING
    if record.baseline or record.found_at_start or record.event.kind is EventKind.CLOSED:
        return INFO
    return NOTICE


def sd_escape(value: str) -> str:
    """A PARAM-VALUE: `"`, `\\` and `]` escaped with a backslash (RFC 5424, 6.3.3)."""
    return printable(value).replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def header_field(text: str | None, limit: int) -> str:
    """A header field: printable US-ASCII without spaces, at most `limit` characters, `-` when empty."""
    clean = "".join(c for c in (text or "") if 33 <= ord(c) <= 126)[:limit]
    return clean or "-"


def timestamp(moment) -> str:
    """RFC 5424's TIMESTAMP: UTC, microseconds, a Z."""
    return moment.astimezone(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def structured_data(record: Recorded) -> str:
    ev = record.event
    li = ev.listener
    owner = first_owner(li)
    params: list[tuple[str, object]] = [
        ("id", record.id),
        ("kind", ev.kind),
        ("at", timestamp(ev.at)),
        ("transport", li.transport),
        ("address", li.address),
        ("port", li.port),
        ("exposure", li.exposure),
        ("dual_stack", int(li.dual_stack)),
        ("pid", owner.pid if owner else None),
        ("name", owner.name if owner else None),
        ("user", owner.user if owner else None),
        ("alert", int(record.alert)),
        ("reason", record.reason or None),
    ]
    if record.baseline:
        params.append(("baseline", 1))
    if record.found_at_start:
        params.append(("found_at_start", 1))
    if ev.previous is not None:
        was = first_owner(ev.previous)
        params += [
            ("previous_exposure", ev.previous.exposure),
            ("previous_pid", was.pid if was else None),
            ("previous_name", was.name if was else None),
        ]
    body = " ".join(f'{k}="{sd_escape(str(v))}"' for k, v in params if v is not None)
    return f"[{SD_ID} {body}]"


def message(record: Recorded, *, facility: int, host: str, procid: int) -> bytes:
    ev = record.event
    at = timestamp(ev.at)
    pri = facility * 8 + severity(record)
    head = f"<{pri}>1 {at} {header_field(host, 255)} {APP_NAME} {procid} {header_field(str(ev.kind), 32)}"
    return f"{head} {structured_data(record)} {sentence(record)}".encode("utf-8", "backslashreplace")


class SyslogSink:
    name = "syslog"

    def __init__(self, socket_path: str = "/dev/log", *, facility: str = "user", host: str | None = None) -> None:
        self.socket_path = socket_path
        self.facility = FACILITIES[facility]
        self.host = host or socket.gethostname()
        self._sock: socket.socket | None = None
        self._stream = False

    def emit(self, records: Sequence[Recorded], snapshot: Snapshot | None) -> None:
        if not records:
            return
        pid = os.getpid()
        for done, record in enumerate(records):
            data = message(record, facility=self.facility, host=self.host, procid=pid)
            try:
                self._send(data)
            except OSError:
                self._disconnect()  # the daemon at the other end may have restarted: one fresh try
                try:
                    self._send(data)
                except OSError as err:
                    self._disconnect()
                    raise SinkError(
                        f"cannot send to syslog socket {self.socket_path}: {err.strerror or err}",
                        sink=self.name,
                        path=self.socket_path,
                        delivered=done,
                    ) from err

    def _send(self, data: bytes) -> None:
        sock = self._connect()
        if self._stream:
            sock.sendall(b"%d " % len(data) + data)
        else:
            sock.send(data)

    def _connect(self) -> socket.socket:
        if self._sock is not None:
            return self._sock
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.settimeout(SEND_TIMEOUT_S)
        try:
            sock.connect(self.socket_path)
            self._stream = False
        except OSError as err:
            sock.close()
            if err.errno != errno.EPROTOTYPE:
                raise
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(SEND_TIMEOUT_S)
            try:
                sock.connect(self.socket_path)
            except OSError:
                sock.close()
                raise
            self._stream = True
        self._sock = sock
        return sock

    def _disconnect(self) -> None:
        if self._sock is not None:
            sock, self._sock = self._sock, None
            sock.close()

    def close(self) -> None:
        self._disconnect()
