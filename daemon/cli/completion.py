"""`portbell completion bash|zsh|fish`: shell completion, generated from the parser."""

from __future__ import annotations


def cmd_completion(args) -> int:
    from . import build_parser
    from ._shells import script

    print(script(args.shell, build_parser()), end="")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser(
        "completion",
        help="print a shell completion script: bash, zsh or fish",
        description="Prints the completion script for a shell. bash: `source <(portbell completion bash)` "
        "(or save it as ~/.local/share/bash-completion/completions/portbell); zsh: save it as _portbell in a "
        "folder of $fpath; fish: `portbell completion fish > ~/.config/fish/completions/portbell.fish`.",
    )
    p.add_argument("shell", choices=("bash", "zsh", "fish"))
    p.set_defaults(func=cmd_completion)
