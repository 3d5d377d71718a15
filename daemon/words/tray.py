"""The tray's phrases: its menu's lines, its notifications' titles, bodies and buttons, and what it
says about its toolkit. Part of the one wording module (daemon/words): `from ..daemon.words import tray`."""

from __future__ import annotations

from ..model import Listener
from . import first_name, printable, short, unit_label


TRAY_TITLE_MAX = 40  # characters; xfce4-notifyd cuts titles wider than about 300 px
TRAY_TITLE_NAME = 15  # characters of a program's name in a title
TRAY_BODY_LINES = 3
TRAY_COMMAND_MAX = 60
# a notification's buttons: (key, label); "default" is a click on the bubble itself
TRAY_BUTTONS = (("default", "Details"), ("trust", "Trust"), ("mute-1h", "Mute 1 h"), ("stop", "Stop"))
TRAY_STOP_BUTTONS = (("stop-now", "Stop now"), ("cancel", "Cancel"))


def tray_program(li: Listener) -> str:
    """The program a notification's title names: the first visible owner, else the unit, else `?`."""
    name = next((o.name for o in li.owners if o.pid is not None and o.name), None)
    return name or (unit_label(li.unit) if li.unit is not None else first_name(li) or "?")


def tray_alert_title(li: Listener, news: str) -> str:
    """Port and program first, short enough for every server (xfce4-notifyd cuts what is wider than
    about 300 px): `8000 python3: exposed`, `631 cupsd: new owner`, `5432 postgres: new listener`.
    news: "opened", "owner" (another program took the port), "reach" (the exposure changed)."""
    if news == "reach":
        tail = "now exposed" if li.exposure.exposed else "now local only"
    elif news == "owner":
        tail = "new owner"
    else:
        tail = "exposed" if li.exposure.exposed else "new listener"
    return f"{li.port} {_title_name(tray_program(li))}: {tail}"


def _title_name(name: str) -> str:
    """A program's name for a title: 15 characters at most (a Linux process name's length), and
    markup's characters left out (servers show the title as it is; the body has the name whole)."""
    return short("".join(ch for ch in printable(name) if ch not in "<>&"), TRAY_TITLE_NAME)


def tray_burst_title(count: int, exposed: int) -> str:
    """`5 new listeners, 3 exposed` (a coalesced notification)."""
    return f"{count} new listeners" + (f", {exposed} exposed" if exposed else "")


def tray_command(argv, limit: int = TRAY_COMMAND_MAX) -> str:
    """A command line for a notification: one line, a multi-line argument (a `python -c` script)
    cut at its first line, control characters escaped, at most `limit` characters."""
    args = [a.strip().splitlines()[0] + " ..." if "\n" in a.strip() else a for a in argv]
    return short(printable(" ".join(args)), limit)


def tray_stop_question(name: str | None, pid: int) -> tuple[str, str]:
    """The confirming notification of a Stop button: title and body."""
    return (short(f"Stop {_title_name(name or '?')} (pid {pid})?", TRAY_TITLE_MAX),
            "It is sent SIGTERM after the same checks as the menu's Stop (its pid, start time and user).")


def tray_partial_view(as_root: bool) -> str:
    """The menu's line when the daemon cannot see every owner, and the two ways to see them (never
    telling root to run as root)."""
    if as_root:
        return "Partial view: some sockets show no process even to root (containers, other namespaces)"
    return "Partial view: other users' processes are hidden; run as root, or the system-wide daemon (packaging/README.md)"


def tray_menu_fix(distro: str, install: str, pipx_spec: str | None, system_python: bool) -> str:
    """The one step that gives the tray its menu where only pystray's xorg backend loads.

    distro: "debian", "fedora", "arch", "suse" or "" (from os-release); install: the Python running
    portbell; pipx_spec: what pipx installed (its metadata) when portbell runs from a pipx venv;
    system_python: that Python is the distribution's, whose GObject bindings a venv can see.
    """
    packages = {
        "debian": "sudo apt install python3-gi gir1.2-ayatanaappindicator3-0.1",
        "fedora": "sudo dnf install python3-gobject libayatana-appindicator-gtk3",
        "arch": "sudo pacman -S python-gobject libayatana-appindicator",
        "suse": "sudo zypper install python3-gobject typelib-1_0-AyatanaAppIndicator3-0_1",
    }.get(distro, "install your distribution's python3-gi (PyGObject) and the AyatanaAppIndicator3 typelib")
    if pipx_spec is not None:
        python = "" if system_python else " --python /usr/bin/python3"
        return f"{packages} && pipx install --force --system-site-packages{python} {pipx_spec}"
    if system_python:
        return packages
    return (f"{packages}, then run portbell from a Python that sees them: "
            f"pipx install --system-site-packages --python /usr/bin/python3 portbell (this one is {install})")


def tray_backend_sentence(backend: str, menu: bool, why: str) -> str:
    """`portbell tray` at start and `portbell status`: which pystray backend, whether it has a menu, why."""
    return f"pystray backend {backend} (menu: {'yes' if menu else 'no'}): {why}"
