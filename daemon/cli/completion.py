"""`portbell completion bash|zsh|fish`: shell completion, generated from the parser."""

from __future__ import annotations

from ._shells import LOAD


def cmd_completion(args) -> int:
    from . import build_parser
    from ._shells import script

    print(script(args.shell, build_parser()), end="")
    return 0


def add_parser(sub) -> None:
    how = "; ".join(f"{shell}: {load}" for shell, load in LOAD.items())
    p = sub.add_parser("completion", help="print a shell completion script: bash, zsh or fish", description=f"Prints the completion script for a shell. {how}.")
    p.add_argument("shell", choices=tuple(LOAD), help="the shell to complete for")
    p.set_defaults(func=cmd_completion)
