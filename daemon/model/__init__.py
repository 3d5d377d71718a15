"""The values everyone shares: transports, exposure, owners, listeners, snapshots, events. Stdlib only.

A listener is identified by its key (transport, local address, port); the
processes that hold it are attributes. Owners compare by identity (pid, create
time, uid, name): exe, command line, user, parent and how the owner was learned
(`via`) are descriptive and do not make two owners different, so a diff never
reports a command line rewritten by setproctitle, or an owner that became
readable, as a new owner.

A listener's unit (what it belongs to beyond a pid: a systemd service, a desktop
app, a container...) compares by kind and name; a container's name, image and
compose labels are descriptive (they arrive from the Engine API, maybe a sample
later). A forwarder's target compares by address and port.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from enum import StrEnum

from ._valueclass import field, replace, value  # noqa: F401 (replace: for the users of the values)

TYPE_CHECKING = False  # typing costs 2 ms of every `portbell who`: annotations only need it when checked
if TYPE_CHECKING:
    from typing import Any

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


class UnitKind(StrEnum):
    """What a unit is. The values are the JSON words."""

    SERVICE = "service"  # a systemd system service: cups.service
    SCOPE = "scope"  # a systemd scope that is neither an app nor a session: init.scope
    SESSION = "session"  # a login session: session-2.scope
    APP = "app"  # a desktop application: app-gnome-firefox-1234.scope -> firefox
    USER_SERVICE = "user-service"  # a service of a user's own systemd: user@1000.service/app.slice/x.service
    CONTAINER = "container"  # docker, podman, containerd, cri-o, kubernetes
    SNAP = "snap"
    FLATPAK = "flatpak"
    SLICE = "slice"  # a process sitting directly in a slice
    CGROUP = "cgroup"  # a cgroup that follows no naming scheme portbell knows: its path
    WINDOWS_SERVICE = "windows-service"  # the service(s) a Windows process hosts (svchost)


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


@value
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
    # How the owner was learned: "fd" (it holds the socket: read from its descriptors),
    # "cgroup" (inferred: the only process of the socket's uid in the socket's cgroup),
    # "cmdline" (inferred: a forwarder whose command line names this very address and
    # port), None for an owner the view cannot see.
    via: str | None = field(default=None, compare=False)
    # The exact start, as the stop guard compares it: clock ticks since boot on Linux (field 22
    # of /proc/<pid>/stat), psutil's create_time elsewhere. `started_at` keeps whole seconds
    # for people and the JSON; a pid reused within a second differs here. Descriptive: records
    # older than it hold None, and the same process read again is not a new owner.
    start: int | float | None = field(default=None, compare=False)

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
            "via": self.via,
            "start": self.start,
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
            # records older than `via` hold owners read from descriptors (the only way then)
            via=data.get("via", "fd" if data.get("pid") is not None else None),
            start=data.get("start"),
        )


def _owner_order(owner: Owner) -> tuple[bool, int, int]:
    return (owner.pid is None, owner.pid or 0, owner.uid if owner.uid is not None else -1)


def sort_owners(owners) -> tuple[Owner, ...]:
    """Owners in a canonical order (by pid, unknown last) with duplicates removed."""
    return tuple(sorted(set(owners), key=_owner_order))


@value
class Container:
    """A container, by id; the rest comes from the Engine API when it is reachable."""

    id: str  # the full id as the cgroup (or the API) gives it
    runtime: str | None = None  # docker | podman | containerd | cri-o | kubernetes
    name: str | None = field(default=None, compare=False)  # without Docker's leading "/"
    image: str | None = field(default=None, compare=False)
    project: str | None = field(default=None, compare=False)  # label com.docker.compose.project
    service: str | None = field(default=None, compare=False)  # label com.docker.compose.service

    @property
    def short_id(self) -> str:
        return self.id[:12]

    def to_dict(self) -> dict[str, Any]:
        return {key: getattr(self, attr) for key, attr in _CONTAINER_JSON}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Container | None:
        if not data:
            return None
        return cls(**{attr: data.get(key) for key, attr in _CONTAINER_JSON if key != "id"}, id=str(data["id"]))


_CONTAINER_JSON = (  # JSON key, attribute
    ("id", "id"), ("runtime", "runtime"), ("name", "name"), ("image", "image"),
    ("compose_project", "project"), ("compose_service", "service"),
)


@value
class Unit:
    """What a socket belongs to beyond a pid: from its cgroup on Linux, the service on Windows.

    `name` is what a person calls it: `cups.service`, `firefox` for an app scope,
    a container's short id. `cgroup` is the path it was read from (descriptive).
    `uid` is the user whose own systemd runs a user service. `services` lists every
    service a Windows process hosts when it hosts several (`name` is the first).
    """

    kind: UnitKind
    name: str
    cgroup: str | None = field(default=None, compare=False)
    uid: int | None = None
    container: Container | None = None
    services: tuple[str, ...] = field(default=(), compare=False)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"kind": str(self.kind), "name": self.name, "cgroup": self.cgroup}
        if self.uid is not None:
            data["uid"] = self.uid
        if self.container is not None:
            data["container"] = self.container.to_dict()
        if self.services:
            data["services"] = list(self.services)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Unit | None:
        if not data:
            return None
        return cls(
            kind=UnitKind(data["kind"]),
            name=str(data["name"]),
            cgroup=data.get("cgroup"),
            uid=data.get("uid"),
            container=Container.from_dict(data.get("container")),
            services=tuple(data.get("services") or ()),
        )


@value
class Forward:
    """Where a forwarder (docker-proxy, rootlessport, slirp4netns, pasta) sends what it accepts.

    `address`/`port` are the target (the container's address; None when the
    forwarder's command line does not say and no Engine API told). `by` is the
    forwarder's name, or the engine ("docker", "podman") for a port published
    with no socket on this machine.
    """

    by: str
    address: str | None = None
    port: int | None = None
    container: Container | None = field(default=None, compare=False)

    @property
    def endpoint(self) -> str | None:
        if self.port is None:
            return None
        return endpoint(self.address, self.port) if self.address else f"port {self.port}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "by": self.by,
            "address": self.address,
            "port": self.port,
            "container": self.container.to_dict() if self.container else None,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Forward | None:
        if not data:
            return None
        return cls(str(data["by"]), data.get("address"), data.get("port"), Container.from_dict(data.get("container")))


@value(order=True)
class Key:
    """A listener's identity: transport, local address, port."""

    transport: Transport
    address: str
    port: int

    def __str__(self) -> str:
        return f"{self.transport} {endpoint(self.address, self.port)}"


def endpoint(address: str, port: int) -> str:
    """`127.0.0.1:80`, `[::1]:80`."""
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


@value
class Listener:
    """A listening socket (or the sockets sharing one key) and what is known of it."""

    transport: Transport
    family: int  # 4 or 6
    address: str
    port: int
    exposure: Exposure
    dual_stack: bool = False  # a `::` socket without IPV6_V6ONLY: it serves IPv4 too
    owners: tuple[Owner, ...] = ()
    unit: Unit | None = None  # from the socket's cgroup (Linux), the service (Windows); None when unknown
    forward: Forward | None = None  # what a forwarder sends this port to
    # When no owner could be read: how many processes of the socket's uid the unit holds
    # (several: none is guessed). None when not counted. Descriptive: a helper process
    # starting in the unit is not a new owner.
    candidates: int | None = field(default=None, compare=False)
    socket: bool = True  # False: a port an engine publishes with no socket here (Docker's NAT path)

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
            "unit": self.unit.to_dict() if self.unit else None,
            "forward": self.forward.to_dict() if self.forward else None,
            "candidates": self.candidates,
            "socket": self.socket,
        }

    def joined(self, other: Listener) -> Listener:
        """Two sockets under one key (SO_REUSEPORT, or one per uid) as one listener: the union
        of their owners, dual-stack if either is, the first unit and forward known, and the
        candidates of both."""
        cands = [c for c in (self.candidates, other.candidates) if c is not None]
        return Listener(
            self.transport, self.family, self.address, self.port, self.exposure,
            self.dual_stack or other.dual_stack, sort_owners(self.owners + other.owners),
            self.unit or other.unit, self.forward or other.forward,
            sum(cands) if cands else None, self.socket or other.socket,
        )

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
            # records written before units existed have none of these keys
            unit=Unit.from_dict(data.get("unit")),
            forward=Forward.from_dict(data.get("forward")),
            candidates=data.get("candidates"),
            socket=bool(data.get("socket", True)),
        )


@value
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


@value
class Event:
    """A listener opened, closed or changed at a time; `previous` is how it was before."""

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


@value
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
