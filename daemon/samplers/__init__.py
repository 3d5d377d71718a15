"""The one place that picks a sampler. Callers never test the platform.

A sampler has `name`, `sample(ports=None) -> Snapshot` (raises SampleError, never returns
an empty snapshot for a failure; `ports`: only the listeners on these ports, whose owners alone
are looked up, which is what `portbell who` asks), `close()`, and `notes`: sentences saying what
its view is missing and why (no cgroup v2 hierarchy, no Engine API), for `status`. Candidates are tried in order;
the reasons the better ones were unavailable are kept for `portbell status`.
"""

from __future__ import annotations

from ..errors import SampleError
from ..model import Owner, Snapshot

TYPE_CHECKING = False  # typing costs 2 ms of every `portbell who`: the protocol is for type checkers
if TYPE_CHECKING:
    from typing import Protocol
else:
    Protocol = object

NAMES = ("sockdiag", "psutil")


class Sampler(Protocol):
    name: str
    notes: list[str]

    def sample(self, ports: frozenset[int] | None = None) -> Snapshot: ...

    def close(self) -> None: ...


def create(name: str) -> Sampler:
    if name == "sockdiag":
        import sys

        if not sys.platform.startswith("linux"):
            raise SampleError("sock_diag is Linux only", sampler=name)
        from ._sockdiag import SockDiagSampler

        return SockDiagSampler()
    if name == "psutil":
        from ._psutil import PsutilSampler

        return PsutilSampler()
    raise SampleError(f"unknown sampler {name!r} (choose from {', '.join(NAMES)})", sampler=name)


def _working(prefer: str | None, ports: frozenset[int] | None, skipped: list[str]):
    """(sampler, its first snapshot) for each candidate that works, best first; the reasons
    the others did not go into `skipped`."""
    for name in (prefer,) if prefer else NAMES:
        try:
            sampler = create(name)
        except SampleError as err:
            skipped.append(f"{name}: {err}")
            continue
        try:
            snap = sampler.sample(ports)  # prove it works before anyone relies on it
        except SampleError as err:
            sampler.close()
            skipped.append(f"{name}: {err}")
            continue
        yield sampler, snap
    raise SampleError("no sampler works here: " + "; ".join(skipped))


def open_sampler(prefer: str | None = None) -> tuple[Sampler, list[str]]:
    """The best sampler that works here, and why any better one was skipped."""
    skipped: list[str] = []
    sampler, _first = next(_working(prefer, None, skipped))
    return sampler, skipped


def sample_once(prefer: str | None = None, ports: frozenset[int] | None = None) -> Snapshot:
    """One snapshot from the best sampler that works here, which is closed again: a command's one
    look (the first sample is the only one, not a proof followed by the real one)."""
    sampler, snap = next(_working(prefer, ports, []))
    sampler.close()
    return snap


def process(pid: int) -> Owner | None:
    """Describe any process (for a listener's parent, say); None when it is gone."""
    from ._owners import OwnerReader

    return OwnerReader().read(pid)


def connections_on(port: int) -> list:
    """Connected sockets (not listeners) whose local or remote port is `port`, as
    `_conns.Connection` tuples; raises SampleError when they cannot be listed."""
    from ._conns import connections_on as on

    return on(port)
