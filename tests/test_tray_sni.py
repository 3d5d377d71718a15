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
    gaps = vdesk.missing("xfce")
    if gaps:
        pytest.skip(
            "the StatusNotifierItem desktop tests need " + ", ".join(gaps) + ": run `bash tests/desktop/setup.sh` as root"
        )
    d = vdesk.VirtualDesktop(tmp_path_factory.mktemp("desktop-xfce"), host="xfce")
    try:
        d.start()
        yield d
    finally:
        d.stop()


@pytest.fixture(scope="module")
def tray(desktop, home):
    t = Tray("appindicator", desktop, home)
    try:
        poll(lambda: "pystray backend" in t.log() or t.proc.poll() is not None, 30, what="the tray's start line")
        t.alive()
        poll(lambda: "Exposed to the network" in t.menu(), 30, what="the tray's first menu")
        yield t
        t.alive()
        t.proc.terminate()
        assert t.proc.wait(15) == 0, t.log()[-3000:]
    finally:
        stop_process(t.proc)


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
    stayed = 0
    for attempt in range(CHURN_TRIES):
        popup = tray.open_menu()
        if attempt == 0:
            boxes = tray.desktop.popups()
            image = tray.desktop.screenshot().crop((max(0, popup["x"] - 8), 0, 1024, min(768, popup["y"] + popup["h"] + 8)))
            image.save(shots / "xfce-menu.png")
            docs_shot(image, "tray-menu-xfce.png")
            assert boxes
        # still mapped after CHURN_OPEN_S? Poll for it to close; a menu that stays open times out.
        try:
            poll(lambda: not tray.desktop.popups(), CHURN_OPEN_S, 0.05, "the menu to close")
        except AssertionError:
            stayed += 1
        tray.close_menus()
        tray.alive()
    print(f"menu still mapped after {CHURN_OPEN_S} s under churn: {stayed} of {CHURN_TRIES}")
    assert stayed >= CHURN_TRIES - 1, f"the menu stayed open in only {stayed} of {CHURN_TRIES} tries"
    assert "restarted after crash" not in tray.desktop.log("xfce4-panel")
