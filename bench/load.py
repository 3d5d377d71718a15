"""The child side of the benchmark: processes that create the load. Imports: the standard library.

Run as `python -I -S bench/load.py ROLE ARGS...` by helpers.py, never imported by
portbell. Every role speaks the same small protocol on its standard streams:

- it builds its load, then writes one line `ready WORDS...` (or `error TEXT`) to stdout;
- it then answers command lines read from stdin (only the `veteran` role has any);
- end of stdin means "tear down": it closes what it opened, reaps its own children,
  and exits 0. The parent relies on this for a clean teardown and keeps a SIGKILL of
  the whole process group as the fallback.

All sockets are on 127.0.0.1. Established connections set SO_LINGER to zero so that
closing them sends a reset instead of leaving thousands of TIME_WAIT entries behind,
which would inflate /proc/net/tcp, and so psutil's cost, at the next scale.
"""

from __future__ import annotations

import os
import resource
import socket
import struct
import sys

LOOPBACK = "127.0.0.1"
_LINGER_OFF = struct.pack("ii", 1, 0)  # l_onoff=1, l_linger=0: close() resets


def say(*words: object) -> None:
    sys.stdout.write(" ".join(str(w) for w in words) + "\n")
    sys.stdout.flush()


def wait_for_eof() -> None:
    """Block until the parent closes our stdin, answering nothing in between."""
    while sys.stdin.readline():
        pass


def raise_fd_limit(wanted: int) -> None:
    """Lift RLIMIT_NOFILE to `wanted` (we run as root, so the hard limit may rise too)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted:
        return
    new_hard = hard if hard == resource.RLIM_INFINITY or hard >= wanted else wanted
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, new_hard))


def listen_on_loopback(backlog: int = 16) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((LOOPBACK, 0))
    sock.listen(backlog)
    return sock


def role_listen() -> None:
    """One listener in a brand-new process: what the attribution measurement looks for."""
    sock = listen_on_loopback()
    say("ready", sock.getsockname()[1])
    wait_for_eof()
    sock.close()


def role_listeners(count: str) -> None:
    """`count` listening sockets held by this one process."""
    n = int(count)
    raise_fd_limit(n + 64)
    socks = [listen_on_loopback() for _ in range(n)]
    say("ready", len(socks))
    wait_for_eof()
    for sock in socks:
        sock.close()


def role_server(count: str) -> None:
    """Accept `count` connections, then close the listening socket so that only
    established sockets remain (the listener count stays as on the idle machine)."""
    n = int(count)
    raise_fd_limit(n + 64)
    server = listen_on_loopback(backlog=4096)
    say("listening", server.getsockname()[1])
    conns = []
    while len(conns) < n:
        conn, _ = server.accept()
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_OFF)
        conns.append(conn)
    server.close()
    say("ready", len(conns))
    wait_for_eof()
    for conn in conns:
        conn.close()


def role_client(port: str, count: str) -> None:
    """Open `count` connections to 127.0.0.1:`port` and hold them."""
    n = int(count)
    raise_fd_limit(n + 64)
    conns = []
    for _ in range(n):
        conn = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_OFF)
        conn.connect((LOOPBACK, int(port)))
        conns.append(conn)
    say("ready", len(conns))
    wait_for_eof()
    for conn in conns:
        conn.close()


def _hold_descriptors(control: int, total: int) -> None:
    """In a forked child: keep only `control`, open pipes and unbound sockets up to
    `total` descriptors, and block until the control pipe reports end of file."""
    os.closerange(0, control)
    os.closerange(control + 1, 1 << 16)
    held = 1  # the control pipe
    while held + 2 <= total // 2:  # about half pipes...
        os.pipe()
        held += 2
    kinds = (socket.SOCK_STREAM, socket.SOCK_DGRAM)
    while held < total:  # ...the rest unbound sockets, which no socket table lists
        socket.socket(socket.AF_INET, kinds[held % 2]).detach()
        held += 1
    while True:
        try:
            if not os.read(control, 1):
                break
        except InterruptedError:
            continue
    os._exit(0)


def role_processes(count: str, fds: str) -> None:
    """Fork `count` children, each holding `fds` descriptors, blocked on one pipe.

    Forking from this small interpreter is cheap (copy-on-write); closing the
    pipe's write end, here or by our death, wakes every child to exit.
    """
    n, total = int(count), int(fds)
    control, release = os.pipe()
    kids = []
    for _ in range(n):
        pid = os.fork()
        if pid == 0:
            try:  # never let a child fall back into the parent's code
                os.close(release)
                _hold_descriptors(control, total)
            finally:
                os._exit(1)
        kids.append(pid)
    os.close(control)
    say("ready", *kids)
    wait_for_eof()
    os.close(release)
    for pid in kids:
        os.waitpid(pid, 0)


def role_veteran() -> None:
    """A process started before the load that opens listeners on demand: the case
    the newest-first search does not favour. Commands: `open` -> `port P`, `close`."""
    opened: list[socket.socket] = []
    say("ready", os.getpid())
    for line in sys.stdin:
        command = line.strip()
        if command == "open":
            opened.append(listen_on_loopback())
            say("port", opened[-1].getsockname()[1])
        elif command == "close":
            for sock in opened:
                sock.close()
            opened.clear()
            say("closed")
        else:
            say("error", "unknown command", repr(command))
    for sock in opened:
        sock.close()


ROLES = {
    "listen": role_listen,
    "listeners": role_listeners,
    "server": role_server,
    "client": role_client,
    "processes": role_processes,
    "veteran": role_veteran,
}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ROLES:
        say("error", "usage: load.py", "|".join(ROLES), "ARGS...")
        return 2
    try:
        ROLES[argv[0]](*argv[1:])
    except (OSError, TypeError, ValueError) as err:
        say("error", f"{argv[0]}: {err}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
