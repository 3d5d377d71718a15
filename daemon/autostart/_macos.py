"""Run at login on macOS: LaunchAgents.

- daemon: ~/Library/LaunchAgents/portbell.daemon.plist, loaded now with `launchctl bootstrap`
  and unloaded with `launchctl bootout` on disable.
- tray: ~/Library/LaunchAgents/portbell.tray.plist, for graphical sessions; launchd starts it
  at the next login. Disable removes the file but never boots the tray out: the tray's own
  "Start at login" toggle calls this, and would end itself.
Errors of both go to ~/Library/Logs/portbell-daemon.log and portbell-tray.log.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from ._common import FileBackend, Runner, Spec, plist_strings, render, run_quietly

GUI = False
LABELS = {"daemon": "portbell.daemon", "tray": "portbell.tray"}


class Backend(FileBackend):
    names = ("daemon", "tray")
    def __init__(self, program: tuple[str, ...], run: Runner = subprocess.run) -> None:
        self.program = program
        self.run = run

    def specs(self, which: str) -> list[Spec]:
        home = Path.home()
        chosen = ("daemon", "tray") if which == "all" else (which,)
        out = []
        for name in chosen:
            label = LABELS[name]
            content = render(f"macos/{label}.plist", program=plist_strings(self.program), logs=str(home / "Library" / "Logs"))
            out.append(Spec(name, "LaunchAgent", home / "Library" / "LaunchAgents" / f"{label}.plist", content))
        return out

    def _domain(self) -> str:
        return f"gui/{os.getuid()}"

    def started(self, specs: list[Spec]) -> None:
        for spec in specs:
            if spec.name == "daemon":  # already loaded (a second enable): launchctl says so; harmless
                run_quietly(self.run, ["launchctl", "bootstrap", self._domain(), str(spec.location)])

    def stopping(self, spec: Spec) -> None:
        if spec.name == "daemon":
            run_quietly(self.run, ["launchctl", "bootout", f"{self._domain()}/{LABELS[spec.name]}"])

    def stopped(self, specs: list[Spec]) -> None:
        pass

    def active(self, spec: Spec) -> tuple[bool | None, str]:
        done = run_quietly(self.run, ["launchctl", "print", f"{self._domain()}/{LABELS[spec.name]}"])
        if done is None:
            return None, "launchctl is not available here, so none can say whether launchd loaded it"
        if done.returncode == 0:
            return True, "loaded by launchd"
        return False, "not loaded by launchd now; it starts at your next login"
