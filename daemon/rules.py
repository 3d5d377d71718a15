"""Trust, mute, and whether an event should alert. Pure.

A rule matches a listener when every field it sets matches (fields left None
match anything). `trust` says "this is expected": never alert. `mute` says
"stop telling me": never alert, but the listener is not called safe. Both are
recorded with their reason, so the tray, the hook and the command line agree.

Default policy (PRODUCT.md), with the novelty memory:
- closed events never alert; baseline events never alert;
- a listener reachable from other machines alerts, unless the same program
  was seen on the same key before, or it re-opens a random (dynamic or
  ephemeral range) port at an exposure and transport it was seen at before;
- a loopback listener alerts per `notify.loopback`: "first-seen" (only the
  first time its program is seen listening on loopback; for an owner nobody
  can name, see below), "always", "never";
- `changed` alerts when the listener becomes more exposed, or a different
  program takes over an exposed key.

Program identity (`program_of`), for the memory and the rules: the exe path,
else the name, else the unit plus the socket's uid (`unit:service:cups.service
uid:0`), else the uid alone (`uid:0`). A different unit is a different program.
A uid-only identity names nobody: every program of that uid the view cannot see
shares it. So it never makes an exposed listener "seen before" (it fails toward
alerting): such a listener alerts whenever it opens exposed, and a `changed`
between two owners it cannot tell apart alerts on an exposed key.

On loopback, under first-seen, a nameless listener (a uid alone) is judged by
the exposed path's novelty, with the uid standing in for the program: quiet when
that uid's nameless owner held this very key before, or when it opens a random
port on a transport where that uid's nameless owners opened random loopback
ports before; otherwise it alerts, once. Why: an unprivileged user's desktop is
full of such listeners (root's and the system users' daemons and helpers,
churning random loopback ports). "Never seen before" rang for every one of
them; the per-program rule ("the first time uid 0 listens on loopback") would
ring once and then never again, not even for a new fixed port. Only this
machine can reach a loopback port, so taking "this uid did it before" for "this
program did" costs little; exposed it would cost too much, so exposed stays as
above.

Each decision is made against the memory as it will be once everything decided
before it is committed (`Pending`): the second of two listeners in one poll, or
in polls still waiting for a full disk, is seen too.
"""

from __future__ import annotations

import fnmatch
from datetime import datetime
from typing import Protocol

from .model import Event, EventKind, Exposure, Key, Listener, Owner, Transport, value
from .ports import DYNAMIC, ephemeral_range, port_class

ACTIONS = ("trust", "mute")
LOOPBACK_POLICIES = ("first-seen", "always", "never")


@value
class Rule:
    action: str  # "trust" | "mute"
    program: str | None = None  # glob: on the exe path when it has a "/", else on the name
    ports: tuple[int, int] | None = None  # inclusive range; one port is (p, p)
    exposures: tuple[Exposure, ...] | None = None
    transport: Transport | None = None
    user: str | None = None
    unit: str | None = None  # glob on the unit's name (cups.service, firefox, a container's name or short id)
    until: datetime | None = None  # expiry
    pid: int | None = None  # "until the process exits": only this process (pid + start time)
    started_at: datetime | None = None
    id: int | None = None  # the store's id for decisions; None for config rules
    source: str = "config"  # "config" | "cli" | "tray"

    def active(self, now: datetime) -> bool:
        return self.until is None or now < self.until

    def matches(self, listener: Listener, now: datetime) -> bool:
        if not self.active(now):
            return False
        if self.transport is not None and listener.transport is not self.transport:
            return False
        if self.ports is not None and not self.ports[0] <= listener.port <= self.ports[1]:
            return False
        if self.exposures is not None and listener.exposure not in self.exposures:
            return False
        if self.unit is not None and not any(fnmatch.fnmatchcase(n, self.unit) for n in unit_names(listener)):
            return False
        if self.program is None and self.user is None and self.pid is None:
            return True
        return any(self._owner_matches(o) for o in listener.owners)

    def _owner_matches(self, owner: Owner) -> bool:
        if self.pid is not None and (owner.pid, owner.started_at) != (self.pid, self.started_at):
            return False
        if self.user is not None and owner.user != self.user:
            return False
        if self.program is not None:
            subject = owner.exe if "/" in self.program or "\\" in self.program else owner.name
            if subject is None or not fnmatch.fnmatchcase(subject, self.program):
                return False
        return True

    def describe(self) -> str:
        parts = []
        if self.program:
            parts.append(f"program {self.program}")
        if self.ports:
            low, high = self.ports
            parts.append(f"port {low}" if low == high else f"ports {low}-{high}")
        if self.exposures:
            parts.append("exposure " + "/".join(self.exposures))
        if self.transport:
            parts.append(str(self.transport))
        if self.user:
            parts.append(f"user {self.user}")
        if self.unit:
            parts.append(f"unit {self.unit}")
        if self.pid is not None:
            parts.append(f"pid {self.pid} until it exits")
        if self.until is not None:
            parts.append(f"until {self.until.astimezone().strftime('%Y-%m-%d %H:%M')}")
        what = ", ".join(parts) or "everything"
        label = f"rule {self.id}" if self.id is not None else "a config rule"
        return f"{label} ({self.action} {what})"


def deciding_rule(rules, listener: Listener, now: datetime) -> Rule | None:
    """The rule that decides for a listener: the first matching trust, else the first matching mute.
    Trust wins: a trusted listener is not merely muted. The policy and the tray's marks both ask this."""
    for action in ACTIONS:
        for rule in rules:
            if rule.action == action and rule.matches(listener, now):
                return rule
    return None


def unit_names(listener: Listener) -> list[str]:
    """What a `unit` rule's glob is matched against: the unit's name, its container's name and
    compose service (`project/service`), and the container a forwarder sends the port to."""
    names: list[str] = []
    containers = []
    if listener.unit is not None:
        names.append(listener.unit.name)
        containers.append(listener.unit.container)
    if listener.forward is not None:
        containers.append(listener.forward.container)
    for c in containers:
        if c is not None:
            names += [x for x in (c.name, c.short_id, f"{c.project}/{c.service}" if c.project and c.service else None) if x]
    return names


def program_of(listener: Listener) -> str:
    """The program a listener belongs to, for the novelty memory: exe path, else name, else
    unit plus uid, else uid (see the module docstring)."""
    for owner in listener.owners:
        if owner.exe:
            return owner.exe
    for owner in listener.owners:
        if owner.name:
            return owner.name
    uids = sorted({o.uid for o in listener.owners if o.uid is not None})
    uid = f"uid:{uids[0]}" if uids else "uid:?"
    if listener.unit is not None:
        return f"unit:{listener.unit.kind}:{listener.unit.name} {uid}"
    return uid if uids else "unknown"


def is_anonymous(program: str) -> bool:
    """Whether an identity names no program: a uid alone, or nothing at all."""
    return program == "unknown" or program.startswith("uid:")


def traces(li: Listener) -> tuple[tuple[Key, str], tuple[str, Exposure, Transport, bool]]:
    """What an opened or changed listener leaves in the novelty memory: its key with its program,
    and its program at its exposure and transport, with whether the port was a random one."""
    program = program_of(li)
    return (li.key, program), (program, li.exposure, li.transport, is_random_port(li.port))


def is_random_port(port: int) -> bool:
    """A port the program most likely let the OS choose."""
    if port_class(port) == DYNAMIC:
        return True
    span = ephemeral_range()
    return span is not None and span[0] <= port <= span[1]


class Memory(Protocol):
    """What the policy asks of the history (the store answers)."""

    def key_seen(self, key: Key, program: str) -> bool: ...

    def program_seen(self, program: str, exposure: Exposure, transport: Transport, *, random_port: bool) -> bool: ...


class Pending:
    """The memory as it will be once the events noted so far are committed: the record's, plus
    theirs. A poll's events are decided in order against it (see the module docstring)."""

    def __init__(self, memory: Memory) -> None:
        self.memory = memory
        self._keys: set[tuple[Key, str]] = set()
        self._programs: set[tuple[str, Exposure, Transport, bool]] = set()

    def note(self, event: Event) -> None:
        """What the store will remember of this event (closed events leave nothing)."""
        if event.kind is not EventKind.CLOSED:
            key, program = traces(event.listener)
            self._keys.add(key)
            self._programs.add(program)

    def key_seen(self, key: Key, program: str) -> bool:
        return (key, program) in self._keys or self.memory.key_seen(key, program)

    def program_seen(self, program: str, exposure: Exposure, transport: Transport, *, random_port: bool) -> bool:
        noted = any((program, exposure, transport, r) in self._programs for r in ((True,) if random_port else (True, False)))
        return noted or self.memory.program_seen(program, exposure, transport, random_port=random_port)


@value
class Verdict:
    alert: bool
    reason: str


class Policy:
    def __init__(self, rules: tuple[Rule, ...] = (), loopback: str = "first-seen") -> None:
        if loopback not in LOOPBACK_POLICIES:
            raise ValueError(f"notify.loopback must be one of {', '.join(LOOPBACK_POLICIES)}")
        self.rules = rules
        self.loopback = loopback

    def decide(self, event: Event, memory: Memory, now: datetime) -> Verdict:
        li = event.listener
        if event.kind is EventKind.CLOSED:
            return Verdict(False, "closed events never alert")
        rule = deciding_rule(self.rules, li, now)
        if rule is not None:
            return Verdict(False, f"{'trusted' if rule.action == 'trust' else 'muted'} by {rule.describe()}")
        if event.kind is EventKind.CHANGED:
            return self._changed(event)
        return self._opened(li, memory)

    def _opened(self, li: Listener, memory: Memory) -> Verdict:
        program = program_of(li)
        anonymous = is_anonymous(program)
        if li.exposure is Exposure.LOOPBACK:
            if self.loopback == "always":
                return Verdict(True, "loopback listener (notify.loopback = always)")
            if self.loopback == "never":
                return Verdict(False, "loopback listener (notify.loopback = never)")
            if anonymous:
                return _nameless_on_loopback(li, program, memory)
            if memory.program_seen(program, Exposure.LOOPBACK, li.transport, random_port=False):
                return Verdict(False, "loopback, and this program has listened on loopback before")
            return Verdict(True, "first time this program listens, on loopback")
        if anonymous:
            return Verdict(True, f"reachable from other machines ({li.exposure}), by a program nobody can name")
        seen = _seen_before(li, program, memory)
        if seen == "key":
            return Verdict(False, f"{li.exposure}, but this program has listened on {li.endpoint} before")
        if seen == "random":
            return Verdict(False, f"{li.exposure}, but this program re-opens random ports at this exposure")
        return Verdict(True, f"reachable from other machines ({li.exposure})")

    def _changed(self, event: Event) -> Verdict:
        li, was = event.listener, event.previous
        if was is None or not li.exposure.exposed:
            return Verdict(False, "changed, still on this machine only")
        if li.exposure.rank > was.exposure.rank or (li.dual_stack and not was.dual_stack):
            return Verdict(True, f"now more exposed ({was.exposure} -> {li.exposure})")
        if was.unit is None and li.unit is not None and was.owners == li.owners:
            # a record from before units, or a view that just learned the cgroup: news about
            # what we know, not about the machine
            return Verdict(False, "changed: its unit is known now")
        if program_of(li) != program_of(was) or is_anonymous(program_of(li)):
            return Verdict(True, f"another program took over an exposed port ({program_of(was)} -> {program_of(li)})")
        return Verdict(False, "changed owner within the same program")


def _seen_before(li: Listener, program: str, memory: Memory) -> str | None:
    """The novelty memory's answer for an opened listener: "key" (this program held this very key
    before), "random" (a random port, and it opened random ports at this exposure and transport
    before), or None: news."""
    if memory.key_seen(li.key, program):
        return "key"
    if is_random_port(li.port) and memory.program_seen(program, li.exposure, li.transport, random_port=True):
        return "random"
    return None


def _nameless_on_loopback(li: Listener, program: str, memory: Memory) -> Verdict:
    """First-seen for a loopback listener whose owner is a uid alone: per key, and per random-port
    habit of that uid (see the module docstring)."""
    uids = sorted({o.uid for o in li.owners if o.uid is not None})
    if uids:
        who = next((o.user for o in li.owners if o.uid == uids[0] and o.user), None) or f"uid {uids[0]}"
        by = f"loopback, by a program of {who} nobody can name"
    else:
        who, by = "an owner nobody can name", "loopback, by a program nobody can name"
    seen = _seen_before(li, program, memory)
    if seen == "key":
        return Verdict(False, f"{by}; {who} has listened on {li.endpoint} before")
    if seen == "random":
        return Verdict(False, f"{by}; {who} re-opens random {li.transport} ports on loopback")
    if is_random_port(li.port):
        return Verdict(True, f"{by}: the first random {li.transport} port {who} opens on loopback")
    return Verdict(True, f"{by}: the first time {who} listens on {li.endpoint}")
