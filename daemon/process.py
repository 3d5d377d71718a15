"""Stopping a process portbell recorded, and the guard that keeps it from signalling the wrong one.

A floor, so that both the tray ("Stop process") and the command line (`portbell stop`)
use one guard and say one set of refusals; the daemon package never imports the tray.
It stands on the words (to escape a name), and imports psutil inside its functions (the samplers and
this guard are psutil's only users).

A recorded owner names a process by pid and its exact start: on Linux the start time in
clock ticks since boot (field 22 of /proc/<pid>/stat), elsewhere psutil's create_time as
psutil reports it. By the time the user asks, that pid may belong to another process
(pids are reused, and a reused pid may start within the same second), to another user,
or to nobody. `refusal` is pure and compares the starts exactly; `stop_process` holds a
pidfd on Linux from before the check to the signal, so the process checked is the
process signalled.
"""

from __future__ import annotations

import os
import signal
import sys

from .model import value
from .words import printable


def stat_fields(data: bytes) -> tuple[bytes, int, int]:
    """From the bytes of /proc/<pid>/stat: the command name (as the kernel keeps it, 15 bytes at
    most), the parent's pid, and the exact start (field 22: clock ticks since boot). IndexError or
    ValueError when they are not such a file's."""
    close = data.rfind(b")")  # the name may hold spaces and parentheses: it ends at the last ")"
    rest = data[close + 2 :].split()
    return data[data.find(b"(") + 1 : close], int(rest[1]), int(rest[19])


def start_of(pid: int, proc=None) -> int | float | None:
    """The exact start of `pid`: clock ticks since boot on Linux, psutil's create_time elsewhere;
    None when it cannot be read. `proc` is a psutil.Process already at hand (not needed on Linux)."""
    if sys.platform.startswith("linux"):
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                data = f.read()
            return stat_fields(data)[2]
        except (OSError, IndexError, ValueError):
            return None
    import psutil

    try:
        return (proc or psutil.Process(pid)).create_time()
    except (psutil.Error, OSError):
        return None


@value
class Live:
    """The process that has the pid now."""

    pid: int
    start: int | float | None  # as start_of() reads it
    uid: int | None  # real uid
    name: str | None = None
    user: str | None = None


def refusal(
    pid: int | None,
    start: int | float | None,
    live: Live | None,
    *,
    my_uid: int | None,
    my_pid: int,
    name: str | None = None,
    my_user: str | None = None,
    myself: str = "refusing to stop the tray itself: use Quit",
) -> str | None:
    """Why `pid` must not be signalled, in a sentence for the user; None when it may.
    `start` is the recorded exact start (Owner.start); it must equal the live one exactly."""
    who = f"{printable(name)} (pid {pid})" if name else f"pid {pid}"
    if pid is None:
        return "the process is not visible to portbell, so it cannot be stopped from here"
    if pid in (0, 1):
        return f"refusing to signal pid {pid}: it is the kernel or the init system"
    if pid == my_pid:
        return myself
    if live is None or live.pid != pid:
        return f"{who} has already exited"
    if start is None or live.start is None:
        return f"not stopping {who}: its start time is unknown, so a reused pid cannot be ruled out"
    if live.start != start:
        other = f" ({printable(live.name)})" if live.name else ""
        return f"not stopping pid {pid}: it now belongs to another process{other} started at a different time"
    if my_uid is not None and live.uid != my_uid:
        owner = printable(live.user) if live.user else (f"uid {live.uid}" if live.uid is not None else "another user")
        return f"not stopping {who}: it belongs to {owner}, not to you"
    if my_uid is None:  # no uids (Windows): compare user names, DOMAIN\\name or name
        mine = (my_user or "").rpartition("\\")[2].lower()
        theirs = (live.user or "").rpartition("\\")[2].lower()
        if not mine or theirs != mine:
            return f"not stopping {who}: it belongs to {printable(live.user or 'another user')}, not to you"
    return None


def live_process(pid: int) -> Live | None:
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
            return Live(pid=pid, start=start_of(pid, p), uid=uid, name=p.name(), user=user)
    except psutil.NoSuchProcess:
        return None


def stop_process(pid: int | None, start: int | float | None, name: str | None, **refusing) -> tuple[bool, str]:
    """Send SIGTERM to the recorded process, after the guard agreed: (sent, a sentence for the user).

    On Linux a pidfd is opened before the check: it names one process for good, so the
    process that passed the check is the one signalled, even if it exits and its pid is
    reused in between. `refusing` passes on to `refusal` (`myself`: the sentence for
    stopping the caller itself)."""
    import psutil

    label = f"{printable(name or '?')} (pid {pid})"
    pidfd = None
    try:
        if pid is not None and pid > 1 and hasattr(os, "pidfd_open"):
            try:
                pidfd = os.pidfd_open(pid)
            except ProcessLookupError:
                return False, f"{label} has already exited"
            except OSError:
                pidfd = None
        try:
            live = live_process(pid) if pid is not None and pid > 1 else None
        except psutil.AccessDenied:
            return False, f"not allowed to inspect {label}"
        my_user = None
        if not hasattr(os, "getuid"):
            import getpass

            my_user = getpass.getuser()
        reason = refusal(
            pid, start, live, my_uid=os.getuid() if hasattr(os, "getuid") else None, my_pid=os.getpid(),
            name=name, my_user=my_user, **refusing,
        )
        if reason is not None:
            return False, reason
        try:
            if pidfd is not None:
                signal.pidfd_send_signal(pidfd, signal.SIGTERM)
            else:
                psutil.Process(pid).terminate()
        except (ProcessLookupError, psutil.NoSuchProcess):
            return False, f"{label} has already exited"
        except (PermissionError, psutil.AccessDenied):
            return False, f"not allowed to stop {label}"
        return True, f"sent SIGTERM to {label}"
    finally:
        if pidfd is not None:
            os.close(pidfd)

