"""Owner details by pid (from /proc on Linux, through psutil elsewhere), and one socket as a listener.

Both samplers read owners here, so the same process is described the same way
whichever path found it. Results are cached by (pid, create time): a reused pid
gets a fresh read.

On Linux the few files psutil would read are read directly, the way psutil reads them (its
create time, its name extended from the command line past the kernel's 15 bytes, its command line
with setproctitle's spaces, its exe without a bogus " (deleted)"): importing psutil costs more
than a `portbell who` spends on everything else (bench/cli.py). tests/test_owners.py holds the
two readers against each other.
"""

from __future__ import annotations

import os
import pwd
import sys
from datetime import datetime, timezone
from functools import lru_cache

from ..addresses import classify, is_dual_stack
from ..model import Listener, Owner, Transport, Unit, sort_owners
from ..process import stat_fields
from ._cgroup import status_uids
from ._forwarders import forward_for

PROC = "/proc"


@lru_cache(maxsize=1024)
def user_name(uid: int | None) -> str | None:
    if uid is None:
        return None
    try:
        return pwd.getpwuid(uid).pw_name
    except (KeyError, OverflowError):
        return None


def unknown_owner(uid: int | None) -> Owner:
    """An owner the view cannot see: only the socket's uid, which the kernel reports to anyone."""
    return Owner(pid=None, uid=uid, user=user_name(uid))


def listener_of(
    transport: Transport, family: int, address: str, port: int, owners: list[Owner], *,
    uid: int | None, v6only: bool | None, unit: Unit | None, candidates: int | None = None,
) -> Listener:
    """One socket as a listener, the same way for every sampler: its exposure, its owners (the
    socket's uid alone when none is visible), where a forwarder among them sends it, its unit."""
    return Listener(
        transport, family, address, port, classify(address), is_dual_stack(address, family, v6only),
        sort_owners(owners) if owners else (unknown_owner(uid),),
        unit=unit,
        forward=forward_for(owners, transport, address, port),
        candidates=None if owners else candidates,
    )


class OwnerReader:
    def __init__(self, proc_root: str | None = PROC if sys.platform.startswith("linux") else None) -> None:
        """`proc_root` None: through psutil (every platform); else from that /proc."""
        self._cache: dict[int, Owner] = {}
        self._root = proc_root
        self._boot: float | None = None

    def read(self, pid: int) -> Owner | None:
        """The owner for a pid, or None when the process is gone."""
        return self._read_proc(pid) if self._root is not None else self._read_psutil(pid)

    def _cached(self, pid: int, started: datetime, start: int | float | None) -> Owner | None:
        cached = self._cache.get(pid)
        return cached if cached is not None and (cached.started_at, cached.start) == (started, start) else None

    def _read_proc(self, pid: int) -> Owner | None:
        base = f"{self._root}/{pid}"
        try:
            with open(f"{base}/stat", "rb") as f:
                stat = f.read()
            comm, ppid, start = stat_fields(stat)  # start: exact, in clock ticks; the stop guard compares it
            started = datetime.fromtimestamp(int(start / _CLOCK_TICKS + self._boot_time()), timezone.utc)
            cached = self._cached(pid, started, start)
            if cached is not None:
                return cached
        except (OSError, ValueError, IndexError):
            uids = None
        else:
            uids = status_uids(self._root, pid)
        if uids is None:  # gone (or not a process's files)
            self._cache.pop(pid, None)
            return None
        uid, name = uids[0], os.fsdecode(comm)
        cmdline = _cmdline(base)
        if len(name) >= 15 and cmdline and os.path.basename(cmdline[0]).startswith(name):
            name = os.path.basename(cmdline[0])  # the kernel keeps 15 bytes of it
        owner = self._cache[pid] = _owner(pid, uid, name, started, _exe(base), cmdline, ppid, start)
        return owner

    def _boot_time(self) -> float:
        if self._boot is None:
            with open(f"{self._root}/stat", "rb") as f:
                self._boot = next(float(line.split()[1]) for line in f if line.startswith(b"btime"))
        return self._boot

    def _read_psutil(self, pid: int) -> Owner | None:
        import psutil

        from ..process import start_of

        def _denied(call):
            try:
                return call()
            except (psutil.AccessDenied, psutil.ZombieProcess):
                return None

        try:
            proc = psutil.Process(pid)
            with proc.oneshot():
                # Whole seconds: the JSON shape and the record keep seconds, and an owner
                # read back from the record must equal the same owner sampled live.
                started = datetime.fromtimestamp(int(proc.create_time()), timezone.utc)
                start = start_of(pid, proc)  # exact: the stop guard compares it
                cached = self._cached(pid, started, start)
                if cached is not None:
                    return cached
                uids = _denied(proc.uids)
                uid = uids.real if uids is not None else None
                owner = _owner(pid, uid, _denied(proc.name), started, _denied(proc.exe), _denied(proc.cmdline), _denied(proc.ppid), start)
        except psutil.NoSuchProcess:
            self._cache.pop(pid, None)
            return None
        except psutil.AccessDenied:
            owner = Owner(pid=pid, uid=None)
        self._cache[pid] = owner
        return owner

    def __len__(self) -> int:
        return len(self._cache)


def _owner(pid, uid, name, started, exe, cmdline, ppid, start) -> Owner:
    """One owner, the same way from either reader: what is empty is unknown (None)."""
    return Owner(pid=pid, uid=uid, name=name or None, started_at=started, exe=exe or None,
                 cmdline=tuple(cmdline) if cmdline else None, user=user_name(uid), ppid=ppid, start=start)


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _cmdline(base: str) -> tuple[str, ...] | None:
    """The command line as psutil splits it (NULs; spaces when setproctitle rewrote it); None when empty or unreadable."""
    try:
        with open(f"{base}/cmdline", "rb") as f:
            data = os.fsdecode(f.read())
    except OSError:
        return None
    if not data:
        return None  # a zombie, or a kernel thread
    sep = "\0" if data.endswith("\0") else " "
    if data.endswith(sep):
        data = data[:-1]
    args = data.split(sep)
    if sep == "\0" and len(args) == 1 and " " in data:
        args = data.split(" ")
    return tuple(args) if args else None


def _exe(base: str) -> str | None:
    """The executable's path; None when it may not be read (another user's) or there is none."""
    try:
        path = os.readlink(f"{base}/exe").split("\0")[0]
    except OSError:
        return None
    if path.endswith(" (deleted)") and not os.path.exists(path):
        path = path[:-10]
    return path or None
