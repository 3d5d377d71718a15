"""May the tray stop this process? Pure. Imports: the standard library.

"Stop process" names a process as the daemon recorded it: pid and create time.
By the time the user clicks, that pid may belong to another process (pids are
reused), to another user, or to nobody. tray/app.py looks the live process up
(psutil) and asks `refusal`; it signals only when the answer is None, and on
Linux it holds a pidfd from before the check to the signal, so the process
checked is the process signalled.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

# The recorded start time has one-second resolution (ISO 8601 to the second) and
# both sides derive it from the kernel's start time in clock ticks: a process
# started more than this far from the recorded time is another process.
START_TOLERANCE_S = 1.5


@dataclass(frozen=True, slots=True)
class Live:
    """The process that has the pid now."""

    pid: int
    create_time: float  # seconds since the epoch
    uid: int | None  # real uid
    name: str | None = None
    user: str | None = None


def refusal(
    pid: int | None,
    started_at: datetime | None,
    live: Live | None,
    *,
    my_uid: int | None,
    my_pid: int,
    name: str | None = None,
    my_user: str | None = None,
) -> str | None:
    """Why the tray must not signal `pid`, in a sentence for the user; None when it may."""
    who = f"{name} (pid {pid})" if name else f"pid {pid}"
    if pid is None:
        return "the process is not visible to portbell, so it cannot be stopped from here"
    if pid in (0, 1):
        return f"refusing to signal pid {pid}: it is the kernel or the init system"
    if pid == my_pid:
        return "refusing to stop the tray itself: use Quit"
    if live is None or live.pid != pid:
        return f"{who} has already exited"
    if started_at is None:
        return f"not stopping {who}: its start time is unknown, so a reused pid cannot be ruled out"
    if abs(live.create_time - started_at.timestamp()) > START_TOLERANCE_S:
        other = f" ({live.name})" if live.name else ""
        return f"not stopping pid {pid}: it now belongs to another process{other} started at a different time"
    if my_uid is not None and live.uid != my_uid:
        owner = live.user or (f"uid {live.uid}" if live.uid is not None else "another user")
        return f"not stopping {who}: it belongs to {owner}, not to you"
    if my_uid is None:  # no uids (Windows): compare user names, DOMAIN\\name or name
        mine = (my_user or "").rpartition("\\")[2].lower()
        theirs = (live.user or "").rpartition("\\")[2].lower()
        if not mine or theirs != mine:
            return f"not stopping {who}: it belongs to {live.user or 'another user'}, not to you"
    return None
