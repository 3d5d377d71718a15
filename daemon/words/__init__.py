"""Every phrase people read: exposure and dual-stack, owners, event lines, plurals, times, tables. Pure.

The command line, the tray, notifications, doctor and the sinks' text all take their words from
here, so one fact is said one way everywhere. JSON comes from the model's to_dict(); this module
only makes the readable forms.
"""

from __future__ import annotations

import re
import shlex
from datetime import datetime, timezone
from collections.abc import Iterable, Sequence

from ..model import Event, EventKind, Exposure, Listener, Owner, Recorded, Unit, UnitKind
from ..ports import service_name

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
    """The owner's user name, else `uid N`, else `an unknown user` (escaped: it may come from a process)."""
    return printable(owner.user) if owner.user else (f"uid {owner.uid}" if owner.uid is not None else "an unknown user")


# How an owner was learned, when it was inferred rather than read from its descriptors: a mark, a note.
VIA = {"cgroup": "by unit", "cmdline": "by command line"}
INFERRED = {"cgroup": "inferred: the only process of the socket's user in its unit",
            "cmdline": "inferred: a forwarder whose command line names this address and port"}


def _via(owner: Owner) -> str:
    return f", {VIA[owner.via]}" if owner.via in VIA else ""


def _name(owner: Owner) -> str:
    return printable(owner.name) if owner.name else "?"


def owner_tag(owner: Owner, unit: Unit | None = None, candidates: int | None = None) -> str:
    """The compact form, for tables, event lines and menu labels: `python3 (4242)`,
    `cupsd (812, by unit)`, `? (root)`, or the unit for an unseen owner: `cups.service (root, 3 processes)`."""
    if owner.pid is None:
        who = printable(owner.user) if owner.user else (f"uid {owner.uid}" if owner.uid is not None else "unknown")
        many = f", {candidates} processes" if candidates and candidates > 1 else ""
        return f"{unit_label(unit) if unit is not None else '?'} ({who}{many})"
    return f"{_name(owner)} ({owner.pid}{_via(owner)})"


def owners_tag(li: Listener) -> str:
    """The first owner's tag, `+N` for the others: `nginx (100) +1`."""
    return _first_and_more(li, lambda o: owner_tag(o, li.unit, li.candidates), _nobody_tag(li), "{} +{}")


def owners_list(li: Listener) -> str:
    """Every owner's tag: `nginx (100), nginx (101)`; the unit when none is known."""
    return ", ".join(owner_tag(o, li.unit, li.candidates) for o in li.owners) or _nobody_tag(li)


def _nobody_tag(li: Listener) -> str:
    return unit_label(li.unit) if li.unit is not None else "?"


def owner_phrase(owner: Owner, unit: Unit | None = None) -> str:
    """The prose form: `python3 (pid 4242)`, or `a process of root` when the view cannot see it."""
    if owner.pid is None:
        if unit is not None:
            return f"a process of {user_of(owner)} in {unit_label(unit)}"
        return f"a process of {user_of(owner)}"
    return f"{_name(owner)} (pid {owner.pid}{_via(owner)})"


def owners_phrase(li: Listener) -> str:
    """`python3 (pid 4242)`, `nginx (pid 100) and 1 more`, `an unknown process`."""
    nobody = f"an unknown process in {unit_label(li.unit)}" if li.unit is not None else "an unknown process"
    return _first_and_more(li, lambda o: owner_phrase(o, li.unit), nobody, "{} and {} more")


def _first_and_more(li: Listener, say, nobody: str, more: str) -> str:
    if not li.owners:
        return nobody
    first = say(li.owners[0])
    return first if len(li.owners) == 1 else more.format(first, len(li.owners) - 1)


def first_name(li: Listener) -> str | None:
    """The first owner's process name that is known, escaped."""
    return next((printable(o.name) for o in li.owners if o.name), None)


def unit_label(unit: Unit) -> str:
    """`cups.service`, `firefox (app)`, `pipewire.service (user 1000)`, `web (container, nginx:1.25)`."""
    c = unit.container
    if c is not None:
        extra = ", ".join(printable(x) for x in ("container", c.image) if x)
        return f"{printable(c.name or c.short_id)} ({extra})"
    name = printable(unit.name)
    if unit.kind in (UnitKind.SERVICE, UnitKind.SCOPE, UnitKind.SESSION, UnitKind.SLICE, UnitKind.CGROUP):
        return name
    if unit.kind is UnitKind.USER_SERVICE and unit.uid is not None:
        return f"{name} (user {unit.uid})"
    return f"{name} ({unit.kind})"


def forward_phrase(li: Listener) -> str | None:
    """`-> 172.17.0.2:80 (shop-web-1)`: where a forwarder sends the port; None when it is none."""
    fw = li.forward
    if fw is None:
        return None
    target = fw.endpoint or "a target it does not name"
    c = fw.container
    return printable(f"-> {target}" + (f" ({c.name or c.short_id})" if c is not None else "") + f", by {fw.by}")


NO_SOCKET = "published by {by}, no socket on this machine"


def no_socket(li: Listener) -> str:
    """For a port an engine publishes by NAT: `published by Docker, no socket on this machine`."""
    by = li.forward.by if li.forward is not None else "a container engine"
    return NO_SOCKET.format(by=by.capitalize() if by in ("docker", "podman") else printable(by))


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
    return local.strftime("%H:%M" if local.date() == now.astimezone().date() else "%Y-%m-%d %H:%M")


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


# ------------------------------------------------------------------ colour

# ANSI styles for a terminal; the command line decides whether to use them (TTY, NO_COLOR, --color).
STYLE = {"red": "31", "yellow": "33", "dim": "2", "bold": "1"}
EXPOSURE_STYLE = {Exposure.PUBLIC: "red", Exposure.ALL_INTERFACES: "red", Exposure.LOCAL_NETWORK: "yellow", Exposure.LOOPBACK: "dim"}


def paint(text: str, style: str | None, colour: bool) -> str:
    """`text` in a terminal style when colour is on; as it is otherwise."""
    if not colour or not style or not text:
        return text
    return f"\x1b[{STYLE[style]}m{text}\x1b[0m"


# ------------------------------------------------------------------ tables

COLUMNS = ("PROTO", "ADDRESS", "EXPOSURE", "PID", "PROCESS", "USER", "UNIT", "SERVICE")
EXPOSURE_WIDTH = len("all-interfaces (+ipv4)")  # the widest exposure column


def table(rows: Sequence[Sequence[str]], header: Sequence[str], styles: Sequence[Sequence[str | None]] | None = None, colour: bool = False) -> str:
    """Columns padded to fit; every cell escaped (it may come from a process); a cell's style, if any,
    wraps its padded text, so colour never shifts a column."""
    rows = [[printable(str(c)) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in [list(header), *rows]) for i in range(len(header))]
    out = ["  ".join(str(c).ljust(w) for c, w in zip(header, widths)).rstrip()]
    for n, row in enumerate(rows):
        style = styles[n] if styles else [None] * len(row)
        last = max((i for i, c in enumerate(row) if c), default=-1)
        cells = [paint(c if i == last else c.ljust(w), style[i], colour) for i, (c, w) in enumerate(zip(row, widths)) if i <= last]
        out.append("  ".join(cells))
    return "\n".join(out)


def _pids(li: Listener) -> str:
    pids = li.pids
    return "-" if not pids else str(pids[0]) if len(pids) == 1 else f"{pids[0]} +{len(pids) - 1}"


def _names(li: Listener) -> str:
    return ",".join(sorted({o.name for o in li.owners if o.name})) or "?"


def _users(li: Listener) -> str:
    return ",".join(sorted({o.user or (str(o.uid) if o.uid is not None else "?") for o in li.owners})) or "?"


def unit_column(li: Listener) -> str:
    """The UNIT column: the unit's label; `(no socket)` marks a port published without one."""
    label = unit_label(li.unit) if li.unit is not None else ""
    if not li.socket:
        label = f"{label} (no socket)".strip()
    return label or "-"


def listener_row(li: Listener) -> list[str]:
    return [str(li.transport), li.endpoint, exposure_column(li), _pids(li), _names(li), _users(li), unit_column(li),
            service_name(li.port, str(li.transport)) or ""]


def listeners_table(listeners: Iterable[Listener], colour: bool = False) -> str:
    listeners = list(listeners)
    styles = [[None, None, EXPOSURE_STYLE[li.exposure], None, None, None, None, None] for li in listeners]
    return table([listener_row(li) for li in listeners], COLUMNS, styles, colour)


# ------------------------------------------------------------------ events


def stamp(moment: datetime, dated: bool) -> str:
    """`09:14:03`, or `2026-11-25 09:14:03` when the lines are not all from today (local time)."""
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S" if dated else "%H:%M:%S")


def all_today(moments: Iterable[datetime], now: datetime) -> bool:
    return all(m.astimezone().date() == now.astimezone().date() for m in moments)


def event_line(event: Event, *, dated: bool = False, colour: bool = False) -> str:
    """One event on one line; what came from a process escaped, the exposure in its colour."""
    li = event.listener
    exposure = paint(exposure_column(li).ljust(EXPOSURE_WIDTH), EXPOSURE_STYLE[li.exposure], colour)
    line = f"{stamp(event.at, dated)}  {event.kind:<7}  {li.transport} {li.endpoint:<22} {exposure} {owners_list(li)}"
    if event.kind is EventKind.CHANGED and event.previous is not None:
        was = event.previous
        before = []
        if was.owners != li.owners:
            before.append(owners_list(was))
        if (was.exposure, was.dual_stack) != (li.exposure, li.dual_stack):
            before.append(exposure_column(was))
        line += f"  (was {'; '.join(before)})"
    return line  # every part is escaped already: the colour codes must stay codes


_DECIDED = re.compile(r"^(trusted|muted) by (rule \d+|a config rule)")


def record_line(rec: Recorded, *, dated: bool = False, colour: bool = False) -> str:
    """An event as the daemon recorded it: the event line, then the alert's reason, the rule that
    trusted or muted it, or the flag. An alert's line is bold."""
    line = event_line(rec.event, dated=dated, colour=colour)
    decided = _DECIDED.match(rec.reason or "")
    if rec.alert:
        return paint(line + f"  ! {printable(rec.reason)}", "bold", colour)
    if rec.baseline:
        line += "  (baseline)"
    elif decided:
        line += f"  ({decided.group(1)} by {decided.group(2)})"
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


PARTIAL = "partial view"


def partial_view(as_root: bool) -> str:
    """What a partial view cannot see and how to see it, for a view taken as root or as a user
    (never telling root to run as root)."""
    if as_root:
        return ("some processes hide their descriptors even from root (a container or another user "
                "namespace); their sockets show no process.")
    return ("sockets of other users show no process. To see every owner, run as root, or run the "
            "system-wide daemon (packaging/README.md), whose capabilities let it see them.")


def listener_block(li: Listener) -> list[str]:
    """`who`'s head for one listener: the endpoint and exposure, then its unit and forward."""
    lines = [f"{li.transport} {li.endpoint}  {exposure_phrase(li)}"]
    if li.unit is not None:
        lines.append(f"  unit     {unit_label(li.unit)}")
    fw = forward_phrase(li)
    if fw is not None:
        lines.append(f"  forward  {fw}")
    if not li.socket:
        lines.append(f"  socket   {no_socket(li)}")
    return lines


def stop_instead(li: Listener) -> str | None:
    """What stops this listener properly, when signalling its process would not:
    a container's port (`docker stop NAME`), a systemd unit (`systemctl [--user] stop UNIT`)."""
    c = (li.forward.container if li.forward else None) or (li.unit.container if li.unit else None)
    if c is not None or (li.forward is not None and li.forward.by in ("docker-proxy", "docker")):
        name = printable(c.name or c.short_id) if c is not None else "CONTAINER"
        engine = "podman" if c is not None and c.runtime == "podman" else "docker"
        which = f"container {name}" if c is not None else "a container (its name is not known here: `docker ps`)"
        return f"it is the port of {which}; stop that with `{engine} stop {name}`"
    unit = li.unit
    if unit is not None and unit.kind in (UnitKind.SERVICE, UnitKind.USER_SERVICE):
        user = " --user" if unit.kind is UnitKind.USER_SERVICE else ""
        return f"it belongs to {unit_label(unit)}, which systemd would restart; stop that with `systemctl{user} stop {printable(unit.name)}`"
    return None


def stop_lines(li: Listener) -> list[str]:
    """What `stop` is about to stop: the listener, its unit and forward, and each process."""
    lines = listener_block(li)
    for o in li.owners:
        if o.pid is not None:
            cmd = f": {command_line(o.cmdline, 120)}" if o.cmdline else ""
            lines.append(f"  process  {owner_phrase(o)}, user {user_of(o)}{cmd}")
    return lines


def owner_block(owner: Owner, parent: Owner | None, complete: bool = True, li: Listener | None = None) -> list[str]:
    """`who`'s lines for one owner; everything that came from the process escaped."""
    if owner.pid is None:
        uid = f"uid {owner.uid} ({printable(owner.user or '?')})" if owner.uid is not None else "an unknown user"
        if li is not None and li.unit is not None:
            many = f" ({li.candidates} processes of that user there, so none is guessed)" if li.candidates and li.candidates > 1 else ""
            return [f"  process  not visible: the socket belongs to {uid}, in {unit_label(li.unit)}{many}"]
        if complete:
            why = "no process in view holds it (a kernel socket, or a process in another PID namespace or container)"
        else:
            why = "run as that user or root to see its process"
        return [f"  process  not visible: the socket belongs to {uid}; {why}"]
    how = f" ({INFERRED[owner.via]})" if owner.via in INFERRED else ""
    lines = [
        f"  process  {_name(owner)} (pid {owner.pid}){how}",
        f"  exe      {printable(owner.exe) if owner.exe else '(not readable)'}",
        f"  command  {command_line(owner.cmdline) if owner.cmdline else '(not readable)'}",
        f"  user     {printable(owner.user or '?')} (uid {owner.uid if owner.uid is not None else '?'})",
        f"  started  {since(owner.started_at)}",
    ]
    if owner.ppid:
        label = f"{printable(parent.name)} (pid {owner.ppid})" if parent and parent.name else f"pid {owner.ppid}"
        lines.append(f"  parent   {label}")
    return lines
