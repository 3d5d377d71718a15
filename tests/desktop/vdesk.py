"""A real, private, virtual desktop for the tray's tests: Xvfb, a session bus without service
activation, dunst (notifications) and a tray host, each a direct child of the test process, stopped
(TERM, KILL, wait) at teardown. The host is trayer (XEmbed only) or xfce4-panel, whose systray
plugin is a real StatusNotifierItem host (it owns org.kde.StatusNotifierWatcher) as XFCE users have
it; its configuration is xfce4-panel.xml beside this file (one panel at the top: separator,
systray, clock). Plus the eyes and hands of a person: screenshots,
the windows on screen, xdotool clicks and keys, the clipboard, the notifications dunst received.

Nothing here sleeps for a fixed time to wait for something: every wait polls with a deadline.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

from conftest import stop_process  # noqa: F401 (the desktop's helpers stop their children with it)
from conftest import wait_for as poll  # poll with a deadline, never a fixed sleep

# program or module -> the Debian package that brings it (for the skip message)
PROGRAMS = {
    "Xvfb": "xvfb",
    "xdotool": "xdotool",
    "trayer": "trayer",
    "dunst": "dunst",
    "dunstctl": "dunst",
    "dbus-daemon": "dbus-bin",
    "dbus-monitor": "dbus-bin",
    "gdbus": "libglib2.0-bin",
    "xclip": "xclip",
}
# the StatusNotifierItem host (xfce4-panel) and the second notification server (xfce4-notifyd)
XFCONFD = next((str(p) for p in Path("/usr/lib").glob("*/xfce4/xfconf/xfconfd")), "/usr/lib/x86_64-linux-gnu/xfce4/xfconf/xfconfd")
XFCE4_NOTIFYD = next((str(p) for p in Path("/usr/lib").glob("*/xfce4/notifyd/xfce4-notifyd")), "/usr/lib/x86_64-linux-gnu/xfce4/notifyd/xfce4-notifyd")
XFCE_PROGRAMS = {"xfce4-panel": "xfce4-panel", XFCONFD: "xfconf", XFCE4_NOTIFYD: "xfce4-notifyd"}
PANEL_XML = Path(__file__).with_name("xfce4-panel.xml")
MODULES = {"gi": "PyGObject<3.51 (pip)", "dbus": "dbus-python (pip)", "Xlib": "python-xlib (pip)"}
TYPELIBS = {"Gtk-3.0": "gir1.2-gtk-3.0", "AyatanaAppIndicator3-0.1": "gir1.2-ayatanaappindicator3-0.1"}

SESSION_CONF = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <keep_umask/>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""  # no <servicedir>: nothing is activated behind the test's back

DUNSTRC = """[global]
    monitor = 0
    follow = none
    width = 420
    height = 300
    origin = top-left
    offset = 10x50
    notification_limit = 0
    font = DejaVu Sans 10
    markup = full
    format = "<b>%s</b>\\n%b"
    frame_width = 2
    frame_color = "#ffffff"
    history_length = 200
    sticky_history = yes
    show_indicators = no
[urgency_low]
    background = "#222222"
    foreground = "#ffffff"
    timeout = 60
[urgency_normal]
    background = "#285577"
    foreground = "#ffffff"
    timeout = 60
[urgency_critical]
    background = "#900000"
    foreground = "#ffffff"
    timeout = 0
"""

TRAY_WIDTH, TRAY_HEIGHT = 240, 32


def missing(host: str = "trayer") -> list[str]:
    """The packages this machine lacks for the desktop tests (empty: all there)."""
    out = []
    if not sys.platform.startswith("linux"):
        return ["Linux"]
    programs = dict(PROGRAMS, **(XFCE_PROGRAMS if host == "xfce" else {}))
    for program, package in programs.items():
        if shutil.which(program) is None and package not in out:
            out.append(package)
    for module, package in MODULES.items():
        try:
            __import__(module)
        except Exception:
            out.append(package)
    for typelib, package in TYPELIBS.items():
        if not any(Path(d, f"{typelib}.typelib").exists() for d in ("/usr/lib/x86_64-linux-gnu/girepository-1.0", "/usr/lib/aarch64-linux-gnu/girepository-1.0", "/usr/lib/girepository-1.0", "/usr/lib64/girepository-1.0")):
            out.append(package)
    return out


def _read_line_from_fd(fd: int, timeout: float, what: str) -> str:
    """Read up to a newline (Xvfb writes the display number and the newline in two writes)."""
    data = b""
    deadline = time.monotonic() + timeout
    while b"\n" not in data:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"timed out waiting for {what}")
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            chunk = os.read(fd, 256)
            if not chunk:
                raise AssertionError(f"{what}: the program closed its pipe without an answer")
            data += chunk
    return data.decode().strip()


def started(folder: Path, what: str, *, needs: str = "trayer", extra: str = "", **kw):
    """A VirtualDesktop running in `folder` for a module's fixture to yield, stopped after; the
    tests skip, naming what is missing, where this machine lacks it."""
    import pytest

    gaps = missing(needs)
    if gaps:
        pytest.skip(f"{what} need " + ", ".join(gaps) + ": run `bash tests/desktop/setup.sh` as root" + extra)
    d = VirtualDesktop(folder, **kw)
    try:
        d.start()
        yield d
    finally:
        d.stop()


class VirtualDesktop:
    def __init__(self, workdir: Path, host: str = "trayer", server: str = "dunst") -> None:
        self.host = host  # "trayer" (XEmbed), "xfce" (xfce4-panel: StatusNotifierItem and XEmbed), or "none"
        self.server = server  # the notification server: "dunst" or "xfce4-notifyd"
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.procs: list[tuple[str, subprocess.Popen]] = []
        self.env: dict[str, str] = {}
        self.display = ""

    # -------------------------------------------------------------- processes

    def spawn(self, name: str, argv: list[str], env=None, **kw) -> subprocess.Popen:
        log = open(self.dir / f"{name}.log", "ab")
        try:
            proc = subprocess.Popen(argv, env=env or self.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, **kw)
        finally:
            log.close()
        self.procs.append((name, proc))
        return proc

    def log(self, name: str) -> str:
        try:
            return (self.dir / f"{name}.log").read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def start(self) -> VirtualDesktop:
        base = {k: v for k, v in os.environ.items() if k not in ("WAYLAND_DISPLAY", "DISPLAY", "DBUS_SESSION_BUS_ADDRESS")}
        runtime = self.dir / "xdg-runtime"
        runtime.mkdir(mode=0o700, exist_ok=True)
        base.update(NO_AT_BRIDGE="1", GSETTINGS_BACKEND="memory", GDK_BACKEND="x11", XDG_RUNTIME_DIR=str(runtime),
                    XDG_CONFIG_HOME=str(self.dir / "config"), XDG_CACHE_HOME=str(self.dir / "cache"))
        self.env = base
        # 1. Xvfb on a free display
        r, w = os.pipe()
        try:
            self.spawn("xvfb", ["Xvfb", "-displayfd", str(w), "-screen", "0", "1024x768x24", "-nolisten", "tcp"], pass_fds=(w,))
            os.close(w)
            self.display = ":" + _read_line_from_fd(r, 20, "Xvfb's display number")
        finally:
            os.close(r)
        self.env["DISPLAY"] = self.display
        # 2. a private session bus without service activation
        socket = self.dir / "bus"
        conf = self.dir / "session.conf"
        conf.write_text(SESSION_CONF.format(socket=socket))
        r, w = os.pipe()
        try:
            self.spawn("dbus", ["dbus-daemon", f"--config-file={conf}", "--nofork", "--nopidfile", f"--print-address={w}"], pass_fds=(w,))
            os.close(w)
            self.env["DBUS_SESSION_BUS_ADDRESS"] = _read_line_from_fd(r, 20, "dbus-daemon's address")
        finally:
            os.close(r)
        # what is asked of the notification server, as it reaches the bus (Notify calls and their actions)
        self.spawn("dbus-monitor", ["dbus-monitor", "--session", "type='method_call',interface='org.freedesktop.Notifications',member='Notify'"])
        # 3. the notification server: dunst, or xfce4-notifyd (it reads its settings from xfconfd)
        if self.server == "dunst":
            rc = self.dir / "dunstrc"
            rc.write_text(DUNSTRC)
            self.spawn("dunst", ["dunst", "-config", str(rc)])
        else:
            self.spawn("xfconfd", [XFCONFD])
            poll(lambda: self._has_name("org.xfce.Xfconf"), 20, 0.1, "xfconfd on the session bus")
            self.spawn("xfce4-notifyd", [XFCE4_NOTIFYD])
        poll(self._dunst_answers, 20, 0.1, f"{self.server} on the session bus")
        if self.host == "none":
            return self
        if self.host == "xfce":
            self._start_xfce_panel()
            return self
        # 4. trayer, the tray host (XEmbed)
        self.spawn(
            "trayer",
            ["trayer", "--edge", "top", "--align", "right", "--widthtype", "pixel", "--width", str(TRAY_WIDTH),
             "--height", str(TRAY_HEIGHT), "--transparent", "true", "--alpha", "0", "--tint", "0x3050a0",
             "--SetDockType", "true", "--SetPartialStrut", "true"],
        )
        poll(self._tray_manager, 20, 0.1, "trayer to own _NET_SYSTEM_TRAY_S0")
        return self

    def _start_xfce_panel(self) -> None:
        """4. xfconfd, then xfce4-panel with its systray plugin: the StatusNotifierWatcher and an XEmbed tray."""
        channel = self.dir / "config" / "xfce4" / "xfconf" / "xfce-perchannel-xml"
        channel.mkdir(parents=True, exist_ok=True)
        (channel / "xfce4-panel.xml").write_text(PANEL_XML.read_text())
        if self.server == "dunst":
            self.spawn("xfconfd", [XFCONFD])
            poll(lambda: self._has_name("org.xfce.Xfconf"), 20, 0.1, "xfconfd on the session bus")
        self.spawn("xfce4-panel", ["xfce4-panel", "--disable-wm-check"])
        poll(lambda: self._has_name("org.kde.StatusNotifierWatcher"), 30, 0.1, "xfce4-panel's StatusNotifierWatcher")
        poll(self._tray_manager, 20, 0.1, "xfce4-panel's systray to own _NET_SYSTEM_TRAY_S0")

    def _has_name(self, name: str) -> bool:
        self._check_alive()
        done = subprocess.run(
            ["gdbus", "call", "--session", "--dest", "org.freedesktop.DBus", "--object-path", "/org/freedesktop/DBus",
             "--method", "org.freedesktop.DBus.NameHasOwner", name],
            env=self.env, capture_output=True, text=True, timeout=10,
        )
        return "true" in done.stdout

    def gdbus(self, *args: str) -> str:
        """`gdbus ARGS` on the desktop's bus: its output (raises on failure)."""
        done = subprocess.run(["gdbus", *args], env=self.env, capture_output=True, text=True, timeout=10, check=True)
        return done.stdout

    def _dunst_answers(self) -> bool:
        self._check_alive()
        done = subprocess.run(
            ["gdbus", "call", "--session", "--dest", "org.freedesktop.Notifications", "--object-path",
             "/org/freedesktop/Notifications", "--method", "org.freedesktop.Notifications.GetServerInformation"],
            env=self.env, capture_output=True, text=True, timeout=10,
        )
        return done.returncode == 0

    def _tray_manager(self) -> bool:
        self._check_alive()
        d = self.xdisplay()
        try:
            import Xlib.X

            return d.get_selection_owner(d.intern_atom("_NET_SYSTEM_TRAY_S0")) != Xlib.X.NONE
        finally:
            d.close()

    def _check_alive(self) -> None:
        for name, proc in self.procs:
            if proc.poll() is not None and name in ("xvfb", "dbus", "dunst", "trayer", "xfconfd", "xfce4-panel", "xfce4-notifyd"):
                raise AssertionError(f"{name} exited with {proc.returncode}: {self.log(name)[-2000:]}")

    def stop(self) -> None:
        for _name, proc in reversed(self.procs):
            stop_process(proc)
        self.procs.clear()

    # -------------------------------------------------------------- seeing

    def xdisplay(self):
        import Xlib.display

        return Xlib.display.Display(self.display)

    def screenshot(self):
        from PIL import ImageGrab

        return ImageGrab.grab(xdisplay=self.display)

    def windows(self) -> dict[int, dict]:
        """Mapped top-level windows: id -> x, y, w, h, override (override-redirect: menus), cls."""
        import Xlib.X

        d = self.xdisplay()
        out = {}
        try:
            for w in d.screen().root.query_tree().children:
                try:
                    a = w.get_attributes()
                    if a.map_state != Xlib.X.IsViewable:
                        continue
                    g = w.get_geometry()
                    out[w.id] = dict(x=g.x, y=g.y, w=g.width, h=g.height, override=bool(a.override_redirect), cls=w.get_wm_class())
                except Exception:  # a window that went away meanwhile
                    pass
        finally:
            d.close()
        return out

    def tray_area(self) -> dict | None:
        """The tray host's window: trayer's, or the xfce panel (the widest of its windows)."""
        panels = [w for w in self.windows().values() if tuple(w["cls"] or ()) in (("panel", "trayer"), ("xfce4-panel", "Xfce4-panel"))]
        return max(panels, key=lambda w: w["w"]) if panels else None

    def find_in_tray(self, match, minimum: int = 20):
        """The centre (x, y) and count of the pixels in the tray for which match(r, g, b) holds."""
        area = self.tray_area()
        if not area:
            return None
        img = self.screenshot().crop((area["x"], area["y"], area["x"] + area["w"], area["y"] + area["h"])).convert("RGB")
        px = img.load()
        xs, ys = [], []
        for y in range(img.height):
            for x in range(img.width):
                if match(*px[x, y]):
                    xs.append(x)
                    ys.append(y)
        if len(xs) < minimum:
            return None
        return area["x"] + (min(xs) + max(xs)) // 2, area["y"] + (min(ys) + max(ys)) // 2, len(xs)

    def new_popup(self, before: dict, timeout: float = 5.0) -> dict:
        """A menu window that appeared since `before` (override-redirect, not dunst's)."""

        def found():
            for wid, w in self.windows().items():
                if wid not in before and w["override"] and w["h"] > 20 and w["w"] > 20 and (w["cls"] or ("",))[0].lower() != "dunst":
                    return w
            return None

        return poll(found, timeout, 0.05, "a menu window")

    def popups(self) -> list[dict]:
        return [w for w in self.windows().values() if w["override"] and (w["cls"] or ("",))[0].lower() != "dunst" and w["h"] > 20]

    # -------------------------------------------------------------- doing

    def xdo(self, *args) -> None:
        subprocess.run(["xdotool", *map(str, args)], env=self.env, check=True, timeout=10)

    def clipboard(self) -> str:
        done = subprocess.run(["xclip", "-o", "-selection", "clipboard"], env=self.env, capture_output=True, text=True, timeout=10)
        return done.stdout if done.returncode == 0 else ""

    def notifications(self) -> list[dict]:
        """Every notification dunst received so far: summary, body (as sent), message (as shown, markup)."""
        subprocess.run(["dunstctl", "close-all"], env=self.env, check=False, timeout=10)
        done = subprocess.run(["dunstctl", "history"], env=self.env, capture_output=True, text=True, timeout=10)
        if done.returncode != 0 or not done.stdout.strip():
            return []
        data = json.loads(done.stdout)["data"]
        rows = data[0] if data else []
        return [{k: v["data"] for k, v in row.items()} for row in rows]


def shown_text(markup: str) -> str:
    """The text a person sees for a Pango markup string (what dunst draws)."""
    import gi

    gi.require_version("Pango", "1.0")
    from gi.repository import Pango

    ok, _attrs, text, _accel = Pango.parse_markup(markup, -1, "\0")
    assert ok
    return text


