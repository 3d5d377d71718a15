"""Shell completion for bash, zsh and fish, and the parser's commands as plain data (the man page
reads them too). Generated from the argparse parser, so a new command or option completes
without anyone editing a script. Stdlib only.

Why not a library: shtab writes static scripts from an argparse parser, but for bash, zsh and
tcsh, not fish; argcomplete covers fish but completes by running the program on every TAB (a
Python start-up each time, and a hook in the program). What portbell needs is small: commands,
their options, and the choices of an option or a positional, in three static scripts.
"""

from __future__ import annotations

import argparse

from ..model import value


@value
class Option:
    flags: tuple[str, ...]  # "-f", "--follow"
    help: str
    value: str | None = None  # the metavar, when the option takes a value
    choices: tuple[str, ...] = ()

    @property
    def takes_path(self) -> bool:
        return self.value is not None and "PATH" in self.value


@value
class Command:
    name: str
    help: str
    description: str
    usage: str  # one line, without "usage: "
    options: tuple[Option, ...]
    positionals: tuple[Option, ...]  # flags empty; `value` is the metavar


def _usage(parser: argparse.ArgumentParser) -> str:
    formatter = argparse.HelpFormatter(parser.prog, width=1 << 20)
    formatter.add_usage(parser.usage, parser._actions, parser._mutually_exclusive_groups, prefix="")
    return formatter.format_help().strip()


def _help(action: argparse.Action) -> str:
    text = action.help or ""
    return text % {"default": action.default, "prog": ""} if "%" in text else text


def _option(action: argparse.Action) -> Option:
    takes = action.nargs != 0
    choices = tuple(str(c) for c in action.choices) if action.choices else ()
    value = None
    if takes:
        value = action.metavar if isinstance(action.metavar, str) else (action.dest.upper() if action.option_strings else action.dest)
    return Option(tuple(action.option_strings), _help(action), value, choices)


def options_of(parser: argparse.ArgumentParser) -> tuple[list[Option], list[Option]]:
    """(options, positionals) of one parser, help included, subcommands left out."""
    options, positionals = [], []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            continue
        (options if action.option_strings else positionals).append(_option(action))
    return options, positionals


def commands_of(parser: argparse.ArgumentParser) -> list[Command]:
    """Every command of the parser, in the order `portbell --help` lists them."""
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    helps = {a.dest: a.help or "" for a in sub._choices_actions}
    out = []
    for name, child in sub.choices.items():
        options, positionals = options_of(child)
        out.append(Command(name, helps.get(name, ""), child.description or "", _usage(child), tuple(options), tuple(positionals)))
    return out


# How each shell loads its script: `portbell completion --help` and each script's header say so.
LOAD = {
    "bash": "source <(portbell completion bash), or save it as ~/.local/share/bash-completion/completions/portbell",
    "zsh": "save it as _portbell in a folder of $fpath, or: source <(portbell completion zsh)",
    "fish": "save it as ~/.config/fish/completions/portbell.fish",
}


def _header(shell: str) -> list[str]:
    return [f"# {shell} completion for portbell; generated from its parser by `portbell completion {shell}`.", f"# Load it: {LOAD[shell]}"]


# ------------------------------------------------------------------ bash


# The command word is the first word that is not an option (the top level's options take no value).
_BASH_START = """_portbell() {
    local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]} cmd= i
    for ((i = 1; i < COMP_CWORD; i++)); do
        [[ ${COMP_WORDS[i]} == -* ]] || { cmd=${COMP_WORDS[i]}; break; }
    done
    local opts= words=
    case "$cmd" in"""


def bash(top: list[Option], commands: list[Command]) -> list[str]:
    lines = [*_header("bash"), _BASH_START, f"        '') opts='{_flags(top)}'; words='{' '.join(c.name for c in commands)}' ;;"]
    for command in commands:
        lines.append(f"        {command.name})")
        lines.append(f"            opts='{_flags(command.options)}'")
        words = [c for p in command.positionals for c in p.choices]
        if words:
            lines.append(f"            words='{' '.join(words)}'")
        valued = [o for o in command.options if o.value is not None]
        if valued:
            lines.append('            case "$prev" in')
            for o in valued:
                if o.choices:
                    reply = f'COMPREPLY=($(compgen -W \'{" ".join(o.choices)}\' -- "$cur")); return'
                elif o.takes_path:
                    reply = 'COMPREPLY=($(compgen -f -- "$cur")); return'
                else:
                    reply = "return"  # a value only the user knows: offer nothing
                lines.append(f"                {'|'.join(o.flags)}) {reply} ;;")
            lines.append("            esac")
        lines.append("            ;;")
    lines += [
        "    esac",
        '    if [[ $cur == -* ]]; then',
        '        COMPREPLY=($(compgen -W "$opts" -- "$cur"))',
        "    else",
        '        COMPREPLY=($(compgen -W "$words" -- "$cur"))',
        "    fi",
        "}",
        "complete -F _portbell portbell",
    ]
    return lines


def _flags(options) -> str:
    return " ".join(f for o in options for f in o.flags)


# ------------------------------------------------------------------ zsh


def _zq(text: str, escape: str = "") -> str:
    """Text inside a single-quoted zsh word; `escape`: characters that take a backslash there
    (`[]` in an _arguments explanation, `:` in its message or in a _describe match)."""
    text = " ".join(text.split()).replace("\\", "\\\\")
    for char in escape:
        text = text.replace(char, "\\" + char)
    return text.replace("'", "'\\''")


def _zsh_spec(o: Option) -> str:
    flags = o.flags
    names = f"{{{','.join(flags)}}}" if len(flags) > 1 else flags[0]
    exclusive = f"'({' '.join(flags)})'" if len(flags) > 1 else ""
    spec = f"{exclusive}{names}'[{_zq(o.help, '[]')}]"
    if o.value is not None:
        action = f"({' '.join(o.choices)})" if o.choices else ("_files" if o.takes_path else " ")
        spec += f":{_zq(o.value.lower(), ':')}:{action}"
    return spec + "'"


def zsh(top: list[Option], commands: list[Command]) -> list[str]:
    lines = [
        "#compdef portbell",
        *_header("zsh"),
        "_portbell() {",
        "  local curcontext=$curcontext state line",
        "  local -a commands",
        "  commands=(",
        *[f"    '{_zq(c.name, ':')}:{_zq(c.help)}'" for c in commands],
        "  )",
        "  _arguments -C \\",
        *[f"    {_zsh_spec(o)} \\" for o in top],
        "    '1: :->command' \\",
        "    '*:: :->args' && return",
        "  case $state in",
        "    command) _describe -t commands 'portbell command' commands ;;",
        "    args)",
        "      case $words[1] in",
    ]
    for command in commands:
        specs = [_zsh_spec(o) for o in command.options]
        for i, p in enumerate(command.positionals, 1):
            action = f"({' '.join(p.choices)})" if p.choices else " "
            specs.append(f"'{i}:{_zq((p.value or '').lower(), ':')}:{action}'")
        lines.append(f"        {command.name}) _arguments \\")
        lines += [f"            {s} \\" for s in specs[:-1]]
        lines.append(f"            {specs[-1]} ;;")
    lines += [
        "      esac ;;",
        "  esac",
        "}",
        'if [[ $zsh_eval_context[-1] == loadautofunc ]]; then _portbell "$@"; else compdef _portbell portbell; fi',
    ]
    return lines


# ------------------------------------------------------------------ fish


def _fq(text: str) -> str:
    return "'" + " ".join(text.split()).replace("\\", "\\\\").replace("'", "\\'") + "'"


def _fish_option(condition: str, o: Option) -> str:
    parts = ["complete -c portbell", f"-n {_fq(condition)}"]
    for flag in o.flags:
        parts.append(f"-l {flag[2:]}" if flag.startswith("--") else f"-s {flag[1:]}")
    if o.choices:
        parts.append(f"-x -a {_fq(' '.join(o.choices))}")
    elif o.takes_path:
        parts.append("-r -F")
    elif o.value is not None:
        parts.append("-x")
    if o.help:
        parts.append(f"-d {_fq(o.help)}")
    return " ".join(parts)


def fish(top: list[Option], commands: list[Command]) -> list[str]:
    lines = [
        *_header("fish"),
        "complete -c portbell -f",
        *[_fish_option("__fish_use_subcommand", o) for o in top],
        *[f"complete -c portbell -n __fish_use_subcommand -a {c.name} -d {_fq(c.help)}" for c in commands],
    ]
    for command in commands:
        condition = f"__fish_seen_subcommand_from {command.name}"
        lines += [_fish_option(condition, o) for o in command.options]
        words = [c for p in command.positionals for c in p.choices]
        if words:
            lines.append(f"complete -c portbell -n {_fq(condition)} -a {_fq(' '.join(words))}")
    return lines


SHELLS = {"bash": bash, "zsh": zsh, "fish": fish}


def script(shell: str, parser: argparse.ArgumentParser) -> str:
    top, _ = options_of(parser)
    return "\n".join(SHELLS[shell](top, commands_of(parser))) + "\n"
