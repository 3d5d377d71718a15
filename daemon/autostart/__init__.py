"""Run at login: the facade the command line and the tray's "Start at login" toggle use.
One platform part (_linux, _macos, _windows) is chosen here and only here.

    enable(which) -> list[PurePath]   write this platform's entries (which: daemon, tray, all)
    disable(which) -> list[PurePath]  remove exactly what portbell wrote, nothing else
    status(which) -> list[Entry]      each entry, and whether the service manager will start it
    specs(which) -> list[Spec]        what enable would write (`--print`)

"system" (Linux only, root) is the system-wide daemon unit; "all" never includes it.

What portbell writes is marked. A file's first line is a comment, "written by portbell autostart
[seal 0123456789abcdef]", whose seal is a digest of the whole file: an unedited file that portbell
wrote proves itself, whatever portbell version or install path wrote it. A Windows Run value has
no room for a comment, so it is portbell's only while it holds exactly what this portbell writes.
Disable removes an entry only when it is portbell's and unedited; anything else in its place (no
mark, edited by hand, a symlink) is left alone and reported, and enable refuses to replace it.
Enable does replace portbell's own unedited entry from another version or install: that is an
update.
"""

from __future__ import annotations

import sys
from pathlib import PurePath

from ..model import value
from . import _common
from ._common import MARK, AutostartError, Spec

__all__ = ["AutostartError", "Entry", "Spec", "WHICH", "disable", "enable", "specs", "status"]

WHICH = ("daemon", "tray", "all", "system")


@value
class Entry:
    """One autostart entry as it is now."""

    name: str  # daemon | tray | system
    kind: str  # "systemd user unit", "XDG autostart entry", "LaunchAgent", "Run registry value"
    path: PurePath  # the file, or the registry value (HKEY_CURRENT_USER\...\Run\portbell-tray)
    installed: bool  # portbell's entry is there, unedited
    active: bool | None  # the service manager will start it; None: there is none here to ask
    note: str  # one sentence for people
    current: bool = False  # installed, and exactly what this portbell writes (else: another version's)
    foreign: bool = False  # something that is not portbell's (or was edited) is in its place


def _backend():
    """The platform part, chosen once, here: callers never test sys.platform."""
    if sys.platform == "darwin":
        from . import _macos as platform
    elif sys.platform == "win32":
        from . import _windows as platform
    else:  # Linux, and the BSDs' XDG desktops
        from . import _linux as platform
    return platform.Backend(_common.program(gui=platform.GUI))


def specs(which: str, backend=None) -> list[Spec]:
    if which not in WHICH:
        raise ValueError(f"which is one of {', '.join(WHICH)}, not {which!r}")
    backend = backend or _backend()
    if which == "system" and "system" not in backend.names:
        raise AutostartError("the system-wide daemon is a systemd unit: Linux only")
    return backend.specs(which)


def _why_not(spec: Spec, current: str) -> str:
    if spec.kind.endswith("registry value"):
        return f"{spec.location} holds a command that this portbell did not write: {current!r}"
    if _common.has_mark(current):
        return f"{spec.location} carries portbell's mark but was edited since portbell wrote it"
    return f"{spec.location} was not written by portbell autostart (it lacks the mark {MARK!r})"


def enable(which: str, backend=None) -> list[PurePath]:
    """Write the entries; nothing at all when one in the way is not portbell's. Returns them."""
    backend = backend or _backend()
    wanted = specs(which, backend)
    current = {s.location: backend.read(s) for s in wanted}
    blocked = [(s, cur) for s in wanted if (cur := current[s.location]) is not None and not backend.ours(s, cur)]
    if blocked:
        raise AutostartError(
            "; ".join(_why_not(s, cur) for s, cur in blocked) + ". Nothing was written: remove it by hand "
            "if you no longer want it, then enable again.",
            path=blocked[0][0].location,
        )
    for spec in wanted:
        if current[spec.location] != spec.content:
            backend.write(spec)
    backend.started(wanted)
    return [s.location for s in wanted]


def disable(which: str, backend=None) -> list[PurePath]:
    """Remove what portbell wrote; returns what was removed. Anything else stays, and is reported."""
    backend = backend or _backend()
    removed: list[Spec] = []
    refused: list[tuple[Spec, str]] = []
    for spec in specs(which, backend):
        current = backend.read(spec)
        if current is None:
            continue
        if not backend.ours(spec, current):
            refused.append((spec, current))
            continue
        backend.stopping(spec)
        backend.remove(spec)
        removed.append(spec)
    if removed:
        backend.stopped(removed)
    if refused:
        raise AutostartError(
            "; ".join(_why_not(s, cur) for s, cur in refused) + ". Left it in place: remove it by hand if you no longer want it.",
            path=refused[0][0].location,
            done=[s.location for s in removed],
        )
    return [s.location for s in removed]


def status(which: str, backend=None) -> list[Entry]:
    backend = backend or _backend()
    out = []
    for spec in specs(which, backend):
        current = backend.read(spec)
        if current is None:
            entry = Entry(spec.name, spec.kind, spec.location, False, False, "not installed")
        elif not backend.ours(spec, current):
            entry = Entry(spec.name, spec.kind, spec.location, False, None, _why_not(spec, current), foreign=True)
        else:
            active, note = backend.active(spec)
            if current != spec.content:
                note += "; written by another portbell install or version: `portbell autostart enable` updates it"
            entry = Entry(spec.name, spec.kind, spec.location, True, active, note, current=current == spec.content)
        out.append(entry)
    return out
