"""The `portbell` command: the parser (one module per group of commands), the main job, exit codes.

Exit codes: 0 success, 1 a clean "no" (nothing listens), 2 bad usage or input.
Nothing here imports a GUI toolkit: `portbell ls` works on a headless machine.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence

from .. import __version__
from ..errors import PortbellError, SampleError, UsageError
from . import autostart, config, daemon, doctor, listeners, record, stop
from ._args import common_options

log = logging.getLogger("portbell")


def cmd_tray(args) -> int:
    from ...tray.app import run  # the daemon's only import of the tray: lazy, so other commands load no GUI toolkit

    return run(verbose=args.verbose)


MAIN_JOB = (
    "With no command, portbell runs its main job: the tray when there is a desktop (it starts the "
    "daemon); otherwise the daemon in the foreground, printing events as they happen, or, when a "
    "daemon already runs, its record followed live (`events --since 10m --follow`)."
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="portbell",
        description="Rings when something on your machine starts listening on a port.",
        epilog=MAIN_JOB,
    )
    parser.add_argument("-V", "--version", action="version", version=f"portbell {__version__}", help="print the version and exit")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more (to stderr)")
    parser.add_argument("--color", "--colour", dest="color", choices=("auto", "always", "never"), default="auto",
                        help="colour the text: auto (on a terminal, unless NO_COLOR is set), always, never")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    listeners.add_parsers(sub)
    stop.add_parser(sub)
    doctor.add_parser(sub)
    daemon.add_parser(sub)
    record.add_parsers(sub)
    config.add_parser(sub)
    sub.add_parser("tray", help="the tray icon: listeners at a glance and notifications (needs a desktop)").set_defaults(func=cmd_tray)
    autostart.add_parser(sub)
    for command in sub.choices.values():  # -v and --color after the command too: `portbell ls -v`
        common_options(command)
    return parser


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
    windowless_log()
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="portbell: %(message)s")
    if args.command is None:
        args = parser.parse_args(_main_job(args.verbose))
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
