"""Desktop notifications: D-Bus with buttons on Linux, osascript on macOS, plyer elsewhere.

On Linux the tray talks to org.freedesktop.Notifications itself (tray/_dbus.py): buttons where the
server has the `actions` capability, the urgency, the app icon, a timeout that is kept. A click comes
back as the menu.Action the button stood for and goes to `on_action` (the app's queue), so a button
does exactly what the menu's item does. On macOS plyer needs pyobjus, which is no dependency:
`osascript` shows the notification. Elsewhere (Windows), and on Linux when no notification service
is on the session bus, plyer.

The body is escaped (html.escape) where the server renders markup: process names and command lines
are chosen by whoever started the process. The title is passed as is (the spec makes it plain text);
tray/alerts.py keeps markup's characters out of it anyway.

When no notification service answers, the tray keeps working: the failure is logged once, and again
only after notifications have worked in between.
"""

from __future__ import annotations

import html
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

log = logging.getLogger("portbell.tray")

APP_NAME = "portbell"
RETRY_S = 30.0  # how long a missing D-Bus notification service is not asked again


def escape_body(text: str) -> str:
    return html.escape(text)


def app_icon() -> str:
    """The icon's file: packaging/icons beside the tray's folder, in a checkout as in a wheel
    (portbell/tray, portbell/packaging). A path is understood by every server."""
    path = Path(__file__).resolve().parent.parent / "packaging" / "icons" / "portbell-64.png"
    return str(path) if path.is_file() else ""


class Notifier:
    def __init__(self, icon: str | None = None, on_action=None, platform: str = sys.platform) -> None:
        self.app_icon = app_icon() if icon is None else icon
        self.on_action = on_action  # called with the menu.Action a clicked button stands for
        self.platform = platform
        self.failing = False
        self.sent = 0
        self.via = None  # "dbus", "osascript" or "plyer": how the last notification went
        self._impl = None
        self._dbus = None
        self._dbus_after = 0.0  # monotonic time the D-Bus service may be asked again
        self._buttons: dict[int, dict[str, object]] = {}  # notification id -> action key -> menu.Action

    # -------------------------------------------------------------- the ways

    def dbus(self):
        """The D-Bus notification service (Linux), None when there is none (asked again later)."""
        if not self.platform.startswith("linux"):
            return None
        if self._dbus is None and time.monotonic() >= self._dbus_after:
            try:
                from ._dbus import DbusNotifications

                self._dbus = DbusNotifications(self._clicked)
                log.debug("notifications: D-Bus, capabilities %s", ", ".join(sorted(self._dbus.capabilities)))
            except Exception as err:  # ImportError (no jeepney), Unavailable (no bus, no service)
                log.debug("no D-Bus notification service (%s); plyer instead", err)
                self._dbus_after = time.monotonic() + RETRY_S
        return self._dbus

    @property
    def has_actions(self) -> bool:
        d = self.dbus()
        return bool(d and d.actions)

    def _plyer(self):
        if self._impl is None:
            from plyer import notification

            self._impl = notification
        return self._impl

    # -------------------------------------------------------------- sending

    def send(self, title: str, body: str, *, timeout_s: float = 10, urgency: str = "normal", buttons=()) -> bool:
        """Show a notification; False (logged once) when no notification service works.

        buttons: (key, label, action) triples, key "default" for a click on the bubble; shown where
        the server offers actions, and `on_action(action)` runs when one is clicked.
        """
        try:
            d = self.dbus()
            if d is not None:
                self._send_dbus(d, title, body, timeout_s, urgency, buttons)
            elif self.platform == "darwin":
                _osascript(title, body)
                self.via = "osascript"
            else:
                self._plyer().notify(title=title, message=escape_body(body), app_name=APP_NAME, app_icon=self.app_icon, timeout=int(timeout_s))
                self.via = "plyer"
        except Exception as err:  # whatever the way raises (D-Bus errors, NotImplementedError, OSError...)
            if self._dbus is not None:
                self._dbus.close()
                self._dbus = None  # a server that went away: ask the bus again next time
            if not self.failing:
                log.warning(
                    "cannot show notifications (%s: %s); the tray keeps working and shows alerts in its icon. "
                    "A notification service (the desktop's, or dunst, mako...) is needed for pop-ups.",
                    type(err).__name__,
                    str(err).splitlines()[0] if str(err) else "",
                )
                self.failing = True
            return False
        if self.failing:
            log.warning("notifications work again")
            self.failing = False
        self.sent += 1
        return True

    def _send_dbus(self, d, title, body, timeout_s, urgency, buttons) -> None:
        text = escape_body(body) if d.markup else body
        pairs = [(key, label) for key, label, _ in buttons] if d.actions else []
        nid = d.notify(title, text, icon=self.app_icon, urgency=urgency, timeout_s=timeout_s, actions=pairs, app_name=APP_NAME)
        self.via = "dbus"
        if pairs:
            self._buttons[nid] = {key: action for key, _, action in buttons}
            while len(self._buttons) > 256:
                del self._buttons[next(iter(self._buttons))]

    def _clicked(self, nid: int, key: str) -> None:
        """On the D-Bus listener thread: a button of ours was clicked."""
        action = self._buttons.get(nid, {}).get(key)
        if action is None:
            return
        log.info("notification %d: %s clicked", nid, key)
        if self.on_action is not None:
            self.on_action(action)

    def close(self) -> None:
        if self._dbus is not None:
            self._dbus.close()
            self._dbus = None


def _osascript(title: str, body: str) -> None:
    """macOS: Notification Center through osascript; the texts are arguments, never script source."""
    script = ["on run argv", "display notification (item 2 of argv) with title (item 1 of argv)", "end run"]
    argv = ["osascript"] + [part for line in script for part in ("-e", line)] + [title, body]
    subprocess.run(argv, check=True, timeout=10, capture_output=True, env=dict(os.environ))
