"""Run at login on Windows: per-user Run registry values. winreg is injected (the seam the tests
fake; it exists only on Windows).

The values "portbell-daemon" and "portbell-tray" under
HKEY_CURRENT_USER\\Software\\Microsoft\\Windows\\CurrentVersion\\Run hold a command line that
starts the environment's pythonw.exe with -m portbell.daemon, so no console window appears. A value
carries no comment, so portbell's mark is the data itself: disable removes a value only when it
holds exactly what this portbell writes. Task Manager's Startup tab can switch an entry off
(StartupApproved\\Run); status reads that.
"""

from __future__ import annotations

import importlib
from pathlib import PureWindowsPath

from ._common import AutostartError, Spec, render, windows_command

GUI = True
RUN_KEY = r"Software\Microsoft\Windows\CurrentVersion\Run"
APPROVED_KEY = r"Software\Microsoft\Windows\CurrentVersion\Explorer\StartupApproved\Run"
VALUES = {"daemon": "portbell-daemon", "tray": "portbell-tray"}


def value_data(template_text: str) -> str:
    """The one line of a .run template that is not a comment."""
    lines = [line for line in template_text.splitlines() if line.strip() and not line.startswith("#")]
    if len(lines) != 1:
        raise ValueError(f"a .run template holds exactly one command line, not {len(lines)}")
    return lines[0]


class Backend:
    names = ("daemon", "tray")
    def __init__(self, program: tuple[str, ...], winreg=None) -> None:
        self.program = program
        self.winreg = winreg if winreg is not None else importlib.import_module("winreg")

    def specs(self, which: str) -> list[Spec]:
        chosen = ("daemon", "tray") if which == "all" else (which,)
        out = []
        for name in chosen:
            data = value_data(render(f"windows/{VALUES[name]}.run", exec=windows_command(self.program)))
            location = PureWindowsPath("HKEY_CURRENT_USER", RUN_KEY, VALUES[name])
            out.append(Spec(name, "Run registry value", location, data))
        return out

    def _value(self, key_path: str, name: str):
        reg = self.winreg
        try:
            with reg.OpenKey(reg.HKEY_CURRENT_USER, key_path, 0, reg.KEY_READ) as key:
                return reg.QueryValueEx(key, name)
        except FileNotFoundError:
            return None

    def read(self, spec: Spec) -> str | None:
        found = self._value(RUN_KEY, spec.location.name)
        if found is None:
            return None
        data, kind = found
        if kind != self.winreg.REG_SZ or not isinstance(data, str):
            return f"\0a value of registry type {kind}\0"  # never what portbell writes
        return data

    def ours(self, spec: Spec, current: str) -> bool:
        """A value has no room for a mark: it is portbell's when it holds exactly what this portbell writes."""
        return current == spec.content

    def write(self, spec: Spec) -> None:
        reg = self.winreg
        try:
            with reg.CreateKeyEx(reg.HKEY_CURRENT_USER, RUN_KEY, 0, reg.KEY_SET_VALUE) as key:
                reg.SetValueEx(key, spec.location.name, 0, reg.REG_SZ, spec.content)
        except OSError as err:
            raise AutostartError(f"cannot write {spec.location}: {err}", path=spec.location) from err

    def remove(self, spec: Spec) -> None:
        reg = self.winreg
        try:
            with reg.OpenKey(reg.HKEY_CURRENT_USER, RUN_KEY, 0, reg.KEY_SET_VALUE) as key:
                reg.DeleteValue(key, spec.location.name)
        except FileNotFoundError:
            pass
        except OSError as err:
            raise AutostartError(f"cannot remove {spec.location}: {err}", path=spec.location) from err

    def started(self, specs: list[Spec]) -> None:
        pass  # Windows reads the Run key at the next login

    def stopping(self, spec: Spec) -> None:
        pass

    def stopped(self, specs: list[Spec]) -> None:
        pass

    def active(self, spec: Spec) -> tuple[bool | None, str]:
        approved = self._value(APPROVED_KEY, spec.location.name)
        if approved is not None and isinstance(approved[0], bytes) and approved[0][:1] and approved[0][0] & 1:
            return False, "switched off in Task Manager's Startup tab"
        return True, "Windows starts it at login"
