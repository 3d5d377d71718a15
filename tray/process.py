"""Stopping a process the record names, and the guard that keeps it from signalling the wrong one.

"Stop process" names a process as the daemon recorded it: pid and create time.
By the time the user clicks, that pid may belong to another process (pids are
reused), to another user, or to nobody. `stop_process` looks the live process
up with psutil and asks `refusal`, which is pure; it signals
only when the answer is None, and on Linux it holds a pidfd from before the
check to the signal, so the process checked is the process signalled.
"""

from __future__ import annotations

import os
import signal
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


def live_process(pid: int):
    """The process that has `pid` now, as Live; None when there is none."""
    import psutil

    try:
        p = psutil.Process(pid)
        with p.oneshot():
            uid = p.uids().real if hasattr(p, "uids") else None
            try:
                user = p.username()
            except (psutil.AccessDenied, KeyError):
                user = None
            return Live(pid=pid, create_time=p.create_time(), uid=uid, name=p.name(), user=user)
    except psutil.NoSuchProcess:
        return None


def stop_process(pid: int | None, started_at: datetime | None, name: str | None) -> tuple[str, str]:
    """Send SIGTERM to the recorded process, after the guard agreed. Returns (title, body) for the user.

    On Linux a pidfd is opened before the check: it names one process for good,
    so the process that passed the check is the one signalled, even if it exits
    and its pid is reused in between.
    """
    import psutil

    label = f"{name or '?'} (pid {pid})"
    pidfd = None
    try:
        if pid is not None and pid > 1 and hasattr(os, "pidfd_open"):
            try:
                pidfd = os.pidfd_open(pid)
            except ProcessLookupError:
                return "Not stopped", f"{label} has already exited"
            except OSError:
                pidfd = None
        try:
            live = live_process(pid) if pid is not None and pid > 1 else None
        except psutil.AccessDenied:
            return "Not stopped", f"not allowed to inspect {label}"
        my_user = None
        if not hasattr(os, "getuid"):
            import getpass

            my_user = getpass.getuser()
        reason = refusal(
            pid,
            started_at,
            live,
            my_uid=os.getuid() if hasattr(os, "getuid") else None,
            my_pid=os.getpid(),
            name=name,
            my_user=my_user,
        )
        if reason is not None:
            return "Not stopped", reason
        try:
            if pidfd is not None:
                signal.pidfd_send_signal(pidfd, signal.SIGTERM)
            else:
                psutil.Process(pid).terminate()
        except (ProcessLookupError, psutil.NoSuchProcess):
            return "Not stopped", f"{label} has already exited"
        except (PermissionError, psutil.AccessDenied):
            return "Not stopped", f"not allowed to stop {label}"
        return f"Stopping {name or 'the process'}", f"sent SIGTERM to {label}"
    finally:
        if pidfd is not None:
            os.close(pidfd)
