"""The tray's notification titles on xfce4-notifyd, the server that cut them ("...reachable from
othe..."), under Xvfb with a private bus: the bubble of each title is measured on screen.

xfce4-notifyd sizes a bubble to its title (with a one-word body): the bubble is a fixed margin plus
the title's width in bold, up to a maximum, and a title wider than that is ellipsized. So a title is
shown whole when its bubble is exactly the margin plus the title's width as Pango lays it out in the
same font; an ellipsized one is narrower (the old titles were: the test sees that first). dunst
shows titles whole (its history has the title as sent: tests/test_tray_sni.py checks it).
"""

from __future__ import annotations

import os

import pytest

from desktop import vdesk
from desktop.vdesk import poll
from portbell.daemon.addresses import classify
from portbell.daemon.model import Event, EventKind, Listener, Owner, Recorded, Transport
from portbell.daemon.words import tray as phrases
from portbell.tray import alerts


@pytest.fixture(scope="module")
def desktop(tmp_path_factory):
    yield from vdesk.started(tmp_path_factory.mktemp("desktop-notifyd"), "the xfce4-notifyd tests", needs="xfce", host="none", server="xfce4-notifyd")


@pytest.fixture(scope="module")
def notifier(desktop):
    saved = dict(os.environ)
    os.environ.update(desktop.env)
    try:
        from portbell.tray.notify import Notifier

        n = Notifier()
        assert n.dbus() is not None and n.has_actions, "xfce4-notifyd offers actions"
        yield n
        n.close()
    finally:
        os.environ.clear()
        os.environ.update(saved)


def bubble_width(desktop, notifier, title: str) -> int:
    before = set(desktop.windows())
    assert notifier.send(title, "body", timeout_s=60)

    def new_bubble():
        found = [w for wid, w in desktop.windows().items() if wid not in before and (w["cls"] or ("",))[0] == "xfce4-notifyd"]
        return found[0] if found else None

    poll(new_bubble, 10, 0.05, f"the bubble of {title!r}")
    seen: list[int] = []

    def settled():  # the same width three looks in a row: the bubble has its final size
        b = new_bubble()
        seen.append(b["w"] if b else -1)
        return len(seen) >= 3 and len(set(seen[-3:])) == 1 and seen[-1] > 0

    poll(settled, 10, 0.1, f"the bubble of {title!r} to settle")
    return seen[-1]


def listener(port: int, name: str, address: str = "0.0.0.0") -> Listener:
    o = Owner(pid=4242, uid=1000, name=name, started_at=None, cmdline=(name, "--serve"))
    return Listener(Transport.TCP, 4, address, port, classify(address), owners=(o,))


def text_width(text: str, font: str = "Sans Bold 10") -> int:
    """The width in pixels of `text` as GTK lays out a bold label (xfce4-notifyd's title)."""
    import gi

    gi.require_version("Pango", "1.0")
    gi.require_version("PangoCairo", "1.0")
    import cairo
    from gi.repository import Pango, PangoCairo

    layout = PangoCairo.create_layout(cairo.Context(cairo.ImageSurface(cairo.FORMAT_ARGB32, 1, 1)))
    layout.set_font_description(Pango.FontDescription(font))
    layout.set_text(text, -1)
    return layout.get_pixel_size()[0]


def shown_whole(desktop, notifier, margin: int, title: str) -> bool:
    return abs(bubble_width(desktop, notifier, title) - (margin + text_width(title))) <= 2


def test_every_kind_of_title_is_shown_whole_by_xfce4_notifyd(desktop, notifier):
    probe = "x" * 24
    margin = bubble_width(desktop, notifier, probe) - text_width(probe)
    assert shown_whole(desktop, notifier, margin, "27843 pbbuttons: exposed")  # the model holds
    assert not shown_whole(desktop, notifier, margin, "New listener on port 8000: reachable from other machines")  # and sees a cut
    # the widest realistic names: 15 characters, a Linux process name's length
    names = ("chrome_crashpad", "gnome-keyring-d", "systemd-resolve")
    titles = [phrases.tray_stop_question(name, 4194304)[0] for name in names]
    for name in names:
        li, local = listener(65535, name), listener(65535, name, "127.0.0.1")
        titles += [
            alerts.notice([Recorded(1, Event(EventKind.OPENED, None, li), True, "x")]).title,
            alerts.notice([Recorded(1, Event(EventKind.OPENED, None, local), True, "x")]).title,
            alerts.notice([Recorded(2, Event(EventKind.CHANGED, None, li, local), True, "x")]).title,
            alerts.notice([Recorded(2, Event(EventKind.CHANGED, None, local, li), True, "x")]).title,
            alerts.notice([Recorded(2, Event(EventKind.CHANGED, None, li, listener(65535, "other")), True, "x")]).title,
        ]
    titles.append(alerts.notice([Recorded(i, Event(EventKind.OPENED, None, listener(20000 + i, "node")), True, "x") for i in range(999)]).title)
    cut = [t for t in titles if len(t) > 40 or not shown_whole(desktop, notifier, margin, t)]
    assert cut == [], f"xfce4-notifyd cuts these titles: {cut}"
