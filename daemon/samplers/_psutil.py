"""Portable sampler: psutil. Imports: psutil, daemon.model, daemon.classify, daemon.snapshot, _owners.

For macOS, Windows, the BSDs, and Linux without netlink. Known limits, kept
visible rather than papered over:
- psutil names one pid per socket: the workers sharing nginx's listening socket
  show up as whichever process psutil met first;
- it cannot see IPV6_V6ONLY, so `::` is never called dual-stack here;
- it does not report a socket's uid, so an owner it cannot see has uid null.
Where the system-wide call is denied (macOS without root), it asks each
process it may inspect and marks the snapshot partial.
"""

from __future__ import annotations

import os
import socket
import time
from datetime import datetime, timezone
from typing import Callable, Iterable

import psutil

from ..addresses import classify
from ..errors import SampleError
from ..model import Listener, Owner, Snapshot, Transport, sort_owners
from ..snapshot import merge
from ._owners import OwnerReader, unknown_owner


def _is_listener(conn) -> bool:
    if conn.type == socket.SOCK_STREAM:
        return conn.status == psutil.CONN_LISTEN
    return conn.type == socket.SOCK_DGRAM and not conn.raddr and bool(conn.laddr)


class PsutilSampler:
    name = "psutil"

    def __init__(self, *, clock: Callable[[], datetime] | None = None) -> None:
        self._clock = clock or (lambda: datetime.now(timezone.utc))
        self._owners = OwnerReader()

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def sample(self) -> Snapshot:
        started = time.perf_counter()
        try:
            conns = [(c.pid, c) for c in psutil.net_connections(kind="inet") if _is_listener(c)]
            complete = os.name == "nt" or os.geteuid() == 0 or all(pid is not None for pid, _ in conns)
        except psutil.AccessDenied:
            conns = [(pid, c) for pid, c in self._per_process() if _is_listener(c)]
            complete = False
        except OSError as err:
            raise SampleError(f"psutil could not list sockets: {err}", sampler=self.name) from err
        owners: dict[int, Owner | None] = {}  # one read per process per sample, however many sockets
        for pid, _ in conns:
            if pid and pid not in owners:
                owners[pid] = self._owners.read(pid)
        listeners = merge(self._listener(owners.get(pid), c) for pid, c in conns)
        return Snapshot(
            listeners,
            self._clock(),
            complete=complete,
            sampler=self.name,
            duration_s=time.perf_counter() - started,
        )

    def _per_process(self) -> Iterable[tuple[int, object]]:
        for proc in psutil.process_iter():
            try:
                for conn in proc.net_connections(kind="inet"):
                    yield proc.pid, conn
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue

    def _listener(self, owner: Owner | None, conn) -> Listener:
        address, port = conn.laddr.ip, conn.laddr.port
        family = 6 if conn.family == socket.AF_INET6 else 4
        return Listener(
            Transport.TCP if conn.type == socket.SOCK_STREAM else Transport.UDP,
            family,
            address,
            port,
            classify(address),
            False,
            sort_owners([owner]) if owner else (unknown_owner(None),),
        )
