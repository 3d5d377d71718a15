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
