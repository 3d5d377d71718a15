"""The man page, portbell(1), generated from the parser: every command, its synopsis and options.

    python -m portbell.daemon.cli._manual docs/portbell.1     (`make man`)

docs/portbell.1 is committed and ships in the sdist; tests/test_completion.py holds it to the
parser (regenerate it when a command or an option changes) and renders it with groff.
"""

from __future__ import annotations

import sys

from .. import __version__
from ._shells import commands_of, options_of

EXIT_STATUS = (
    ("0", "success"),
    ("1", 'a clean "no": nothing listens there, the daemon is not running, a status entry is not installed'),
    ("2", "bad usage or input: a sentence says what is wrong, and nothing changed"),
)
ENVIRONMENT = (
    ("PORTBELL_STATE_DIR", "where the record (portbell.db) and its lock live; default: the user's state directory"),
    ("PORTBELL_RUNTIME_DIR", "where runtime files live; default: the user's runtime directory"),
    ("PORTBELL_CONFIG", "the configuration file; default: config.toml in the user's configuration directory "
     "(`portbell config path`)"),
)


def _roff(text: str) -> str:
    """Plain text as roff: backslashes and hyphens escaped, no line that starts a request."""
    text = " ".join(text.split()).replace("\\", "\\e").replace("-", "\\-")
    return "\\&" + text if text.startswith((".", "'")) else text


def _option_lines(options) -> list[str]:
    lines = []
    for o in options:
        if "-h" in o.flags or not (o.flags or o.help or o.choices):
            continue  # every command has --help; a bare positional is in the synopsis already
        flags = ", ".join(f"\\fB{_roff(f)}\\fR" for f in o.flags) if o.flags else f"\\fI{_roff(o.value or '')}\\fR"
        value = ""
        if o.flags and o.value is not None:
            value = " {" + ",".join(_roff(c) for c in o.choices) + "}" if o.choices else f" \\fI{_roff(o.value)}\\fR"
        elif not o.flags and o.choices:
            flags = "{" + ",".join(f"\\fB{_roff(c)}\\fR" for c in o.choices) + "}"
        lines += [".TP", flags + value, _roff(o.help) if o.help else "\\&"]
    return lines


def manual(parser) -> str:
    top, _ = options_of(parser)
    commands = commands_of(parser)
    lines = [
        f'.TH PORTBELL 1 "" "portbell {__version__}" "User Commands"',
        ".nh",  # options and choices are never hyphenated
        ".ad l",
        ".SH NAME",
        f"portbell \\- {_roff((parser.description or '').rstrip('.').lower()[:1] + (parser.description or '').rstrip('.')[1:])}",
        ".SH SYNOPSIS",
        f".B portbell\n[\\fIOPTIONS\\fR] [\\fICOMMAND\\fR [\\fIARGS\\fR]]",
        ".SH DESCRIPTION",
        _roff(parser.description or ""),
        ".PP",
        _roff(parser.epilog or ""),
        ".SH OPTIONS",
        *_option_lines(top),
        ".SH COMMANDS",
    ]
    for command in commands:
        lines += [f".SS {command.name}", f"\\fBportbell\\fR {_roff(command.usage.removeprefix('portbell '))}", ".PP", _roff(command.help)]
        if command.description:
            lines += [".PP", _roff(command.description)]
        lines += _option_lines(command.positionals + command.options)
    lines.append(".SH EXIT STATUS")
    for code, meaning in EXIT_STATUS:
        lines += [".TP", f"\\fB{code}\\fR", _roff(meaning)]
    lines.append(".SH ENVIRONMENT")
    for name, meaning in ENVIRONMENT:
        lines += [".TP", f"\\fB{name}\\fR", _roff(meaning)]
    lines += [
        ".SH SEE ALSO",
        "\\fBss\\fR(8), \\fBlsof\\fR(8), \\fBsystemctl\\fR(1);",
        "shell completion: \\fBportbell completion bash\\fR|\\fBzsh\\fR|\\fBfish\\fR.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    from . import build_parser

    text = manual(build_parser())
    if argv:
        with open(argv[0], "w", encoding="utf-8") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
