"""Every phrase people read: exposure and dual-stack, owners, event lines, plurals, times, tables. Pure.

The command line, the tray, notifications, doctor and the sinks' text all take their words from
here, so one fact is said one way everywhere. JSON comes from the model's to_dict(); this module
only makes the readable forms.
"""

from __future__ import annotations

import shlex
from datetime import datetime, timezone
from typing import Iterable, Sequence

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


# ------------------------------------------------------------------ the tray (menu rows, notifications)

TRAY_TITLE_MAX = 40  # characters; xfce4-notifyd cuts titles wider than about 300 px
TRAY_TITLE_NAME = 15  # characters of a program's name in a title
TRAY_BODY_LINES = 3
TRAY_COMMAND_MAX = 60
# a notification's buttons: (key, label); "default" is a click on the bubble itself
TRAY_BUTTONS = (("default", "Details"), ("trust", "Trust"), ("mute-1h", "Mute 1 h"), ("stop", "Stop"))
TRAY_STOP_BUTTONS = (("stop-now", "Stop now"), ("cancel", "Cancel"))
_VIA = {"cgroup": "by unit", "cmdline": "by command line"}  # owners inferred, not read from descriptors


def tray_owner(owner: Owner, li: Listener) -> str:
    """A menu row's owner: `python3 (4242)`, `cupsd (812, by unit)` when inferred, and
    `cups.service (root)` when the process is hidden but the socket's unit is known."""
    if owner.pid is None:
        return f"{unit_label(li.unit)} ({user_of(owner)})" if li.unit is not None else owner_tag(owner)
    how = tray_how(owner)
    return f"{owner.name or '?'} ({owner.pid}, {how})" if how else f"{owner.name or '?'} ({owner.pid})"


def tray_how(owner: Owner) -> str | None:
    """`by unit` or `by command line` when the owner was inferred, not read from its descriptors."""
    return _VIA.get(owner.via or "")


def tray_owners(li: Listener) -> str:
    """The first owner as `tray_owner` says it, `+N` for the others; the unit when no owner is known."""
    if not li.owners:
        return unit_label(li.unit) if li.unit is not None else "?"
    return _first_and_more(li, lambda o: tray_owner(o, li), "?", "{} +{}")


def tray_program(li: Listener) -> str:
    """The program a notification's title names: the first visible owner, else the unit, else `?`."""
    name = next((o.name for o in li.owners if o.pid is not None and o.name), None)
    return name or (unit_label(li.unit) if li.unit is not None else first_name(li) or "?")


def tray_forward(li: Listener) -> str | None:
    """`-> 172.17.0.2:80 (shop-web-1)`: where a forwarder sends this port; None when it is no forwarder."""
    f = li.forward
    if f is None:
        return None
    target = f"{f.address}:{f.port}" if f.address and f.port else f"port {f.port}" if f.port else "a container"
    who = f.container.name or f.container.short_id if f.container is not None else f.by
    return f"-> {target} ({who})"


def tray_alert_title(li: Listener, news: str) -> str:
    """Port and program first, short enough for every server (xfce4-notifyd cuts what is wider than
    about 300 px): `8000 python3: exposed`, `631 cupsd: new owner`, `5432 postgres: new listener`.
    news: "opened", "owner" (another program took the port), "reach" (the exposure changed)."""
    if news == "reach":
        tail = "now exposed" if li.exposure.exposed else "now local only"
    elif news == "owner":
        tail = "new owner"
    else:
        tail = "exposed" if li.exposure.exposed else "new listener"
    return f"{li.port} {_title_name(tray_program(li))}: {tail}"


def _title_name(name: str) -> str:
    """A program's name for a title: 15 characters at most (a Linux process name's length), and
    markup's characters left out (servers show the title as it is; the body has the name whole)."""
    return short("".join(ch for ch in printable(name) if ch not in "<>&"), TRAY_TITLE_NAME)


def tray_burst_title(count: int, exposed: int) -> str:
    """`5 new listeners, 3 exposed` (a coalesced notification)."""
    return f"{count} new listeners" + (f", {exposed} exposed" if exposed else "")


def tray_command(argv, limit: int = TRAY_COMMAND_MAX) -> str:
    """A command line for a notification: one line, a multi-line argument (a `python -c` script)
    cut at its first line, at most `limit` characters."""
    args = [a.strip().splitlines()[0] + " ..." if "\n" in a.strip() else a for a in argv]
    return short(" ".join(args), limit)


def tray_stop_question(name: str | None, pid: int) -> tuple[str, str]:
    """The confirming notification of a Stop button: title and body."""
    return (short(f"Stop {_title_name(name or '?')} (pid {pid})?", TRAY_TITLE_MAX),
            "It is sent SIGTERM after the same checks as the menu's Stop (its pid, start time and user).")


def tray_partial_view(as_root: bool) -> str:
    """The menu's line when the daemon cannot see every owner, and the two ways to see them (never
    telling root to run as root)."""
    if as_root:
        return "Partial view: some sockets show no process even to root (containers, other namespaces)"
    return "Partial view: other users' processes are hidden; run as root, or the system-wide daemon (packaging/README.md)"


def tray_menu_fix(distro: str, install: str, pipx_spec: str | None, system_python: bool) -> str:
    """The one step that gives the tray its menu where only pystray's xorg backend loads.

    distro: "debian", "fedora", "arch", "suse" or "" (from os-release); install: the Python running
    portbell; pipx_spec: what pipx installed (its metadata) when portbell runs from a pipx venv;
    system_python: that Python is the distribution's, whose GObject bindings a venv can see.
    """
    packages = {
        "debian": "sudo apt install python3-gi gir1.2-ayatanaappindicator3-0.1",
        "fedora": "sudo dnf install python3-gobject libayatana-appindicator-gtk3",
        "arch": "sudo pacman -S python-gobject libayatana-appindicator",
        "suse": "sudo zypper install python3-gobject typelib-1_0-AyatanaAppIndicator3-0_1",
    }.get(distro, "install your distribution's python3-gi (PyGObject) and the AyatanaAppIndicator3 typelib")
    if pipx_spec is not None:
        python = "" if system_python else " --python /usr/bin/python3"
        return f"{packages} && pipx install --force --system-site-packages{python} {pipx_spec}"
    if system_python:
        return packages
    return (f"{packages}, then run portbell from a Python that sees them: "
            f"pipx install --system-site-packages --python /usr/bin/python3 portbell (this one is {install})")


def tray_backend_sentence(backend: str, menu: bool, why: str) -> str:
    """`portbell tray` at start and `portbell status`: which pystray backend, whether it has a menu, why."""
    return f"pystray backend {backend} (menu: {'yes' if menu else 'no'}): {why}"
