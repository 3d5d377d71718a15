"""The arrows of STYLE.md point down: an ast walk over every module keeps them true."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
STDLIB = sys.stdlib_module_names


def modules():
    for folder, package in (("daemon", "portbell.daemon"), ("tray", "portbell.tray")):
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT / folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            yield path, ".".join([package, *parts]), path.name == "__init__.py"


def imports(path: Path, name: str, is_package: bool, top_level_only=False):
    """(imported module, at module level?) for every import in a file, made absolute."""
    tree = ast.parse(path.read_text(), str(path))
    base = name if is_package else name.rpartition(".")[0]
    top = {id(n) for n in tree.body}
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                mod = ".".join(anchor + ([node.module] if node.module else []))
                targets = [mod] if node.module else [f"{mod}.{a.name}" for a in node.names]
            else:
                targets = [node.module]
        at_top = id(node) in top or any(id(node) in {id(x) for x in ast.walk(t)} for t in tree.body if isinstance(t, (ast.If, ast.Try)))
        for t in targets:
            if not top_level_only or at_top:
                yield t, at_top


ALL = list(modules())

D = "portbell.daemon."

# The floors at daemon/'s top, each with the floors it may stand on (besides the standard library).
FLOORS = {
    "model": (),
    "errors": (),
    "ports": ("model",),
    "when": (),
    "session": (),
    "paths": ("platformdirs",),
    "addresses": ("model",),
    "snapshot": ("model",),
    "rules": ("model", "ports"),
    "words": ("model", "ports"),
    "process": ("model", "words", "psutil"),  # the stop guard: psutil inside its functions (see the psutil rule)
    "config": ("model", "errors", "addresses", "rules"),
}
JOBS = ("samplers", "sinks", "record", "doctor", "autostart")
TOP = {"__init__", "__main__"}


def _allowed(prefixes):
    return tuple(D + p if p in FLOORS else p for p in prefixes)  # else a third party: platformdirs, psutil


@pytest.mark.parametrize("floor", sorted(FLOORS))
def test_each_floor_stands_only_on_the_floors_below_it(floor):
    name = D + floor
    path, _, pkg = next(m for m in ALL if m[1] == name)
    allowed = _allowed(FLOORS[floor]) + (name + ".",)  # a floor package's own modules
    for mod, _ in imports(path, name, pkg):
        root = mod.split(".")[0]
        assert root in STDLIB or mod.startswith(allowed), f"{name} imports {mod}"


FLOOR_PACKAGES = {"words", "model"}  # floors too big for one module: the phrases (the tray's in words/tray.py);
# the values (how a value class is made in model/_valueclass.py)


def test_daemon_keeps_only_its_floors_at_the_top():
    top = {p.stem for p in (ROOT / "daemon").glob("*.py")} - TOP
    assert top | FLOOR_PACKAGES == set(FLOORS) and not top & FLOOR_PACKAGES
    assert len(top | FLOOR_PACKAGES) <= 12
    folders = {p.name for p in (ROOT / "daemon").iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert folders == {*JOBS, "service", "cli", *FLOOR_PACKAGES}


@pytest.mark.parametrize("package", sorted(FLOOR_PACKAGES))
def test_a_floor_packages_modules_stand_on_the_same_floors_as_the_package(package):
    allowed = _allowed(FLOORS[package]) + (D + package,)
    found = [(name, mod) for path, name, pkg in ALL if name.startswith(D + package + ".") for mod, _ in imports(path, name, pkg)]
    assert found, f"daemon/{package}/ has no modules"
    assert [(n, m) for n, m in found if m.split(".")[0] not in STDLIB and not m.startswith(allowed)] == []


@pytest.mark.parametrize("job", JOBS)
def test_a_job_never_reaches_up_into_the_service_or_the_command_line(job):
    bad = [
        (name, mod)
        for path, name, pkg in ALL
        if name.startswith(D + job)
        for mod, _ in imports(path, name, pkg)
        if mod.startswith((D + "service", D + "cli", "portbell.tray"))
    ]
    assert bad == []


def test_jobs_stay_in_their_rooms():
    # A job uses the floors, and no other job, with one exception: doctor samples (it opens a sampler
    # when none is handed to it, as `portbell doctor` does).
    allowed_sideways = {"doctor": ("samplers",)}
    bad = []
    for path, name, pkg in ALL:
        job = next((j for j in JOBS if name.startswith(D + j)), None)
        if job is None:
            continue
        others = tuple(D + j for j in JOBS if j != job and j not in allowed_sideways.get(job, ()))
        bad += [(name, mod) for mod, _ in imports(path, name, pkg) if mod.startswith(others)]
    assert bad == []


def test_the_service_never_imports_the_command_line():
    bad = [(n, m) for path, n, pkg in ALL if n.startswith(D + "service") for m, _ in imports(path, n, pkg) if m.startswith(D + "cli")]
    assert bad == []


def test_no_module_is_two_jobs():
    big = [(str(path.relative_to(ROOT)), n) for path, _, _ in ALL if (n := len(path.read_text().splitlines())) > 450]
    assert big == []


def test_every_module_says_what_it_is_for():
    missing = [name for path, name, _ in ALL if not (ast.get_docstring(ast.parse(path.read_text())) or "").strip()]
    assert missing == []


def test_every_exception_class_lives_in_errors():
    found = []
    for path, name, _ in ALL:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and any(getattr(b, "id", getattr(b, "attr", "")).endswith(("Error", "Exception")) for b in node.bases):
                found.append((name, node.name))
    assert [f for f in found if f[0] != D + "errors"] == []


def _owners(third_party: str):
    return [(name, mod) for path, name, pkg in ALL for mod, _ in imports(path, name, pkg) if mod.split(".")[0] == third_party]


def test_the_walk_sees_imports_at_every_depth():
    assert ("portbell.daemon.samplers._psutil", "psutil") in _owners("psutil")
    lazy = [(n, m, top) for path, n, pkg in ALL for m, top in imports(path, n, pkg) if n == "portbell.daemon.cli._args"]
    assert ("portbell.daemon.cli._args", "portbell.daemon.samplers", False) in lazy


def test_psutil_only_in_the_samplers_and_the_stop_guard():
    allowed = ("portbell.daemon.samplers", "portbell.daemon.process")
    assert [(n, m) for n, m in _owners("psutil") if not n.startswith(allowed)] == []


def test_pystray_only_in_tray_app():
    assert {n for n, _ in _owners("pystray")} <= {"portbell.tray.app"}


def test_plyer_only_in_the_trays_notifier():
    assert {n for n, _ in _owners("plyer")} <= {"portbell.tray.notify"}


def test_jeepney_only_in_the_trays_dbus_module():
    assert {n for n, _ in _owners("jeepney")} <= {"portbell.tray._dbus"}
    assert ("portbell.tray._dbus", "jeepney") in [(n, m.split(".")[0]) for n, m in _owners("jeepney")]


def test_xlib_only_in_the_trays_pointer_probe():
    assert {n for n, _ in _owners("Xlib")} <= {"portbell.tray._x11"}
    assert _owners("Xlib")


def test_the_daemon_never_imports_the_tray():
    # One exception: `portbell tray` imports the tray's app inside cmd_tray, never at module level.
    lazy_tray_command = ("portbell.daemon.cli", "portbell.tray.app", False)
    found = [(name, mod, top) for path, name, pkg in ALL if name.startswith("portbell.daemon") for mod, top in imports(path, name, pkg) if mod.startswith("portbell.tray")]
    assert [f for f in found if f != lazy_tray_command] == []


def test_the_tray_never_imports_what_samples_or_the_command_line():
    never = tuple(D + j for j in ("samplers", "sinks", "doctor", "cli"))
    bad = [(name, mod) for path, name, pkg in ALL if name.startswith("portbell.tray") for mod, _ in imports(path, name, pkg) if mod.startswith(never)]
    assert bad == []


def test_the_command_line_loads_no_gui_toolkit():
    code = "import sys, portbell.daemon.cli as c; c.build_parser(); print(sorted(m for m in ('pystray', 'plyer', 'PIL', 'gi') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
