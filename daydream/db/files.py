"""The database's files: their size, write-ahead log checkpoints, the read-only URI that
opens one, and scratch databases (a replay's tables, a rehearsal's copy)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from daydream.db.transaction import BUSY_TIMEOUT_MS

# `daydream status` warns above this write-ahead log size: the log cannot be reset while
# a reader holds an old snapshot, so a long-lived reader lets it grow without bound.
WAL_WARN_BYTES = 512 * 2**20


CHECKPOINT_WAIT_MS = 1000  # how long `daydream db checkpoint` waits for other connections


def database_bytes(path: str | Path) -> int:
    """The database file and its write-ahead log, in bytes."""
    return Path(path).stat().st_size + wal_bytes(path)


def wal_bytes(path: str | Path) -> int:
    """The size of the database's write-ahead log file (0 when there is none)."""
    try:
        return Path(f"{path}-wal").stat().st_size
    except FileNotFoundError:
        return 0


def checkpoint(conn: sqlite3.Connection) -> tuple[bool, int, int]:
    """Copy the write-ahead log into the database and reset it (``TRUNCATE``).

    Returns (done, frames in the log, frames copied); not done when another connection
    still reads an older snapshot, which only that reader ending can release.
    """
    # TRUNCATE holds the write lock while it waits for readers; wait briefly, not the
    # store's 30 s, so workers writing meanwhile are not held up.
    conn.execute(f"PRAGMA busy_timeout = {CHECKPOINT_WAIT_MS}")
    try:
        busy, frames, copied = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    finally:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    return busy == 0, frames, copied


def readonly_uri(path: str | Path) -> str:
    """A read-only SQLite URI for ``path``: absolute, with ``%``, ``?``, ``#`` and spaces
    escaped (the path pasted after ``file:`` breaks on a directory named ``run #2``)."""
    return Path(path).resolve().as_uri() + "?mode=ro"


def open_scratch(path: str | Path) -> sqlite3.Connection:
    """A connection to a scratch database this process owns and throws away (a replay's
    tables, a rehearsal's copy): autocommit, no journal, no syncing (nothing to recover).
    ``:memory:`` works too."""
    conn = sqlite3.connect(str(path), isolation_level=None, uri=str(path).startswith("file:"))
    conn.execute("PRAGMA journal_mode = OFF")
    conn.execute("PRAGMA synchronous = OFF")
    return conn
