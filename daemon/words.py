"""Every phrase people read: exposure and dual-stack, owners, event lines, plurals, times, tables. Pure.

The command line, the tray, notifications, doctor and the sinks' text all take their words from
here, so one fact is said one way everywhere. JSON comes from the model's to_dict(); this module
only makes the readable forms.
"""

from __future__ import annotations

import shlex
from datetime import datetime, timezone
from collections.abc import Iterable, Sequence

from .model import Event, EventKind, Exposure, Listener, Owner, Recorded, Unit, UnitKind
from .ports import service_name

# ------------------------------------------------------------------ exposure

# Who can connect, in words: said after "is now ..." in notifications and in the menu's details.
REACH = {
    Exposure.LOOPBACK: "on this machine only",
    Exposure.LOCAL_NETWORK: "reachable from the local network",
    Exposure.ALL_INTERFACES: "reachable from other machines",
    Exposure.PUBLIC: "reachable from the internet",
}

# What the bound address is, in words (the menu's details lead with it).
BOUND = {
    Exposure.LOOPBACK: "loopback",
    Exposure.LOCAL_NETWORK: "local-network address",
    Exposure.ALL_INTERFACES: "all interfaces",
    Exposure.PUBLIC: "public address",
}

DUAL_STACK = "also serves IPv4"  # a `::` socket without IPV6_V6ONLY


def dual(li: Listener) -> str:
    """` (also serves IPv4)` for a dual-stack socket, else nothing: appended to prose."""
    return f" ({DUAL_STACK})" if li.dual_stack else ""


def exposure_column(li: Listener) -> str:
    """The exposure in a table column or an event line: `all-interfaces (+ipv4)`."""
    return f"{li.exposure} (+ipv4)" if li.dual_stack else str(li.exposure)


def exposure_phrase(li: Listener) -> str:
    """The exposure in running text: `all-interfaces, also serves IPv4`."""
    return f"{li.exposure}, {DUAL_STACK}" if li.dual_stack else str(li.exposure)


def endpoint_phrase(li: Listener) -> str:
    """The bound endpoint in running text: `[::]:8000, also serves IPv4`."""
    return f"{li.endpoint}, {DUAL_STACK}" if li.dual_stack else li.endpoint


def reach(li: Listener) -> str:
    """`reachable from other machines (also serves IPv4)`."""
    return REACH[li.exposure] + dual(li)


def exposure_details(li: Listener) -> str:
    """`all interfaces: reachable from other machines unless a firewall stops them (also serves IPv4)`."""
    caveat = " unless a firewall stops them" if li.exposure is Exposure.ALL_INTERFACES else ""
    return f"{BOUND[li.exposure]}: {REACH[li.exposure]}{caveat}{dual(li)}"


# ------------------------------------------------------------------ owners


def user_of(owner: Owner) -> str:
    """The owner's user name, else `uid N`, else `an unknown user`."""
    return owner.user or (f"uid {owner.uid}" if owner.uid is not None else "an unknown user")


def owner_tag(owner: Owner) -> str:
    """The compact form, for tables, event lines and menu labels: `python3 (4242)`, `? (root)`."""
    if owner.pid is None:
        who = owner.user or (f"uid {owner.uid}" if owner.uid is not None else "unknown")
        return f"? ({who})"
    return f"{owner.name or '?'} ({owner.pid})"


def owners_tag(li: Listener) -> str:
    """The first owner's tag, `+N` for the others: `nginx (100) +1`."""
    return _first_and_more(li, owner_tag, "?", "{} +{}")


def owner_phrase(owner: Owner) -> str:
    """The prose form: `python3 (pid 4242)`, or `a process of root` when the view cannot see it."""
    if owner.pid is None:
        return f"a process of {user_of(owner)}"
    return f"{owner.name or '?'} (pid {owner.pid})"


def owners_phrase(li: Listener) -> str:
    """`python3 (pid 4242)`, `nginx (pid 100) and 1 more`, `an unknown process`."""
    return _first_and_more(li, owner_phrase, "an unknown process", "{} and {} more")


def _first_and_more(li: Listener, say, nobody: str, more: str) -> str:
    if not li.owners:
        return nobody
    first = say(li.owners[0])
    return first if len(li.owners) == 1 else more.format(first, len(li.owners) - 1)


def first_name(li: Listener) -> str | None:
    """The first owner's process name that is known."""
    return next((o.name for o in li.owners if o.name), None)


def unit_label(unit: Unit) -> str:
    """`cups.service`, `firefox (app)`, `pipewire.service (user 1000)`, `web (container, nginx:1.25)`."""
    c = unit.container
    if c is not None:
        extra = ", ".join(x for x in ("container", c.image) if x)
        return f"{c.name or c.short_id} ({extra})"
    if unit.kind in (UnitKind.SERVICE, UnitKind.SCOPE, UnitKind.SESSION, UnitKind.SLICE, UnitKind.CGROUP):
        return unit.name
    if unit.kind is UnitKind.USER_SERVICE and unit.uid is not None:
        return f"{unit.name} (user {unit.uid})"
    return f"{unit.name} ({unit.kind})"


# ------------------------------------------------------------------ small words


def plural(n: int, word: str, many: str | None = None) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {many or word + 's'}"


def join(items: Sequence[str], word: str = "and") -> str:
    """`a`, `a and b`, `a, b and c`."""
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + f" {word} " + items[-1]


def printable(text: str) -> str:
    """One line: control characters (a newline in a process name) shown as escapes, never emitted raw."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def short(text: str, limit: int) -> str:
    """One line of at most `limit` characters: white space folded, `...` where it was cut."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def command_line(argv, limit: int = 300) -> str:
    """A command line on one line, quoted as a shell would need it, control characters escaped."""
    text = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in shlex.join(argv))
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ------------------------------------------------------------------ times


def clock(moment: datetime) -> str:
    return moment.astimezone().strftime("%H:%M:%S")


def when(moment: datetime | None, now: datetime) -> str:
    """09:14 today, else 2026-11-25 09:14 (local time)."""
    if moment is None:
        return "?"
    local = moment.astimezone()
    if local.date() == now.astimezone().date():
        return local.strftime("%H:%M")
    return local.strftime("%Y-%m-%d %H:%M")


def since(moment: datetime | None, now: datetime | None = None) -> str:
    if moment is None:
        return "unknown"
    now = now or datetime.now(timezone.utc)
    seconds = max(0, int((now - moment).total_seconds()))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    ago = f"{days}d {hours}h" if days else f"{hours}h {minutes}m" if hours else f"{minutes}m {secs}s" if minutes else f"{secs}s"
    return f"{moment.astimezone().strftime('%Y-%m-%d %H:%M:%S %Z')} ({ago} ago)"


# ------------------------------------------------------------------ tables

COLUMNS = ("PROTO", "ADDRESS", "EXPOSURE", "PID", "PROCESS", "USER", "SERVICE")


def table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() for row in [header, *rows]]
    return "\n".join(lines)


def _pids(li: Listener) -> str:
    pids = li.pids
    if not pids:
        return "-"
    return str(pids[0]) if len(pids) == 1 else f"{pids[0]} +{len(pids) - 1}"


def _names(li: Listener) -> str:
    names = sorted({o.name for o in li.owners if o.name})
    return ",".join(names) if names else "?"


def _users(li: Listener) -> str:
    users = sorted({o.user or (str(o.uid) if o.uid is not None else "?") for o in li.owners})
    return ",".join(users) if users else "?"


def listener_row(li: Listener) -> list[str]:
    return [
        str(li.transport),
        li.endpoint,
        exposure_column(li),
        _pids(li),
        _names(li),
        _users(li),
        service_name(li.port, str(li.transport)) or "",
    ]


def listeners_table(listeners: Iterable[Listener]) -> str:
    return table([listener_row(li) for li in listeners], COLUMNS)


# ------------------------------------------------------------------ events


def event_line(event: Event) -> str:
    li = event.listener
    who = ", ".join(owner_tag(o) for o in li.owners) or "?"
    line = f"{clock(event.at)}  {event.kind:<7}  {li.transport} {li.endpoint:<22} {exposure_column(li):<16} {who}"
    if event.kind is EventKind.CHANGED and event.previous is not None:
        was = event.previous
        before = []
        if was.owners != li.owners:
            before.append(", ".join(owner_tag(o) for o in was.owners) or "?")
        if (was.exposure, was.dual_stack) != (li.exposure, li.dual_stack):
            before.append(exposure_column(was))
        line += f"  (was {'; '.join(before)})"
    return line


def record_line(rec: Recorded) -> str:
    """An event as the daemon recorded it: the event line, then the alert's reason or the flag."""
    line = event_line(rec.event)
    if rec.alert:
        line += f"  ! {rec.reason}"
    elif rec.baseline:
        line += "  (baseline)"
    elif rec.found_at_start:
        line += "  (found at start)"
    return line


def event_sentence(record: Recorded) -> str:
    """`python3 (4242) is now listening on tcp 0.0.0.0:8000 (all-interfaces); alert: not trusted`."""
    ev = record.event
    li = ev.listener
    where = f"{li.transport} {li.endpoint} ({exposure_phrase(li)})"
    if ev.kind is EventKind.OPENED:
        text = f"{owners_tag(li)} is now listening on {where}"
    elif ev.kind is EventKind.CLOSED:
        text = f"{owners_tag(li)} stopped listening on {where}"
    else:
        was = ev.previous
        before = f"{owners_tag(was)} ({was.exposure})" if was is not None else "?"
        text = f"{li.transport} {li.endpoint} changed: {before} -> {owners_tag(li)} ({li.exposure})"
    flags = [f for f, on in (("baseline", record.baseline), ("found at start", record.found_at_start)) if on]
    if flags:
        text += f" [{', '.join(flags)}]"
    if record.reason:
        text += f"; {'alert' if record.alert else 'quiet'}: {record.reason}"
    return printable(text)


# ------------------------------------------------------------------ views


def partial_view(as_root: bool) -> str:
    """Why some listeners show no process, for a view taken as root or as a user."""
    if as_root:
        return (
            "some processes hide their descriptors even from root (a container or another user "
            "namespace); their sockets show no process."
        )
    return "sockets of other users show no process. Run as root (or that user) to see every owner."


def owner_block(owner: Owner, parent: Owner | None, complete: bool = True) -> list[str]:
    if owner.pid is None:
        uid = f"uid {owner.uid} ({owner.user or '?'})" if owner.uid is not None else "an unknown user"
        if complete:
            why = "no process in view holds it (a kernel socket, or a process in another PID namespace or container)"
        else:
            why = "run as that user or root to see its process"
        return [f"  process  not visible: the socket belongs to {uid}; {why}"]
    lines = [
        f"  process  {owner.name or '?'} (pid {owner.pid})",
        f"  exe      {owner.exe or '(not readable)'}",
        f"  command  {command_line(owner.cmdline) if owner.cmdline else '(not readable)'}",
        f"  user     {owner.user or '?'} (uid {owner.uid if owner.uid is not None else '?'})",
        f"  started  {since(owner.started_at)}",
    ]
    if owner.ppid:
        label = f"{parent.name} (pid {owner.ppid})" if parent and parent.name else f"pid {owner.ppid}"
        lines.append(f"  parent   {label}")
    return lines
