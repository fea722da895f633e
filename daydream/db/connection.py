"""Opening a database: the one function that opens SQLite connections.

Invariants:

- ``connect()`` is the only way to open a database. Every connection runs in autocommit
  mode (``db.transaction`` issues ``BEGIN IMMEDIATE``), with WAL, a busy timeout, foreign
  keys on and ``synchronous=FULL`` (see docs/architecture.md for why FULL), and refuses to
  open a database whose append-only guards are missing.
- Opening a database for writing applies pending migrations and builds (or rebuilds) the
  projections, so every command sees projections made by this version's appliers. Only a
  new or empty file, or a daydream database, is opened for writing: another SQLite
  database is refused before anything is written to it.
- A connection is bound to the process that opened it; using it after ``fork()`` raises.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from daydream.db.files import readonly_uri
from daydream.db.migrations import apply_migrations, check_guards
from daydream.db.projections.replay import ensure_projections
from daydream.db.transaction import BUSY_TIMEOUT_MS
from daydream.errors import StoreError
from daydream.values import quote

# After a checkpoint resets the write-ahead log, SQLite cuts the file back to this size
# (otherwise it keeps its largest size for as long as any connection is open).
WAL_KEEP_BYTES = 64 * 2**20


_PID = [os.getpid()]


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=lambda: _PID.__setitem__(0, os.getpid()))


class Connection(sqlite3.Connection):
    """A sqlite3 connection that refuses to be used in a process other than its opener's."""

    owner_pid: int = 0

    def _check_pid(self) -> None:
        # _PID is refreshed in a forked child (os.register_at_fork): no syscall per statement.
        if self.owner_pid and _PID[0] != self.owner_pid:
            raise StoreError(
                "a database connection was used after fork(); open a new one in the child process"
            )

    def execute(self, *args, **kwargs):
        self._check_pid()
        return super().execute(*args, **kwargs)

    def executemany(self, *args, **kwargs):
        self._check_pid()
        return super().executemany(*args, **kwargs)


def connect(
    path: str | Path,
    *,
    create: bool = True,
    readonly: bool = False,
    migrate: bool = True,
) -> Connection:
    """Open (and if needed create and migrate) a daydream database."""
    path = Path(path)
    if not path.exists() and (readonly or not create):
        raise missing_database(path)
    if not path.parent.is_dir():
        raise StoreError(
            f"database {path}: directory {path.parent} does not exist (create it, or choose"
            " another --db)"
        )
    if readonly:
        conn = sqlite3.connect(
            readonly_uri(path),
            uri=True,
            isolation_level=None,
            factory=Connection,
            check_same_thread=False,
        )
    else:
        conn = sqlite3.connect(
            str(path), isolation_level=None, factory=Connection, check_same_thread=False
        )
    conn.owner_pid = os.getpid()
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    try:
        if not readonly:
            _refuse_foreign(conn, path)  # before anything below writes to the file
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute(f"PRAGMA journal_size_limit = {WAL_KEEP_BYTES}")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA recursive_triggers = ON")
        if migrate and not readonly:
            apply_migrations(conn)
        check_guards(conn, path)
        if migrate and not readonly:
            ensure_projections(conn)
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise StoreError(f"database {path}: {exc} (is it a daydream database?)") from None
    except StoreError:
        conn.close()
        raise
    return conn


def _refuse_foreign(conn: sqlite3.Connection, path: Path) -> None:
    """Refuse an SQLite database that is not daydream's: only a new or empty file becomes
    one (migrations and projections would otherwise be added to someone else's data)."""
    names = sorted(
        row[0]
        for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE type IN ('table', 'view')"
            " AND name NOT LIKE 'sqlite_%'"
        )
    )
    if names and not {"events", "schema_migrations"} <= set(names):
        shown = ", ".join(quote(name, 30) for name in names[:5])
        more = f" and {len(names) - 5} more" if len(names) > 5 else ""
        raise StoreError(
            f"database {path}: an SQLite database that is not daydream's (tables {shown}"
            f"{more}); left unchanged: give --db a new or empty file"
        )


def missing_database(path: str | Path) -> StoreError:
    """The error for a database file that is not there, naming the first real step."""
    return StoreError(
        f"database {path} does not exist; start with: daydream catalog import CATALOG_DIR"
        " (it creates the database), or try: daydream demo"
    )


_MARKERS = ("events", "generations", "projection_meta")  # tables only daydream's have


def is_daydream_database(path: str | Path) -> bool:
    """Does the SQLite file at ``path`` hold daydream's event log and projections? (Read
    only; False for a missing file, another database or a file that is not SQLite.)"""
    if not Path(path).is_file():
        return False
    try:
        conn = sqlite3.connect(readonly_uri(path), uri=True)
    except sqlite3.Error:
        return False
    try:
        marks = ", ".join("?" for _ in _MARKERS)
        found = conn.execute(
            f"SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN ({marks})",
            _MARKERS,
        ).fetchone()[0]
    except sqlite3.Error:  # not a database, or unreadable
        return False
    finally:
        conn.close()
    return bool(found == len(_MARKERS))

