"""Configuration: zero-config, precise errors, and fuzzing that never crashes."""

from __future__ import annotations

import string
import subprocess
import sys
from functools import partial

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from portbell.daemon import config as _config
from portbell.daemon.config import Config, ConfigError
from portbell.daemon.sinks import validate
from portbell.daemon.model import Exposure, Transport

load = partial(_config.load, sinks_check=validate)  # as the daemon and `config check` load it


def write(tmp_path, text):
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_a_missing_file_means_the_defaults(tmp_path):
    assert load(tmp_path / "nope.toml") == Config()


def test_a_full_file_loads(tmp_path):
    path = write(
        tmp_path,
        """
[daemon]
interval_s = 2
retention_days = 30

[notify]
loopback = "never"

[[rule]]
action = "trust"
program = "/usr/sbin/sshd"
port = 22
exposure = ["all-interfaces", "public"]
transport = "tcp"

[[rule]]
action = "mute"
program = "node*"
port = "3000-3999"
until = 2030-01-01T00:00:00Z

[sinks.jsonl]
path = "/tmp/portbell-test.jsonl"
""",
    )
    config = load(path)
    assert (config.interval_s, config.retention_days, config.notify_loopback) == (2.0, 30, "never")
    trust, mute = config.rules
    assert (trust.action, trust.ports, trust.exposures, trust.transport) == ("trust", (22, 22), (Exposure.ALL_INTERFACES, Exposure.PUBLIC), Transport.TCP)
    assert (mute.program, mute.ports, mute.until.year) == ("node*", (3000, 3999), 2030)
    assert set(config.sinks) == {"jsonl"}


def test_every_problem_is_reported_with_file_line_key_and_what_is_allowed(tmp_path):
    path = write(
        tmp_path,
        """[daemon]
interval_s = "fast"
retention_dayz = 3

[notify]
loopback = "sometimes"

[[rule]]
program = "x"
port = 70000
""",
    )
    with pytest.raises(ConfigError) as info:
        load(path)
    lines = str(info.value).splitlines()
    assert f"{path}:2: daemon.interval_s: must be a number from 0.1 to 3600, not 'fast'" in lines
    assert any(line.startswith(f"{path}:3: daemon.retention_dayz: unknown key (allowed: ") for line in lines)
    assert any(line.startswith(f"{path}:6: notify.loopback: must be one of 'first-seen', 'always', 'never'") for line in lines)
    assert any(line.startswith(f"{path}:8: rule[1].action: is required") for line in lines)
    assert any(line.startswith(f"{path}:10: rule[1].port: must be a port") for line in lines)


def test_syntax_errors_give_the_line(tmp_path):
    path = write(tmp_path, "[daemon]\ninterval_s = = 3\n")
    with pytest.raises(ConfigError, match=rf"{path}:2: not valid TOML"):
        load(path)


def test_sink_problems_are_reported_through_the_same_channel(tmp_path):
    path = write(tmp_path, '[sinks.hook]\nargv = "rm -rf /"\n')
    with pytest.raises(ConfigError, match=r":2: sinks.hook.argv: "):
        load(path)


def test_config_check_command_exits_2_with_the_problems(tmp_path):
    path = write(tmp_path, "[daemon]\nintervl_s = 1\n")
    out = subprocess.run([sys.executable, "-m", "portbell.daemon", "config", "check", "--config", str(path)], capture_output=True, text=True)
    assert out.returncode == 2 and "daemon.intervl_s: unknown key" in out.stderr and "Traceback" not in out.stderr
    path.write_text("[daemon]\ninterval_s = 1\n")
    out = subprocess.run([sys.executable, "-m", "portbell.daemon", "config", "check", "--config", str(path)], capture_output=True, text=True)
    assert out.returncode == 0 and "OK" in out.stdout


toml_ish = st.text(alphabet=string.printable + "äé\u2028", max_size=300)
structured = st.builds(
    lambda table, key, value: f"[{table}]\n{key} = {value}\n",
    st.sampled_from(["daemon", "notify", "rule", "[rule]", "sinks", "sinks.jsonl", "sinks.hook", "bogus"]),
    st.sampled_from(["interval_s", "loopback", "action", "port", "argv", "path", "exposure", "x"]),
    st.sampled_from(['1', '-1', '0.0', '"a"', "[1, 2]", "true", '"8000-7000"', "{a = 1}", "1979-05-27", '["sh"]', '"/tmp/x.prom"', "inf", "nan"]),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.one_of(toml_ish, structured))
def test_fuzzed_configs_give_a_clear_error_or_a_config_and_stay_untouched(tmp_path, text):
    path = tmp_path / "fuzz.toml"
    path.write_bytes(text.encode())
    try:
        config = load(path)
        assert isinstance(config, Config)
    except ConfigError as err:
        assert err.problems and all(str(p).startswith(str(path)) for p in err.problems)
    assert path.read_bytes() == text.encode()
