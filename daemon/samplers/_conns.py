"""Connected sockets on a port, for `portbell who` on a client port.

Not a listener view: this asks for every inet socket (psutil.net_connections),
which costs what psutil costs, so only a one-off command calls it, never the
poll loop. Listening TCP sockets and unconnected UDP sockets are left out.
"""

from __future__ import annotations

import socket
from typing import NamedTuple

import psutil

from ..errors import SampleError


class Connection(NamedTuple):
    transport: str  # "tcp" or "udp"
    local_address: str
    local_port: int
    remote_address: str
    remote_port: int
    status: str  # psutil's words: ESTABLISHED, TIME_WAIT, ... ("NONE" for a connected UDP socket)
    pid: int | None
    name: str | None


def _name(pid: int | None, cache: dict[int, str | None]) -> str | None:
    if pid is None:
        return None
    if pid not in cache:
        try:
            cache[pid] = psutil.Process(pid).name() or None
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            cache[pid] = None
    return cache[pid]


def connections_on(port: int) -> list[Connection]:
    """Connected sockets whose local or remote port is `port`, sorted by local endpoint."""
    try:
        conns = psutil.net_connections(kind="inet")
    except psutil.AccessDenied as err:
        raise SampleError("listing connections needs more privileges here", sampler="psutil") from err
    except OSError as err:
        raise SampleError(f"psutil could not list connections: {err}", sampler="psutil") from err
    names: dict[int, str | None] = {}
    out: list[Connection] = []
    for c in conns:
        if not c.raddr or not c.laddr or c.status == psutil.CONN_LISTEN:
            continue
        if port not in (c.laddr.port, c.raddr.port):
            continue
        out.append(
            Connection(
                "tcp" if c.type == socket.SOCK_STREAM else "udp",
                c.laddr.ip,
                c.laddr.port,
                c.raddr.ip,
                c.raddr.port,
                c.status,
                c.pid,
                _name(c.pid, names),
            )
        )
    return sorted(out, key=lambda c: (c.local_port != port, c.transport, c.local_address, c.local_port, c.remote_port))
