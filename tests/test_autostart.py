"""`portbell autostart`: enable, status and disable write and remove exactly portbell's entries.

Every test runs in an isolated home. The service managers are faked at the one seam they have
(the runner that calls systemctl or launchctl, the winreg module): a test must never enable
anything in the real user manager of the machine it runs on.
"""

from __future__ import annotations

import os
import plistlib
import shutil
import subprocess
from pathlib import Path, PureWindowsPath

import pytest

from conftest import portbell
from portbell.daemon import autostart
from portbell.daemon.autostart import _common as _autostart, _linux as _autostart_linux, _macos as _autostart_macos, _windows as _autostart_windows
from portbell.daemon.autostart import AutostartError

PROGRAM = ("/opt/portbell venv/bin/portbell",)  # a space: quoting is part of what is tested


@pytest.fixture
def home(tmp_path, monkeypatch):
    """An empty home for this process and its children; no service manager can be reached."""
    home = tmp_path / "home"
    runtime = tmp_path / "run"
    home.mkdir()
    runtime.mkdir(mode=0o700)
    env = {"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"), "XDG_STATE_HOME": str(home / ".local" / "state"), "XDG_RUNTIME_DIR": str(runtime)}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("DBUS_SESSION_BUS_ADDRESS", raising=False)
    return home


def left_behind(root: Path) -> list[str]:
    """Every file and symlink under root (directories aside)."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() or p.is_symlink())


class Manager:
    """A fake runner: answers like systemctl or launchctl would, and records every call."""

    def __init__(self, running: bool = False, fail: tuple[str, ...] = (), missing: bool = False, enabled: str = "enabled"):
        self.running, self.fail, self.missing, self.enabled = running, fail, missing, enabled
        self.calls: list[list[str]] = []

    def __call__(self, argv, **kw):
        self.calls.append(list(argv))
        if self.missing:
            raise FileNotFoundError(2, "No such file or directory", argv[0])
        verb = next((a for a in argv[1:] if not a.startswith("--")), "")
        if verb == "is-system-running":
            out = "running\n" if self.running else ""
            return subprocess.CompletedProcess(argv, 0 if self.running else 1, out, "" if self.running else "Failed to connect to bus: No medium found\n")
        if verb in self.fail:
            return subprocess.CompletedProcess(argv, 1, "", f"Failed to {verb} unit: Access denied\n")
        if verb == "is-enabled":
            return subprocess.CompletedProcess(argv, 0, f"{self.enabled}\n", "")
        if verb == "is-active":
            return subprocess.CompletedProcess(argv, 0, "active\n", "")
        return subprocess.CompletedProcess(argv, 0, "", "")

    def verbs(self) -> list[str]:
        return [" ".join(a for a in c[1:] if a != "--user") for c in self.calls if "is-system-running" not in c]


ICONS = [f".local/share/icons/hicolor/{n}x{n}/apps/portbell.png" for n in (16, 32, 48, 64, 128, 256)]


def linux(manager=None) -> _autostart_linux.Backend:
    return _autostart_linux.Backend(PROGRAM, run=manager or Manager())


# ------------------------------------------------------------------- Linux


def test_enable_status_disable_round_trip_leaves_no_file_behind(home):
    backend = linux()
    written = autostart.enable("all", backend)
    unit = home / ".config" / "systemd" / "user" / "portbell.service"
    entry = home / ".config" / "autostart" / "portbell-tray.desktop"
    assert written == [unit, entry]
    assert left_behind(home) == sorted([
        ".config/autostart/portbell-tray.desktop",
        ".config/systemd/user/default.target.wants/portbell.service",
        ".config/systemd/user/portbell.service",
        *ICONS,  # Icon=portbell: the hicolor theme, not a path into one Python's site-packages
    ])
    assert "\nIcon=portbell\n" in entry.read_text()
    assert os.readlink(unit.parent / "default.target.wants" / "portbell.service") == str(unit)
    assert 'ExecStart="/opt/portbell venv/bin/portbell" daemon' in unit.read_text()
    assert 'Exec="/opt/portbell venv/bin/portbell" tray' in entry.read_text()

    states = {e.name: e for e in autostart.status("all", backend)}
    assert states["daemon"].installed and states["daemon"].current and states["daemon"].active is None
    assert "no systemd user manager runs here" in states["daemon"].note and "linked into default.target.wants" in states["daemon"].note
    assert states["tray"].installed and states["tray"].active is True

    assert autostart.disable("all", backend) == [unit, entry]
    assert left_behind(home) == []
    assert [e.installed for e in autostart.status("all", backend)] == [False, False]
    assert autostart.disable("all", backend) == []  # nothing left: a second disable is a no-op


def test_enable_twice_changes_nothing(home):
    backend = linux()
    autostart.enable("daemon", backend)
    unit = home / ".config" / "systemd" / "user" / "portbell.service"
    before = (unit.stat().st_mtime_ns, unit.read_text())
    autostart.enable("daemon", backend)
    assert (unit.stat().st_mtime_ns, unit.read_text()) == before


def test_disable_refuses_a_file_portbell_did_not_write(home):
    unit = home / ".config" / "systemd" / "user" / "portbell.service"
    unit.parent.mkdir(parents=True)
    mine = "[Unit]\nDescription=my own portbell, hand made\n[Service]\nExecStart=/usr/bin/true\n"
    unit.write_text(mine)
    with pytest.raises(AutostartError, match="was not written by portbell autostart") as caught:
        autostart.disable("daemon", linux())
    assert caught.value.path == unit
    assert unit.read_text() == mine


def test_disable_refuses_a_file_edited_after_portbell_wrote_it(home):
    backend = linux()
    autostart.enable("all", backend)
    entry = home / ".config" / "autostart" / "portbell-tray.desktop"
    edited = entry.read_text().replace("Terminal=false", "Terminal=true")
    entry.write_text(edited)
    with pytest.raises(AutostartError, match="carries portbell's mark but was edited") as caught:
        autostart.disable("all", backend)
    assert entry.read_text() == edited  # left exactly as it was
    assert caught.value.done == [home / ".config" / "systemd" / "user" / "portbell.service"]  # the untouched one went
    assert left_behind(home) == sorted([".config/autostart/portbell-tray.desktop", *ICONS])
    (tray,) = autostart.status("tray", backend)
    assert tray.foreign and not tray.installed


def test_a_copied_mark_does_not_make_a_file_portbells(home):
    backend = linux()
    (spec,) = backend.specs("tray")
    forged = spec.content.replace("Exec=", "Exec=/usr/bin/env ")  # the seal line kept, the command changed
    path = Path(spec.location)
    path.parent.mkdir(parents=True)
    path.write_text(forged)
    with pytest.raises(AutostartError):
        autostart.disable("tray", backend)
    assert path.read_text() == forged


def test_disable_leaves_a_symlink_in_place_even_to_portbells_own_text(home, tmp_path):
    backend = linux()
    (spec,) = backend.specs("tray")
    elsewhere = tmp_path / "dotfiles" / "portbell-tray.desktop"
    elsewhere.parent.mkdir()
    elsewhere.write_text(spec.content)
    link = Path(spec.location)
    link.parent.mkdir(parents=True)
    link.symlink_to(elsewhere)
    with pytest.raises(AutostartError):
        autostart.disable("tray", backend)
    assert link.is_symlink() and elsewhere.read_text() == spec.content


def test_enable_refuses_to_replace_a_foreign_file_and_writes_nothing(home):
    entry = home / ".config" / "autostart" / "portbell-tray.desktop"
    entry.parent.mkdir(parents=True)
    entry.write_text("[Desktop Entry]\nType=Application\nName=mine\nExec=mine\n")
    with pytest.raises(AutostartError, match="Nothing was written"):
        autostart.enable("all", linux())
    assert left_behind(home) == [".config/autostart/portbell-tray.desktop"]


def test_an_unedited_entry_of_another_install_is_updated_by_enable_and_removed_by_disable(home):
    old = _autostart_linux.Backend(("/old/venv/bin/portbell",), run=Manager())
    new = linux()
    autostart.enable("daemon", old)
    (entry,) = autostart.status("daemon", new)
    assert entry.installed and not entry.current and "updates it" in entry.note
    autostart.enable("daemon", new)
    unit = home / ".config" / "systemd" / "user" / "portbell.service"
    assert "/old/venv" not in unit.read_text() and PROGRAM[0] in unit.read_text()
    autostart.enable("daemon", old)  # back to the old one, then the new portbell removes it
    assert autostart.disable("daemon", new) == [unit]
    assert left_behind(home) == []


def test_disable_leaves_a_wants_link_that_points_elsewhere(home, tmp_path):
    wants = home / ".config" / "systemd" / "user" / "default.target.wants"
    wants.mkdir(parents=True)
    other = tmp_path / "other.service"
    other.write_text("[Service]\nExecStart=/usr/bin/true\n")
    (wants / "portbell.service").symlink_to(other)
    backend = linux()
    autostart.enable("daemon", backend)
    autostart.disable("daemon", backend)
    assert os.readlink(wants / "portbell.service") == str(other)
    assert left_behind(home) == [".config/systemd/user/default.target.wants/portbell.service"]


def test_with_a_user_manager_systemctl_enables_starts_and_disables(home):
    manager = Manager(running=True)
    backend = linux(manager)
    autostart.enable("all", backend)
    assert manager.verbs() == ["daemon-reload", "enable portbell.service", "start --no-block portbell.service"]
    assert all(c[:2] == ["systemctl", "--user"] for c in manager.calls)
    assert not (home / ".config" / "systemd" / "user" / "default.target.wants").exists()  # systemctl links, not us
    (daemon,) = autostart.status("daemon", backend)
    assert daemon.active is True and "is-enabled: enabled" in daemon.note
    manager.calls.clear()
    autostart.disable("all", backend)
    assert manager.verbs() == ["disable --now portbell.service", "daemon-reload"]
    assert left_behind(home) == []


def test_status_reports_what_systemctl_says_when_the_unit_is_disabled(home):
    backend = linux(Manager(running=True, enabled="disabled"))
    autostart.enable("daemon", backend)
    (daemon,) = autostart.status("daemon", backend)
    assert daemon.installed and daemon.active is False and "is-enabled: disabled" in daemon.note


def test_a_failing_systemctl_enable_is_an_error_that_names_it(home):
    backend = linux(Manager(running=True, fail=("enable",)))
    with pytest.raises(AutostartError, match="systemctl enable portbell.service` failed: Failed to enable unit: Access denied"):
        autostart.enable("daemon", backend)


def test_without_systemctl_at_all_status_still_answers(home):
    backend = linux(Manager(missing=True))
    autostart.enable("daemon", backend)
    (daemon,) = autostart.status("daemon", backend)
    assert daemon.installed and daemon.active is None and "cannot reach one" in daemon.note


def test_the_system_unit_is_only_written_when_asked(home, tmp_path, monkeypatch):
    monkeypatch.setattr(_autostart_linux.Backend, "system_dir", tmp_path / "etc-systemd-system")
    manager = Manager()
    backend = linux(manager)
    assert [s.name for s in autostart.specs("all", backend)] == ["daemon", "tray"]
    (path,) = autostart.enable("system", backend)
    assert path == tmp_path / "etc-systemd-system" / "portbell.service"
    assert os.readlink(path.parent / "multi-user.target.wants" / "portbell.service") == str(path)
    assert "User=portbell" in path.read_text()
    assert all("--user" not in c for c in manager.calls)  # the system manager, not the user's
    assert autostart.disable("system", backend) == [path]
    assert left_behind(tmp_path / "etc-systemd-system") == []


def test_the_system_unit_is_linux_only(home):
    with pytest.raises(AutostartError, match="Linux only"):
        autostart.specs("system", _autostart_macos.Backend(PROGRAM, run=Manager(missing=True)))


def test_an_unknown_choice_is_a_programming_error(home):
    with pytest.raises(ValueError):
        autostart.specs("everything", linux())


# ------------------------------------------------------------ the command


def run_cli(*args, home: Path):
    return portbell("autostart", *args, env=dict(os.environ))


def test_the_command_round_trip_in_an_isolated_home(home):
    done = run_cli("enable", home=home)
    assert done.returncode == 0, done.stderr
    assert "installed" in done.stdout and str(home) in done.stdout
    status = run_cli("status", "--all", home=home)
    assert status.returncode == 0 and "no systemd user manager runs here" in status.stdout
    gone = run_cli("disable", home=home)
    assert gone.returncode == 0 and gone.stdout.count("removed ") == 2
    assert left_behind(home) == []
    assert run_cli("status", home=home).returncode == 1  # a clean no: not installed
    assert "nothing to remove" in run_cli("disable", home=home).stdout


def test_the_command_refuses_a_foreign_file_with_exit_1_and_a_reason(home):
    unit = home / ".config" / "systemd" / "user" / "portbell.service"
    unit.parent.mkdir(parents=True)
    unit.write_text("[Service]\nExecStart=/usr/bin/true\n")
    done = run_cli("disable", "--daemon", home=home)
    assert done.returncode == 1
    assert "was not written by portbell autostart" in done.stderr and "Left it in place" in done.stderr
    assert unit.read_text() == "[Service]\nExecStart=/usr/bin/true\n"


def test_print_shows_the_entries_with_the_installed_program_and_writes_nothing(home):
    done = run_cli("enable", "--all", "--print", home=home)
    assert done.returncode == 0, done.stderr
    program = _autostart.program()
    assert os.path.isabs(program[0])
    assert f"ExecStart={_autostart.systemd_command(program)} daemon" in done.stdout
    assert f"Exec={_autostart.desktop_command(program)} tray" in done.stdout
    assert f"# systemd user unit: {home}/.config/systemd/user/portbell.service" in done.stderr
    assert left_behind(home) == []
    preview = run_cli("disable", "--print", home=home)
    assert preview.returncode == 0 and preview.stdout.count("nothing at ") == 2


def test_print_with_status_is_bad_usage(home):
    done = run_cli("status", "--print", home=home)
    assert done.returncode == 2 and "--print goes with enable or disable" in done.stderr


def test_one_entry_at_a_time(home):
    assert run_cli("enable", "--tray", home=home).returncode == 0
    assert left_behind(home) == sorted([".config/autostart/portbell-tray.desktop", *ICONS])
    assert run_cli("status", "--tray", home=home).returncode == 0
    assert run_cli("status", "--daemon", home=home).returncode == 1
    assert run_cli("disable", "--tray", home=home).returncode == 0
    assert left_behind(home) == []


# ------------------------------------------------------------------ macOS


def test_launch_agents_round_trip_and_launchctl_never_boots_the_tray_out(home):
    manager = Manager()
    backend = _autostart_macos.Backend(PROGRAM, run=manager)
    daemon_plist, tray_plist = autostart.enable("all", backend)
    assert daemon_plist == home / "Library" / "LaunchAgents" / "portbell.daemon.plist"
    with open(daemon_plist, "rb") as f:
        daemon = plistlib.load(f)
    assert daemon["Label"] == "portbell.daemon" and daemon["ProgramArguments"] == [*PROGRAM, "daemon", "--quiet"]
    assert daemon["StandardErrorPath"] == str(home / "Library" / "Logs" / "portbell-daemon.log")
    with open(tray_plist, "rb") as f:
        assert plistlib.load(f)["ProgramArguments"] == [*PROGRAM, "tray"]
    uid = os.getuid()
    assert manager.calls == [["launchctl", "bootstrap", f"gui/{uid}", str(daemon_plist)]]
    states = autostart.status("all", backend)
    assert all(e.installed and e.active is True for e in states)  # the fake launchctl answers 0
    manager.calls.clear()
    autostart.disable("all", backend)
    assert manager.calls == [["launchctl", "bootout", f"gui/{uid}/portbell.daemon"]]
    assert left_behind(home) == []


def test_launch_agent_arguments_survive_xml_special_characters(home):
    program = ("/Users/ana/a & b <c>/python3", "-m", "portbell.daemon")
    backend = _autostart_macos.Backend(program, run=Manager(missing=True))
    (spec,) = backend.specs("daemon")
    assert plistlib.loads(spec.content.encode())["ProgramArguments"] == [*program, "daemon", "--quiet"]
    autostart.enable("daemon", backend)
    (entry,) = autostart.status("daemon", backend)
    assert entry.active is None and "launchctl is not available" in entry.note


# ---------------------------------------------------------------- Windows


class FakeWinreg:
    """The few winreg calls portbell makes, over a dict of keys; errors as winreg raises them."""

    HKEY_CURRENT_USER = "HKEY_CURRENT_USER"
    KEY_READ, KEY_SET_VALUE = 0x20019, 0x0002
    REG_SZ, REG_EXPAND_SZ, REG_BINARY = 1, 2, 3

    def __init__(self):
        self.keys: dict[str, dict[str, tuple[object, int]]] = {}

    class Key:
        def __init__(self, values):
            self.values = values

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    def OpenKey(self, root, sub_key, reserved=0, access=KEY_READ):  # noqa: N802 (winreg's names)
        name = f"{root}\\{sub_key}".lower()
        if name not in self.keys:
            raise FileNotFoundError(2, "The system cannot find the file specified")
        return self.Key(self.keys[name])

    def CreateKeyEx(self, root, sub_key, reserved=0, access=KEY_SET_VALUE):  # noqa: N802
        return self.Key(self.keys.setdefault(f"{root}\\{sub_key}".lower(), {}))

    def QueryValueEx(self, key, name):  # noqa: N802
        if name not in key.values:
            raise FileNotFoundError(2, "The system cannot find the file specified")
        return key.values[name]

    def SetValueEx(self, key, name, reserved, kind, data):  # noqa: N802
        key.values[name] = (data, kind)

    def DeleteValue(self, key, name):  # noqa: N802
        if name not in key.values:
            raise FileNotFoundError(2, "The system cannot find the file specified")
        del key.values[name]

    def run_values(self) -> dict:
        return self.keys.get(f"HKEY_CURRENT_USER\\{_autostart_windows.RUN_KEY}".lower(), {})


WINDOWS_PROGRAM = (r"C:\Users\Ana Lee\pipx\venvs\portbell\Scripts\portbellw.exe",)


def test_windows_run_values_start_the_windowless_launcher_and_go_away_exactly():
    reg = FakeWinreg()
    backend = _autostart_windows.Backend(WINDOWS_PROGRAM, winreg=reg)
    written = autostart.enable("all", backend)
    assert written[1] == PureWindowsPath(r"HKEY_CURRENT_USER\Software\Microsoft\Windows\CurrentVersion\Run\portbell-tray")
    assert reg.run_values() == {
        "portbell-daemon": (r'"C:\Users\Ana Lee\pipx\venvs\portbell\Scripts\portbellw.exe" daemon --quiet', reg.REG_SZ),
        "portbell-tray": (r'"C:\Users\Ana Lee\pipx\venvs\portbell\Scripts\portbellw.exe" tray', reg.REG_SZ),
    }
    assert all(e.installed and e.active is True for e in autostart.status("all", backend))
    reg.run_values()["OneDrive"] = (r'"C:\Program Files\Microsoft OneDrive\OneDrive.exe" /background', reg.REG_SZ)
    autostart.disable("all", backend)
    assert list(reg.run_values()) == ["OneDrive"]  # only what portbell wrote went


def test_windows_disable_refuses_a_value_it_did_not_write():
    reg = FakeWinreg()
    backend = _autostart_windows.Backend(WINDOWS_PROGRAM, winreg=reg)
    autostart.enable("all", backend)
    reg.run_values()["portbell-tray"] = (r'"C:\elsewhere\portbellw.exe" tray', reg.REG_SZ)
    reg.run_values()["portbell-daemon"] = (b"\x00\x01", reg.REG_BINARY)
    with pytest.raises(AutostartError, match="holds a command that this portbell did not write"):
        autostart.disable("all", backend)
    assert set(reg.run_values()) == {"portbell-tray", "portbell-daemon"}


def test_windows_status_sees_an_entry_switched_off_in_task_manager():
    reg = FakeWinreg()
    backend = _autostart_windows.Backend(WINDOWS_PROGRAM, winreg=reg)
    autostart.enable("tray", backend)
    with reg.CreateKeyEx(reg.HKEY_CURRENT_USER, _autostart_windows.APPROVED_KEY) as key:
        reg.SetValueEx(key, "portbell-tray", 0, reg.REG_BINARY, b"\x03" + bytes(11))
    (entry,) = autostart.status("tray", backend)
    assert entry.installed and entry.active is False and "Task Manager" in entry.note


def test_the_facade_picks_the_platform_in_one_place(monkeypatch):
    reg = FakeWinreg()
    monkeypatch.setattr("sys.platform", "win32")
    monkeypatch.setitem(__import__("sys").modules, "winreg", reg)
    autostart.enable("tray", None)
    ((data, kind),) = reg.run_values().values()
    assert data.endswith(" tray") and data.startswith('"') and kind == reg.REG_SZ
    autostart.disable("tray")
    assert reg.run_values() == {}


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze (Debian: systemd)")
@pytest.mark.parametrize("folder", ["o'brien", 'say "hi"', "back\\slash", "two words"])
def test_systemd_accepts_the_unit_of_a_program_whose_path_has_quotes_or_spaces(tmp_path, folder):
    from portbell.daemon.autostart._common import render, systemd_command

    exe = tmp_path / folder / "bin" / "portbell"
    exe.parent.mkdir(parents=True)
    exe.write_text("#!/bin/sh\nexit 0\n")
    exe.chmod(0o755)
    unit = tmp_path / "portbell.service"
    unit.write_text(render("linux/portbell.service", exec=systemd_command([str(exe)])))
    done = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert "special characters" not in done.stderr and "bad unit file setting" not in done.stderr, done.stderr
