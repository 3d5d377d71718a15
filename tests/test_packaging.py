"""packaging/: what the operating systems start, checked with the real validators where they
exist (systemd-analyze verify, desktop-file-validate, plistlib), the icons held to the tray's
drawing, the system-wide store's mode, and a wheel built from a fresh clone that installs and runs.
"""

from __future__ import annotations

import os
import plistlib
import shutil
import stat
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from conftest import debian_tool, portbell
from portbell.daemon.autostart import _common as _autostart, _linux as _autostart_linux, _macos as _autostart_macos

ROOT = Path(__file__).resolve().parent.parent
LINUX = sys.platform.startswith("linux")


def render(name: str, program=None) -> str:
    """One Linux entry rendered with the installed program (its path must exist for verify)."""
    backend = _autostart_linux.Backend(program or _autostart.program(), run=lambda *a, **k: None)
    (spec,) = backend.specs(name)
    return spec.content


def directives(text: str) -> list[tuple[str, str, str]]:
    """(section, key, value) of a unit or desktop file, in order, comments aside."""
    out, section = [], ""
    for line in text.splitlines():
        if not line.strip() or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        out.append((section, key.strip(), value.strip()))
    return out


def values(text: str, key: str) -> list[str]:
    return [v for _, k, v in directives(text) if k == key]


# ----------------------------------------------------------------- systemd


@pytest.fixture(scope="session")
def systemd_analyze():
    tool = shutil.which("systemd-analyze")
    if not LINUX or tool is None:
        pytest.skip("systemd-analyze is missing: install the systemd package")
    return tool


def verify(tool: str, path: Path, user: bool, tmp_path: Path) -> subprocess.CompletedProcess:
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700, exist_ok=True)
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime), "SYSTEMD_LOG_COLOR": "0"}
    argv = [tool, *(["--user"] if user else []), "verify", str(path)]
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)


def test_the_user_unit_passes_systemd_analyze_verify(systemd_analyze, tmp_path):
    unit = tmp_path / "portbell.service"
    unit.write_text(render("daemon"))
    done = verify(systemd_analyze, unit, True, tmp_path)
    assert (done.returncode, done.stderr) == (0, "")  # a warning (an unknown key) fails too


def test_the_system_unit_passes_systemd_analyze_verify(systemd_analyze, tmp_path):
    unit = tmp_path / "portbell.service"
    unit.write_text(render("system"))
    done = verify(systemd_analyze, unit, False, tmp_path)
    assert (done.returncode, done.stderr) == (0, "")


def test_verify_would_catch_a_broken_unit(systemd_analyze, tmp_path):
    """The check above can fail: a missing program and an unknown key are both reported."""
    unit = tmp_path / "portbell.service"
    unit.write_text(render("daemon", ("/nonexistent/portbell",)) + "Bogus=1\n")
    done = verify(systemd_analyze, unit, True, tmp_path)
    assert done.returncode != 0 and "Unknown key 'Bogus'" in done.stderr and "/nonexistent/portbell" in done.stderr


def test_a_program_path_with_spaces_and_percent_signs_survives_quoting(systemd_analyze, tmp_path):
    folder = tmp_path / "my tools 100%"
    folder.mkdir()
    program = folder / "portbell"
    program.write_text("#!/bin/sh\nexit 0\n")
    program.chmod(0o755)
    unit = tmp_path / "portbell.service"
    unit.write_text(render("daemon", (str(program),)))
    done = verify(systemd_analyze, unit, True, tmp_path)
    assert (done.returncode, done.stderr) == (0, "")


@pytest.mark.parametrize("name", ["daemon", "system"])
def test_units_keep_the_hosts_sockets_and_proc_visible(name):
    text = render(name)
    keys = {k for _, k, _ in directives(text)}
    assert not keys & {"PrivateNetwork", "ProtectProc", "ProcSubset", "PrivateUsers", "NetworkNamespacePath", "IPAddressDeny"}
    assert values(text, "Type") == ["notify"] and values(text, "Restart") == ["on-failure"]
    assert values(text, "WatchdogSec") == ["60"] and values(text, "NoNewPrivileges") == ["yes"]
    assert "AF_NETLINK" in values(text, "RestrictAddressFamilies")[0]
    if name == "daemon":  # options that would imply PrivateUsers= in a user manager stay out
        assert not keys & {"ProtectSystem", "ProtectHome", "PrivateTmp", "PrivateDevices", "User", "AmbientCapabilities"}


def test_the_system_unit_runs_as_portbell_with_only_two_capabilities():
    text = render("system")
    assert values(text, "User") == ["portbell"] and values(text, "Group") == ["portbell"]
    assert values(text, "AmbientCapabilities") == ["CAP_SYS_PTRACE CAP_DAC_READ_SEARCH"]
    assert values(text, "CapabilityBoundingSet") == ["CAP_SYS_PTRACE CAP_DAC_READ_SEARCH"]
    assert values(text, "StateDirectory") == ["portbell"] and values(text, "StateDirectoryMode") == ["0750"]
    env = values(text, "Environment")
    assert "PORTBELL_STATE_DIR=/var/lib/portbell" in env and "PORTBELL_STATE_MODE=0640" in env
    assert values(text, "ProtectSystem") == ["strict"] and values(text, "ProtectHome") == ["read-only"]
    assert values(text, "WantedBy") == ["multi-user.target"]


def test_the_store_is_group_readable_only_when_the_system_mode_asks(tmp_path, monkeypatch):
    from portbell.daemon.record import Store

    def modes(folder: Path) -> dict[str, int]:
        store = Store.open(folder / "portbell.db")
        store.conn.execute("CREATE TABLE IF NOT EXISTS probe(x)")  # something in the WAL
        found = {p.name: stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()}
        store.conn.close()
        return found

    monkeypatch.delenv("PORTBELL_STATE_MODE", raising=False)
    assert set(modes(tmp_path / "user").values()) == {0o600}
    monkeypatch.setenv("PORTBELL_STATE_MODE", "0640")
    found = modes(tmp_path / "system")
    assert {"portbell.db", "portbell.db-wal", "portbell.db-shm"} <= set(found) and set(found.values()) == {0o640}
    monkeypatch.setenv("PORTBELL_STATE_MODE", "0644")  # anything else stays private
    assert set(modes(tmp_path / "other").values()) == {0o600}


@pytest.mark.skipif(not hasattr(os, "fchmod"), reason="POSIX modes")
@pytest.mark.parametrize(
    "before, asked, after",
    [
        (0o640, None, 0o640),  # root's `trust` on the system-wide record, without the unit's environment
        (0o644, None, 0o640),  # the world's read goes, the group's stays
        (0o660, None, 0o640),  # and the group's write
        (0o604, None, 0o600),  # no group read to keep
        (0o600, None, 0o600),
        (0o600, "0640", 0o640),  # the system-wide daemon asks for it
        (0o644, "0640", 0o640),
    ],
    ids=lambda v: f"{v:04o}" if isinstance(v, int) else f"asked {v}" if v else "not asked",
)
def test_a_writer_never_takes_the_groups_read_away_from_an_existing_record(home, monkeypatch, before, asked, after):
    from portbell.daemon.record import Store

    path = home / "state" / "portbell.db"
    monkeypatch.delenv("PORTBELL_STATE_MODE", raising=False)
    Store.open(path).close()
    os.chmod(path, before)
    if asked:
        monkeypatch.setenv("PORTBELL_STATE_MODE", asked)
    trust = portbell("trust", "9000")  # a writer command, in its own process and environment
    assert trust.returncode == 0, trust.stderr
    assert stat.S_IMODE(path.stat().st_mode) == after
    store = Store.open(path)  # another writer: the -wal and -shm SQLite creates take the record's mode
    try:
        store.conn.execute("CREATE TABLE IF NOT EXISTS probe(x)")
        found = {p.name: stat.S_IMODE(p.stat().st_mode) for p in path.parent.iterdir() if p.name.startswith("portbell.db")}
    finally:
        store.close()
    assert found == {"portbell.db": after, "portbell.db-wal": after, "portbell.db-shm": after}


# ------------------------------------------------------------ XDG autostart


@pytest.fixture(scope="session")
def desktop_file_validate():
    """Debian's desktop-file-utils: installed here when running as root (CI), else a skip."""
    return debian_tool("desktop-file-validate", "desktop-file-utils")


@pytest.mark.parametrize("program", [None, ("/home/ana/my tools/100% $HOME/portbell",)], ids=["installed", "odd-path"])
def test_the_tray_entry_passes_desktop_file_validate(desktop_file_validate, tmp_path, program):
    entry = tmp_path / "portbell-tray.desktop"
    entry.write_text(render("tray", program))
    done = subprocess.run([desktop_file_validate, str(entry)], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout + done.stderr) == (0, "")  # hints and warnings fail too


def test_the_tray_entry_starts_the_tray_with_the_icon_of_the_theme():
    text = render("tray")
    assert values(text, "Exec") == [f"{_autostart.desktop_command(_autostart.program())} tray"]
    assert values(text, "Icon") == ["portbell"]  # never a path into one Python version's site-packages


def test_enabling_the_tray_installs_the_icon_where_gtk_finds_it_by_name(tmp_path, monkeypatch):
    gi = pytest.importorskip("gi")
    from portbell.daemon.autostart import _linux

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    _linux.install_icons()
    code = (
        "import gi; gi.require_version('Gtk', '3.0'); from gi.repository import Gtk; t = Gtk.IconTheme.new(); "
        "info = t.lookup_icon('portbell', 48, 0); print(info.get_filename() if info else 'none')"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=dict(os.environ, XDG_DATA_HOME=str(tmp_path / "data")))
    assert done.stdout.strip() == str(tmp_path / "data" / "icons" / "hicolor" / "48x48" / "apps" / "portbell.png"), done.stdout + done.stderr
    _linux.remove_icons()
    assert not list((tmp_path / "data").rglob("*.png"))


def test_desktop_quoting_follows_the_exec_key_rules():
    assert _autostart.desktop_command(["/a b/portbell", "tray"]) == '"/a b/portbell" tray'
    # `$` is escaped inside quotes, then every backslash is doubled by the string escape
    assert _autostart.desktop_command(["/x/$HOME"]) == '"/x/\\\\$HOME"'
    assert _autostart.desktop_command(["/x/100%"]) == "/x/100%%"


# ------------------------------------------------------------------ macOS


@pytest.mark.parametrize("name,arguments", [("daemon", ["daemon", "--quiet"]), ("tray", ["tray"])])
def test_launch_agents_load_with_plistlib_and_run_the_installed_program(name, arguments):
    program = _autostart.program()
    (spec,) = _autostart_macos.Backend(program).specs(name)
    plist = plistlib.loads(spec.content.encode("utf-8"))
    assert plist["Label"] == f"portbell.{name}"
    assert plist["ProgramArguments"] == [*program, *arguments]
    assert os.path.isabs(plist["ProgramArguments"][0])
    assert plist["RunAtLoad"] is True
    if name == "daemon":
        assert plist["KeepAlive"] == {"SuccessfulExit": False}  # restart on failure only
    else:
        assert plist["LimitLoadToSessionType"] == "Aqua" and "KeepAlive" not in plist


# ------------------------------------------------------------------ icons


def test_the_committed_icons_are_what_the_trays_drawing_makes_now(tmp_path):
    """Regenerated and compared pixel by pixel: fix a failure with `python -m portbell.packaging.make_icons`."""
    from PIL import Image

    from portbell.packaging import make_icons  # a namespace package: see daemon/autostart/_common.py

    fresh = make_icons.build(tmp_path)
    committed = ROOT / "packaging" / "icons"
    assert sorted(p.name for p in fresh) == sorted(p.name for p in committed.iterdir())
    for path in fresh:
        with Image.open(path) as new, Image.open(committed / path.name) as old:
            if path.suffix == ".png":
                assert new.size == old.size and new.tobytes() == old.convert(new.mode).tobytes(), path.name
                continue
            sizes = sorted(new.info["sizes"])
            assert sizes == sorted(old.info["sizes"]), path.name
            inner_new, inner_old = (new.ico, old.ico) if path.suffix == ".ico" else (new.icns, old.icns)
            for size in sizes:
                a, b = inner_new.getimage(size).convert("RGBA"), inner_old.getimage(size).convert("RGBA")
                assert a.size == b.size and a.tobytes() == b.tobytes(), f"{path.name} at {size}"


def test_the_icons_cover_the_sizes_each_platform_wants():
    from PIL import Image

    icons = ROOT / "packaging" / "icons"
    for size in (16, 32, 48, 64, 128, 256, 512):
        with Image.open(icons / f"portbell-{size}.png") as im:
            assert im.size == (size, size) and im.mode == "RGBA"
    with Image.open(icons / "portbell.ico") as ico:
        assert {(16, 16), (32, 32), (48, 48), (256, 256)} <= set(ico.info["sizes"])
    with Image.open(icons / "portbell.icns") as icns:
        assert (512, 512, 2) in icns.info["sizes"]


# ------------------------------------------------------------ distribution


def names_in(archive: Path) -> list[str]:
    if archive.suffix == ".whl":
        with zipfile.ZipFile(archive) as z:
            return z.namelist()
    with tarfile.open(archive) as t:
        return t.getnames()


def test_a_wheel_built_from_a_fresh_clone_installs_and_runs(tmp_path):
    """The one slow test (about a minute). It builds what is committed at HEAD: uncommitted
    changes in this work tree are not in the clone, so commit before trusting it."""
    src, dist, venv, home = tmp_path / "src", tmp_path / "dist", tmp_path / "venv", tmp_path / "home"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(src)], check=True, timeout=120)
    built = subprocess.run([sys.executable, "-m", "build", "--wheel", "--sdist", "--outdir", str(dist), str(src)], capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    (wheel,) = dist.glob("*.whl")
    (sdist,) = dist.glob("*.tar.gz")
    for archive in (wheel, sdist):
        names = names_in(archive)
        bad = [n for n in names if {"tests", "bench", "__pycache__", ".pytest_cache", ".hypothesis"} & set(n.split("/")) or n.endswith((".pyc", ".pyo"))]
        assert bad == [], f"{archive.name} carries {bad[:10]}"
    with tarfile.open(sdist) as t:  # the man page ships in the sdist, as committed (generated from the parser)
        (man,) = [m for m in t.getmembers() if m.name.endswith("/docs/portbell.1")]
        assert t.extractfile(man).read() == (ROOT / "docs" / "portbell.1").read_bytes()
    wheel_names = names_in(wheel)
    for packaged in ("linux/portbell.service", "linux/portbell-system.service", "linux/portbell-tray.desktop", "macos/portbell.daemon.plist", "windows/portbell-tray.run", "icons/portbell-256.png"):
        assert f"portbell/packaging/{packaged}" in wheel_names

    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    installed = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(wheel)], capture_output=True, text=True, timeout=600)
    assert installed.returncode == 0, installed.stdout[-3000:] + installed.stderr[-3000:]
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "XDG_", "DBUS_"))}
    env.update(HOME=str(home), PATH=f"{venv / 'bin'}:{env.get('PATH', '')}")
    exe = str(venv / "bin" / "portbell")
    ls = subprocess.run([exe, "ls"], capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert ls.returncode == 0, ls.stderr
    shown = subprocess.run([exe, "autostart", "enable", "--all", "--print"], capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert f"ExecStart={exe} daemon" in shown.stdout and f"Exec={exe} tray" in shown.stdout
    assert values(shown.stdout, "Icon") == ["portbell"]  # the theme's name, installed by enable
    assert list((venv / "lib").rglob("portbell/packaging/icons/portbell-256.png"))  # the icons ship inside the wheel
    assert not (venv / "bin" / "portbellw").exists()  # no windowless launcher on Linux's PATH
    assert not any(home.rglob("*.service")) and not any(home.rglob("*.desktop"))  # --print wrote nothing


def test_no_windowless_launcher_lands_on_linuxs_path():
    import tomllib

    project = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())["project"]
    assert "gui-scripts" not in project  # gui-scripts install on every system
    assert list(project["scripts"]) == ["portbell"]
