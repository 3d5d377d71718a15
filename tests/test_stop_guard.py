"""The stop guard's decision (`refusal`, daemon/process.py, shared by the tray and `portbell stop`),
pure: every reason not to signal a pid, in the order that matters, and the one case it may. A wrong
answer here signals the wrong process."""

from __future__ import annotations

import pytest

from portbell.daemon.process import Live, refusal

STARTED = 123456  # the exact start: clock ticks since boot on Linux
ME, MY_PID = 1000, 555


def live(pid=4242, started=STARTED, uid=ME, name="python3", user="ana"):
    return Live(pid=pid, start=started, uid=uid, name=name, user=user)


def ask(pid=4242, started_at=STARTED, process="same", *, my_uid=ME, my_pid=MY_PID, name="python3", my_user=None):
    return refusal(pid, started_at, live(pid) if process == "same" else process, my_uid=my_uid, my_pid=my_pid, name=name, my_user=my_user)


def test_my_own_process_started_when_recorded_may_be_stopped():
    assert ask() is None


def test_an_invisible_process_cannot_be_stopped():
    assert ask(pid=None, process=None) == "the process is not visible to portbell, so it cannot be stopped from here"


@pytest.mark.parametrize("pid", [0, 1])
def test_pid_0_and_1_are_never_signalled(pid):
    assert ask(pid=pid, process=live(pid)) == f"refusing to signal pid {pid}: it is the kernel or the init system"


def test_pid_2_is_an_ordinary_pid():
    assert ask(pid=2, process=live(2)) is None


def test_the_tray_never_stops_itself():
    assert ask(pid=MY_PID, process=live(MY_PID)) == "refusing to stop the tray itself: use Quit"


def test_an_exited_process_is_said_so_with_its_name_or_pid():
    assert ask(process=None) == "python3 (pid 4242) has already exited"
    assert ask(process=None, name=None) == "pid 4242 has already exited"
    assert ask(process=live(pid=4243)) == "python3 (pid 4242) has already exited"  # the lookup answered for another pid


def test_an_unknown_start_time_cannot_rule_out_reuse():
    assert ask(started_at=None) == "not stopping python3 (pid 4242): its start time is unknown, so a reused pid cannot be ruled out"


def test_an_unknown_live_start_cannot_rule_out_reuse_either():
    assert ask(process=live(started=None)) == (
        "not stopping python3 (pid 4242): its start time is unknown, so a reused pid cannot be ruled out"
    )


@pytest.mark.parametrize("started", [STARTED + 1, STARTED - 1, STARTED + 100_000])
def test_a_reused_pid_is_refused_when_the_start_differs_by_even_one_tick(started):
    reason = ask(process=live(started=started, name="bash"))
    assert reason == "not stopping pid 4242: it now belongs to another process (bash) started at a different time"


def test_a_start_of_zero_ticks_is_a_start_not_an_unknown():
    assert ask(started_at=0, process=live(started=0)) is None


def test_stopping_the_caller_says_the_callers_sentence():
    assert refusal(MY_PID, STARTED, live(MY_PID), my_uid=ME, my_pid=MY_PID, myself="that is portbell itself") == "that is portbell itself"


def test_names_from_a_process_are_escaped_in_every_refusal():
    assert ask(process=None, name="a\nb") == "a\\nb (pid 4242) has already exited"
    assert ask(process=live(started=1, name="x\ty")) == "not stopping pid 4242: it now belongs to another process (x\\ty) started at a different time"
    assert ask(process=live(uid=0, user="r\noot")) == "not stopping python3 (pid 4242): it belongs to r\\noot, not to you"
    assert ask(process=live(uid=None, user="e\nvil"), my_uid=None, my_user="ana").endswith("it belongs to e\\nvil, not to you")


def test_a_reused_pid_without_a_name_says_another_process():
    nameless = live(started=STARTED + 1, name=None)
    assert ask(process=nameless) == "not stopping pid 4242: it now belongs to another process started at a different time"


def test_another_users_process_is_refused_naming_the_owner():
    assert ask(process=live(uid=0, user="root")) == "not stopping python3 (pid 4242): it belongs to root, not to you"
    assert ask(process=live(uid=0, user=None)) == "not stopping python3 (pid 4242): it belongs to uid 0, not to you"
    assert ask(process=live(uid=None, user=None)) == "not stopping python3 (pid 4242): it belongs to another user, not to you"


def test_without_uids_user_names_decide_ignoring_domain_and_case():
    assert ask(process=live(uid=None, user="PC\\Ana"), my_uid=None, my_user="ana") is None
    assert ask(process=live(uid=None, user="ana"), my_uid=None, my_user="OTHER\\ANA") is None
    refused = "not stopping python3 (pid 4242): it belongs to PC\\bob, not to you"
    assert ask(process=live(uid=None, user="PC\\bob"), my_uid=None, my_user="ana") == refused


def test_without_uids_an_unknown_user_on_either_side_is_refused():
    assert ask(process=live(uid=None, user=None), my_uid=None, my_user="ana") == (
        "not stopping python3 (pid 4242): it belongs to another user, not to you"
    )
    assert ask(process=live(uid=None, user="ana"), my_uid=None, my_user=None) == (
        "not stopping python3 (pid 4242): it belongs to ana, not to you"
    )
