"""`portbell tray`: the tray's loop, which shows the record as an icon, a menu and notifications.

Threads. pystray runs the toolkit's loop on the main thread. One worker thread
(pystray's setup thread) does everything else: it sleeps until the record's
folder is written (inotify on Linux; elsewhere it polls every two seconds),
then asks `PRAGMA data_version` whether the daemon committed and reads only
then; it sends notifications and carries out the menu's actions (tray/actions.py),
which the menu only queues. Whatever touches the toolkit (menu, image, tooltip) is
handed to the toolkit's thread (GLib.idle_add on the GTK backends) and only when it
changed: rebuilding a menu closes it if it is open.
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from ..daemon import paths
from ..daemon.words import tray as phrases
from ..daemon.session import graphical_session
from . import icon as icons, menu, system
from ._x11 import PointerProbe
from . import toolkit
from .toolkit import backend_name, to_pystray
from .actions import Actions, autostart_status
from . import alerts
from .alerts import Batcher
from .menu import Action, View
from .notify import Notifier
from .state import Record, TrayState

log = logging.getLogger("portbell.tray")

TICK_S = 2.0  # how often the record is polled where writes to it cannot be watched (no inotify)
IDLE_S = 30.0  # with inotify: the periodic look when nothing was written (daemon lock, config, expiries)
DAEMON_CHECK_S = 6.0  # how often the daemon's lock is looked at
CONFIG_CHECK_S = 10.0  # how often the config file's stamp is looked at
MARKS_S = 60.0  # how often expiring rules are re-evaluated when nothing else changed
BACKLOG_S = 300.0  # at start, alerts older than this are counted as unseen, not announced
ICON_SIZE = 64  # the toolkit scales it to the panel
GTK_BACKENDS = ("gtk", "appindicator")
X11_BACKENDS = GTK_BACKENDS + ("xorg",)
MENU_RETRY_S = 0.5  # while a menu is open, how often the tray looks whether it closed



def utcnow() -> datetime:
    return datetime.now(timezone.utc)


# ------------------------------------------------------------------ the app


class TrayApp:
    def __init__(self, pystray_module, *, notifier: Notifier | None = None, clock=time.monotonic, now=utcnow) -> None:
        from ..daemon import config as configmod

        self.pystray = pystray_module
        self.backend = backend_name(pystray_module)
        self.clock, self.now = clock, now
        self.record = Record(paths.database())
        self.state_path = paths.state_dir() / "tray.json"
        self.state = TrayState.load(self.state_path)
        self.config_path = paths.config_file()
        self._config_stamp = None
        self.config = configmod.Config()
        self._load_config()
        self.batcher = Batcher(self.config.coalesce_s, self.config.cooldown_s)
        self.notifier = notifier or Notifier()
        self.notifier.on_action = self.do  # a notification's button queues its action, as the menu does
        self.children = system.Children()
        self.actions = Actions(self)
        self.pending: queue.Queue[Action] = queue.Queue()  # do() queues, the worker carries out
        self._wake_r, self._wake_w = os.pipe()  # do() wakes the worker through it
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self.stopping = threading.Event()
        self.started_at = now()
        self.daemon = "running"
        self.autostart = autostart_status()
        self.unseen = 0
        self.marks: dict = {}
        self._generation = 0
        self._daemon_at = self._config_at = self._marks_at = 0.0
        self.daemon_grace_until = 0.0  # a daemon we just started has not taken its lock yet
        self.probe = PointerProbe() if self.backend in X11_BACKENDS else None
        self._menu_retry_at = None  # monotonic time to look again whether the open menu closed
        self._settle_at = None  # monotonic time a held-back loopback listener enters the menu
        self._built_for = None  # (view, paused) the current menu was built from
        self._computed: tuple = (None, None, None)  # (items, icon state, tooltip) built from it
        self._shown: tuple = (None, None, None)  # (items, icon state, tooltip) handed to the toolkit
        self.icon = None
        self.menu_dump = os.environ.get("PORTBELL_TRAY_MENU_DUMP")  # tests: the menu as text, when it changes

    # -------------------------------------------------------------- running

    def run(self) -> int:
        p = self.pystray
        self.icon = p.Icon("portbell", icons.draw("loopback", 0, ICON_SIZE), "portbell", to_pystray(p, menu.build(View(record=False), self.now()), self.do))
        if self.backend not in GTK_BACKENDS and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, lambda *_: self.do(Action("quit")))
        self.icon.run(self._setup)
        self.close()
        return 0

    def close(self) -> None:
        self.record.close()
        if hasattr(self.notifier, "close"):
            self.notifier.close()
        if self.probe:
            self.probe.close()
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass

    def _setup(self, icon) -> None:
        """pystray's setup thread: show the icon, then poll until Quit."""
        if self.backend in GTK_BACKENDS:
            from gi.repository import GLib

            for signum in (signal.SIGTERM, signal.SIGINT):
                GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signum, self._on_signal)
        icon.visible = True
        if self.backend == "gtk":
            self.on_toolkit(lambda: _left_click_opens_menu(icon))
        try:
            self.loop()
        except Exception:
            log.exception("the tray's worker failed; quitting")
            self.stopping.set()
            icon.stop()

    def _on_signal(self) -> bool:
        self.do(Action("quit"))
        return False

    def do(self, action: Action) -> None:
        """Called by the menu (toolkit thread): the worker carries it out."""
        self.pending.put(action)
        try:
            os.write(self._wake_w, b"!")
        except OSError:  # the pipe is full: the worker is awake anyway
            pass

    def loop(self) -> None:
        """Sleep until there is something to do: a menu action, a write to the record (inotify on
        Linux), a coalesced notification due, the end of a pause, or the next periodic look."""
        import select

        watch = system.FolderWatch.open(paths.private_dir(paths.state_dir()))
        period = IDLE_S if watch else TICK_S
        log.debug("waking on %s", "writes to the record (inotify)" if watch else f"a poll every {TICK_S:g} s")
        waits = [self._wake_r] + ([watch] if watch else [])
        next_tick = 0.0
        try:
            while not self.stopping.is_set():
                wake = min(t for t in (next_tick, self.batcher.next_due(), self._pause_ends(), self._settle_at, self._menu_retry_at) if t is not None)
                ready, _, _ = select.select(waits, [], [], max(0.0, wake - self.clock()))
                if watch in ready:
                    watch.drain()
                    self._daemon_at = 0.0  # the daemon wrote (or stopped): look at its lock too
                if self._wake_r in ready:
                    _drain(self._wake_r)
                while not self.pending.empty():
                    action = self.pending.get_nowait()
                    try:
                        self.carry_out(action)
                    except Exception:
                        log.exception("the menu action %s failed", action.verb)
                if self.stopping.is_set():
                    break
                try:
                    self.tick()
                except Exception:  # a surprise in one tick must not take the icon down: log it, try again
                    log.exception("the tray's poll failed; trying again in %g s", period)
                next_tick = self.clock() + period
        finally:
            if watch:
                watch.close()

    def _pause_ends(self) -> float | None:
        """The monotonic time the pause ends (the menu changes then), None when not paused."""
        until = self.state.paused_until
        if until is None:
            return None
        left = (until - self.now()).total_seconds()
        return self.clock() + left if left > 0 else None

    # -------------------------------------------------------------- one tick

    def tick(self) -> None:
        mono, now = self.clock(), self.now()
        self.children.reap()
        if mono >= self._config_at:
            self._config_at = mono + CONFIG_CHECK_S
            self._load_config()
        if mono >= self._daemon_at:
            self._daemon_at = mono + DAEMON_CHECK_S
            running = system.daemon_running(paths.lock_file()) is not None
            self.daemon = "running" if running or mono < self.daemon_grace_until else "stopped"
        changed = self.record.refresh()
        reading = self.record.reading
        if reading is not None:
            if self.record.generation != self._generation:
                self._adopt(reading.last_id)
                changed = True
            if changed:
                self._news(mono, now)
                self.unseen = self.record.unseen(self.state.seen_id or 0)
            if changed or mono >= self._marks_at:
                self._marks_at = mono + MARKS_S
                self.marks = menu.marks_for(reading.listeners, self.config.rules + reading.rules, now)
        notice = self.batcher.due(mono)
        if notice is not None:
            self.notifier.send(
                notice.title, notice.body, timeout_s=20 if notice.exposed else 8,
                urgency="critical" if notice.exposed else "normal", buttons=alerts.buttons(notice, _uid()),
            )
        self.show(self.view(now), now)

    def _adopt(self, last_id: int) -> None:
        """A record was opened: a first one, or a new file. Never replay its history as news."""
        self._generation = self.record.generation
        dirty = False
        for name in ("notified_id", "seen_id"):
            value = getattr(self.state, name)
            if value is None or value > last_id:  # first run, or the ids belong to a replaced database
                setattr(self.state, name, last_id)
                dirty = True
        if dirty:
            self.save_state()

    def _news(self, mono: float, now: datetime) -> None:
        new = self.record.alerts_after(self.state.notified_id or 0)
        if not new:
            return
        self.state.notified_id = new[-1].id
        self.save_state()
        fresh = [r for r in new if r.event.at >= self.started_at - timedelta(seconds=BACKLOG_S)]
        self.batcher.add(fresh, mono, paused=self.paused(now))

    def paused(self, now: datetime) -> bool:
        return self.state.paused_until is not None and now < self.state.paused_until

    def view(self, now: datetime) -> View:
        r = self.record.reading
        listeners, due = menu.settled(r.listeners, r.since, now, self.started_at) if r else ((), None)
        self._settle_at = None if due is None else self.clock() + max(0.0, (due - now).total_seconds())
        return View(
            listeners=listeners,
            since=r.since if r else {},
            marks=self.marks,
            unseen=self.unseen if r else 0,
            paused_until=self.state.paused_until,
            daemon=self.daemon,
            record=r is not None,
            complete=r.complete if r else True,
            autostart=self.autostart,
            uid=_uid(),
        )

    # -------------------------------------------------------------- the toolkit

    def show(self, view: View, now: datetime) -> None:
        """Hand the toolkit what changed, on its thread."""
        built_for = (view, view.paused(now))
        if built_for != self._built_for:  # else nothing to compute: an idle tick costs a comparison
            self._built_for = built_for
            self._computed = (menu.build(view, now), menu.icon_state(view), menu.tooltip(view, now))
        shown = self._computed
        if shown == self._shown:
            return
        self._menu_retry_at = None
        if shown[0] != self._shown[0] and self._shown[0] is not None and self.menu_open():
            # swapping a shown menu closes it: keep it until it closes, hand the icon and tooltip now
            self._menu_retry_at = self.clock() + MENU_RETRY_S
            shown = (self._shown[0], *shown[1:])
            if shown == self._shown:
                return
        before, self._shown = self._shown, shown
        self.on_toolkit(lambda: self._apply(before, shown))

    def menu_open(self) -> bool:
        """Whether a menu is on screen now (a pointer grab on X11); False when that cannot be told."""
        return bool(self.probe and self.probe.held())

    def on_toolkit(self, fn) -> None:
        if self.backend in GTK_BACKENDS:
            from gi.repository import GLib

            def once():
                try:
                    fn()
                except Exception:
                    log.exception("updating the tray icon failed")
                return False

            GLib.idle_add(once)
        else:  # pystray's other backends hand these calls to their own loop
            fn()

    def _apply(self, before: tuple, shown: tuple) -> None:
        icon = self.icon
        items, state, tip = shown
        if items != before[0]:
            icon.menu = to_pystray(self.pystray, items, self.do)
            log.debug("menu rebuilt: %d items", len(items))
            if self.menu_dump:
                dump = Path(self.menu_dump)
                paths.write_atomic(paths.private_dir(dump.parent) / dump.name, menu.as_text(items) + "\n")
        if state != before[1]:
            icon.icon = icons.draw(state[0], state[1], ICON_SIZE)
        if tip != before[2]:
            icon.title = tip
            status_icon = getattr(icon, "_status_icon", None)  # GTK's status icon: its tooltip is separate
            if status_icon is not None:
                status_icon.set_tooltip_text(tip)

    # -------------------------------------------------------------- actions

    def carry_out(self, action: Action) -> None:
        """On the worker: what the menu item does (tray/actions.py)."""
        self.actions.carry_out(action)

    def start_daemon(self) -> None:
        system.start_daemon(self.children, paths.state_dir() / "daemon.log")
        self.daemon_grace_until = self.clock() + 10.0
        self.daemon = "running"

    def save_state(self) -> None:
        try:
            self.state.save(self.state_path)
        except OSError as err:
            log.warning("cannot save the tray's state to %s: %s", self.state_path, err)

    def _load_config(self) -> None:
        from ..daemon import config as configmod

        try:
            st = self.config_path.stat()
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        except OSError:
            stamp = None
        if stamp == self._config_stamp:
            return
        self._config_stamp = stamp
        try:
            self.config = configmod.load(self.config_path)
        except configmod.ConfigError as err:
            log.warning("the configuration has errors; the tray keeps its previous settings:\n%s", err)
            return
        if hasattr(self, "batcher"):
            self.batcher.configure(self.config.coalesce_s, self.config.cooldown_s)


# ------------------------------------------------------------------ helpers


def _left_click_opens_menu(icon) -> None:
    """GTK's status icon runs the default item on a left click; every other host opens the menu."""
    from gi.repository import Gtk

    status_icon = icon._status_icon
    status_icon.disconnect_by_func(icon._on_status_icon_activate)
    status_icon.connect("activate", lambda si: icon._on_status_icon_popup_menu(si, 1, Gtk.get_current_event_time()))


def _uid() -> int | None:
    return os.getuid() if hasattr(os, "getuid") else None


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass


# ------------------------------------------------------------------ entry


def run(verbose: bool = False) -> int:
    """`portbell tray`: exit 1 with a sentence when there is no desktop to show an icon in."""
    from ..daemon.errors import AlreadyRunning
    from ..daemon.service import InstanceLock

    missing = graphical_session()
    if missing:
        print(
            f"portbell tray: {missing}. The tray needs a desktop session; on a machine without one, "
            "run `portbell daemon` (the service) or `portbell` (events in the terminal).",
            file=sys.stderr,
        )
        return 1
    lock = InstanceLock(paths.runtime_dir() / "tray.lock")
    try:
        lock.acquire()
    except AlreadyRunning as err:
        print(f"portbell tray: already running (pid {err.pid}).", file=sys.stderr)
        return 1
    try:
        try:
            import pystray
        except Exception as err:  # ImportError, or Xlib's display errors raised at import time
            print(f"portbell tray: cannot show a tray icon: {type(err).__name__}: {err}", file=sys.stderr)
            return 1
        backend, has_menu, why = toolkit.choice(pystray, os.environ.get("PYSTRAY_BACKEND"))
        toolkit.write_note(paths.runtime_dir() / "tray.json", backend, has_menu, why)
        app = TrayApp(pystray)
        if system.daemon_running(paths.lock_file()) is None:
            app.start_daemon()
        print(f"portbell tray (pid {os.getpid()}): {phrases.tray_backend_sentence(backend, has_menu, why)}; record {paths.database()}", file=sys.stderr, flush=True)
        if not has_menu and not os.environ.get("PYSTRAY_BACKEND"):
            app.notifier.send("portbell: the tray has no menu", why, timeout_s=30)
        return app.run()
    finally:
        lock.release()


def main(argv=None) -> int:
    """`python -m portbell.tray [-v]`."""
    import argparse

    parser = argparse.ArgumentParser(prog="portbell tray", description="The portbell tray icon.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more (to stderr)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="portbell: %(message)s")
    return run(args.verbose)
