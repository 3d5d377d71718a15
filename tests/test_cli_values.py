"""Values typed on the command line: out of range, overflowing or meaningless ones are exit 2 with a
sentence, never a traceback, and change nothing (issue 11, item 10). Through the real command."""

from __future__ import annotations

import pytest

from conftest import portbell

BAD = {
    "since-overflows": (["events", "--since", "99999999999d"], "too long"),
    "since-calendar-edge": (["events", "--since", "0001-01-01"], "edge of the calendar"),
    "for-overflows": (["trust", "8000", "--for", "3000000w"], "too long"),
    "for-huge-number": (["mute", "8000", "--for", "9" * 400 + "s"], "too long"),
    "for-zero": (["trust", "8000", "--for", "0m"], "longer than zero"),
    "forget-overflows": (["forget", "99999999999999999999999"], "not a rule id"),
    "forget-zero": (["forget", "0"], "not a rule id"),
    "port-as-program": (["trust", "70000"], "70000 is not a port"),
    "range-past-65535": (["mute", "8000-70000"], "is not a port"),
    "range-backwards": (["trust", "9000-8000"], "low <= high"),
    "limit-negative": (["events", "--limit", "-3"], "1 or more"),
    "limit-zero": (["events", "--limit", "0"], "1 or more"),
    "unknown-user": (["trust", "8000", "--user", "no-such-user-here"], "no user 'no-such-user-here'"),
    "pid-overflows": (["trust", "8000", "--until-exit", "99999999999999999999"], "not a process id"),
    "pid-negative": (["mute", "8000", "--until-exit", "-1"], "not a process id"),
}


@pytest.mark.parametrize("argv,sentence", BAD.values(), ids=BAD.keys())
def test_a_bad_value_is_exit_2_with_a_sentence_and_writes_nothing(home, argv, sentence):
    done = portbell(*argv)
    assert done.returncode == 2, done.stdout + done.stderr
    assert sentence in done.stderr and "Traceback" not in done.stderr
    listed = portbell("trust")
    assert "No decisions yet" in listed.stdout, listed.stdout  # nothing was recorded


def test_digits_are_never_a_programs_name_unless_asked(home):
    done = portbell("trust", "--program", "70000")
    assert done.returncode == 0 and "program 70000" in done.stdout
    done = portbell("trust", "8000-8100")
    assert done.returncode == 0 and "ports 8000-8100" in done.stdout, done.stdout


def test_a_user_by_uid_is_kept_as_the_name_owners_carry(home):
    done = portbell("trust", "8000", "--user", "0")
    assert done.returncode == 0 and "user root" in done.stdout, done.stdout + done.stderr


def test_a_good_duration_makes_a_rule_that_has_not_expired(home):
    done = portbell("mute", "8000", "--for", "2h")
    assert done.returncode == 0 and "until" in done.stdout
    assert "8000" in portbell("mute").stdout  # still listed: not expired
