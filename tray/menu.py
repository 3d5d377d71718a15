"""The tray's menu, tooltip and icon state as plain data. Pure.

`build(view, now)` turns a View (what the tray knows) into a tuple of Items;
tray/app.py turns Items into pystray objects in one place and swaps the menu
only when the tuple differs from the last one (rebuilding a toolkit menu closes
it if it is open). Nothing here depends on the clock except through `now`, and
no text changes by itself as time passes (times are absolute, never "5m ago"),
so an idle tray never rebuilds its menu. `as_text` prints a menu for tests and
people.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Mapping

from ..daemon import words
from ..daemon.words import tray as phrases
from ..daemon.model import Key, Listener, Owner, Transport, field, value
from ..daemon.model import order as model_order
from ..daemon.rules import Rule, deciding_rule

MARKS = {"trust": "trusted", "mute": "muted"}  # what a deciding rule makes of a listener in the menu

MAX_PER_SECTION = 15  # listeners shown per section; the rest are behind "N more..."
MAX_OWNERS = 3  # owners detailed per listener
MAX_TEXT = 72  # characters of an exe path or command line in a menu label
SETTLE_S = 3.0  # a loopback listener enters the menu once it has lived this long

EXPOSED_TITLE = "Exposed to the network"
LOOPBACK_TITLE = "This machine only"

MUTE_CHOICES = (("For 1 hour", "1h"), ("For 8 hours", "8h"), ("Until the process exits", "exit"), ("Always", "always"))
PAUSE_CHOICES = (("For 1 hour", "1h"), ("Until tomorrow", "tomorrow"))


@value
class Action:
    """What a menu item does, as data: tray/actions.py carries it out."""

    verb: str  # seen | copy | browse | trust | mute | stop | ask-stop | pause | resume | events |
    #            all-listeners | settings | autostart | start-daemon | quit
    args: tuple = ()


@value
class Item:
    text: str
    action: Action | None = None
    submenu: tuple[Item, ...] = ()
    enabled: bool = True
    checked: bool | None = None  # None: not a check item
    default: bool = False  # the icon's default action (a left click on GTK's status icon)
    separator: bool = False


SEPARATOR = Item("", enabled=False, separator=True)


def label(text: str) -> Item:
    """A line of information: shown, not clickable."""
    return Item(text, enabled=False)


@value
class View:
    """Everything the menu, the tooltip and the icon are built from."""

    listeners: tuple[Listener, ...] = ()
    since: Mapping[Key, datetime] = field(factory=dict)  # when each listener was first recorded
    marks: Mapping[Key, str] = field(factory=dict)  # "trusted" | "muted", from the rules
    unseen: int = 0  # alerts the user has not looked at yet
    paused_until: datetime | None = None
    daemon: str = "running"  # running | stopped
    record: bool = True  # False until the daemon has recorded a first sample
    complete: bool = True  # the daemon sees every owner
    autostart: bool | None = None  # None: run-at-login is not available here
    uid: int | None = None  # the tray's user: other users' processes cannot be stopped

    @property
    def exposed(self) -> tuple[Listener, ...]:
        return tuple(li for li in self.listeners if li.exposure.exposed)

    @property
    def loopback(self) -> tuple[Listener, ...]:
        return tuple(li for li in self.listeners if not li.exposure.exposed)

    def paused(self, now: datetime) -> bool:
        return self.paused_until is not None and now < self.paused_until


def settled(listeners, since: Mapping[Key, datetime], now: datetime, after: datetime, settle_s: float = SETTLE_S):
    """The listeners the menu shows, and when the next held-back one is due (None: none held back).

    A loopback listener first recorded after `after` (the tray's start) and younger than `settle_s`
    is held back: language servers, browsers and test runners open and close them all day, and
    rebuilding a shown menu closes it on every host. An exposed listener enters at once: it is the
    news (and it is rare).
    """
    shown, due = [], None
    for li in listeners:
        first = since.get(li.key)
        if li.exposure.exposed or first is None or first <= after or (now - first).total_seconds() >= settle_s:
            shown.append(li)
            continue
        at = first + timedelta(seconds=settle_s)
        due = at if due is None or at < due else due
    return tuple(shown), due


def order(listeners) -> tuple[Listener, ...]:
    """Menu order: the model's one order (by port, transport, family, address)."""
    return tuple(sorted(listeners, key=model_order))


# ------------------------------------------------------------------ short texts


def icon_state(view: View) -> tuple[str, int]:
    """("alert", unseen) when alerts wait to be seen, else ("exposed", 0) or ("loopback", 0)."""
    if view.unseen:
        return "alert", view.unseen
    if view.exposed:
        return "exposed", 0
    return "loopback", 0


def summary(view: View) -> str:
    """`3 exposed, 14 on this machine only`."""
    if not view.record:
        return "Waiting for the daemon's first sample"
    if not view.listeners:
        return "Nothing listens"
    return f"{len(view.exposed)} exposed, {len(view.loopback)} on this machine only"


def tooltip(view: View, now: datetime) -> str:
    parts = [summary(view)]
    if view.unseen:
        parts.append(words.plural(view.unseen, "new alert"))
    if view.paused(now):
        parts.append(f"notifications paused until {words.when(view.paused_until, now)}")
    if view.daemon != "running":
        parts.append("the daemon is not running")
    return "portbell: " + "; ".join(parts)


def listener_label(li: Listener, mark: str | None = None) -> str:
    """`8000 tcp  python3 (4242)  0.0.0.0`, `631 tcp  cups.service (root)  0.0.0.0` when only the
    unit is known, `-> 172.17.0.2:80 (shop-web-1)` after a forwarder's, `(trusted)` or `(muted)`."""
    text = f"{li.port} {li.transport}  {_short(words.owners_tag(li), 40)}  {li.address}"
    forward = words.forward_phrase(li)
    if forward:
        text += "  " + _short(forward, 50)
    return f"{text}  ({mark})" if mark else text


def copy_text(li: Listener) -> str:
    """What "Copy address" puts on the clipboard: host:port as bound ([::1]:80 for IPv6)."""
    return li.endpoint


def browser_url(li: Listener) -> str | None:
    """The URL "Open in browser" opens, TCP only; a wildcard bind is reached through loopback."""
    if li.transport is not Transport.TCP:
        return None
    host = li.address
    if host == "0.0.0.0":
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    scheme = "https" if li.port in (443, 8443) else "http"
    return f"{scheme}://{host}:{li.port}/"


def _short(text: str, limit: int = MAX_TEXT) -> str:
    return words.short(text, limit)  # no newlines or tabs in a menu label


# ------------------------------------------------------------------ the menu


def build(view: View, now: datetime) -> tuple[Item, ...]:
    items: list[Item] = [label(summary(view))]
    if view.unseen:
        items.append(Item(f"{words.plural(view.unseen, 'new alert')}: mark as seen", Action("seen"), default=True))
    if view.daemon != "running":
        items.append(Item("The daemon is not running: start it", Action("start-daemon")))
    if view.paused(now):
        items.append(label(f"Notifications paused until {words.when(view.paused_until, now)}"))
    if view.record and not view.complete:
        items.append(label(phrases.tray_partial_view(view.uid == 0)))
    items.append(SEPARATOR)
    if view.record:
        for title, group in ((EXPOSED_TITLE, view.exposed), (LOOPBACK_TITLE, view.loopback)):
            items.append(label(title))
            if not group:
                items.append(label("nothing"))
            for li in group[:MAX_PER_SECTION]:
                items.append(listener_item(li, view, now))
            if len(group) > MAX_PER_SECTION:
                items.append(Item(f"{len(group) - MAX_PER_SECTION} more...", Action("all-listeners")))
        items.append(SEPARATOR)
    paused = view.paused(now)
    pause = tuple(Item(text, Action("pause", (choice,))) for text, choice in PAUSE_CHOICES)
    items.append(Item("Pause notifications", submenu=(*pause, Item("Resume now", Action("resume"), enabled=paused))))
    items.append(Item("Show recent events", Action("events")))
    items.append(Item("Open settings", Action("settings")))
    items.append(
        Item(
            "Start at login" if view.autostart is not None else "Start at login (not available here)",
            Action("autostart", (not view.autostart,)),
            enabled=view.autostart is not None,
            checked=bool(view.autostart),
        )
    )
    items.append(SEPARATOR)
    items.append(Item("Quit", Action("quit")))
    return tuple(items)


def listener_item(li: Listener, view: View, now: datetime) -> Item:
    mark = view.marks.get(li.key)
    sub: list[Item] = [label(line) for line in details(li, view.since.get(li.key), now)]
    sub.append(SEPARATOR)
    sub.append(Item("Copy address", Action("copy", (copy_text(li),))))
    url = browser_url(li)
    if url:
        sub.append(Item("Open in browser", Action("browse", (url,))))
    sub.append(Item(f"Trust {_program_label(li)} on port {li.port}", Action("trust", (li,)), enabled=mark != "trusted"))
    mutes = []
    for text, choice in MUTE_CHOICES:
        if choice == "exit" and not any(o.pid and o.started_at for o in li.owners):
            continue
        mutes.append(Item(text, Action("mute", (li, choice))))
    sub.append(Item("Mute", submenu=tuple(mutes), enabled=mark is None))
    sub.append(stop_item(li, view.uid))
    return Item(listener_label(li, mark), submenu=tuple(sub))


def stop_item(li: Listener, uid: int | None) -> Item:
    """`Stop process`, with one confirming entry per process: asking first is the second click."""
    confirm = []
    for owner in li.owners[:MAX_OWNERS]:
        reason = stop_refusal_static(owner, uid)
        text = f"Stop {_short(owner.name or '?', 30)} (pid {owner.pid}) now" if owner.pid else "Stop: process not visible"
        if reason:
            confirm.append(label(f"{text}: {reason}" if owner.pid else text))
        else:
            confirm.append(Item(text, Action("stop", (owner.pid, owner.start, owner.name))))
    enabled = any(it.enabled for it in confirm)
    return Item("Stop process", submenu=tuple(confirm) or (label("no process is visible"),), enabled=enabled)


def stop_refusal_static(owner: Owner, uid: int | None) -> str | None:
    """Why the menu does not even offer to stop this owner (the live check happens on click)."""
    if owner.pid is None:
        return "not visible"
    if owner.pid in (0, 1):
        return "never pid 0 or 1"
    if uid is not None and owner.uid is not None and owner.uid != uid:
        return f"belongs to {owner.user or f'uid {owner.uid}'}"
    if owner.start is None:  # the exact start the guard compares; without it the click is refused
        return "start time unknown"
    return None


def details(li: Listener, since: datetime | None, now: datetime) -> list[str]:
    """The submenu's information lines: exposure, then per process: who, exe, command line; since when."""
    lines = [words.exposure_details(li)]
    if li.unit is not None:
        lines.append("unit " + _short(words.unit_label(li.unit)))
    forward = words.forward_phrase(li)
    if forward:
        lines.append("forwards " + _short(forward))
    for owner in li.owners[:MAX_OWNERS]:
        if owner.pid is None:
            lines.append(f"process not visible (socket of {words.user_of(owner)})")
            continue
        how = words.VIA.get(owner.via or "")
        lines.append(f"{_short(owner.name or '?', 40)}, pid {owner.pid}{', ' + how if how else ''}, user {owner.user or owner.uid or '?'}")
        lines.append("exe " + _short(owner.exe or "(not readable)"))
        lines.append("command " + _short(" ".join(owner.cmdline) if owner.cmdline else "(not readable)"))
    if len(li.owners) > MAX_OWNERS:
        extra = len(li.owners) - MAX_OWNERS
        lines.append(f"and {extra} more process{'es' if extra > 1 else ''}")
    if since is not None:
        lines.append(f"listening since {words.when(since, now)}")
    return lines


def _program_label(li: Listener) -> str:
    names = sorted({o.name for o in li.owners if o.name})
    return _short(names[0], 30) if names else "this listener"


# ------------------------------------------------------------------ decisions and pauses


def rule_for(li: Listener, action: str, choice: str = "always", now: datetime | None = None) -> Rule:
    """The decision Trust / Mute writes: this program on this port and transport (any address).

    choice (mute): "1h", "8h", "exit" (only while this process lives), "always".
    """
    owner = next((o for o in li.owners if o.pid is not None), li.owners[0] if li.owners else None)
    program = None
    if owner is not None:
        program = owner.exe or owner.name
    until = pid = started = None
    if choice in ("1h", "8h"):
        if now is None:
            raise ValueError("a timed mute needs now")
        until = now + timedelta(hours=int(choice[:-1]))
    elif choice == "exit" and owner is not None and owner.pid is not None:
        pid, started = owner.pid, owner.started_at
    user = owner.user if owner is not None and program is None else None
    return Rule(
        action=action,
        program=program,
        ports=(li.port, li.port),
        transport=li.transport,
        user=user,
        until=until,
        pid=pid,
        started_at=started,
        source="tray",
    )


def marks_for(listeners, rules, now: datetime) -> dict[Key, str]:
    """Which listeners a rule trusts or mutes now (trust wins, as in the policy)."""
    marks: dict[Key, str] = {}
    for li in listeners:
        rule = deciding_rule(rules, li, now)
        if rule is not None:
            marks[li.key] = MARKS[rule.action]
    return marks


def pause_until(choice: str, now: datetime) -> datetime:
    """"1h": an hour from now; "tomorrow": the next local midnight (quiet for the rest of today)."""
    if choice == "1h":
        return now + timedelta(hours=1)
    if choice == "tomorrow":
        local = now.astimezone()
        midnight = (local + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
        return midnight
    raise ValueError(f"unknown pause {choice!r}")


# ------------------------------------------------------------------ text


def as_text(items, depth: int = 0) -> str:
    """One line per item, submenus indented: `# ` a label (disabled), `* ` the default item,
    `[x] ` / `[ ] ` a check item, a trailing ` >` a submenu, `---` a separator."""
    lines = []
    pad = "    " * depth
    for it in items:
        if it.separator:
            lines.append(pad + "---")
            continue
        marker = "# " if not it.enabled else "* " if it.default else "  "
        check = "" if it.checked is None else "[x] " if it.checked else "[ ] "
        lines.append(f"{pad}{marker}{check}{it.text}{' >' if it.submenu else ''}")
        if it.submenu:
            lines.append(as_text(it.submenu, depth + 1))
    return "\n".join(lines)
