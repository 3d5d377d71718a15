"""The record's file: its schema and migrations, and opening it (the writer creates, migrates, and
moves aside a file that is not a portbell database; readers never change the file)."""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable
from urllib.parse import quote

from ..errors import ForeignFile, PortbellError, StoreError, UnwritableDir
from .holders import OPENING, Connection, held as _held, holder, ident as _ident

APPLICATION_ID = 0x70626C6C  # "pbll": marks the file as portbell's
SCHEMA = 2

MIGRATIONS: dict[int, str] = {
    1: """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE listeners (
        transport TEXT NOT NULL, address TEXT NOT NULL, port INTEGER NOT NULL,
        data TEXT NOT NULL, since REAL NOT NULL,
        PRIMARY KEY (transport, address, port));
    CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at REAL NOT NULL, kind TEXT NOT NULL,
        transport TEXT NOT NULL, address TEXT NOT NULL, port INTEGER NOT NULL,
        program TEXT NOT NULL, names TEXT NOT NULL,
        listener TEXT NOT NULL, previous TEXT,
        alert INTEGER NOT NULL, reason TEXT NOT NULL,
        baseline INTEGER NOT NULL DEFAULT 0, found_at_start INTEGER NOT NULL DEFAULT 0);
    CREATE INDEX events_at ON events (at);
    CREATE INDEX events_port ON events (port, at);
    CREATE TABLE seen_keys (
        transport TEXT NOT NULL, address TEXT NOT NULL, port INTEGER NOT NULL, program TEXT NOT NULL,
        first_seen REAL NOT NULL, last_seen REAL NOT NULL,
        PRIMARY KEY (transport, address, port, program));
    CREATE TABLE seen_programs (
        program TEXT NOT NULL, exposure TEXT NOT NULL, transport TEXT NOT NULL, random_port INTEGER NOT NULL,
        first_seen REAL NOT NULL, last_seen REAL NOT NULL,
        PRIMARY KEY (program, exposure, transport, random_port));
    CREATE TABLE decisions (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        action TEXT NOT NULL CHECK (action IN ('trust', 'mute')),
        program TEXT, port_low INTEGER, port_high INTEGER, exposures TEXT, transport TEXT, user TEXT,
        until REAL, pid INTEGER, started_at TEXT,
        source TEXT NOT NULL, created_at REAL NOT NULL);
    """,
    # `trust --unit` / `mute --unit`: a decision on a unit glob (without it, one would be kept as "everything")
    2: """
    ALTER TABLE decisions ADD COLUMN unit TEXT;
    """,
}


SQLITE_MAGIC = b"SQLite format 3\x00"
BUSY_TIMEOUT_S = 10.0  # a record another process holds locked: wait this long, then say so
_BUSY = {"SQLITE_BUSY", "SQLITE_LOCKED"}
_BROKEN = {"SQLITE_NOTADB", "SQLITE_CORRUPT"}


def connect(
    path: Path, *, readonly: bool = False, daemon: bool = False, busy_timeout_s: float = BUSY_TIMEOUT_S
) -> sqlite3.Connection:
    """Open (the writer creates and migrates; readers never change the file).

    The record is a regular file, never reached through a symbolic link (neither it nor its
    -wal and -shm). Busy or locked (another process holds it) means wait `busy_timeout_s`, then
    a StoreError; only a file that is truly not a portbell database, or fails its integrity
    check, is moved aside (by the writer: renamed, byte for byte, mode kept), and only by the
    daemon (`daemon`: the caller holds the record's instance lock) while another process has it
    open. Every failure a person can meet is a StoreError whose message says what is wrong and
    what to do."""
    with OPENING:
        return _reader(path, busy_timeout_s) if readonly else _writer(path, busy_timeout_s, daemon)


def _reader(path: Path, busy_timeout_s: float) -> sqlite3.Connection:
    kind = _kind(path)
    if kind == "missing":
        raise StoreError(f"no history yet at {path}: start `portbell daemon` to keep one", path=path)
    _refuse_odd(path, kind)
    uri = f"file:{quote(str(path))}?mode=ro"
    if not os.path.lexists(f"{path}-wal") and not os.access(path.parent, os.W_OK):
        # No daemon is writing (it removes the -wal when it stops) and we may not create the
        # -shm beside it (the system-wide record's group): nothing can change under us.
        uri += "&immutable=1"
    before = _ident(path)
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=busy_timeout_s, isolation_level=None, factory=Connection)
    except sqlite3.DatabaseError as err:
        raise _translate(err, path, writing=False) from err
    try:
        if before is None or _ident(path) != before:  # swapped under us: which file did SQLite open?
            raise StoreError(f"{path} was replaced while portbell opened it; try again", path=path)
        conn.hold(before)
        check(conn, path)
        version = conn.execute("PRAGMA user_version").fetchone()[0]
    except (sqlite3.DatabaseError, PortbellError) as err:
        conn.close()
        if isinstance(err, ForeignFile):
            raise StoreError(f"{path} is not a usable portbell database ({err})", path=path) from err
        if isinstance(err, sqlite3.DatabaseError):
            raise _translate(err, path, writing=False) from err
        raise
    if version < SCHEMA:  # empty, or older: only the writer creates and migrates
        conn.close()
        raise StoreError(f"no history yet at {path}: start `portbell daemon` to keep one", path=path)
    return conn


def _writer(path: Path, busy_timeout_s: float, daemon: bool) -> sqlite3.Connection:
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as err:
        raise UnwritableDir(path.parent, err) from err
    kind = _kind(path)
    _refuse_odd(path, kind)
    held = _held(path)  # this process has it open already: no descriptor of ours may touch it
    if kind == "file" and held is None:
        foreign = identify(path)
        if foreign:
            _move_aside(path, foreign, held=False, daemon=daemon)
    try:
        return _open_writer(path, busy_timeout_s, held)
    except ForeignFile as err:  # found broken only once opened (integrity check, malformed pages)
        _move_aside(path, str(err), held=held is not None, daemon=daemon)
        return _open_writer(path, busy_timeout_s, None)


def _kind(path: Path) -> str:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return "missing"
    except OSError as err:
        raise StoreError(f"cannot look at the record {path}: {err.strerror or err}", path=path) from err
    if stat.S_ISLNK(st.st_mode):
        return "link"
    if stat.S_ISDIR(st.st_mode):
        return "directory"
    return "file" if stat.S_ISREG(st.st_mode) else "other"


def _refuse_odd(path: Path, kind: str) -> None:
    what = {"link": "a symbolic link", "directory": "a directory", "other": "not a regular file"}.get(kind)
    if what is None:
        for suffix in ("-wal", "-shm"):
            if os.path.islink(f"{path}{suffix}"):
                what, path = "a symbolic link", Path(f"{path}{suffix}")
                break
        else:
            return
    raise StoreError(
        f"{path} is {what}, not portbell's record: portbell never opens its record through a link "
        "or writes into something it did not create. Move it away, or point PORTBELL_STATE_DIR elsewhere.",
        path=path,
    )


def identify(path: Path) -> str | None:
    """Why the file at `path` is not a portbell database, read without changing a byte; None
    when it is empty or portbell's (its integrity is checked once opened)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        try:
            head = os.read(fd, 100)
        finally:
            os.close(fd)
    except OSError as err:
        raise _oserror(err, path, writing=False) from err
    if not head:
        return None
    if len(head) < 100 or not head.startswith(SQLITE_MAGIC):
        return "not an SQLite database"
    app = int.from_bytes(head[68:72], "big")
    if app == APPLICATION_ID:
        return None
    if app != 0:
        return f"application id {app:#x} is not portbell's"
    if head[18:20] != b"\x02\x02":  # portbell's record is in WAL mode from its first page
        return "an SQLite database of another program (not in WAL mode, no portbell application id)"
    if os.path.getsize(f"{path}-wal") if os.path.exists(f"{path}-wal") else 0:
        return None  # WAL mode: the page with the application id may still be in the -wal only
    return "an SQLite database of another program (no portbell application id)"


def _move_aside(path: Path, why: str, *, held: bool, daemon: bool) -> None:
    """Rename the file (and its -wal, -shm): the same bytes and mode under a new name, never deleted.

    Never under a live holder, unless by the daemon: a daemon holding the file would go on writing
    into the renamed one while the tray and the command line read a new one, the history split in
    two without a word. The daemon holds the record's instance lock, so whatever else has the file
    open only reads it (the tray follows the path to the new file) or writes one decision and closes."""
    if not daemon:
        _refuse_in_use(path, why, held)
    aside = path.with_name(f"{path.name}.broken-{time.strftime('%Y%m%d-%H%M%S')}")
    n = 1
    while os.path.lexists(aside):
        n += 1
        aside = path.with_name(f"{path.name}.broken-{time.strftime('%Y%m%d-%H%M%S')}-{n}")
    try:
        for suffix in ("", "-wal", "-shm"):
            src = Path(str(path) + suffix)
            if os.path.lexists(src):
                os.replace(src, Path(str(aside) + suffix))
    except OSError as err:
        raise _oserror(err, path, writing=True) from err
    logging.getLogger("portbell").warning(
        "%s was not a usable portbell database (%s); moved it to %s and started a new one", path, why, aside
    )


def _refuse_in_use(path: Path, why: str, held: bool) -> None:
    """A StoreError, and not a byte changed, when a process has the file open through SQLite:
    this one (`held`: it cannot even ask without dropping its own locks), or another."""
    if held:
        who = "this program has it open already"
    else:
        try:
            pid = holder(path)
        except OSError as err:
            raise _oserror(err, path, writing=True) from err
        if pid is None:
            return
        who = f"{f'pid {pid}' if pid else 'another process'} has it open (the daemon?)"
    raise StoreError(
        f"the record {path} is damaged ({why}) and {who}, so it was left as it is (moving it aside now "
        "would split the history in two files). Restart the daemon, which moves a damaged record aside "
        "when it starts, then run this again",
        path=path,
    )


def _open_writer(path: Path, busy_timeout_s: float, held: tuple[int, int] | None) -> sqlite3.Connection:
    """`held`: the file at `path` that this process already holds open through SQLite (its mode
    and kind were seen to when it was first opened), or None."""
    ident = held or _create(path)
    try:
        conn = sqlite3.connect(path, timeout=busy_timeout_s, isolation_level=None, factory=Connection)
    except sqlite3.DatabaseError as err:
        raise _translate(err, path, writing=True) from err
    try:
        if _ident(path) != ident:  # swapped under us
            raise StoreError(f"{path} was replaced while portbell opened it; try again", path=path)
        conn.hold(ident)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")  # WAL: durable at checkpoints, never corrupt
        conn.execute("PRAGMA foreign_keys = ON")
        check(conn, path)
        migrate(conn)
    except (sqlite3.DatabaseError, PortbellError) as err:
        conn.close()
        if isinstance(err, sqlite3.DatabaseError):
            raise _translate(err, path, writing=True) from err
        raise
    return conn


def _create(path: Path) -> tuple[int, int]:
    """Create the file, or see that it is a regular one with the record's mode; its (device, inode).

    A new record is private from the first byte: 0600, or 0640 when asked (PORTBELL_STATE_MODE=0640,
    the system-wide mode, whose group reads the record). An existing one is brought to that mode
    too, but a writer never takes the group's read away from a record that has it: root's `trust`
    on the system-wide record, without the unit's environment, must not lock out the group's trays.
    So world bits and the group's write and execute go; the group's read stays: never looser than
    0640, nor than asked. SQLite gives the -wal and -shm it creates the record's mode.
    Our descriptor is closed before SQLite opens the file, and only when this process holds no
    connection to it (holders.HELD): the inode check after connecting catches a file swapped in between."""
    asked = 0o640 if os.environ.get("PORTBELL_STATE_MODE") == "0640" else 0o600
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), asked)
    except OSError as err:
        raise _oserror(err, path, writing=True) from err
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise StoreError(f"{path} is not a regular file, not portbell's record", path=path)
        mode = asked | (stat.S_IMODE(st.st_mode) & stat.S_IRGRP)
        if stat.S_IMODE(st.st_mode) != mode and hasattr(os, "fchmod"):
            os.fchmod(fd, mode)  # on the file itself, never through a path
    finally:
        os.close(fd)
    return st.st_dev, st.st_ino


def _translate(err: sqlite3.DatabaseError, path: Path, *, writing: bool) -> PortbellError:
    """An SQLite error as what it means here: broken (ForeignFile, moved aside by the writer),
    busy (wait, then say so), or a sentence about permissions and space."""
    name = getattr(err, "sqlite_errorname", "") or ""
    if name in _BROKEN or (not name and "not a database" in str(err)):
        return ForeignFile(str(err)) if writing else StoreError(f"{path} is not a usable portbell database ({err})", path=path)
    if name.startswith(tuple(_BUSY)) or "locked" in str(err) or "busy" in str(err):
        return StoreError(
            f"the record {path} is busy: another process holds it locked ({err}); it was left as it is. "
            "Try again in a moment, or find the holder with `fuser -v` on the file",
            path=path,
        )
    if name.startswith("SQLITE_FULL"):
        return StoreError(f"cannot write the record {path}: the disk is full", path=path)
    return _oserror(OSError(0, str(err)), path, writing=writing)


def failed(err: Exception, path: Path, *, writing: bool) -> StoreError:
    """An error met while using an open record (a query, a commit, a row that does not decode),
    as one line: the file, what happened, what to do. Nothing is moved aside here: a file is only
    replaced when the writer opens it (the daemon starting), never under a running one."""
    name = getattr(err, "sqlite_errorname", "") or ""
    text = str(err)
    undecodable = not isinstance(err, sqlite3.Error) or "decode" in text
    if undecodable or name.startswith(tuple(_BROKEN)) or "malformed" in text or "not a database" in text:
        return StoreError(
            f"the record {path} is damaged ({'a row of it does not decode' if undecodable else _said(err)}); "
            "it was left as it is. Stop the daemon, move the file away (with its -wal and -shm), and start "
            "the daemon again to begin a new record",
            path=path,
        )
    if name.startswith(tuple(_BUSY) + ("SQLITE_FULL",)) or "locked" in text or "busy" in text:
        return _translate(err, path, writing=writing)
    if name.startswith(("SQLITE_READONLY", "SQLITE_PERM", "SQLITE_CANTOPEN", "SQLITE_AUTH")):
        return _oserror(OSError(0, _said(err)), path, writing=True)
    return StoreError(
        f"cannot {'write' if writing else 'read'} the record {path}: {_said(err)}; it was left as it is. "
        "Try again; if it fails again, check the disk it is on",
        path=path,
    )


def _said(err: Exception) -> str:
    """SQLite's own words for an error, as one short printable line."""
    text = " ".join(str(err).split())[:120]
    return "".join(c if c.isprintable() else "?" for c in text) or type(err).__name__


def _oserror(err: OSError, path: Path, *, writing: bool) -> StoreError:
    """What a refused open means, in a sentence: which file or folder, and what to do."""
    folder = path.parent
    why = err.strerror or str(err)
    if writing:
        if os.path.exists(path) and not os.access(path, os.W_OK):
            why = "the file is read-only to this user"
        elif not os.access(folder, os.W_OK):
            why = f"its folder {folder} is read-only to this user (SQLite writes the -wal and -shm beside it)"
        return StoreError(
            f"cannot write the record {path}: {why}. Decisions and history are written by the record's "
            "owner (for the system-wide record, run this as the daemon's user); or point PORTBELL_STATE_DIR "
            "at a folder this user may write",
            path=path,
        )
    for name in (f"{path}-wal", f"{path}-shm", str(path)):
        if os.path.exists(name) and not os.access(name, os.R_OK):
            why = f"{name} is not readable by this user (the system-wide record is readable by its group)"
            break
    return StoreError(f"cannot read the record {path}: {why}", path=path)


def check(conn: sqlite3.Connection, path: Path) -> None:
    app = conn.execute("PRAGMA application_id").fetchone()[0]
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
    if app == 0 and version == 0 and tables == 0:
        return  # empty: a new database
    if app != APPLICATION_ID:
        raise ForeignFile(f"application id {app:#x} is not portbell's")
    if version > SCHEMA:
        raise StoreError(
            f"{path} was written by a newer portbell (schema {version}, this one knows {SCHEMA}); "
            "upgrade portbell or move the file away",
            path=path,
        )
    if conn.execute("PRAGMA quick_check").fetchone()[0] != "ok":
        raise ForeignFile("integrity check failed")

def migrate(conn: sqlite3.Connection) -> None:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    for target in sorted(v for v in MIGRATIONS if v > version):
        with transaction(conn):
            for statement in _statements(MIGRATIONS[target]):
                conn.execute(statement)
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version = {target}")


@contextmanager
def transaction(conn: sqlite3.Connection):
    """BEGIN IMMEDIATE, then COMMIT; rolled back on any failure, a COMMIT's too (a full disk fails
    there), and never left open. Rolled back only if SQLite has not done it already, so the error
    raised is the one that happened."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _statements(script: str) -> Iterable[str]:
    for statement in script.split(";"):
        if statement.strip():
            yield statement
