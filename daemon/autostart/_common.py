"""What `portbell autostart` writes, in each platform's format.

The templates live in `portbell.packaging` (the folder packaging/), the single source of what the
operating systems start. This module renders them with the absolute path of the installed
program, quoted the way each format wants, and holds what the platform parts share: the `Spec`
of one entry, and reading, writing and removing entries that are plain files.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import re
import string
import subprocess
import sys
import sysconfig
from pathlib import Path, PurePath
from typing import Callable, Sequence
from xml.sax.saxutils import escape

from ..errors import AutostartError
from ..model import value
from ..paths import write_atomic

MARK = "written by portbell autostart"
_UNSEALED = "0" * 16
_SEAL = re.compile(re.escape(MARK) + r" \[seal ([0-9a-f]{16})\]")
TEMPLATES = "portbell.packaging"
Runner = Callable[..., subprocess.CompletedProcess]


@value
class Spec:
    """One thing this platform starts at login, exactly as this portbell writes it."""

    name: str  # daemon | tray | system
    kind: str  # for people: "systemd user unit", "XDG autostart entry", ...
    location: PurePath  # a file, or a registry value (its key path / value name)
    content: str  # the file's text, or the registry value's data


# ------------------------------------------------------------------ templates


def packaged(relative: str) -> Path | None:
    """A file of portbell.packaging on disk (an installed wheel, or a checkout), or None.

    portbell.packaging is a namespace package on purpose: a packaging/__init__.py would make
    the checkout's folder shadow the `packaging` library for tools run from the repository root.
    importlib.resources cannot read a namespace package under an editable install, so the
    package's own __path__ is searched instead.
    """
    try:
        module = importlib.import_module(TEMPLATES)
    except ImportError:
        return None
    for folder in getattr(module, "__path__", ()):
        candidate = Path(folder) / relative
        if candidate.is_file():
            return candidate
    return None


def template(relative: str) -> str:
    path = packaged(relative)
    if path is None:
        raise AutostartError(f"portbell's template {relative} is missing from {TEMPLATES}: reinstall portbell")
    return path.read_text(encoding="utf-8")


def render(relative: str, **values: str) -> str:
    """The template with its ${placeholders} filled (`$$` is a literal `$`), then sealed."""
    mark = f"{MARK} [seal {_UNSEALED}]; `portbell autostart disable` removes it unless edited"
    return _sealed_copy(string.Template(template(relative)).substitute(mark=mark, **values))


# The mark of a file portbell writes carries a seal: a digest of the whole text (the seal's own
# digits zeroed). An unedited file portbell wrote, of any version and for any install path,
# proves itself; a file edited by hand, or one that only copies the mark, does not.


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _sealed_copy(text: str) -> str:
    found = _SEAL.search(text)
    if not found:
        return text
    return text[: found.start(1)] + _digest(text) + text[found.end(1) :]


def has_mark(text: str) -> bool:
    return MARK in text


def is_sealed(text: str) -> bool:
    """Whether portbell wrote this text and nobody changed it since."""
    found = _SEAL.search(text)
    if not found:
        return False
    return found.group(1) == _digest(text[: found.start(1)] + _UNSEALED + text[found.end(1) :])


# -------------------------------------------------------------- the program


def program(*, gui: bool = False) -> tuple[str, ...]:
    """The absolute argv prefix that runs this installed portbell.

    The `portbell` script of the environment this interpreter runs in (a venv, pipx's venv, the
    system), else the one in the user scheme (`pip install --user`), else this interpreter with
    `-m portbell.daemon`. With gui=True (Windows): the environment's pythonw.exe with
    `-m portbell.daemon`, so no console window appears (portbell installs no `portbellw`
    launcher: it would be on every system's PATH).
    """
    windows = os.name == "nt"
    python = Path(sys.executable).absolute()
    if gui and windows and python.with_name("pythonw.exe").is_file():
        return (str(python.with_name("pythonw.exe")), "-m", "portbell.daemon")
    name = "portbell" + (".exe" if windows else "")
    for scheme in (None, f"{os.name}_user"):
        try:
            folder = sysconfig.get_path("scripts", scheme) if scheme else sysconfig.get_path("scripts")
        except KeyError:
            continue
        candidate = Path(folder) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return (str(candidate.absolute()),)
    return (str(python), "-m", "portbell.daemon")


# ----------------------------------------------------------------- quoting

_PLAIN = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_@+=:,./-")


_SYSTEMD_UNSAFE_EXE = set("'\"\\")  # systemd refuses an executable path with these, quoted or not


def systemd_command(argv: Sequence[str]) -> str:
    """A command line for ExecStart=: quoted where needed; `%` and `$` never expand.

    systemd rejects an executable whose path holds a quote or a backslash ("Executable name
    contains special characters"), however it is quoted: such a path is handed to /usr/bin/env,
    as an argument, which systemd allows.
    """
    if argv and (set(argv[0]) & _SYSTEMD_UNSAFE_EXE or not argv[0].isprintable()):
        argv = ["/usr/bin/env", *argv]
    out = []
    for arg in argv:
        if arg and set(arg) <= _PLAIN:
            out.append(arg)
        else:
            quoted = arg.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%").replace("$", "$$")
            out.append(f'"{quoted}"')
    return " ".join(out)


_DESKTOP_RESERVED = set(" \t\n\"'\\><~|&;$*?#()`")


def desktop_command(argv: Sequence[str]) -> str:
    """A command line for a desktop entry's Exec= (Desktop Entry Specification, "The Exec key")."""
    out = []
    for arg in argv:
        if arg and not (set(arg) & _DESKTOP_RESERVED):
            word = arg
        else:
            inner = "".join("\\" + c if c in '"`$\\' else c for c in arg)
            word = f'"{inner}"'
        # The string-value escape applies on top of the quoting: a backslash is written twice.
        out.append(word.replace("%", "%%").replace("\\", "\\\\"))
    return " ".join(out)


def plist_strings(argv: Sequence[str], indent: str = "\t\t") -> str:
    """Each argument as a <string> line of a plist array."""
    return "\n".join(f"{indent}<string>{escape(arg)}</string>" for arg in argv)


def windows_command(argv: Sequence[str]) -> str:
    """A Windows command line: the program always in quotes, the arguments as the C runtime parses them."""
    first, *rest = argv
    return " ".join([f'"{first}"', subprocess.list2cmdline(rest)]).rstrip()


# ------------------------------------------------------------ plain files

FOREIGN = "\0not a regular file\0"  # what read() returns for a directory, a symlink, a device


def read_file(path: Path) -> str | None:
    """The entry's text; None when nothing is there; FOREIGN for what portbell never writes."""
    try:
        if path.is_symlink() or (path.exists() and not path.is_file()):
            return FOREIGN
        return path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return None
    except OSError as err:
        raise AutostartError(f"cannot read {path}: {err.strerror or err}", path=path) from err


def write_file(path: Path, content: str) -> None:
    """Atomically: a crash leaves the old file or the new one, never half of one."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, content, 0o644)
    except OSError as err:
        raise AutostartError(f"cannot write {path}: {err.strerror or err}", path=path) from err


def remove_file(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError as err:
        raise AutostartError(f"cannot remove {path}: {err.strerror or err}", path=path) from err


def run_quietly(run: Runner, argv: Sequence[str]) -> subprocess.CompletedProcess | None:
    """Run a service manager's tool; None when it is not installed or does not answer."""
    try:
        return run(list(argv), capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None


class FileBackend:
    """What the Linux and macOS backends share: entries are files, written and removed whole."""

    def read(self, spec: Spec) -> str | None:
        return read_file(Path(spec.location))

    def ours(self, spec: Spec, current: str) -> bool:
        """Written by portbell and unedited: this version's text, or any version's sealed text."""
        return current == spec.content or is_sealed(current)

    def write(self, spec: Spec) -> None:
        write_file(Path(spec.location), spec.content)

    def remove(self, spec: Spec) -> None:
        remove_file(Path(spec.location))
