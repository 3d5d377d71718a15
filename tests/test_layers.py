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

# module -> what it may import besides the standard library (prefixes)
PURE = {
    "portbell.daemon.model": (),
    "portbell.daemon.errors": (),
    "portbell.daemon.addresses": ("portbell.daemon.model",),
    "portbell.daemon.snapshot": ("portbell.daemon.model",),
    "portbell.daemon.render": ("portbell.daemon.model", "portbell.daemon.ports"),
    "portbell.daemon.ports": (),
    "portbell.daemon.rules": ("portbell.daemon.model", "portbell.daemon.ports"),
    "portbell.daemon.when": (),
}


@pytest.mark.parametrize("path,name,pkg", [m for m in ALL if m[1] in PURE], ids=lambda v: getattr(v, "name", v) if isinstance(v, Path) else None)
def test_pure_and_model_modules_import_only_what_they_declare(path, name, pkg):
    for mod, _ in imports(path, name, pkg):
        root = mod.split(".")[0]
        assert root in STDLIB or mod.startswith(PURE[name]), f"{name} imports {mod}"


def _owners(third_party: str):
    return [(name, mod) for path, name, pkg in ALL for mod, _ in imports(path, name, pkg) if mod.split(".")[0] == third_party]


def test_the_walk_sees_imports_at_every_depth():
    assert ("portbell.daemon.samplers._psutil", "psutil") in _owners("psutil")
    assert any(n == "portbell.daemon.cli" and m.startswith("portbell.daemon.samplers") for path, n, pkg in ALL for m, _ in imports(path, n, pkg))


def test_psutil_only_in_the_samplers_and_the_trays_stop_action():
    allowed = ("portbell.daemon.samplers", "portbell.tray.process")
    assert [(n, m) for n, m in _owners("psutil") if not n.startswith(allowed)] == []


def test_pystray_only_in_tray_app():
    assert {n for n, _ in _owners("pystray")} <= {"portbell.tray.app"}


def test_plyer_only_in_the_trays_notifier():
    assert {n for n, _ in _owners("plyer")} <= {"portbell.tray.notify"}


def test_the_daemon_never_imports_the_tray():
    # One exception: `portbell tray` imports the tray's app inside cmd_tray, never at module level.
    lazy_tray_command = ("portbell.daemon.cli", "portbell.tray.app", False)
    found = [(name, mod, top) for path, name, pkg in ALL if name.startswith("portbell.daemon") for mod, top in imports(path, name, pkg) if mod.startswith("portbell.tray")]
    assert [f for f in found if f != lazy_tray_command] == []


def test_the_tray_never_imports_samplers():
    bad = [(name, mod) for path, name, pkg in ALL if name.startswith("portbell.tray") for mod, _ in imports(path, name, pkg) if mod.startswith("portbell.daemon.samplers")]
    assert bad == []


def test_the_command_line_loads_no_gui_toolkit():
    code = "import sys, portbell.daemon.cli as c; c.build_parser(); print(sorted(m for m in ('pystray', 'plyer', 'PIL', 'gi') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
