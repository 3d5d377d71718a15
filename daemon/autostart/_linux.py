"""Run at login on Linux and the other XDG desktops.

- daemon: a systemd user unit, ~/.config/systemd/user/portbell.service, enabled with
  `systemctl --user` where a user manager runs, else linked into default.target.wants by hand
  (what `systemctl enable` does), so the next login that starts a user manager starts it.
- tray: an XDG autostart entry, ~/.config/autostart/portbell-tray.desktop; the desktop session
  starts it (a tray started by a plain systemd user service would have no display).
- system (only when asked): the system-wide unit, /etc/systemd/system/portbell.service.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import platformdirs

from ._common import (
    AutostartError,
    FileBackend,
    Runner,
    Spec,
    desktop_command,
    remove_file,
    packaged,
    render,
    run_quietly,
    systemd_command,
)

GUI = False
UNIT = "portbell.service"
TRAY = "portbell-tray.desktop"
ICON_SIZES = (16, 32, 48, 64, 128, 256)  # packaging/icons, installed into the hicolor icon theme
MANAGER_STATES = {"initializing", "starting", "running", "degraded", "maintenance", "stopping"}
KINDS = {"daemon": "systemd user unit", "tray": "XDG autostart entry", "system": "systemd system unit"}
WANTED_BY = {"daemon": "default.target", "system": "multi-user.target"}


class Backend(FileBackend):
    names = ("daemon", "tray", "system")
    system_dir = Path("/etc/systemd/system")

    def __init__(self, program: tuple[str, ...], run: Runner = subprocess.run) -> None:
        self.program = program
        self.run = run
        self._manager: dict[str, bool] = {}

    # ------------------------------------------------------------- what

    def specs(self, which: str) -> list[Spec]:
        config = platformdirs.user_config_path()
        chosen = ("daemon", "tray") if which == "all" else (which,)
        out = []
        for name in chosen:
            if name == "daemon":
                content = render("linux/portbell.service", exec=systemd_command(self.program))
                location = config / "systemd" / "user" / UNIT
            elif name == "tray":
                # Icon= names the icon in the theme, never a file in site-packages, whose path
                # changes with the Python version (pipx moving to a newer Python broke it)
                content = render("linux/portbell-tray.desktop", exec=desktop_command(self.program), icon="portbell")
                location = config / "autostart" / TRAY
            else:
                content = render("linux/portbell-system.service", exec=systemd_command(self.program))
                location = self.system_dir / UNIT
            out.append(Spec(name, KINDS[name], location, content))
        return out

    # ------------------------------------------------ the service manager

    def _systemctl(self, spec: Spec, *args: str) -> subprocess.CompletedProcess | None:
        scope = ["--user"] if spec.name == "daemon" else []
        return run_quietly(self.run, ["systemctl", *scope, *args])

    def manager(self, spec: Spec) -> bool:
        """Whether the service manager this unit belongs to runs (and answers) here."""
        scope = "user" if spec.name == "daemon" else "system"
        if scope not in self._manager:
            done = self._systemctl(spec, "is-system-running")
            self._manager[scope] = done is not None and done.stdout.strip() in MANAGER_STATES
        return self._manager[scope]

    def _link(self, spec: Spec) -> Path:
        unit = Path(spec.location)
        return unit.parent / f"{WANTED_BY[spec.name]}.wants" / unit.name

    def _our_link(self, link: Path, spec: Spec) -> bool:
        try:
            return link.is_symlink() and (link.parent / os.readlink(link)) == Path(spec.location)
        except OSError:
            return False

    def started(self, specs: list[Spec]) -> None:
        """After writing: tell the service manager, or link the unit as `systemctl enable` would."""
        for spec in specs:
            if spec.name == "tray":
                install_icons()  # the entry is read by the desktop session at the next login
                continue
            if self.manager(spec):
                self._systemctl(spec, "daemon-reload")
                done = self._systemctl(spec, "enable", UNIT)
                if done is None or done.returncode != 0:
                    why = "systemctl did not answer" if done is None else done.stderr.strip() or f"exit status {done.returncode}"
                    raise AutostartError(f"wrote {spec.location}, but `systemctl enable {UNIT}` failed: {why}", path=spec.location)
                # Start it now too; if that fails (say a daemon already runs), status tells.
                self._systemctl(spec, "start", "--no-block", UNIT)
                continue
            link = self._link(spec)
            if not link.is_symlink() and not link.exists():
                try:
                    link.parent.mkdir(parents=True, exist_ok=True)
                    link.symlink_to(spec.location)
                except OSError as err:
                    raise AutostartError(f"wrote {spec.location}, but cannot link it into {link.parent}: {err.strerror}", path=link) from err

    def stopping(self, spec: Spec) -> None:
        """Before removing: stop and disable it; remove only the link that points to our unit."""
        if spec.name == "tray":
            remove_icons()
            return
        if self.manager(spec):
            self._systemctl(spec, "disable", "--now", UNIT)
        link = self._link(spec)
        if self._our_link(link, spec):
            remove_file(link)

    def stopped(self, specs: list[Spec]) -> None:
        for spec in specs:
            if spec.name != "tray" and self.manager(spec):
                self._systemctl(spec, "daemon-reload")

    # --------------------------------------------------------------- state

    def active(self, spec: Spec) -> tuple[bool | None, str]:
        if spec.name == "tray":
            return True, "the desktop session starts it at login (XDG autostart)"
        where = "systemctl --user" if spec.name == "daemon" else "systemctl"
        if self.manager(spec):
            enabled = self._systemctl(spec, "is-enabled", UNIT)
            state = self._systemctl(spec, "is-active", UNIT)
            word = enabled.stdout.strip() if enabled else "unknown"
            running = state.stdout.strip() if state else "unknown"
            return word == "enabled", f"{where} is-enabled: {word}; is-active: {running}"
        linked = self._our_link(self._link(spec), spec)
        manager = "no systemd user manager runs here" if spec.name == "daemon" else "systemd is not running here"
        then = (
            f"it is linked into {WANTED_BY[spec.name]}.wants, so the next boot or login that starts one starts it"
            if linked
            else f"it is not linked into {WANTED_BY[spec.name]}.wants"
        )
        return None, f"{manager} (`{where}` cannot reach one), so none can say whether it is enabled; {then}"


def icon_paths() -> list[tuple[Path, Path]]:
    """(packaged icon, its place in the user's hicolor icon theme) for each size there is."""
    theme = platformdirs.user_data_path() / "icons" / "hicolor"
    out = []
    for size in ICON_SIZES:
        source = packaged(f"icons/portbell-{size}.png")
        if source is not None:
            out.append((source, theme / f"{size}x{size}" / "apps" / "portbell.png"))
    return out


def install_icons() -> None:
    """Copy the icons into $XDG_DATA_HOME/icons/hicolor (the desktop entry's Icon=portbell)."""
    for source, target in icon_paths():
        data = source.read_bytes()
        try:
            if target.is_file() and target.read_bytes() == data:
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        except OSError as err:
            raise AutostartError(f"cannot install the icon {target}: {err.strerror or err}", path=target) from err


def remove_icons() -> None:
    """Remove the icons install_icons wrote (a file that differs is someone else's: kept)."""
    for source, target in icon_paths():
        try:
            if target.is_file() and target.read_bytes() == source.read_bytes():
                remove_file(target)
        except OSError:
            pass
