"""osquery's `listening_ports` rows for the JSON lines sink (`format = "osquery"`).

osquery's table (specs/listening_ports.table) has these columns, and a row per
process descriptor holding a listening socket. Every value is a string, as
osquery logs them with `numerics: false`; the keys come in osquery's order
(a row is a sorted map there):

    address        the bound address: "0.0.0.0", "::", "127.0.0.1"
    family         the OS's address family number: AF_INET (2) or AF_INET6 (10 on Linux)
    fd             the descriptor number in that process: "-1" (see below)
    net_namespace  Linux only (osquery's extended schema): the network namespace's inode,
                   /proc/self/ns/net's (portbell sees the sockets of its own namespace)
    path           a UNIX socket's path: always "" (portbell watches inet sockets only)
    pid            the process; "-1" when nobody visible holds it (osquery's value too)
    port           the bound port
    protocol       the IP protocol number: 6 (TCP) or 17 (UDP)
    socket         the socket's inode: "-1" (see below)

A listener held by several processes (a forked server, nginx's workers) is a
row per process, as in osquery. portbell keys a listener by (transport,
address, port), not by socket, and keeps neither descriptor numbers nor socket
inodes, so `fd` and `socket` are "-1", the value osquery itself gives a
descriptor it could not attribute. Filter on pid, port, address and protocol.

Differential semantics: osquery logs the rows that differ between two runs.
`opened` adds every row of the listener, `closed` removes them, and `changed`
removes only the rows that went away and adds only the rows that are new (a
second worker joining adds one row; a change only osquery's columns cannot
see, such as IPV6_V6ONLY, logs nothing in this format).
"""

from __future__ import annotations

import os
import socket

from ..model import EventKind, Listener, Recorded, Transport

PROTOCOLS = {Transport.TCP: socket.IPPROTO_TCP, Transport.UDP: socket.IPPROTO_UDP}
FAMILIES = {4: int(socket.AF_INET), 6: int(socket.AF_INET6)}
UNKNOWN = "-1"


def net_namespace() -> str | None:
    """The inode of this process's network namespace; None where there is none (not Linux)."""
    try:
        return str(os.stat("/proc/self/ns/net").st_ino)
    except OSError:
        return None


def rows(listener: Listener, netns: str | None) -> list[dict[str, str]]:
    """One row per visible process holding the listener (one with pid -1 when none is visible)."""
    pids = sorted({o.pid for o in listener.owners if o.pid is not None})
    if not pids or any(o.pid is None for o in listener.owners):
        pids.append(-1)
    base = {
        "address": listener.address,
        "family": str(FAMILIES[listener.family]),
        "fd": UNKNOWN,
        "path": "",
        "port": str(listener.port),
        "protocol": str(PROTOCOLS[listener.transport]),
        "socket": UNKNOWN,
    }
    if netns is not None:
        base["net_namespace"] = netns
    return [dict(sorted({**base, "pid": str(pid)}.items())) for pid in pids]


def changes(record: Recorded, netns: str | None) -> list[tuple[str, dict[str, str]]]:
    """(action, columns) in osquery's order: what went away first, then what is new."""
    ev = record.event
    now = rows(ev.listener, netns)
    if ev.kind is EventKind.OPENED:
        return [("added", r) for r in now]
    if ev.kind is EventKind.CLOSED:
        return [("removed", r) for r in now]
    before = rows(ev.previous, netns) if ev.previous is not None else []
    return [("removed", r) for r in before if r not in now] + [("added", r) for r in now if r not in before]
