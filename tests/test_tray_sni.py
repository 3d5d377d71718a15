"""The tray on a real StatusNotifierItem host: xfce4-panel's systray plugin under Xvfb, with a
private session bus and dunst, and pystray's appindicator backend, as XFCE users run it. Driven as
a person would: find the icon on the panel, click it, watch the windows on screen.

One desktop, one daemon and one tray for the module. Missing packages skip the module with their
names; `bash tests/desktop/setup.sh` installs them (as root). With PORTBELL_DOCS_SHOTS=1 the open
menu is written to docs/tray-menu-xfce.png.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from desktop import vdesk
from desktop.actors import Tray, docs_shot
from desktop.actors import child, home, shots  # noqa: F401 (fixtures)
from desktop.vdesk import poll, stop_process

CHURN_TRIES = 6
CHURN_OPEN_S = 2.5

# One loopback listener at a time, opened and closed every 0.7 s, as language servers, browsers
# and test runners do all day. It paces itself: it is the load, not a wait.
CHURN = textwrap.dedent(
    """
    import socket, sys, time
    print("churning", flush=True)
    while True:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen()
        time.sleep(0.35)
        s.close()
        time.sleep(0.35)
    """
)


@pytest.fixture(scope="module")
def desktop(tmp_path_factory):
    yield from vdesk.started(tmp_path_factory.mktemp("desktop-xfce"), "the StatusNotifierItem desktop tests", needs="xfce", host="xfce")


@pytest.fixture(scope="module")
def tray(desktop, home):
    # one notification per alert: on a shared machine other programs' listeners would otherwise be
    # coalesced with the test's, and a coalesced notification has no per-listener buttons
    (home.folder / "config.toml").write_text("[notify]\ncoalesce_s = 0\n")
    yield from Tray.running("appindicator", desktop, home)


@pytest.fixture
def churn(desktop):
    proc = subprocess.Popen([sys.executable, "-c", CHURN], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "churning"
    yield proc
    stop_process(proc)


def test_the_icon_shows_on_the_statusnotifier_host(tray):
    assert "pystray backend appindicator (menu: yes)" in tray.log()
    x, y, count = tray.icon()
    area = tray.desktop.tray_area()
    assert area["y"] <= y < area["y"] + area["h"]
    assert count >= 80, f"only {count} pixels of the icon's colours: too small to see"


def test_a_left_click_opens_the_menu(tray):
    tray.close_menus()
    x, y, _ = tray.icon()
    before = tray.desktop.windows()
    tray.desktop.xdo("mousemove", x, y, "click", "1")
    popup = tray.desktop.new_popup(before)
    assert popup["h"] > 100, popup
    tray.close_menus()


def test_an_open_menu_stays_open_while_loopback_listeners_come_and_go(tray, churn, shots):
    stayed, shot = 0, False
    for attempt in range(CHURN_TRIES):
        popup = tray.open_menu()
        if not shot and tray.desktop.popups():  # the first menu still open (a closed listener may close one)
            image = tray.desktop.screenshot().crop((max(0, popup["x"] - 8), 0, 1024, min(768, popup["y"] + popup["h"] + 8)))
            image.save(shots / "xfce-menu.png")
            docs_shot(image, "tray-menu-xfce.png")
            shot = True
        # still mapped after CHURN_OPEN_S? Poll for it to close; a menu that stays open times out.
        try:
            poll(lambda: not tray.desktop.popups(), CHURN_OPEN_S, 0.05, "the menu to close")
        except AssertionError:
            stayed += 1
        tray.close_menus()
        tray.alive()
    print(f"menu still mapped after {CHURN_OPEN_S} s under churn: {stayed} of {CHURN_TRIES}")
    assert stayed >= CHURN_TRIES - 1, f"the menu stayed open in only {stayed} of {CHURN_TRIES} tries"
    assert shot
    assert "restarted after crash" not in tray.desktop.log("xfce4-panel")


def test_an_exposed_listener_rings_with_buttons_and_mute_1h_clicked_over_dbus_writes_the_rule(tray, child):
    from datetime import datetime, timedelta, timezone

    from portbell.daemon.record import Store

    c = child("pbbuttons")
    title = f"{c.port} pbbuttons: exposed"
    found = poll(lambda: [n for n in tray.desktop.notifications() if n["summary"] == title], 20, 0.2, f"the notification {title!r}")
    n = found[0]
    assert len(title) <= 40
    assert len(shown_lines(n["message"])) <= 4, n["message"]  # the title, then at most 3 lines
    asked = tray.desktop.log("dbus-monitor")
    asked = asked[asked.index(f'string "{title}"'):]
    asked = asked[: asked.find("member=Notify")]  # this Notify call only
    assert 'string "urgency"\n         variant             byte 2' in asked, asked  # critical
    assert "portbell-64.png" in asked.split(f'string "{title}"')[0] or "icons/portbell-64.png" in tray.desktop.log("dbus-monitor"), asked
    for key, label in (("default", "Details"), ("trust", "Trust"), ("mute-1h", "Mute 1 h"), ("stop", "Stop")):
        assert f'string "{key}"\n' in asked and f'string "{label}"\n' in asked, f"no {label} button in:\n{asked[-3000:]}"
    # a person clicks "Mute 1 h": the server sends ActionInvoked(id, key); here the test sends it, as the server would
    tray.desktop.gdbus("emit", "--session", "--object-path", "/org/freedesktop/Notifications",
                       "--signal", "org.freedesktop.Notifications.ActionInvoked", f"uint32 {n['id']}", "'mute-1h'")

    def muted():
        store = Store.open(tray.home.folder / "state" / "portbell.db")
        try:
            return [r for r in store.decisions() if r.action == "mute" and r.ports == (c.port, c.port)]
        finally:
            store.close()

    (rule,) = poll(muted, 10, 0.1, "the mute rule in the record")
    left = rule.until - datetime.now(timezone.utc)
    assert timedelta(minutes=58) < left <= timedelta(hours=1), rule
    assert rule.source == "tray"
    poll(lambda: f"{c.port} tcp  pbbuttons ({c.proc.pid})  0.0.0.0  (muted)" in tray.menu(), 10, what="the muted mark in the menu")


def shown_lines(markup: str) -> list[str]:
    return [line for line in vdesk.shown_text(markup).splitlines() if line.strip()]
