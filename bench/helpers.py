"""Starting, talking to and stopping the load processes of bench/load.py. Imports: the standard library.

Each helper runs in a new session, so it leads its own process group and a
terminal's Ctrl-C reaches only the benchmark, which then tears the helpers down
in order. Teardown is polite first (close the helper's stdin: it closes its
sockets and reaps its own children), then a SIGKILL to the whole group, sent
while the helper is still unreaped so the group id cannot belong to anyone else.
Only the benchmark holds the write end of a helper's stdin, so even a SIGKILL of
the benchmark ends every helper: each reads end of file and tears itself down.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

LOAD = Path(__file__).resolve().parent / "load.py"

_live: dict[int, "Helper"] = {}  # pid -> helper not yet stopped
_groups: set[int] = set()  # every process group a helper ever led, for the leftover check


class HelperError(RuntimeError):
    """A load process failed, said something unexpected, or was too slow."""


class Helper:
    def __init__(self, role: str, *args: object) -> None:
        self.role = role
        # -I -S: no site-packages and no user paths, so the helper starts in a few ms
        # and depends on nothing but the standard library.
        self.proc = subprocess.Popen(
            [sys.executable, "-I", "-S", str(LOAD), role, *map(str, args)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            start_new_session=True,
        )
        self.pid = self.proc.pid
        self._pending = b""
        _live[self.pid] = self
        _groups.add(self.pid)

    def __repr__(self) -> str:
        return f"{self.role} helper (pid {self.pid})"

    def expect(self, first: str, timeout_s: float = 60.0) -> list[str]:
        """Read the next line; it must start with `first`. Returns the words after it."""
        words = self._read_line(timeout_s)
        if not words or words[0] != first:
            raise HelperError(f"{self} said {' '.join(words)!r}, expected {first!r}")
        return words[1:]

    def ask(self, command: str, reply: str, timeout_s: float = 10.0) -> list[str]:
        self.proc.stdin.write(command.encode() + b"\n")
        self.proc.stdin.flush()
        return self.expect(reply, timeout_s)

    def _read_line(self, timeout_s: float) -> list[str]:
        # select + os.read rather than readline, so a stuck helper cannot hang the run.
        deadline = time.monotonic() + timeout_s
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._pending:
            left = deadline - time.monotonic()
            if left <= 0:
                raise HelperError(f"{self} said nothing within {timeout_s:g} s")
            readable, _, _ = select.select([fd], [], [], left)
            if not readable:
                continue
            chunk = os.read(fd, 4096)
            if not chunk:
                raise HelperError(f"{self} exited early (status {self.proc.wait()})")
            self._pending += chunk
        line, _, self._pending = self._pending.partition(b"\n")
        words = line.decode(errors="replace").split()
        if words and words[0] == "error":
            raise HelperError(f"{self}: {' '.join(words[1:])}")
        return words

    def stop(self, timeout_s: float = 20.0) -> None:
        if _live.pop(self.pid, None) is None:
            return
        try:
            self.proc.stdin.close()
        except OSError:  # it died already: the pipe is broken
            pass
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(self.pid)  # still unreaped, so this group id is still ours
            self.proc.wait()
        self.proc.stdout.close()


def started_pids() -> frozenset[int]:
    """Every helper the benchmark started (each also leads its own process group)."""
    return frozenset(_groups)


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def stop_all() -> None:
    """Last-resort teardown (atexit, or after an error): newest helper first."""
    for helper in reversed(list(_live.values())):
        try:
            helper.stop(timeout_s=5.0)
        except Exception as err:  # keep stopping the others
            print(f"bench: could not stop {helper}: {err}", file=sys.stderr)


def leftovers(timeout_s: float = 5.0) -> list[int]:
    """Pids still in any group a helper led; waits a little, since orphans exit on their own
    once their pipe closes and pid 1 reaps them asynchronously."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = [pid for pid, pgid in _process_groups() if pgid in _groups]
        if not found or time.monotonic() >= deadline:
            return found
        time.sleep(0.05)


def _process_groups() -> list[tuple[int, int]]:
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                data = f.read()
        except OSError:  # exited while we looked
            continue
        fields = data[data.rfind(b")") + 2 :].split()
        out.append((int(name), int(fields[2])))  # state, ppid, pgrp
    return out
