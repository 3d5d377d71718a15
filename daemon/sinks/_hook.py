"""Run a program for each event.

`argv` is a list run as is, never through a shell. The program gets the
record's JSON (`Recorded.to_dict()`: the `events --json` line with `id`,
`alert`, `reason`, `baseline`, `found_at_start`) on stdin, followed by a
newline, and a few facts in its environment for scripts that would rather not
parse JSON: PORTBELL_EVENT_ID, PORTBELL_EVENT_KIND, PORTBELL_ALERT (1/0),
PORTBELL_TRANSPORT, PORTBELL_ADDRESS, PORTBELL_PORT, PORTBELL_EXPOSURE,
PORTBELL_PID (empty when unknown). Its stdout is discarded; the end of its
stderr is logged when it fails.

`emit` only queues: background threads run the program, at most
`max_concurrent` at once, so the poll loop never waits for a hook. At most
`max_queued` runs wait (`room()` tells the Dispatcher how many more it takes);
the rest waits in the record, after the hook's cursor, and nothing is dropped.
`done_through()` says how far every run has finished, so a run still waiting
or going when the daemon stops or is killed is run again at the next start: the
hook sees every record at least once. A run that outlives `timeout_s` is
killed with its whole process group (the hook runs in a session of its own)
and logged; it counts as delivered (it had its stdin), so a hook that always
hangs is not run again and again. With `only_alerts` (the default) only records
the policy alerts on run the hook.

Only the last STDERR_TAIL bytes of what a run prints on stderr are kept (a hook
that prints gigabytes costs nothing); stdout goes to /dev/null.

`emit` raises SinkError when the program cannot be found, so the Dispatcher
keeps the records and retries once it is installed; failures of a run are
logged here (once per streak of failures), since the loop has moved on.
`close` takes no more runs, lets running hooks finish for a moment, then kills
them; what did not finish stays owed.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import threading
from collections import deque
from typing import Sequence

from ..model import Recorded, Snapshot
from ._common import SinkError, first_owner

log = logging.getLogger("portbell.sinks")

CLOSE_GRACE_S = 3.0
STDERR_TAIL = 300


def _environment(record: Recorded) -> dict[str, str]:
    li = record.event.listener
    owner = first_owner(li)
    pid = owner.pid if owner else None
    return {
        **os.environ,
        "PORTBELL_EVENT_ID": str(record.id),
        "PORTBELL_EVENT_KIND": str(record.event.kind),
        "PORTBELL_ALERT": "1" if record.alert else "0",
        "PORTBELL_TRANSPORT": str(li.transport),
        "PORTBELL_ADDRESS": li.address,
        "PORTBELL_PORT": str(li.port),
        "PORTBELL_EXPOSURE": str(li.exposure),
        "PORTBELL_PID": "" if pid is None else str(pid),
    }


class HookSink:
    name = "hook"

    def __init__(
        self,
        argv: Sequence[str],
        *,
        timeout_s: float = 10.0,
        max_concurrent: int = 4,
        only_alerts: bool = True,
        max_queued: int = 1000,
    ) -> None:
        if not argv or isinstance(argv, str):
            raise ValueError("argv must be a non-empty list of strings")
        self.argv = tuple(argv)
        self.timeout_s = timeout_s
        self.max_concurrent = max_concurrent
        self.only_alerts = only_alerts
        self.max_queued = max_queued
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._queue: deque[Recorded] = deque()
        self._undone: set[int] = set()  # ids queued or running, not yet finished
        self._workers = 0
        self._procs: set[subprocess.Popen[bytes]] = set()
        self._closed = False
        self._failing = 0
        # counters, for status and tests
        self.started = 0
        self.succeeded = 0
        self.failed = 0
        self.timeouts = 0

    @property
    def running(self) -> int:
        with self._lock:
            return len(self._procs)

    @property
    def queued(self) -> int:
        with self._lock:
            return len(self._queue)

    def room(self) -> int:
        """How many more records `emit` takes now (the rest waits in the record)."""
        with self._lock:
            return max(self.max_queued - len(self._queue), 0)

    def done_through(self, sent: int) -> int:
        """The id through which every run this sink was given has finished."""
        with self._lock:
            return min(self._undone) - 1 if self._undone else sent

    def emit(self, records: Sequence[Recorded], snapshot: Snapshot | None) -> None:
        wanted = [r for r in records if r.alert or not self.only_alerts]
        if not wanted:
            return
        if shutil.which(self.argv[0]) is None:
            raise SinkError(f"hook program {self.argv[0]!r} not found or not executable", sink=self.name, path=self.argv[0])
        with self._lock:
            if self._closed:
                raise SinkError("hook sink is closed", sink=self.name)
            self._queue.extend(wanted)
            self._undone.update(r.id for r in wanted)
            for _ in range(min(self.max_concurrent - self._workers, len(self._queue))):
                self._workers += 1
                threading.Thread(target=self._work, name="portbell-hook", daemon=True).start()

    def _work(self) -> None:
        while True:
            with self._lock:
                if self._closed or not self._queue:
                    self._workers -= 1
                    self._changed.notify_all()
                    return
                record = self._queue.popleft()
            done = True
            try:
                done = self._run(record)
            except Exception:  # a worker must never die with work left: log and go on
                log.exception("hook: unexpected error running event %d", record.id)
            if done:
                with self._lock:
                    self._undone.discard(record.id)

    def _run(self, record: Recorded) -> bool:
        """One run; False when it was cut short by close() (then it is still owed)."""
        payload = (json.dumps(record.to_dict()) + "\n").encode("utf-8")
        try:
            proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                env=_environment(record),
                close_fds=True,
                start_new_session=os.name == "posix",
            )
        except OSError as err:
            self._failed(record, f"could not start: {err}")
            return True
        with self._lock:
            self._procs.add(proc)
            self.started += 1
            closed = self._closed
        try:
            if closed:  # close() ran while we were starting it
                self._kill(proc)
            tail, timed_out = _talk(proc, payload, self.timeout_s)
            if timed_out:
                self._kill(proc)
                self._reap(proc)
                with self._lock:
                    self.timeouts += 1
                    closed = self._closed
                if closed:
                    return False
                log.warning("hook %s ran past its %gs timeout for event %d: killed", self.argv[0], self.timeout_s, record.id)
                return True
        finally:
            with self._lock:
                self._procs.discard(proc)
                self._changed.notify_all()
        if proc.returncode != 0:
            with self._lock:
                if self._closed:
                    return False  # killed by close(): it runs again at the next start
            text = tail.decode("utf-8", "replace").strip()
            self._failed(record, f"exited with status {proc.returncode}" + (f": {text}" if text else ""))
            return True
        with self._lock:
            self.succeeded += 1
            failing, self._failing = self._failing, 0
        if failing:
            log.info("hook %s works again after %d failed runs", self.argv[0], failing)
        return True

    def _failed(self, record: Recorded, why: str) -> None:
        with self._lock:
            self.failed += 1
            self._failing += 1
            first = self._failing == 1
        if first:
            log.warning("hook %s failed for event %d: %s (further failures logged at debug level)", self.argv[0], record.id, why)
        else:
            log.debug("hook %s failed for event %d: %s", self.argv[0], record.id, why)

    @staticmethod
    def _kill(proc: subprocess.Popen[bytes]) -> None:
        try:
            if os.name == "posix":
                os.killpg(proc.pid, signal.SIGKILL)  # its own session: children of the hook go too
            else:
                proc.kill()
        except (ProcessLookupError, PermissionError):
            pass

    @staticmethod
    def _reap(proc: subprocess.Popen[bytes]) -> None:
        try:
            proc.wait(timeout=2.0)
        except subprocess.TimeoutExpired:
            pass
        for pipe in (proc.stdin, proc.stderr):  # a grandchild that left the group may keep one open
            if pipe is not None:
                try:
                    pipe.close()
                except OSError:
                    pass

    def close(self) -> None:
        with self._lock:
            self._closed = True
            waiting = len(self._queue)
            self._queue.clear()  # still in _undone: owed, and run at the next start
            done = self._changed.wait_for(lambda: self._workers == 0, timeout=min(self.timeout_s, CLOSE_GRACE_S))
            procs = list(self._procs)
        if waiting:
            log.warning("hook: %d runs still waiting at shutdown stay in the record and run at the next start", waiting)
        if not done:
            for proc in procs:
                self._kill(proc)
            log.warning("hook: killed %d runs still going at shutdown (they run again at the next start)", len(procs))
            with self._lock:
                self._changed.wait_for(lambda: self._workers == 0, timeout=CLOSE_GRACE_S)


def _talk(proc: subprocess.Popen[bytes], payload: bytes, timeout_s: float) -> tuple[bytes, bool]:
    """Feed stdin, keep only the last STDERR_TAIL bytes of stderr, wait up to `timeout_s`.
    Returns (the tail, whether it timed out)."""
    tail = bytearray()

    def feed() -> None:
        try:
            proc.stdin.write(payload)
            proc.stdin.close()
        except (OSError, ValueError):  # the hook did not read its stdin, or was killed
            pass

    def drain() -> None:
        try:
            while chunk := proc.stderr.read1(65536):
                tail.extend(chunk)
                del tail[:-STDERR_TAIL]
        except (OSError, ValueError):
            pass

    threads = [threading.Thread(target=f, daemon=True, name="portbell-hook-io") for f in (feed, drain)]
    for t in threads:
        t.start()
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return bytes(tail), True
    threads[1].join(timeout=1.0)  # a grandchild holding stderr open does not hold us
    return bytes(tail), False
