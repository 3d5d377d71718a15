"""Whether a menu is open on the X display, asked the way X answers it: someone holds the pointer.

Every tray host opens its menus with a pointer grab (GTK and Qt menus, the panel's or our own), and
rebuilding a shown menu closes it on every host. So before swapping the menu the tray tries to grab
the pointer for an instant from a connection of its own: AlreadyGrabbed means a menu (or a drag) is
on screen, and the swap waits. python-xlib comes with pystray on Linux. Where there is no X display
(Wayland without Xwayland, macOS, Windows) the answer is "not known", and the tray swaps as before.
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger("portbell.tray")


class PointerProbe:
    """One X connection, kept; `held()` is True while another client grabs the pointer."""

    def __init__(self) -> None:
        self._display = None
        self._failed = False

    def held(self) -> bool | None:
        """True: a menu is open; False: none; None: cannot tell here."""
        if self._failed or not os.environ.get("DISPLAY"):
            return None
        try:
            from Xlib import X

            if self._display is None:
                import Xlib.display

                self._display = Xlib.display.Display()
            root = self._display.screen().root
            status = root.grab_pointer(False, 0, X.GrabModeAsync, X.GrabModeAsync, X.NONE, X.NONE, X.CurrentTime)
            if status == X.GrabSuccess:
                self._display.ungrab_pointer(X.CurrentTime)
                self._display.sync()
                return False
            return status in (X.AlreadyGrabbed, X.GrabFrozen)
        except Exception as err:  # no Xlib, no display, a broken connection: say so once, then stop asking
            log.info("cannot tell whether a menu is open (%s: %s); the menu is swapped when it changes", type(err).__name__, err)
            self._failed = True
            self.close()
            return None

    def close(self) -> None:
        if self._display is not None:
            try:
                self._display.close()
            except Exception:
                pass
            self._display = None
