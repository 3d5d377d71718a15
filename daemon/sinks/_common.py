"""What every sink shares: its error, the owner it names in a flat row, and the words for an event."""

from __future__ import annotations

from ..errors import SinkError  # noqa: F401 (re-exported for the sinks)
from ..model import Listener, Owner
from ..words import event_sentence as sentence, printable  # noqa: F401 (the sinks' words)


def first_owner(listener: Listener) -> Owner | None:
    """The owner to name in a flat row: owners are sorted by pid, unknown last."""
    return listener.owners[0] if listener.owners else None
