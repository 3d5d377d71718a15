"""The people and programs of the tray's desktop tests: the portbell folders and daemon (Home), a
child process holding named listeners (Child), the tray as a person uses it (Tray: find the icon,
click it, walk the menu with the keyboard), and the notifications a desktop received."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from desktop import vdesk
from desktop.vdesk import poll, shown_text, stop_process

ROOT = Path(__file__).resolve().parent.parent.parent

# the three looks of the icon (tray/icon.py FILL), as found on screen
LOOKS = {"loopback": (46, 139, 87), "exposed": (232, 145, 0), "alert": (235, 45, 55)}


def near(rgb, target, tolerance=24):
    return all(abs(a - b) <= tolerance for a, b in zip(rgb, target))


def any_look(r, g, b):
    return any(near((r, g, b), c) for c in LOOKS.values())



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

    @classmethod
    def running(cls, backend: str, desktop: vdesk.VirtualDesktop, home: Home):
        """A tray with its first menu shown, for a fixture to yield; then TERM must end it cleanly."""
        t = cls(backend, desktop, home)
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



def notifications_about(desktop, word):
    return [n for n in desktop.notifications() if word in shown_text(n["message"])]



@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tray-shots")
    print(f"\nscreenshots: {folder}")
    return folder


def docs_shot(image, name):
    if os.environ.get("PORTBELL_DOCS_SHOTS") == "1":
        image.save(ROOT / "docs" / name)


@pytest.fixture(scope="module")
def home(desktop, tmp_path_factory):
    h = Home(desktop, tmp_path_factory.mktemp("portbell"))
    h.start_daemon()
    yield h
    h.stop_daemon()


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


