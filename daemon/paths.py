"""Where portbell keeps its files, and the one way it writes a whole file (atomically).

Each directory can be moved with an environment variable, which the tests and
the system-wide mode use: PORTBELL_STATE_DIR (the database), PORTBELL_CONFIG
(the config file itself), PORTBELL_RUNTIME_DIR (the tray's lock). The daemon's lock lives beside the
record, whatever the environment says: one record, one lock, one daemon. PORTBELL_STATE_MODE=0640 makes
the database group-readable (the system-wide mode; read in record/schema.py); anything else creates it
0600, and never takes the group's read away from a record that has it.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import platformdirs

APP = "portbell"


def state_dir() -> Path:
    return Path(os.environ.get("PORTBELL_STATE_DIR") or platformdirs.user_state_dir(APP))


def database() -> Path:
    return state_dir() / "portbell.db"


def config_file() -> Path:
    env = os.environ.get("PORTBELL_CONFIG")
    return Path(env) if env else Path(platformdirs.user_config_dir(APP)) / "config.toml"


def runtime_dir() -> Path:
    """Where the tray's lock lives: $XDG_RUNTIME_DIR/portbell on Linux. Without XDG_RUNTIME_DIR (a
    root shell, cron, ssh without a session) the state dir, private too: platformdirs
    would warn and fall back to a shared /tmp path."""
    env = os.environ.get("PORTBELL_RUNTIME_DIR")
    if env:
        return Path(env)
    if sys.platform.startswith("linux") and not os.environ.get("XDG_RUNTIME_DIR"):
        return state_dir()
    try:
        return Path(platformdirs.user_runtime_dir(APP))
    except Exception:  # some platforms have no runtime dir: the state dir is private too
        return state_dir()


def lock_file() -> Path:
    """The daemon's instance lock, beside the record: a daemon started with XDG_RUNTIME_DIR and
    one started without (a login shell and a cron job) find the same lock, so a record never
    has two writers recording every event twice."""
    return database().with_name("daemon.lock")


def private_dir(path: Path) -> Path:
    """Create a directory readable by its owner only (an existing one keeps its mode)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def read_text(path: Path) -> str:
    """A small file of portbell's own, read without following a symbolic link (OSError when it is
    one, or not a regular file)."""
    import stat

    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise OSError(f"{path} is not a regular file")
        return f.read(1 << 20).decode("utf-8")


def write_atomic(path: Path, text: str, mode: int = 0o600, *, fsync: bool = False) -> None:
    """Replace `path` with `text` in one step: a crash leaves the old file or the new one, never half.

    The new file is created beside the target with O_EXCL (never through a link) and gets `mode`
    before it is renamed over the target; a symlink at the target is replaced, never followed.
    Raises OSError; callers say what it means for them."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            if hasattr(os, "fchmod"):
                os.fchmod(out.fileno(), mode)
            if fsync:
                out.flush()
                os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
