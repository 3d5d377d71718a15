"""What a menu item does: the tray's actions, carried out on its worker thread.

The menu names an action as data (menu.Action: a verb and its arguments); the
app queues it from the toolkit's thread and its worker hands it to
`Actions.carry_out`, which looks the verb up in one table. Each handler says
how it went in a notification (and the log) and keeps the tray running when
the desktop cannot do what was asked: no clipboard tool, no opener, a record
that cannot be written.

The files a menu item opens are written here: the recent events, every
listener, and the configuration (from its commented template when missing).
"""

from __future__ import annotations

import logging
from pathlib import Path

from ..daemon import paths
from ..daemon.errors import StoreError
from ..daemon.model import Listener, replace
from . import menu, system
from .menu import Action
from .process import stop_process

log = logging.getLogger("portbell.tray")

RECENT_EVENTS = 200  # how many events "Show recent events" writes


class Actions:
    """The handlers of the menu's verbs, over the state of `app` (the TrayApp that queued them)."""

    def __init__(self, app) -> None:
        self.app = app

    def carry_out(self, action: Action) -> None:
        handler = self.HANDLERS.get(action.verb)
        if handler is None:
            log.warning("unknown menu action %r", action.verb)
            return
        handler(self, *action.args)

    # -------------------------------------------------------------- the verbs

    def quit(self) -> None:
        self.app.stopping.set()
        self.app.icon.stop()

    def seen(self) -> None:
        app = self.app
        r = app.record.reading
        if r is not None:
            app.state.seen_id = max(app.state.seen_id or 0, r.last_id)
            app.save_state()
        app.unseen = 0

    def copy(self, text: str) -> None:
        try:
            tool = system.copy(text)
        except system.Unavailable as err:
            self.tell("Nothing copied", str(err))
            return
        log.info("copied %s to the clipboard with %s", text, tool)

    def browse(self, url: str) -> None:
        self._guarded(lambda: system.open_url(url))

    def trust(self, li: Listener, choice: str = "always") -> None:
        self._decide("trust", li, choice)

    def mute(self, li: Listener, choice: str = "always") -> None:
        self._decide("mute", li, choice)

    def stop(self, pid, start, name) -> None:
        self.tell(*stop_process(pid, start, name))

    def ask_stop(self, pid, start, name) -> None:
        """A notification's Stop button: ask first, in a notification of its own (the menu's second click).
        `start` is the owner's exact start (Owner.start), passed on to the guard as the menu's Stop does."""
        from ..daemon.words import tray as phrases

        title, body = phrases.tray_stop_question(name, pid)
        stop_now, cancel = phrases.TRAY_STOP_BUTTONS
        yes = (stop_now[0], stop_now[1], Action("stop", (pid, start, name)))
        self.app.notifier.send(title, body, timeout_s=30, urgency="critical", buttons=(yes, (cancel[0], cancel[1], None)))

    def pause(self, choice: str) -> None:
        app = self.app
        app.state.paused_until = menu.pause_until(choice, app.now())
        app.batcher.drop()
        app.save_state()

    def resume(self) -> None:
        self.app.state.paused_until = None
        self.app.save_state()

    def events(self) -> None:
        self._guarded(lambda: system.open_path(self.write_recent_events(), self.app.children))
        self.seen()

    def all_listeners(self) -> None:
        self._guarded(lambda: system.open_path(self.write_listeners(), self.app.children))

    def settings(self) -> None:
        self._guarded(lambda: system.open_path(ensure_config(self.app.config_path), self.app.children))

    def autostart(self, enable) -> None:
        enable = bool(enable)
        try:
            from ..daemon import autostart
        except ImportError:
            self.app.autostart = None
            return
        try:
            written = autostart.enable("all") if enable else autostart.disable("all")
        except Exception as err:
            self.tell("Start at login: not changed", str(err))
        else:
            files = ", ".join(str(p) for p in written) or "nothing to change"
            self.tell("Start at login: " + ("on" if enable else "off"), files)
        self.app.autostart = autostart_status()

    def start_daemon(self) -> None:
        self.app.start_daemon()

    HANDLERS = {
        "quit": quit,
        "seen": seen,
        "copy": copy,
        "browse": browse,
        "trust": trust,
        "mute": mute,
        "stop": stop,
        "ask-stop": ask_stop,
        "pause": pause,
        "resume": resume,
        "events": events,
        "all-listeners": all_listeners,
        "settings": settings,
        "autostart": autostart,
        "start-daemon": start_daemon,
    }

    # -------------------------------------------------------------- how they tell

    def tell(self, title: str, body: str = "") -> None:
        """Feedback for an action: a notification, and the log."""
        log.warning("%s%s", title, f": {body}" if body else "")
        self.app.notifier.send(title, body, timeout_s=6)

    def _guarded(self, fn) -> None:
        try:
            fn()
        except (system.Unavailable, StoreError) as err:  # no such program here; the record failed
            self.tell("portbell", str(err))
        except OSError as err:
            self.tell("portbell", f"that did not work: {err}")

    def _decide(self, verb: str, li: Listener, choice: str) -> None:
        from ..daemon.record import Store

        rule = menu.rule_for(li, verb, choice, self.app.now())
        try:
            store = Store.open(paths.database())
            try:
                rule_id = store.add_decision(rule)
            finally:
                store.close()
        except Exception as err:  # StoreError, OSError: say so, keep running
            self.tell(f"Could not {verb}", str(err))
            return
        what = "Trusted" if verb == "trust" else "Muted"
        self.tell(f"{what}: port {li.port}", f"{replace(rule, id=rule_id).describe()}. Undo with: portbell forget {rule_id}")

    # -------------------------------------------------------------- files to open

    def write_recent_events(self) -> Path:
        from ..daemon import words

        path = paths.private_dir(paths.state_dir()) / "recent-events.txt"
        store = self.app.record.store
        records = store.events(limit=RECENT_EVENTS) if store is not None else []
        lines = [f"portbell: the last {len(records)} events, newest last (written {words.clock(self.app.now())}).", ""]
        lines += [words.record_line(rec) for rec in records]
        if not records:
            lines.append("No events recorded yet.")
        lines += ["", "More: portbell events --since 1d   (portbell events --help)"]
        paths.write_atomic(path, "\n".join(lines) + "\n")
        return path

    def write_listeners(self) -> Path:
        from ..daemon import words

        path = paths.private_dir(paths.state_dir()) / "listeners.txt"
        r = self.app.record.reading
        listeners = r.listeners if r else ()
        text = words.listeners_table(listeners) if listeners else "Nothing listens."
        paths.write_atomic(path, f"portbell: {len(listeners)} listeners (written {words.clock(self.app.now())}).\n\n{text}\n")
        return path


def ensure_config(path: Path) -> Path:
    """The config file, created from the commented template when it does not exist."""
    if path.exists():
        return path
    from ..daemon import config as configmod

    doc = (configmod.__doc__ or "").splitlines()
    body = "\n".join(("# " + line[4:] if line.startswith("    ") else "# " + line).rstrip() for line in doc[1:])
    text = (
        "# portbell configuration (TOML). Every setting is optional; remove the leading # to use one.\n"
        "# Check it with: portbell config check\n#\n" + body.strip("\n") + "\n"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    paths.write_atomic(path, text)
    return path


def autostart_status() -> bool | None:
    """Whether the tray starts at login; None when run-at-login is not available here."""
    try:
        from ..daemon import autostart
    except ImportError:
        return None
    try:
        entries = autostart.status("tray")
    except Exception as err:
        log.warning("cannot tell whether portbell starts at login: %s", err)
        return None
    # active None: no service manager to ask (an XDG autostart entry): installed is the answer
    return any(e.active if e.active is not None else bool(getattr(e, "installed", False)) for e in entries)
