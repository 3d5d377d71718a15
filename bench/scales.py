"""The four machine states the benchmark measures, each built and torn down here.
Imports: the standard library and the sibling helpers module.

Each scale is a context manager: entering starts its helper processes, waits
until the load really exists (and checks it from the outside where the kernel
lets us), and yields a description for the report; leaving stops the helpers
even when the measurement failed.
"""

from __future__ import annotations

import os
from contextlib import ExitStack, contextmanager
from typing import Callable, ContextManager, Iterator

from helpers import Helper

LISTENERS = 1_000
CONNECTIONS = 10_000
PROCESSES = 500
DESCRIPTORS_EACH = 50

TCP_ESTABLISHED = "01"  # the st column of /proc/net/tcp


class ScaleError(RuntimeError):
    """The load could not be built as asked: its numbers would measure the wrong thing."""


def _helper(stack: ExitStack, role: str, *args: object) -> Helper:
    helper = Helper(role, *args)
    stack.callback(helper.stop)
    return helper


@contextmanager
def idle() -> Iterator[dict]:
    yield {"added": "nothing"}


@contextmanager
def listeners() -> Iterator[dict]:
    with ExitStack() as stack:
        holder = _helper(stack, "listeners", LISTENERS)
        (count,) = holder.expect("ready", timeout_s=60)
        if int(count) != LISTENERS:
            raise ScaleError(f"wanted {LISTENERS} listeners, the helper holds {count}")
        yield {"added": f"{LISTENERS} TCP listeners on 127.0.0.1", "holder_pid": holder.pid}


@contextmanager
def established() -> Iterator[dict]:
    with ExitStack() as stack:
        server = _helper(stack, "server", CONNECTIONS)
        (port,) = server.expect("listening", timeout_s=30)
        client = _helper(stack, "client", port, CONNECTIONS)
        client.expect("ready", timeout_s=180)
        server.expect("ready", timeout_s=180)
        # Each connection shows twice in the kernel's table: the client's end and the server's.
        sockets = count_established(int(port))
        if sockets != 2 * CONNECTIONS:
            raise ScaleError(f"wanted {2 * CONNECTIONS} ESTABLISHED sockets on port {port}, found {sockets}")
        yield {
            "added": f"{CONNECTIONS} established loopback TCP connections",
            "established_sockets": sockets,
            "sockstat_tcp": tcp_sockstat(),
            "pids": [server.pid, client.pid],
        }


@contextmanager
def processes() -> Iterator[dict]:
    with ExitStack() as stack:
        parent = _helper(stack, "processes", PROCESSES, DESCRIPTORS_EACH)
        kids = [int(pid) for pid in parent.expect("ready", timeout_s=120)]
        holding = sum(1 for pid in kids if descriptor_count(pid) == DESCRIPTORS_EACH)
        if len(kids) != PROCESSES or holding != PROCESSES:
            raise ScaleError(f"wanted {PROCESSES} processes with {DESCRIPTORS_EACH} fds, {holding} of {len(kids)} have them")
        yield {
            "added": f"{PROCESSES} processes holding {DESCRIPTORS_EACH} descriptors each",
            "verified_processes": holding,
            "parent_pid": parent.pid,
        }


SCALES: dict[str, Callable[[], ContextManager[dict]]] = {
    "idle": idle,
    "listeners": listeners,
    "established": established,
    "processes": processes,
}


def count_established(port: int) -> int:
    """ESTABLISHED IPv4 TCP sockets with `port` at either end, from /proc/net/tcp."""
    suffix = f":{port:04X}"
    count = 0
    with open("/proc/net/tcp") as f:
        next(f)  # header
        for line in f:
            fields = line.split()
            if fields[3] == TCP_ESTABLISHED and (fields[1].endswith(suffix) or fields[2].endswith(suffix)):
                count += 1
    return count


def tcp_sockstat() -> dict[str, int]:
    """The `TCP:` line of /proc/net/sockstat (inuse, orphan, tw, alloc, mem)."""
    with open("/proc/net/sockstat") as f:
        for line in f:
            if line.startswith("TCP:"):
                words = line.split()[1:]
                return {words[i]: int(words[i + 1]) for i in range(0, len(words) - 1, 2)}
    return {}


def descriptor_count(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1
