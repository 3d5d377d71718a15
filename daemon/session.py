"""Whether there is a desktop to show a tray icon in.

Shared by the command line (`portbell` alone picks the tray or the daemon) and
the tray (which exits with this sentence when there is none).
"""

from __future__ import annotations

import os
import sys


def graphical_session(env=None) -> str | None:
    """Why there is no graphical session to show an icon in, or None when there is one.

    macOS and Windows always have one for a logged-in user; elsewhere it takes
    an X11 or Wayland display.
    """
    env = os.environ if env is None else env
    if sys.platform in ("darwin", "win32"):
        return None
    if env.get("DISPLAY") or env.get("WAYLAND_DISPLAY"):
        return None
    return "no graphical session: neither DISPLAY nor WAYLAND_DISPLAY is set"
