"""Text for people: tables and event lines. Pure. Imports: daemon.model, daemon.ports (service names).

JSON comes from the model's to_dict(); this module only makes the readable forms.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Iterable, Sequence

from .model import Event, EventKind, Listener, Owner
from .ports import service_name

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


def _exposure(li: Listener) -> str:
    return f"{li.exposure} (+ipv4)" if li.dual_stack else str(li.exposure)


def listener_row(li: Listener) -> list[str]:
    return [
        str(li.transport),
        li.endpoint,
        _exposure(li),
        _pids(li),
        _names(li),
        _users(li),
        service_name(li.port, str(li.transport)) or "",
    ]


def listeners_table(listeners: Iterable[Listener]) -> str:
    return table([listener_row(li) for li in listeners], COLUMNS)


def partial_view(as_root: bool) -> str:
    """Why some listeners show no process, for a view taken as root or as a user."""
    if as_root:
        return (
            "some processes hide their descriptors even from root (a container or another user "
            "namespace); their sockets show no process."
        )
    return "sockets of other users show no process. Run as root (or that user) to see every owner."


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def clock(moment: datetime) -> str:
    return moment.astimezone().strftime("%H:%M:%S")


def event_line(event: Event) -> str:
    li = event.listener
    who = ", ".join(o.label() for o in li.owners) or "?"
    line = f"{clock(event.at)}  {event.kind:<7}  {li.transport} {li.endpoint:<22} {_exposure(li):<16} {who}"
    if event.kind is EventKind.CHANGED and event.previous is not None:
        was = event.previous
        before = []
        if was.owners != li.owners:
            before.append(", ".join(o.label() for o in was.owners) or "?")
        if (was.exposure, was.dual_stack) != (li.exposure, li.dual_stack):
            before.append(_exposure(was))
        line += f"  (was {'; '.join(before)})"
    return line


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


def command_line(argv, limit: int = 300) -> str:
    """A command line on one line, quoted as a shell would need it, control characters escaped."""
    import shlex

    text = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in shlex.join(argv))
    return text if len(text) <= limit else text[: limit - 3] + "..."


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
