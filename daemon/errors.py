"""Every exception portbell raises on purpose, under one base, with the fields a caller needs."""

from __future__ import annotations

from pathlib import Path, PurePath
from collections.abc import Sequence


class PortbellError(Exception):
    """Base of every error portbell raises on purpose; its message is for the user."""


class SampleError(PortbellError):
    """A sample could not be taken. Never treated as an empty sample."""

    def __init__(self, message: str, *, sampler: str = "") -> None:
        super().__init__(message)
        self.sampler = sampler


class UsageError(PortbellError):
    """Bad input on the command line: exit code 2."""


class ConfigError(UsageError):
    """Bad configuration: exit 2, every problem listed (each a config.Problem with file, line, key)."""

    def __init__(self, problems: list) -> None:
        super().__init__("\n".join(map(str, problems)))
        self.problems = problems


class StoreError(PortbellError):
    """The record cannot be opened or used; the message says why and what to do."""

    def __init__(self, message: str, *, path: Path | None = None) -> None:
        super().__init__(message)
        self.path = path


class UnwritableDir(StoreError):
    """A folder portbell must keep its files in cannot be created (HOME unset or not writable, a read-only disk)."""

    def __init__(self, folder: Path, err: OSError) -> None:
        super().__init__(
            f"cannot create the state directory {folder} ({err.strerror or err}): make it writable, "
            "or point PORTBELL_STATE_DIR at a directory this user may write",
            path=folder,
        )


class ForeignFile(PortbellError):
    """The file at the record's path is not a usable portbell database (the writer moves it aside)."""


class AlreadyRunning(PortbellError):
    """Another daemon holds the instance lock."""

    def __init__(self, pid: int | None, path: Path) -> None:
        who = f"pid {pid}" if pid else "another process"
        super().__init__(f"portbell daemon is already running ({who} holds {path})")
        self.pid = pid
        self.path = path


class SinkError(PortbellError):
    """A sink could not deliver; the Dispatcher keeps the undelivered records and retries later.

    A sink that delivered part of a batch before failing says how much in `delivered`, so the
    Dispatcher retries only the rest and nothing is written twice."""

    def __init__(self, message: str, *, sink: str = "", path: str | None = None, delivered: int = 0) -> None:
        super().__init__(message)
        self.sink = sink
        self.path = path
        self.delivered = delivered  # how many records of the batch did get through, in order


class AutostartError(PortbellError):
    """An entry could not be written or removed. `done`: what was changed before the refusal."""

    def __init__(self, message: str, *, path: PurePath | None = None, done: Sequence[PurePath] = ()) -> None:
        super().__init__(message)
        self.path = path
        self.done = list(done)


class Unavailable(PortbellError):
    """No program or service for this here (a clipboard tool, an opener); the message says what to install."""


class EngineError(PortbellError):
    """The Docker or Podman Engine API could not be asked (absent, denied, slow, or not answering JSON)."""

    def __init__(self, message: str, *, path: str = "", denied: bool = False) -> None:
        super().__init__(message)
        self.path = path
        self.denied = denied
