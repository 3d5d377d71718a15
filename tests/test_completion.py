"""`portbell completion bash|zsh|fish` completes in the real shells, and the man page, generated
from the parser, renders with groff and lists every command (issue 13, point 6)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import debian_tool, portbell

ROOT = Path(__file__).resolve().parent.parent
MAN = ROOT / "docs" / "portbell.1"


def commands() -> list[str]:
    from portbell.daemon import cli

    return list(cli.MODULE_OF)


# ------------------------------------------------------------------ bash


def bash_complete(*words: str) -> list[str]:
    """What the loaded script offers for `words`, the last one being completed (it may be "")."""
    argv = " ".join(f"'{w}'" for w in words)
    code = (
        f'source <("{sys.executable}" -m portbell.daemon completion bash) || exit 9\n'
        f"COMP_WORDS=({argv}); COMP_CWORD={len(words) - 1}\n"
        'complete -p portbell >/dev/null || exit 8\n'  # the script registered itself for the command
        '_portbell; printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    done = subprocess.run(["bash", "--norc", "--noprofile", "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return [line for line in done.stdout.splitlines() if line]


@pytest.mark.parametrize(
    "words,offered",
    [
        (("portbell", "wh"), ["who"]),
        (("portbell", "ls", "--ex"), ["--exposed", "--exposure"]),
        (("portbell", "ls", "--exposed", "--exposure", "a"), ["all-interfaces"]),
        (("portbell", "-v", "ev"), ["events"]),
        (("portbell", "who", "--sampler", ""), ["sockdiag", "psutil"]),
        (("portbell", "config", "c"), ["check"]),
        (("portbell", "completion", ""), ["bash", "zsh", "fish"]),
        (("portbell", "trust", "--exposure", "l"), ["loopback", "local-network"]),
        (("portbell", "events", "--since", ""), []),  # a value only the user knows: nothing offered
    ],
)
def test_bash_completes_commands_options_and_choices(words, offered):
    assert bash_complete(*words) == offered


def test_bash_offers_every_command_and_nothing_else():
    assert bash_complete("portbell", "") == commands()
    assert "--json" in bash_complete("portbell", "status", "--")


# ------------------------------------------------------------------ zsh and fish


def script(shell: str, tmp_path: Path) -> Path:
    done = portbell("completion", shell)
    assert done.returncode == 0, done.stderr
    path = tmp_path / f"portbell.{shell}"
    path.write_text(done.stdout)
    return path


def test_the_zsh_script_parses_and_registers_itself(tmp_path):
    zsh = debian_tool("zsh", "zsh")
    path = script("zsh", tmp_path)
    done = subprocess.run([zsh, "-n", str(path)], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stderr) == (0, "")
    code = f"autoload -U compinit; compinit -u -d {tmp_path}/zcompdump; source {path}; print -r -- $_comps[portbell]"
    done = subprocess.run([zsh, "-f", "-c", code], capture_output=True, text=True, timeout=60, env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert (done.stdout.strip(), done.stderr) == ("_portbell", "")
    for name in commands():
        assert f"'{name}:" in path.read_text()


def test_zsh_n_would_catch_a_broken_script(tmp_path):
    zsh = debian_tool("zsh", "zsh")
    path = script("zsh", tmp_path)
    path.write_text(path.read_text().replace("  esac\n}\n", "  esac\n", 1))  # the function never closes
    assert subprocess.run([zsh, "-n", str(path)], capture_output=True, text=True, timeout=60).returncode != 0


@pytest.mark.parametrize("line,offered", [("portbell wh", "who"), ("portbell ls --ex", "--exposed"), ("portbell ls --ex", "--exposure"), ("portbell config ", "check")])
def test_fish_parses_the_script_and_completes_with_it(tmp_path, line, offered):
    fish = debian_tool("fish", "fish")
    path = script("fish", tmp_path)
    done = subprocess.run([fish, "-n", str(path)], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stderr) == (0, "")
    env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "XDG_CONFIG_HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path)}
    done = subprocess.run([fish, "--no-config", "-c", f"source {path}; complete -C '{line}'"], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    assert offered in [row.split("\t")[0] for row in done.stdout.splitlines()]


def test_an_unknown_shell_is_exit_2_with_a_sentence():
    done = portbell("completion", "tcsh")
    assert done.returncode == 2 and "invalid choice: 'tcsh'" in done.stderr and "Traceback" not in done.stderr


# ------------------------------------------------------------------ the man page


def test_the_committed_man_page_is_what_the_parser_makes_now():
    """Fix a failure with `make man` (a command or an option changed)."""
    done = subprocess.run([sys.executable, "-m", "portbell.daemon.cli._manual"], capture_output=True, text=True, timeout=60, check=True)
    assert MAN.read_text() == done.stdout


def render(path: Path) -> subprocess.CompletedProcess:
    groff = debian_tool("groff", "groff-base")
    return subprocess.run([groff, "-man", "-Tutf8", "-ww", "-P-cbou", str(path)], capture_output=True, text=True, timeout=60)


def test_the_man_page_renders_without_warnings_and_lists_every_command():
    done = render(MAN)
    assert (done.returncode, done.stderr) == (0, "")
    text = done.stdout
    for name in commands():
        assert f"\n   {name}\n" in text and f"portbell {name} [-h]" in text.replace("\u2010", "-"), name
    for section in ("NAME", "SYNOPSIS", "COMMANDS", "EXIT STATUS", "ENVIRONMENT"):
        assert f"\n{section}\n" in text


def test_groff_would_warn_about_a_broken_page(tmp_path):
    broken = tmp_path / "broken.1"
    broken.write_text(MAN.read_text().replace(".SH COMMANDS", ".SH COMMANDS\n\\fBunclosed \\*[nosuchstring]", 1))
    assert render(broken).stderr != ""
