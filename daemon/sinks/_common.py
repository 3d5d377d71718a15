"""What every sink shares: its error and the readable sentence for an event. Imports: daemon.model, daemon.errors.

A sink that delivered part of a batch before failing says how much in
`SinkError.delivered`, so the Dispatcher retries only the rest and nothing is
written twice.
"""

from __future__ import annotations

from ..errors import PortbellError
from ..model import EventKind, Listener, Owner, Recorded


class SinkError(PortbellError):
    """A sink could not deliver; the Dispatcher keeps the undelivered records and retries later."""

    def __init__(self, message: str, *, sink: str = "", path: str | None = None, delivered: int = 0) -> None:
        super().__init__(message)
        self.sink = sink
        self.path = path
        self.delivered = delivered  # how many records of the batch did get through, in order


def first_owner(listener: Listener) -> Owner | None:
    """The owner to name in a flat row: owners are sorted by pid, unknown last."""
    return listener.owners[0] if listener.owners else None


def printable(text: str) -> str:
    """One line: control characters (a newline in a process name) shown as escapes, never emitted raw."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def _where(li: Listener) -> str:
    exposure = f"{li.exposure}, also IPv4" if li.dual_stack else str(li.exposure)
    return f"{li.transport} {li.endpoint} ({exposure})"


def sentence(record: Recorded) -> str:
    """`python3 (4242) is now listening on tcp 0.0.0.0:8000 (all-interfaces); alert: not trusted`."""
    ev = record.event
    li = ev.listener
    if ev.kind is EventKind.OPENED:
        text = f"{li.owner_label()} is now listening on {_where(li)}"
    elif ev.kind is EventKind.CLOSED:
        text = f"{li.owner_label()} stopped listening on {_where(li)}"
    else:
        was = ev.previous
        before = f"{was.owner_label()} ({was.exposure})" if was is not None else "?"
        text = f"{li.transport} {li.endpoint} changed: {before} -> {li.owner_label()} ({li.exposure})"
    flags = [f for f, on in (("baseline", record.baseline), ("found at start", record.found_at_start)) if on]
    if flags:
        text += f" [{', '.join(flags)}]"
    if record.reason:
        text += f"; {'alert' if record.alert else 'quiet'}: {record.reason}"
    return printable(text)
