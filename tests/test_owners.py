"""Owners read from /proc (Linux) are what psutil says of the same process, field for field:
both samplers, and the record, describe a process the same way whichever reader ran."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from portbell.daemon.samplers._owners import OwnerReader

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the /proc reader is Linux only")

FIELDS = ("pid", "uid", "name", "started_at", "exe", "cmdline", "user", "ppid", "start")


def described(pid: int, reader: OwnerReader) -> dict:
    owner = reader.read(pid)
    assert owner is not None, f"pid {pid} was not found"
    return {field: getattr(owner, field) for field in FIELDS}


@pytest.fixture
def long_named(tmp_path):
    """A child whose program name is longer than the kernel's 15 bytes, with arguments."""
    exe = tmp_path / "a-program-with-a-long-name"
    os.symlink(sys.executable, exe)
    proc = subprocess.Popen([str(exe), "-c", "import sys; sys.stdin.read()", "an argument", "--flag"], stdin=subprocess.PIPE)
    yield proc.pid
    proc.stdin.close()
    proc.wait(timeout=10)


@pytest.mark.parametrize("who", ["me", "init", "long-name", "deleted-exe"])
def test_the_proc_reader_says_what_psutil_says(who, long_named, tmp_path):
    pid = {"me": os.getpid(), "init": 1, "long-name": long_named}.get(who)
    if who == "deleted-exe":
        copy = tmp_path / "gone-python"
        shutil.copy(sys.executable, copy)
        proc = subprocess.Popen([str(copy), "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
        copy.unlink()  # /proc/<pid>/exe now ends in " (deleted)"
        pid = proc.pid
    try:
        mine, theirs = described(pid, OwnerReader()), described(pid, OwnerReader(proc_root=None))
    finally:
        if who == "deleted-exe":
            proc.stdin.close()
            proc.wait(timeout=10)
    assert mine == theirs
    if who == "long-name":
        assert mine["name"] == "a-program-with-a-long-name"  # extended past the kernel's 15 bytes
        assert mine["cmdline"][-2:] == ("an argument", "--flag")


def test_a_process_that_is_gone_is_none():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(timeout=10)
    assert OwnerReader().read(proc.pid) is None
