"""Menu data as pystray objects, and which pystray backend loaded. No import of pystray: the
module is passed in by tray/app.py, the only place that imports it."""

from __future__ import annotations

from .menu import Action, Item


def backend_name(pystray_module) -> str:
    """`appindicator`, `gtk`, `xorg`, `darwin`, `win32` or `dummy`: which backend pystray loaded."""
    return pystray_module.Icon.__module__.rpartition(".")[2].lstrip("_")


def to_pystray(pystray_module, items: tuple[Item, ...], do) -> object:
    """The one place menu data becomes pystray objects; `do(action)` runs on a click."""
    p = pystray_module

    def convert(it: Item):
        if it.separator:
            return p.Menu.SEPARATOR
        if it.submenu:
            return p.MenuItem(it.text, p.Menu(*[convert(s) for s in it.submenu]), enabled=it.enabled)
        checked = None if it.checked is None else _constant(it.checked)
        return p.MenuItem(it.text, _clicked(do, it.action), checked=checked, enabled=it.enabled, default=it.default)

    return p.Menu(*[convert(it) for it in items])


def _clicked(do, action: Action | None):
    def clicked(_icon, _item):  # pystray passes (icon, item) to two-argument callbacks
        if action is not None:
            do(action)

    return clicked


def _constant(value: bool):
    def get(_item):
        return value

    return get


def choice(pystray_module, forced: str | None) -> tuple[str, bool, str]:
    """(backend, has a menu, why): what loaded and the reason, in words for `portbell tray` and status."""
    backend = backend_name(pystray_module)
    menu = bool(pystray_module.Icon.HAS_MENU) and backend not in ("xorg", "dummy")
    if forced:
        why = f"chosen with PYSTRAY_BACKEND={forced}"
        if backend == "xorg":
            why += "; it has no menu and cannot notify by itself (notifications go to the desktop's service)"
        return backend, menu, why
    if backend != "xorg":
        return backend, menu, "the first of pystray's backends that loads here"
    return backend, menu, "no menu: " + missing_for_menu()


def missing_for_menu() -> str:
    """Why no menu backend loaded (the GObject bindings, or the typelibs), and the one step to fix it."""
    import sys

    from ..daemon.words import tray as phrases

    try:
        import gi  # noqa: F401
    except ImportError:
        what = f"this Python ({sys.executable}) has no GObject bindings (PyGObject)"
    else:
        what = "the GObject bindings load, but neither the AyatanaAppIndicator3 nor the Gtk 3 typelib does"
        for lib, version in (("AyatanaAppIndicator3", "0.1"), ("Gtk", "3.0")):
            try:
                gi.require_version(lib, version)
            except ValueError:
                continue
            what = f"the GObject bindings and the {lib} typelib load, but pystray could not start a backend with a menu"
            break
    return f"{what}. To get the menu: {phrases.tray_menu_fix(_distro(), sys.executable, _pipx_spec(), sys.base_prefix == '/usr')}"


def _distro() -> str:
    try:
        text = open("/etc/os-release", encoding="utf-8").read()
    except OSError:
        return ""
    ids = " ".join(line.split("=", 1)[1].strip().strip('"') for line in text.splitlines() if line.startswith(("ID=", "ID_LIKE=")))
    for family, names in (("debian", ("debian", "ubuntu")), ("fedora", ("fedora", "rhel")), ("arch", ("arch",)), ("suse", ("suse",))):
        if any(n in ids.split() or any(i.startswith(n) for i in ids.split()) for n in names):
            return family
    return ""


def _pipx_spec() -> str | None:
    """What pipx installed, when portbell runs from a pipx venv (its pipx_metadata.json)."""
    import json
    import sys
    from pathlib import Path

    try:
        data = json.loads((Path(sys.prefix) / "pipx_metadata.json").read_text())
        return data["main_package"]["package_or_url"] or "portbell"
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_note(path, backend: str, menu: bool, why: str) -> None:
    """The tray's backend for `portbell status` (runtime folder, tray.json; the tray's lock says it runs)."""
    import json
    import os

    from ..daemon import paths

    try:
        paths.write_atomic(paths.private_dir(path.parent) / path.name, json.dumps({"pid": os.getpid(), "backend": backend, "menu": menu, "why": why}) + "\n")
    except OSError:
        pass
