"""The `portbell` command: the parser (one module per group of commands), the main job, exit codes.

Exit codes: 0 success, 1 a clean "no" (nothing listens), 2 bad usage or input.
Nothing here imports a GUI toolkit: `portbell ls` works on a headless machine.

A command imports only what it uses: the command modules import their heavy parts inside the
functions that run a command, and `main` builds the parser of the one command it was given (the
whole parser only for help, errors, completion and the man page). `portbell who` and `ls` answer
close to the interpreter's own start-up (bench/cli.py; tests/test_imports.py keeps it so).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from importlib import import_module

from .. import __version__
from ..errors import PortbellError, SampleError, UsageError
from ._args import common_options

# The modules that define the commands, in the order `portbell --help` lists them ("" is this
# module: the tray), and the command each defines: `main` imports only the module of the command
# it runs. A command missing here still works, through the whole parser (tests/test_imports.py
# holds this table to the parser).
GROUPS = {
    "listeners": ("ls", "who", "watch"),
    "stop": ("stop",),
    "doctor": ("doctor",),
    "daemon": ("daemon",),
    "record": ("events", "history", "status", "trust", "mute", "forget"),
    "config": ("config",),
    "": ("tray",),
    "autostart": ("autostart",),
    "completion": ("completion",),
}
MODULE_OF = {command: module for module, commands in GROUPS.items() for command in commands}

# Commands that answer and exit. Their code never logs (nothing they import uses logging, which
# tests/test_imports.py proves): without --verbose they skip importing and setting up the logging
# package. And they run without the cyclic garbage collector: start-up makes many objects and no
# cycles, and collecting them costs a `portbell who` about 1.5 ms (bench/cli.py).
QUICK = frozenset({"ls", "who"})


def cmd_tray(args) -> int:
    from ...tray.app import run  # the daemon's only import of the tray: lazy, so other commands load no GUI toolkit

    return run(verbose=args.verbose)


MAIN_JOB = (
    "With no command, portbell runs its main job: the tray when there is a desktop (it starts the "
    "daemon); otherwise the daemon in the foreground, printing events as they happen, or, when a "
    "daemon already runs, its record followed live (`events --since 10m --follow`)."
)


_COLUMNS: list[int] = []


class _Formatter(argparse.HelpFormatter):
    """argparse's formatter, with the terminal's width read once and without shutil (argparse
    imports it for the width, when every option is added: 2 ms of a `portbell who`)."""

    def __init__(self, prog, indent_increment=2, max_help_position=24, width=None):
        if width is None:
            if not _COLUMNS:
                import os

                try:
                    columns = int(os.environ.get("COLUMNS", "0")) or os.get_terminal_size(sys.__stdout__.fileno()).columns
                except (AttributeError, ValueError, OSError):
                    columns = 80
                _COLUMNS.append(columns)
            width = _COLUMNS[0] - 2
        super().__init__(prog, indent_increment, max_help_position, width)


class _Only:
    """Stands in for the subparsers action: adds the parser of one command (`name`; None: every
    command), and takes the other commands' definitions without building them."""

    def __init__(self, sub, name: str | None) -> None:
        self.sub, self.name, self.found = sub, name, False

    def add_parser(self, name: str, **kw):
        if self.name is not None and name != self.name:
            return _Skipped()
        self.found = True
        kw.setdefault("formatter_class", _Formatter)
        return self.sub.add_parser(name, **kw)


class _Skipped:
    """A command's parser that is not built: every call is taken and dropped; false, so that a
    definition can skip what it would import for nothing (`if not p: return`)."""

    def __getattr__(self, _name):
        return lambda *a, **k: self

    def __bool__(self) -> bool:
        return False


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole parser; with `only`, the parser of that one command (None when there is no such command)."""
    parser = argparse.ArgumentParser(
        prog="portbell",
        description="Rings when something on your machine starts listening on a port.",
        epilog=MAIN_JOB,
        formatter_class=_Formatter,
    )
    parser.add_argument("-V", "--version", action="version", version=f"portbell {__version__}", help="print the version and exit")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more (to stderr)")
    parser.add_argument("--color", "--colour", dest="color", choices=("auto", "always", "never"), default="auto",
                        help="colour the text: auto (on a terminal, unless NO_COLOR is set), always, never")
    sub = _Only(parser.add_subparsers(dest="command", metavar="COMMAND"), only)

    for name in GROUPS if only is None else (MODULE_OF[only],):
        if not name:
            sub.add_parser("tray", help="the tray icon: listeners at a glance and notifications (needs a desktop)").set_defaults(func=cmd_tray)
            continue
        module = import_module(f"{__name__}.{name}")
        (getattr(module, "add_parsers", None) or module.add_parser)(sub)
    if not sub.found:
        return None
    for command in sub.sub.choices.values():  # -v and --color after the command too: `portbell ls -v`
        common_options(command)
    return parser


def _command(argv: Sequence[str]) -> str | None:
    """The command word, when nothing before it asks for the whole parser (help, version)."""
    value = False  # the next word is --color's value
    for arg in argv:
        if value:
            value = False
        elif arg in ("-h", "--help", "-V", "--version"):
            return None
        elif arg in ("--color", "--colour"):
            value = True
        elif not arg.startswith("-"):
            return arg
    return None


def _setup_logging(verbose: bool) -> None:
    import logging

    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, format="portbell: %(message)s")


def _main_job(verbose: bool) -> list[str]:
    """`portbell` alone: the tray when there is a desktop (it starts the daemon); otherwise
    the daemon in the foreground printing events as readable lines, or, when a daemon
    already runs, its record followed live."""
    from .. import paths
    from ..service import InstanceLock
    from ..session import graphical_session

    if graphical_session() is None:
        return [*(["--verbose"] if verbose else []), "tray"]
    if InstanceLock.holder(paths.lock_file()) is not None:
        return ["events", "--since", "10m", "--follow"]
    return [*(["--verbose"] if verbose else []), "daemon"]


def windowless_log() -> None:
    """Under pythonw (which Windows' Run entries start) there is no stderr: what would
    go there, a failure at login included, goes to portbellw.log in the user's log folder."""
    if sys.stderr is not None and sys.stdout is not None:
        return
    import platformdirs

    folder = platformdirs.user_log_path("portbell", appauthor=False)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        out = open(folder / "portbellw.log", "a", encoding="utf-8", buffering=1)
    except OSError:
        import os

        out = open(os.devnull, "w", encoding="utf-8")
    sys.stdout = sys.stdout or out
    sys.stderr = sys.stderr or out


def main(argv: Sequence[str] | None = None) -> int:
    import gc

    collecting = gc.isenabled()
    gc.disable()  # until the command is known (imports and the parser); QUICK ones keep it so
    try:
        return _main(argv, collecting)
    finally:
        if collecting:
            gc.enable()


def _main(argv: Sequence[str] | None, collecting: bool) -> int:
    import gc

    windowless_log()
    argv = sys.argv[1:] if argv is None else list(argv)
    word = _command(argv)
    parser = (build_parser(word) if word in MODULE_OF else None) or build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        argv = _main_job(args.verbose)
        args = build_parser().parse_args(argv)
    if args.verbose or args.command not in QUICK:
        _setup_logging(args.verbose)
    if collecting and args.command not in QUICK:
        gc.enable()  # the daemon, watch, the tray: they run for a long time
    try:
        return args.func(args)
    except UsageError as err:
        print(f"portbell: {err}", file=sys.stderr)
        return 2
    except SampleError as err:
        print(f"portbell: cannot read the listening sockets: {err}", file=sys.stderr)
        return 1
    except PortbellError as err:
        print(f"portbell: {err}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `portbell ls | head`
        return 0
    except OSError as err:  # a file or folder refused us: a sentence, never a traceback
        where = f" ({err.filename})" if err.filename else ""
        print(f"portbell: {err.strerror or err}{where}", file=sys.stderr)
        return 1
