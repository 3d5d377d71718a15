"""Errors with fields, one hierarchy. Imports: the standard library only."""

from __future__ import annotations


class PortbellError(Exception):
    """Base of every error portbell raises on purpose; its message is for the user."""


class SampleError(PortbellError):
    """A sample could not be taken. Never treated as an empty sample."""

    def __init__(self, message: str, *, sampler: str = "") -> None:
        super().__init__(message)
        self.sampler = sampler


class UsageError(PortbellError):
    """Bad input on the command line: exit code 2."""


class EngineError(PortbellError):
    """The Docker or Podman Engine API could not be asked (absent, denied, slow, or not answering JSON)."""

    def __init__(self, message: str, *, path: str = "", denied: bool = False) -> None:
        super().__init__(message)
        self.path = path
        self.denied = denied
