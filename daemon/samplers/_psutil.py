"""Portable sampler: psutil.

For macOS, Windows, the BSDs, and Linux without netlink. Known limits, kept
visible rather than papered over:
- psutil names one pid per socket: the workers sharing nginx's listening socket
  show up as whichever process psutil met first;
- it cannot see IPV6_V6ONLY, so `::` is never called dual-stack here;
- it does not report a socket's uid, so an owner it cannot see has uid null.
Where the system-wide call is denied (macOS without root), it asks each
process it may inspect and marks the snapshot partial.

Units: on Windows, the services a listening process hosts (svchost's, by pid,
from `psutil.win_service_iter()`), asked again only when the set of listening
pids changes; elsewhere psutil knows no cgroup, so `unit` stays None. Owners
here are read from the descriptors (`via="fd"`); a forwarder's listener carries
its target when its command line says it.
"""

from __future__ import annotations

import os
import socket
import time
from datetime import datetime, timezone
from typing import Callable, Iterable

import psutil

from ..errors import SampleError
from ..model import Listener, Owner, Snapshot, Transport, Unit, UnitKind, replace
from ..snapshot import merge
from ._owners import OwnerReader, listener_of

ServiceList = Callable[[], Iterable[tuple[str, int | None]]]


def windows_services() -> Iterable[tuple[str, int | None]]:
    """(service name, pid or None when stopped) for every Windows service."""
    for service in psutil.win_service_iter():
        try:
            yield service.name(), service.pid()
        except (psutil.NoSuchProcess, psutil.AccessDenied, OSError):
            continue


def services_by_pid(services: Iterable[tuple[str, int | None]]) -> dict[int, tuple[str, ...]]:
    out: dict[int, list[str]] = {}
    for name, pid in services:
        if pid:
            out.setdefault(pid, []).append(name)
    return {pid: tuple(sorted(names, key=str.lower)) for pid, names in out.items()}


def service_unit(names: tuple[str, ...]) -> Unit | None:
    """The unit of a process hosting these services: the first by name, all of them in `services`."""
    if not names:
        return None
    return Unit(UnitKind.WINDOWS_SERVICE, names[0], services=names if len(names) > 1 else ())


def _is_listener(conn, ports: frozenset[int] | None = None) -> bool:
    if ports is not None and (not conn.laddr or conn.laddr.port not in ports):
        return False
    if conn.type == socket.SOCK_STREAM:
        return conn.status == psutil.CONN_LISTEN
    return conn.type == socket.SOCK_DGRAM and not conn.raddr and bool(conn.laddr)


class PsutilSampler:
    name = "psutil"

    def __init__(self, *, clock: Callable[[], datetime] | None = None, services: ServiceList | None = None) -> None:
        self._clock = clock or (lambda: datetime.now(timezone.utc))
        self._owners = OwnerReader()
        self._services = services if services is not None else (windows_services if os.name == "nt" else None)
        self._service_pids: frozenset[int] | None = None
        self._by_pid: dict[int, tuple[str, ...]] = {}
        self.notes: list[str] = []

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def sample(self, ports: frozenset[int] | None = None) -> Snapshot:
        """Every listener; with `ports`, only those on these ports (whose owners alone are read)."""
        started = time.perf_counter()
        try:
            conns = [(c.pid, c) for c in psutil.net_connections(kind="inet") if _is_listener(c, ports)]
            complete = os.name == "nt" or os.geteuid() == 0 or all(pid is not None for pid, _ in conns)
        except psutil.AccessDenied:
            conns = [(pid, c) for pid, c in self._per_process() if _is_listener(c, ports)]
            complete = False
        except OSError as err:
            raise SampleError(f"psutil could not list sockets: {err}", sampler=self.name) from err
        owners: dict[int, Owner | None] = {}  # one read per process per sample, however many sockets
        for pid, _ in conns:
            if pid and pid not in owners:
                owner = self._owners.read(pid)
                owners[pid] = replace(owner, via="fd") if owner is not None else None
        self._refresh_services(frozenset(owners))
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

    def _refresh_services(self, pids: frozenset[int]) -> None:
        """pid -> hosted services, asked again only when the listening pids changed."""
        if self._services is None or pids == self._service_pids:
            return
        self._service_pids = pids
        try:
            self._by_pid = services_by_pid(self._services())
        except (OSError, psutil.Error) as err:
            self._by_pid = {}
            self.notes = [f"the Windows services could not be listed ({err}), so listeners have no service name"]
        else:
            self.notes = []

    def _listener(self, owner: Owner | None, conn) -> Listener:
        address, port = conn.laddr.ip, conn.laddr.port
        family = 6 if conn.family == socket.AF_INET6 else 4
        transport = Transport.TCP if conn.type == socket.SOCK_STREAM else Transport.UDP
        unit = service_unit(self._by_pid.get(owner.pid, ())) if owner is not None and owner.pid else None
        return listener_of(transport, family, address, port, [owner] if owner else [], uid=None, v6only=None, unit=unit)
