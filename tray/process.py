"""The tray's side of "Stop process": the shared guard's answer as a notification's title and body.

The guard itself (pid reuse by the exact start time, pid 0/1, other users, the pidfd held from
the check to the signal) is daemon/process.py, which `portbell stop` uses too: one guard, one
set of refusals.
"""

from __future__ import annotations

from ..daemon.process import Live, live_process, refusal  # noqa: F401  (the guard, for the tray's callers)
from ..daemon.process import stop_process as _stop
from ..daemon.words import printable


def stop_process(pid: int | None, start, name: str | None) -> tuple[str, str]:
    """SIGTERM to the recorded process when the guard agrees: (title, body) for the notification."""
    sent, sentence = _stop(pid, start, name)
    return (f"Stopping {printable(name or 'the process')}" if sent else "Not stopped"), sentence
