"""Owner details by pid, through psutil. Imports: psutil, daemon.model.

Both samplers read owners here, so the same process is described the same way
whichever path found it. Results are cached by (pid, create time): a reused pid
gets a fresh read.
"""

from __future__ import annotations

import pwd
from datetime import datetime, timezone
from functools import lru_cache

import psutil

from ..addresses import classify, is_dual_stack
from ..model import Listener, Owner, Transport, Unit, sort_owners
from ..process import start_of
from ._forwarders import forward_for


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


def _denied(call):
    try:
        return call()
    except (psutil.AccessDenied, psutil.ZombieProcess):
        return None


class OwnerReader:
    def __init__(self) -> None:
        self._cache: dict[int, Owner] = {}

    def read(self, pid: int) -> Owner | None:
        """The owner for a pid, or None when the process is gone."""
        try:
            proc = psutil.Process(pid)
            with proc.oneshot():
                # Whole seconds: the JSON shape and the record keep seconds, and an owner
                # read back from the record must equal the same owner sampled live.
                started = datetime.fromtimestamp(int(proc.create_time()), timezone.utc)
                start = start_of(pid, proc)  # exact: the stop guard compares it
                cached = self._cache.get(pid)
                if cached is not None and (cached.started_at, cached.start) == (started, start):
                    return cached
                uids = _denied(proc.uids)
                uid = uids.real if uids is not None else None
                cmdline = _denied(proc.cmdline)
                owner = Owner(
                    pid=pid,
                    uid=uid,
                    name=_denied(proc.name) or None,
                    started_at=started,
                    exe=_denied(proc.exe) or None,
                    cmdline=tuple(cmdline) if cmdline else None,
                    user=user_name(uid),
                    ppid=_denied(proc.ppid),
                    start=start,
                )
        except psutil.NoSuchProcess:
            self._cache.pop(pid, None)
            return None
        except psutil.AccessDenied:
            owner = Owner(pid=pid, uid=None)
        self._cache[pid] = owner
        return owner

    def __len__(self) -> int:
        return len(self._cache)
