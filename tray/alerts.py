"""Which alerts become notifications, and their words. Pure.

The daemon decides what is worth an alert (Recorded.alert); the tray decides
how to tell: alerts arriving within `coalesce_s` of the first one become one
notification ("5 new listeners: node x3, python3 x2"); a key notified less than
`cooldown_s` ago stays quiet; nothing is queued while notifications are paused.
The clock is passed in (monotonic seconds), so tests drive time.

Texts are plain here. The title leads with the port and the program and fits in
40 characters (xfce4-notifyd cuts longer ones); the body has at most 3 lines,
the command line shortened to one. The Desktop Notifications spec makes the
title plain text and servers show it literally; the body is rendered as markup
by most servers: tray/notify.py escapes it. A notice about one listener carries
it, so the notification can offer Trust, Mute 1 h and Stop.
"""

from __future__ import annotations

from collections import Counter

from ..daemon import words
from ..daemon.words import tray as phrases
from ..daemon.model import EventKind, Key, Listener, Recorded, replace, value
from ..daemon.rules import program_of
from .menu import Action, stop_refusal_static

MAX_NAMES = 4  # programs named in a coalesced notification's first line



@value
class Notice:
    title: str
    body: str  # plain text: escape it for the notification server
    keys: tuple[Key, ...]
    exposed: bool  # something in it is reachable from other machines
    listener: Listener | None = None  # the one listener it is about (None: a coalesced notice)


class Batcher:
    def __init__(self, coalesce_s: float = 2.0, cooldown_s: float = 300.0) -> None:
        self.coalesce_s = coalesce_s
        self.cooldown_s = cooldown_s
        self.pending: dict[Key, Recorded] = {}
        self.first_at: float | None = None
        self.sent_at: dict[tuple[Key, str], float] = {}

    def configure(self, coalesce_s: float, cooldown_s: float) -> None:
        self.coalesce_s, self.cooldown_s = coalesce_s, cooldown_s

    def add(self, records, now: float, *, paused: bool = False) -> int:
        """Queue the alerts among `records`; returns how many were queued or updated.

        The cooldown is per key and program: the same program re-opening the same port stays quiet,
        another program taking it is news. A later alert for a key already waiting replaces it (the
        daemon may name a socket's process one poll after it saw the socket): one notification, with
        the best facts.
        """
        if paused:
            return 0
        queued = 0
        for rec in records:
            if not rec.alert or rec.baseline or rec.event.kind is EventKind.CLOSED:
                continue
            key = rec.event.key
            waiting = self.pending.get(key)
            if waiting is not None:
                self.pending[key] = _merge(waiting, rec)
                queued += 1
                continue
            last = self.sent_at.get((key, program_of(rec.event.listener)))
            if last is not None and now - last < self.cooldown_s:
                continue
            self.pending[key] = rec
            queued += 1
        if self.pending and self.first_at is None:
            self.first_at = now
        return queued

    def next_due(self) -> float | None:
        """When the pending alerts are due as one notification (None: nothing pending)."""
        return None if self.first_at is None else self.first_at + self.coalesce_s

    def due(self, now: float) -> Notice | None:
        """The coalesced notice, once `coalesce_s` has passed since the first pending alert."""
        when = self.next_due()
        if when is None or now < when:
            return None
        records, self.pending, self.first_at = list(self.pending.values()), {}, None
        for rec in records:
            self.sent_at[(rec.event.key, program_of(rec.event.listener))] = now
        self._forget(now)
        return notice(records)

    def drop(self) -> None:
        """Pause: forget what is waiting."""
        self.pending, self.first_at = {}, None

    def _forget(self, now: float) -> None:
        if len(self.sent_at) > 4096:
            self.sent_at = {k: t for k, t in self.sent_at.items() if now - t < self.cooldown_s}


def _merge(waiting: Recorded, newer: Recorded) -> Recorded:
    """The newer state of a key whose alert has not been shown yet; still news of an opening if it was one."""
    if waiting.event.kind is EventKind.OPENED:
        return replace(newer, event=replace(newer.event, kind=EventKind.OPENED, at=waiting.event.at, previous=None))
    return newer


def _who(rec: Recorded) -> str:
    """The first owner whose process is visible, else the first one: `python3 (pid 4242)`, `a process of root`."""
    li = rec.event.listener
    owner = next((o for o in li.owners if o.pid is not None), li.owners[0] if li.owners else None)
    return words.owner_phrase(owner) if owner is not None else "an unknown process"


def notice(records: list[Recorded]) -> Notice:
    keys = tuple(r.event.key for r in records)
    exposed = any(r.event.listener.exposure.exposed for r in records)
    if len(records) == 1:
        rec = records[0]
        li, ev = rec.event.listener, rec.event
        if ev.kind is EventKind.CHANGED and ev.previous is not None and ev.previous.exposure is not li.exposure:
            title = phrases.tray_alert_title(li, "reach")
            lines = [f"{_who(rec)} on {li.endpoint} ({li.transport}) is now {words.reach(li)}; was {words.REACH[ev.previous.exposure]}."]
        elif ev.kind is EventKind.CHANGED:
            title = phrases.tray_alert_title(li, "owner")
            lines = [f"{_who(rec)} now listens on {li.endpoint} ({li.transport}), {words.reach(li)}."]
        else:
            title = phrases.tray_alert_title(li, "opened")
            lines = [f"{_who(rec)} is now listening on {li.endpoint} ({li.transport}), {words.reach(li)}."]
        where = ", ".join(x for x in (words.unit_label(li.unit) if li.unit is not None else None, words.forward_phrase(li)) if x)
        if where:
            lines.append(where)
        cmd = next((o.cmdline for o in li.owners if o.cmdline), None)
        if cmd:
            lines.append(phrases.tray_command(cmd))
        return Notice(title, "\n".join(lines[: phrases.TRAY_BODY_LINES]), keys, exposed, li)
    # the most exposed first: they are the news that matters
    records = sorted(records, key=lambda r: (-r.event.listener.exposure.rank, r.id))
    counts = Counter(words.first_name(r.event.listener) or "an unknown process" for r in records)
    names = [f"{name} x{n}" if n > 1 else name for name, n in counts.most_common(MAX_NAMES)]
    if len(counts) > MAX_NAMES:
        names.append(f"{len(counts) - MAX_NAMES} more programs")
    reachable = sum(1 for r in records if r.event.listener.exposure.exposed)
    title = phrases.tray_burst_title(len(records), reachable)
    lines = [f"{len(records)} new listeners: " + ", ".join(names)]
    shown = records[:2] if len(records) == 2 else records[:1]
    for rec in shown:
        li = rec.event.listener
        lines.append(f"{li.port} {li.transport}  {_who(rec)}  {li.address}  ({li.exposure})")
    if len(records) > len(shown):
        lines.append(f"... and {len(records) - len(shown)} more (Show recent events)")
    return Notice(title, "\n".join(lines), keys, exposed)


def buttons(n: Notice, uid: int | None) -> tuple[tuple[str, str, Action], ...]:
    """A notification's buttons, (key, label, action): Details (a click on the bubble: the recent
    events), and for one listener Trust, Mute 1 h and Stop (which asks first, as the menu does)."""
    label = dict(phrases.TRAY_BUTTONS)
    out = [("default", label["default"], Action("events"))]
    li = n.listener
    if li is None:
        return tuple(out)
    out.append(("trust", label["trust"], Action("trust", (li,))))
    out.append(("mute-1h", label["mute-1h"], Action("mute", (li, "1h"))))
    owner = next((o for o in li.owners if o.pid is not None), None)
    if owner is not None and stop_refusal_static(owner, uid) is None:
        out.append(("stop", label["stop"], Action("ask-stop", (owner.pid, owner.start, owner.name))))
    return tuple(out)
