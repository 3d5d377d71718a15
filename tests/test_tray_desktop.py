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
import textwrap
from pathlib import Path

import pytest

from desktop import vdesk
from desktop.vdesk import poll, shown_text, stop_process

ROOT = Path(__file__).resolve().parent.parent
BACKENDS = ["appindicator", "gtk"]

# the three looks of the icon (tray/icon.py FILL), as found on screen
LOOKS = {"loopback": (46, 139, 87), "exposed": (232, 145, 0), "alert": (235, 45, 55)}


def near(rgb, target, tolerance=24):
    return all(abs(a - b) <= tolerance for a, b in zip(rgb, target))


def any_look(r, g, b):
    return any(near((r, g, b), c) for c in LOOKS.values())


@pytest.fixture(scope="module")
def desktop(tmp_path_factory):
    gaps = vdesk.missing()
    if gaps:
        pytest.skip(
            "the desktop tests need " + ", ".join(gaps) + ": run `bash tests/desktop/setup.sh` as root "
            "(Debian: xvfb xdotool x11-utils trayer dunst libnotify-bin dbus dbus-bin libglib2.0-bin "
            "fonts-dejavu-core gir1.2-gtk-3.0 gir1.2-ayatanaappindicator3-0.1 xclip, and in the venv "
            "PyGObject<3.51 pycairo dbus-python)"
        )
    d = vdesk.VirtualDesktop(tmp_path_factory.mktemp("desktop"))
    try:
        d.start()
        yield d
    finally:
        d.stop()


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tray-shots")
    print(f"\nscreenshots: {folder}")
    return folder


def docs_shot(image, name):
    if os.environ.get("PORTBELL_DOCS_SHOTS") == "1":
        image.save(ROOT / "docs" / name)


class Home:
    """The portbell folders of the module, and its daemon (a direct child, restartable)."""

    def __init__(self, desktop: vdesk.VirtualDesktop, folder: Path):
        self.desktop = desktop
        self.folder = folder
        self.env = dict(
            desktop.env,
            PORTBELL_STATE_DIR=str(folder / "state"),
            PORTBELL_RUNTIME_DIR=str(folder / "run"),
            PORTBELL_CONFIG=str(folder / "config.toml"),
        )
        self.daemon = None
        self.starts = 0

    def start_daemon(self):
        from portbell.daemon.service import InstanceLock

        self.starts += 1
        self.daemon = self.desktop.spawn(f"daemon-{self.starts}", [sys.executable, "-m", "portbell.daemon", "daemon", "--interval", "0.25"], env=self.env)
        poll(lambda: InstanceLock.holder(self.folder / "state" / "daemon.lock") == self.daemon.pid, 20, what="the daemon's lock")

    def stop_daemon(self):
        stop_process(self.daemon)


@pytest.fixture(scope="module")
def home(desktop, tmp_path_factory):
    h = Home(desktop, tmp_path_factory.mktemp("portbell"))
    h.start_daemon()
    yield h
    h.stop_daemon()


NAMED_CHILD = textwrap.dedent(
    """
    import random, socket, sys
    with open("/proc/self/comm", "w") as f:   # the process name the kernel reports (15 bytes at most)
        f.write(sys.argv[1])
    # Ports below the ephemeral range: the daemon's novelty memory forgives a program that re-opens
    # *random* ports, and every child here is the same python executable.
    socks, port = [], random.randrange(20000, 30000)
    while len(socks) < int(sys.argv[3]):
        s = socket.socket()
        try:
            s.bind((sys.argv[2], port))
        except OSError:
            s.close()
        else:
            s.listen()
            socks.append(s)
        port += 1
    print(" ".join(str(s.getsockname()[1]) for s in socks), flush=True)
    sys.stdin.read()
    """
)


class Child:
    """A process with a chosen name holding `count` TCP listeners on `address` until stopped."""

    def __init__(self, name: str, address: str = "0.0.0.0", count: int = 1):
        self.name = name
        self.proc = subprocess.Popen([sys.executable, "-c", NAMED_CHILD, name, address, str(count)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.ports = [int(p) for p in self.proc.stdout.readline().split()]
        self.port = self.ports[0]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.proc.wait()


@pytest.fixture
def child():
    made = []

    def spawn(*a, **kw):
        c = Child(*a, **kw)
        made.append(c)
        return c

    yield spawn
    for c in made:
        c.stop()


def parse_menu(text: str):
    """The menu dump (tray/menu.py as_text) as a tree: [(marker, text, children)]."""
    root: list = []
    stack = [(-1, root)]
    for line in text.splitlines():
        depth = (len(line) - len(line.lstrip(" "))) // 4
        body = line[depth * 4 :]
        if body == "---":
            marker, label = "-", ""
        else:
            marker, label = body[:2], body[2:]
        node = (marker, label, [])
        while stack[-1][0] >= depth:
            stack.pop()
        stack[-1][1].append(node)
        stack.append((depth, node[2]))
    return root


def keys_to(tree, path) -> list[str]:
    """The keys that reach an item in an open GTK menu: Down skips separators and insensitive items,
    Right opens a submenu on its first sensitive item."""
    keys: list[str] = []
    level = tree
    for depth, prefix in enumerate(path):
        selectable = [n for n in level if n[0] in ("  ", "* ")]
        index = next((i for i, n in enumerate(selectable) if re.sub(r"^\[.\] ", "", n[1]).startswith(prefix)), None)
        assert index is not None, f"{prefix!r} is not in the menu: {[n[1] for n in level]}"
        keys += ["Down"] * (index + 1) if depth == 0 else ["Right"] + ["Down"] * index
        level = selectable[index][2]
    return keys


class Tray:
    def __init__(self, backend: str, desktop: vdesk.VirtualDesktop, home: Home):
        self.backend, self.desktop, self.home = backend, desktop, home
        self.dump = home.folder / f"menu-{backend}.txt"
        env = dict(home.env, PYSTRAY_BACKEND=backend, PORTBELL_TRAY_MENU_DUMP=str(self.dump))
        self.name = f"tray-{backend}"
        self.proc = desktop.spawn(self.name, [sys.executable, "-m", "portbell.daemon", "--verbose", "tray"], env=env)

    def log(self) -> str:
        return self.desktop.log(self.name)

    def menu(self) -> str:
        try:
            return self.dump.read_text()
        except FileNotFoundError:
            return ""

    def alive(self):
        assert self.proc.poll() is None, f"the tray exited ({self.proc.returncode}):\n{self.log()[-3000:]}"

    def icon(self, looks=any_look):
        self.alive()
        return poll(lambda: self.desktop.find_in_tray(looks), 15, 0.1, "the tray icon on screen")

    def open_menu(self) -> dict:
        self.close_menus()
        x, y, _ = self.icon()
        before = self.desktop.windows()
        self.desktop.xdo("mousemove", x, y, "click", "3")
        popup = self.desktop.new_popup(before)
        self.desktop.xdo("mousemove", 5, 700)  # out of the way: the keyboard walks the menu
        return popup

    def close_menus(self):
        if self.desktop.popups():
            for _ in range(3):
                self.desktop.xdo("key", "Escape")
            poll(lambda: not self.desktop.popups(), 5, what="the menus to close")

    def walk(self, path, *, then=("Return",), shot: str | None = None):
        """Open the menu with a right-click and reach `path` (label prefixes) with the keyboard."""
        popup = self.open_menu()
        keys = keys_to(parse_menu(self.menu()), path)
        for key in keys:
            count = len(self.desktop.popups())
            self.desktop.xdo("key", key)
            if key == "Right":
                poll(lambda: len(self.desktop.popups()) > count, 5, what="a submenu to open")
        image = None
        if shot:  # the whole open menu, its submenus and the tray above it
            boxes = self.desktop.popups()
            left = max(0, min(b["x"] for b in boxes) - 8)
            bottom = min(768, max(b["y"] + b["h"] for b in boxes) + 8)
            image = self.desktop.screenshot().crop((left, 0, 1024, bottom))
        for key in then:
            self.desktop.xdo("key", key)
        return popup, image


@pytest.fixture(scope="module", params=BACKENDS)
def tray(request, desktop, home):
    t = Tray(request.param, desktop, home)
    try:
        poll(lambda: "pystray backend" in t.log() or t.proc.poll() is not None, 30, what="the tray's start line")
        t.alive()
        poll(lambda: "Exposed to the network" in t.menu(), 30, what="the tray's first menu")
        yield t
        t.alive()
        t.proc.terminate()  # SIGTERM ends the tray cleanly (GLib's signal source on the GTK backends)
        assert t.proc.wait(15) == 0, t.log()[-3000:]
    finally:
        stop_process(t.proc)


def notifications_about(desktop, word):
    return [n for n in desktop.notifications() if word in shown_text(n["message"])]


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
    # alone: "... is now listening on 0.0.0.0:PORT (tcp), reachable from other machines";
    # coalesced with whatever else opened meanwhile on this machine: "PORT tcp  NAME (pid N)  0.0.0.0  (all-interfaces)"
    assert f"0.0.0.0:{c.port}" in text or f"{c.port} tcp  {name} (pid {c.proc.pid})  0.0.0.0" in text, text
    assert f"{name} (pid {c.proc.pid})" in text and ("reachable from other machines" in text or "(all-interfaces)" in text)
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
    found = poll(lambda: [n for n in tray.desktop.notifications() if str(c.port) in n["summary"]], 20, 0.2, "the notification")
    shown = shown_text(found[0]["message"])
    assert f"{name} (pid {c.proc.pid})" in shown  # what a person reads: the name as it is, not bold
    assert "&lt;b&gt;x&lt;/b&gt; &amp; y" in found[0]["body"]  # escaped on the wire


def test_the_tray_survives_a_daemon_restart(tray, home, child):
    home.stop_daemon()
    home.start_daemon()
    c = child(f"pbagain{tray.backend[:3]}")
    assert poll(lambda: notifications_about(tray.desktop, c.name), 20, 0.2, "a notification after the restart")
    tray.alive()


def test_with_only_the_xorg_backend_the_tray_says_what_to_install(desktop, tmp_path):
    """The xorg backend has no menu: the tray says so, and what to install, and keeps its icon."""
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
            assert "pystray backend xorg (menu: no)" in text
            assert "no menu" in text and "gir1.2-ayatanaappindicator3-0.1" in text and "PyGObject" in text
            assert tray.poll() is None
        finally:
            stop_process(tray)
    finally:
        stop_process(daemon)
