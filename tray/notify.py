"""Desktop notifications through plyer.

The body is escaped (html.escape): notification servers render it as markup,
and process names and command lines are chosen by whoever started the process.
The summary is plain text by the Desktop Notifications spec and servers show it
literally, so it is passed as is; tray/alerts.py keeps process text out of it.

When no notification service answers, the tray keeps working: the failure is
logged once, and again only after notifications have worked in between.
"""

from __future__ import annotations

import html
import logging
import os

log = logging.getLogger("portbell.tray")

APP_NAME = "portbell"


def escape_body(text: str) -> str:
    return html.escape(text)


class Notifier:
    def __init__(self, app_icon: str = "") -> None:
        self.app_icon = app_icon
        self.failing = False
        self.sent = 0
        self._impl = None

    def _backend(self):
        if self._impl is None:
            from plyer import notification

            impl = notification
            # plyer picks the Flatpak portal whenever a directory /app exists; outside Flatpak
            # that portal is not there and notifications vanish: talk D-Bus directly instead.
            if os.path.isdir("/app") and not os.path.exists("/.flatpak-info"):
                try:
                    import dbus  # noqa: F401
                    from plyer.platforms.linux.notification import NotifyDbus

                    impl = NotifyDbus()
                except ImportError:
                    pass
            self._impl = impl
        return self._impl

    def send(self, title: str, body: str, *, timeout_s: int = 10) -> bool:
        """Show a notification; False (logged once) when no notification service works."""
        try:
            self._backend().notify(
                title=title,
                message=escape_body(body),
                app_name=APP_NAME,
                app_icon=self.app_icon,
                timeout=timeout_s,
            )
        except Exception as err:  # plyer raises whatever its backend raises (dbus, NotImplementedError...)
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
