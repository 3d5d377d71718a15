"""The values everyone shares: transports, exposure, owners, listeners, snapshots, events. Stdlib only.

A listener is identified by its key (transport, local address, port); the
processes that hold it are attributes. Owners compare by identity (pid, create
time, uid, name): exe, command line, user and parent are descriptive and do not
make two owners different, so a diff never reports a command line rewritten by
setproctitle as a new owner.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import StrEnum
from typing import Any, Mapping

SCHEMA_VERSION = 1  # the version of every --json shape


class Transport(StrEnum):
    TCP = "tcp"
    UDP = "udp"


class Exposure(StrEnum):
    """Who can connect, from the bound address. Ordered by concern."""

    LOOPBACK = "loopback"
    LOCAL_NETWORK = "local-network"
    ALL_INTERFACES = "all-interfaces"
    PUBLIC = "public"

    @property
    def rank(self) -> int:
        return _EXPOSURE_ORDER.index(self)

    @property
    def exposed(self) -> bool:
        """Reachable from other machines (anything but loopback)."""
        return self is not Exposure.LOOPBACK


_EXPOSURE_ORDER = (Exposure.LOOPBACK, Exposure.LOCAL_NETWORK, Exposure.ALL_INTERFACES, Exposure.PUBLIC)


class EventKind(StrEnum):
    OPENED = "opened"
    CLOSED = "closed"
    CHANGED = "changed"


def iso(moment: datetime | None) -> str | None:
    """ISO 8601 in UTC with a Z, to the second; None stays None."""
    if moment is None:
        return None
    return moment.astimezone(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def parse_iso(text: str | None) -> datetime | None:
    if text is None:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@dataclass(frozen=True, slots=True)
class Owner:
    """A process holding a listening socket, or the socket's uid alone when no process is visible."""

    pid: int | None
    uid: int | None
    name: str | None = None
    started_at: datetime | None = None  # process create time: the guard against pid reuse
    exe: str | None = field(default=None, compare=False)
    cmdline: tuple[str, ...] | None = field(default=None, compare=False)
    user: str | None = field(default=None, compare=False)
    ppid: int | None = field(default=None, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "pid": self.pid,
            "name": self.name,
            "exe": self.exe,
            "cmdline": list(self.cmdline) if self.cmdline is not None else None,
            "user": self.user,
            "uid": self.uid,
            "ppid": self.ppid,
            "started_at": iso(self.started_at),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Owner:
        cmd = data.get("cmdline")
        return cls(
            pid=data.get("pid"),
            uid=data.get("uid"),
            name=data.get("name"),
            started_at=parse_iso(data.get("started_at")),
            exe=data.get("exe"),
            cmdline=tuple(cmd) if cmd is not None else None,
            user=data.get("user"),
            ppid=data.get("ppid"),
        )


def _owner_order(owner: Owner) -> tuple[bool, int, int]:
    return (owner.pid is None, owner.pid or 0, owner.uid if owner.uid is not None else -1)


def sort_owners(owners) -> tuple[Owner, ...]:
    """Owners in a canonical order (by pid, unknown last) with duplicates removed."""
    return tuple(sorted(set(owners), key=_owner_order))


@dataclass(frozen=True, slots=True, order=True)
class Key:
    transport: Transport
    address: str
    port: int

    def __str__(self) -> str:
        return f"{self.transport} {endpoint(self.address, self.port)}"


def endpoint(address: str, port: int) -> str:
    """`127.0.0.1:80`, `[::1]:80`."""
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


@dataclass(frozen=True, slots=True)
class Listener:
    transport: Transport
    family: int  # 4 or 6
    address: str
    port: int
    exposure: Exposure
    dual_stack: bool = False  # a `::` socket without IPV6_V6ONLY: it serves IPv4 too
    owners: tuple[Owner, ...] = ()

    @property
    def key(self) -> Key:
        return Key(self.transport, self.address, self.port)

    @property
    def endpoint(self) -> str:
        return endpoint(self.address, self.port)

    @property
    def pids(self) -> tuple[int, ...]:
        return tuple(o.pid for o in self.owners if o.pid is not None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "transport": str(self.transport),
            "family": self.family,
            "address": self.address,
            "port": self.port,
            "exposure": str(self.exposure),
            "dual_stack": self.dual_stack,
            "owners": [o.to_dict() for o in self.owners],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Listener:
        return cls(
            transport=Transport(data["transport"]),
            family=int(data["family"]),
            address=str(data["address"]),
            port=int(data["port"]),
            exposure=Exposure(data["exposure"]),
            dual_stack=bool(data.get("dual_stack", False)),
            owners=tuple(Owner.from_dict(o) for o in data.get("owners") or ()),
        )


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Every listener seen by one sample.

    `complete` says whether the sampler could see every owner (it had the
    privileges to look); a partial view still lists every socket.
    """

    listeners: Mapping[Key, Listener]
    taken_at: datetime
    complete: bool = True
    sampler: str = ""
    duration_s: float = 0.0

    @property
    def coverage(self) -> tuple[str, bool]:
        """What changes in it mean a new baseline rather than news."""
        return (self.sampler, self.complete)

    def sorted(self) -> list[Listener]:
        return sorted(self.listeners.values(), key=order)

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": SCHEMA_VERSION,
            "complete": self.complete,
            "listeners": [li.to_dict() for li in self.sorted()],
        }


def order(li: Listener) -> tuple:
    """The one order listeners are shown and diffed in: by port, transport, family, address."""
    return (li.port, str(li.transport), li.family, li.address)


def snapshot_of(listeners, taken_at: datetime, **kw: Any) -> Snapshot:
    return Snapshot({li.key: li for li in listeners}, taken_at, **kw)


@dataclass(frozen=True, slots=True)
class Event:
    kind: EventKind
    at: datetime
    listener: Listener  # the state now; for `closed`, the state it had when last seen
    previous: Listener | None = None  # the state before a `changed`

    @property
    def key(self) -> Key:
        return self.listener.key

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": SCHEMA_VERSION,
            "kind": str(self.kind),
            "at": iso(self.at),
            "listener": self.listener.to_dict(),
            "previous": self.previous.to_dict() if self.previous else None,
        }


@dataclass(frozen=True, slots=True)
class Recorded:
    """An event as the daemon committed it: with its row id, the policy's verdict, and flags.

    `alert` says whether the notification policy wants a person told, `reason`
    says why (or why not: "trusted by rule 3", "loopback, program seen before").
    `baseline`: recorded at the very first start, never alerted.
    `found_at_start`: opened while the daemon was not running, found when it started.
    """

    id: int
    event: Event
    alert: bool
    reason: str
    baseline: bool = False
    found_at_start: bool = False

    def to_dict(self) -> dict[str, Any]:
        data = self.event.to_dict()
        data.update(
            id=self.id,
            alert=self.alert,
            reason=self.reason,
            baseline=self.baseline,
            found_at_start=self.found_at_start,
        )
        return data
