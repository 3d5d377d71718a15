"""`portbell who` and `portbell ls` import only what they use (issue 13, point 8): what a command
never needs costs start-up time on every run (bench/cli.py measures it). A real process runs the
real command against a real listener, then says which modules it loaded."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

LINUX = sys.platform.startswith("linux")

# Never needed to say who listens: the record and everything that writes, the doctor, the daemon,
# the tray and its toolkits, the other commands' modules, and the heavier standard modules.
NEVER = [
    "sqlite3", "PIL", "gi", "pystray", "plyer", "platformdirs", "logging", "http.client", "urllib.request",
    "shutil", "subprocess", "threading", "typing", "dataclasses", "inspect",
    "portbell.tray", "portbell.daemon.doctor", "portbell.daemon.record", "portbell.daemon.service",
    "portbell.daemon.sinks", "portbell.daemon.autostart", "portbell.daemon.config", "portbell.daemon.rules",
    "portbell.daemon.paths", "portbell.daemon.cli.record", "portbell.daemon.cli.daemon",
    "portbell.daemon.cli.doctor", "portbell.daemon.cli.config", "portbell.daemon.cli.autostart",
    "portbell.daemon.cli.completion", "portbell.daemon.cli._shells",
]
if LINUX:  # the sock_diag sampler and the /proc owner reader need neither
    NEVER += ["psutil", "json"]

# json is imported by the probe only after the modules are listed: the command's own use shows.
PROBE = """
import contextlib, io, sys
from portbell.daemon.cli import main
out = io.StringIO()
with contextlib.redirect_stdout(out):
    code = main(sys.argv[1:])
names = sorted(sys.modules)
import json
sys.stderr.write(json.dumps({"code": code, "out": out.getvalue()}) + "\\n")
print(json.dumps(names))
"""


def loaded(*argv: str) -> tuple[dict, set[str]]:
    done = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stderr.strip().splitlines()[-1])
    return result, set(json.loads(done.stdout))


def unneeded(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if any(m == n or m.startswith(n + ".") for n in NEVER))


@pytest.mark.parametrize("argv", [["who", "{port}"], ["who", "127.0.0.1:{port}"], ["ls"], ["ls", "--exposed", "--tcp"]])
def test_who_and_ls_import_nothing_they_never_use(sockets, argv):
    port = sockets().getsockname()[1]
    result, modules = loaded(*(a.format(port=port) for a in argv))
    assert result["code"] == 0
    if argv[0] == "who":
        assert f"127.0.0.1:{port}" in result["out"]  # it did answer, and named the listener
    assert "portbell.daemon.samplers" in modules
    assert unneeded(modules) == []


def test_the_probe_sees_what_a_command_imports(sockets):
    """The check above can fail: `doctor` does load the doctor package (and `status` the record)."""
    port = sockets().getsockname()[1]
    _, modules = loaded("doctor", str(port))
    assert "portbell.daemon.doctor" in unneeded(modules)


def test_every_command_is_in_the_table_main_imports_by():
    from portbell.daemon import cli

    parser = cli.build_parser()
    (sub,) = [a for a in parser._actions if a.dest == "command"]
    assert sorted(sub.choices) == sorted(cli.MODULE_OF)
    for name in sub.choices:  # each command's own parser is the one the whole parser has
        one = cli.build_parser(name)
        (alone,) = [a for a in one._actions if a.dest == "command"]
        assert list(alone.choices) == [name]
        assert alone.choices[name].format_help() == sub.choices[name].format_help()


GC_PROBE = """
import gc, sys
import portbell.daemon.cli as cli
seen = []
real = cli.build_parser
def spy(only=None):
    seen.append(gc.isenabled())
    return real(only)
cli.build_parser = spy
for argv in (["ls"], ["config", "path"]):
    cmd = cli.MODULE_OF[argv[0]]
    module = __import__(f"portbell.daemon.cli.{cmd}", fromlist=["x"])
    name = {"ls": "cmd_ls", "config": "cmd_config"}[argv[0]]
    real_cmd = getattr(module, name)
    def wrapped(args, real_cmd=real_cmd):
        seen.append(gc.isenabled())
        return real_cmd(args)
    setattr(module, name, wrapped)
    cli.main(argv)
    seen.append(gc.isenabled())
print(seen)
"""


def test_quick_commands_run_without_the_cyclic_collector_and_the_others_with_it(home):
    done = subprocess.run([sys.executable, "-c", GC_PROBE], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    # ls: off while the parser is built and while it runs, on again after; config: on while it runs
    assert done.stdout.strip().splitlines()[-1] == "[False, False, True, False, True, True]"
