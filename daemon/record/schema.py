"""The record's file: its schema and migrations, and opening it (the writer creates, migrates, and
moves aside a file that is not a portbell database; readers never change the file)."""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from pathlib import Path
from typing import Iterable

from ..errors import ForeignFile, StoreError

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


def connect(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    """Open (the writer creates and migrates; readers never change the file)."""
    if readonly:
        if not path.exists():
            raise StoreError(f"no history yet at {path}: start `portbell daemon` to keep one", path=path)
        try:
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5, isolation_level=None)
            check(conn, path)
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version < SCHEMA:  # empty, or older: only the writer creates and migrates
                raise StoreError(f"no history yet at {path}: start `portbell daemon` to keep one", path=path)
        except (sqlite3.DatabaseError, ForeignFile) as err:
            raise StoreError(f"{path} is not a usable portbell database ({err})", path=path) from err
        return conn
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        return _open_writer(path)
    except ForeignFile as err:
        aside = path.with_name(f"{path.name}.broken-{time.strftime('%Y%m%d-%H%M%S')}")
        for suffix in ("", "-wal", "-shm"):
            src = Path(str(path) + suffix)
            if src.exists():
                os.replace(src, Path(str(aside) + suffix))
        logging.getLogger("portbell").warning(
            "%s was not a usable portbell database (%s); moved it to %s and started a new one", path, err, aside
        )
        return _open_writer(path)

def _open_writer(path: Path) -> sqlite3.Connection:
    # Private from the first byte; 0640 only when asked (PORTBELL_STATE_MODE, the system-wide
    # mode, whose group reads the record). SQLite gives the -wal and -shm files the same mode.
    mode = 0o640 if os.environ.get("PORTBELL_STATE_MODE") == "0640" else 0o600
    fd = os.open(path, os.O_RDWR | os.O_CREAT, mode)
    os.close(fd)
    os.chmod(path, mode)
    try:
        conn = sqlite3.connect(path, timeout=10, isolation_level=None)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")  # WAL: durable at checkpoints, never corrupt
        conn.execute("PRAGMA foreign_keys = ON")
        check(conn, path)
        migrate(conn)
    except sqlite3.DatabaseError as err:
        raise ForeignFile(str(err)) from err
    return conn

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
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _statements(MIGRATIONS[target]):
                conn.execute(statement)
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version = {target}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise


def _statements(script: str) -> Iterable[str]:
    for statement in script.split(";"):
        if statement.strip():
            yield statement
