"""The tray on a real virtual desktop (Xvfb, trayer, a private session bus, dunst), driven as a
person would: find the icon on screen, right-click it, walk the menu with the keyboard, read the
clipboard and the notifications dunst received. Once per backend: AppIndicator (its XEmbed
fallback, as trayer is no StatusNotifierItem host) and GTK's status icon.

One desktop and one daemon for the module, one tray per backend. Missing packages skip the module
with their names; `bash tests/desktop/setup.sh` installs them (as root). Screenshots go to the
module's temporary folder (printed); with PORTBELL_DOCS_SHOTS=1 the icon and the open menu are also
written to docs/tray-icon.png and docs/tray-menu.png.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from desktop import vdesk
from desktop.actors import LOOKS, ROOT, Tray, docs_shot, near, notifications_about, parse_menu
from desktop.actors import child, home, shots  # noqa: F401 (fixtures)
from desktop.vdesk import poll, shown_text, stop_process

BACKENDS = ["appindicator", "gtk"]


@pytest.fixture(scope="module")
def desktop(tmp_path_factory):
    yield from vdesk.started(
        tmp_path_factory.mktemp("desktop"), "the desktop tests",
        extra=" (Debian: xvfb xdotool x11-utils trayer dunst libnotify-bin dbus dbus-bin libglib2.0-bin "
        "fonts-dejavu-core gir1.2-gtk-3.0 gir1.2-ayatanaappindicator3-0.1 xclip, and in the venv "
        "PyGObject<3.51 pycairo dbus-python)",
    )


@pytest.fixture(scope="module", params=BACKENDS)
def tray(request, desktop, home):
    yield from Tray.running(request.param, desktop, home)



# ------------------------------------------------------------------ the tests


def test_the_chosen_backend_loaded_with_a_menu_and_the_icon_is_visible(tray, shots):
    assert f"pystray backend {tray.backend} (menu: yes)" in tray.log()
    x, y, count = tray.icon()
    area = tray.desktop.tray_area()
    assert area["x"] <= x < area["x"] + area["w"] and area["y"] <= y < area["y"] + area["h"]
    assert count >= 80, f"only {count} pixels of the icon's colours: too small to see"
    panel = tray.desktop.screenshot().crop((area["x"], area["y"], area["x"] + area["w"], area["y"] + area["h"]))
    panel.save(shots / f"{tray.backend}-icon.png")
    if tray.backend == "appindicator":
        left = max(0, x - area["x"] - 60)
        docs_shot(panel.crop((left, 0, min(area["w"], left + 120), area["h"])).resize((360, 3 * area["h"]), 0), "tray-icon.png")


def test_a_left_click_opens_the_menu(tray):
    tray.close_menus()
    x, y, _ = tray.icon()
    before = tray.desktop.windows()
    tray.desktop.xdo("mousemove", x, y, "click", "1")
    top_level = [n for n in parse_menu(tray.menu()) if n[0] != "-"]
    # a new window tall enough for the menu's entries (not the tooltip the pointer raises)
    poll(lambda: [w for wid, w in tray.desktop.windows().items() if wid not in before and w["override"] and w["h"] >= 18 * len(top_level)],
         5, 0.05, f"a menu of {len(top_level)} entries")
    tray.desktop.xdo("mousemove", 5, 700)
    tray.close_menus()
    tray.alive()


def test_a_second_tray_says_which_one_runs_and_exits_1(tray):
    env = dict(tray.home.env, PYSTRAY_BACKEND=tray.backend)
    done = subprocess.run([sys.executable, "-m", "portbell.daemon", "tray"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert f"already running (pid {tray.proc.pid})" in done.stderr
    tray.alive()


def test_an_exposed_listener_rings_naming_its_port_and_program(tray, child):
    name = f"pbring{tray.backend[:3]}"
    c = child(name)
    found = poll(lambda: notifications_about(tray.desktop, name), 20, 0.2, f"a notification about {name}")
    text = shown_text(found[0]["message"])
    if found[0]["summary"] == f"{c.port} {name}: exposed":  # alone: port, program, pid, address, exposure
        assert f"{name} (pid {c.proc.pid}) is now listening on 0.0.0.0:{c.port} (tcp), reachable from other machines" in text, text
    else:  # coalesced with whatever else opened meanwhile on this machine: the program is named
        names = found[0]["body"].splitlines()[0]  # "N new listeners: a x3, NAME, ..."
        assert re.match(r"\d+ new listeners, \d+ exposed$", found[0]["summary"]) and name in names, found[0]
    assert found[0]["appname"] == "portbell"
    poll(lambda: f"{c.port} tcp  {name} ({c.proc.pid})  0.0.0.0" in tray.menu(), 10, what="the listener in the menu")
    assert poll(lambda: tray.desktop.find_in_tray(lambda r, g, b: near((r, g, b), LOOKS["alert"])), 10, what="the red alert icon")


def test_the_menu_opened_by_a_right_click_lists_the_listener_and_copies_its_address(tray, child, shots):
    c = child(f"pbcopy{tray.backend[:3]}")
    label = f"{c.port} tcp  {c.name} ({c.proc.pid})  0.0.0.0"
    poll(lambda: label in tray.menu(), 15, what="the listener in the menu")
    subprocess.run(["xclip", "-selection", "clipboard", "-in"], input=b"nothing yet", env=tray.desktop.env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    popup, image = tray.walk([f"{c.port} tcp", "Copy address"], shot="menu")
    top_level = [n for n in parse_menu(tray.menu()) if n[0] != "-"]
    assert popup["h"] >= 18 * len(top_level), f"a {popup['h']}px menu cannot show {len(top_level)} entries"
    image.save(shots / f"{tray.backend}-menu.png")
    if tray.backend == "appindicator":
        docs_shot(image, "tray-menu.png")
    assert poll(lambda: tray.desktop.clipboard() == f"0.0.0.0:{c.port}", 10, what="host:port on the clipboard")
    tray.alive()


def test_stop_process_from_the_menu_ends_the_listener(tray, child):
    c = child(f"pbstop{tray.backend[:3]}")
    poll(lambda: f"Stop {c.name} (pid {c.proc.pid}) now" in tray.menu(), 15, what="the stop entry")
    tray.walk([f"{c.port} tcp", "Stop process", f"Stop {c.name}"])
    assert c.proc.wait(15) == -signal.SIGTERM
    poll(lambda: f"{c.port} tcp" not in tray.menu(), 15, what="the listener to leave the menu")
    tray.alive()


def test_thirty_listeners_at_once_make_at_most_two_notifications(tray, child):
    name = f"pbburst{tray.backend[:3]}"
    c = child(name, count=30)

    def announced():
        about = notifications_about(tray.desktop, name)
        total = 0
        for n in about:
            m = re.search(r"(\d+) new listeners", n["summary"])
            total += int(m.group(1)) if m else 1
        return about if total >= 30 else None

    about = poll(announced, 20, 0.2, "all 30 listeners announced")
    assert len(about) <= 2, [n["summary"] for n in about]
    assert any(f"{name} x" in shown_text(n["message"]) for n in about)
    c.stop()
    poll(lambda: f"{c.port} tcp" not in tray.menu(), 15, what="the burst to close")


def test_markup_in_a_process_name_reaches_the_screen_literally(tray, child):
    name = "<b>x</b> & y"
    c = child(name)
    escaped = "&lt;b&gt;x&lt;/b&gt; &amp; y"  # on the wire
    found = poll(lambda: [n for n in tray.desktop.notifications() if escaped in n["body"] and (str(c.port) in n["summary"] or "new listeners" in n["summary"])],
                 20, 0.2, "the notification")
    n = found[-1]
    shown = shown_text(n["message"])
    if n["summary"] == f"{c.port} bx/b y: exposed":  # alone (markup's characters are kept out of the title)
        assert f"{name} (pid {c.proc.pid})" in shown  # what a person reads: the name as it is, not bold
    else:  # coalesced with other programs' listeners on this machine: named in the first line
        assert name in shown.splitlines()[1], shown


def test_the_tray_survives_a_daemon_restart(tray, home, child):
    home.stop_daemon()
    home.start_daemon()
    c = child(f"pbagain{tray.backend[:3]}")
    assert poll(lambda: notifications_about(tray.desktop, c.name), 20, 0.2, "a notification after the restart")
    tray.alive()


def test_forcing_the_xorg_backend_says_what_it_lacks_and_status_names_it(desktop, tmp_path):
    """PYSTRAY_BACKEND=xorg: the tray says it has no menu and why, keeps its icon, and status says so."""
    env = dict(
        desktop.env,
        PYSTRAY_BACKEND="xorg",
        PORTBELL_STATE_DIR=str(tmp_path / "state"),
        PORTBELL_RUNTIME_DIR=str(tmp_path / "run"),
        PORTBELL_CONFIG=str(tmp_path / "config.toml"),
    )
    daemon = desktop.spawn("daemon-xorg", [sys.executable, "-m", "portbell.daemon", "daemon", "--interval", "0.5"], env=env)
    try:
        from portbell.daemon.service import InstanceLock

        poll(lambda: InstanceLock.holder(tmp_path / "state" / "daemon.lock") == daemon.pid, 20, what="the daemon")
        tray = desktop.spawn("tray-xorg", [sys.executable, "-m", "portbell.daemon", "tray"], env=env)
        try:
            poll(lambda: "pystray backend" in desktop.log("tray-xorg") or tray.poll() is not None, 30, what="the start line")
            text = desktop.log("tray-xorg")
            assert "pystray backend xorg (menu: no): chosen with PYSTRAY_BACKEND=xorg; it has no menu" in text, text
            assert tray.poll() is None
            status = subprocess.run([sys.executable, "-m", "portbell.daemon", "status"], env=env, capture_output=True, text=True, timeout=60)
            assert f"The tray is running: pid {tray.pid}, pystray backend xorg (menu: no): chosen with PYSTRAY_BACKEND=xorg" in status.stdout, status.stdout
        finally:
            stop_process(tray)
    finally:
        stop_process(daemon)


def test_status_names_the_trays_backend_and_why(tray):
    done = subprocess.run([sys.executable, "-m", "portbell.daemon", "status"], env=tray.home.env, capture_output=True, text=True, timeout=60)
    assert f"The tray is running: pid {tray.proc.pid}, pystray backend {tray.backend} (menu: yes): chosen with PYSTRAY_BACKEND={tray.backend}" in done.stdout, done.stdout


@pytest.fixture(scope="module")
def plain_install(tmp_path_factory):
    """The wheel of HEAD in a fresh venv, as `pipx install .` makes it: no PyGObject, no dbus-python."""
    tmp = tmp_path_factory.mktemp("plain")
    src, dist, venv = tmp / "src", tmp / "dist", tmp / "venv"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(src)], check=True, timeout=120)
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dist), str(src)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    (wheel,) = dist.glob("*.whl")
    done = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(wheel)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return venv


def test_a_plain_install_without_pygobject_says_the_one_step_that_gives_the_menu(desktop, plain_install, tmp_path):
    python = str(plain_install / "bin" / "python")
    assert subprocess.run([python, "-c", "import gi"], capture_output=True).returncode != 0  # as pipx makes it
    env = dict(
        desktop.env,
        PORTBELL_STATE_DIR=str(tmp_path / "state"),
        PORTBELL_RUNTIME_DIR=str(tmp_path / "run"),
        PORTBELL_CONFIG=str(tmp_path / "config.toml"),
    )
    env.pop("PYSTRAY_BACKEND", None)
    tray = desktop.spawn("tray-plain", [str(plain_install / "bin" / "portbell"), "tray"], env=env)
    try:
        poll(lambda: "pystray backend" in desktop.log("tray-plain") or tray.poll() is not None, 60, what="the start line")
        text = desktop.log("tray-plain")
        assert f"pystray backend xorg (menu: no): no menu: this Python ({python}) has no GObject bindings (PyGObject)" in text, text
        assert "To get the menu: sudo apt install python3-gi gir1.2-ayatanaappindicator3-0.1" in text, text
        assert "plyer" not in text and "Traceback" not in text, text  # no warning of a notifier it does not use
        # and it says so where a person looks: a notification (over D-Bus: no GObject needed)
        found = poll(lambda: [n for n in desktop.notifications() if n["summary"] == "portbell: the tray has no menu"], 20, 0.2, "the notification")
        assert "python3-gi" in vdesk.shown_text(found[0]["message"])
    finally:
        stop_process(tray)
        _stop_everything_run_from(plain_install)  # the daemon the tray started, detached, maybe still starting


def _stop_everything_run_from(venv) -> None:
    """TERM, then KILL, every process whose command line runs a program of `venv`, until none is left."""
    prefix = str(venv) + "/"

    def running() -> list[int]:
        pids = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    argv = (entry / "cmdline").read_bytes().split(b"\0")
                except OSError:
                    continue
                if any(a.decode(errors="replace").startswith(prefix) for a in argv[:2]):
                    pids.append(int(entry.name))
        return pids

    deadline = time.monotonic() + 10
    while (pids := running()) and time.monotonic() < deadline:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGTERM if time.monotonic() < deadline - 5 else signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.2)
    assert not running(), "a process of the plain install outlived the test"
