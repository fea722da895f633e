"""The store: one SQLite file holding the append-only event log, texts and projections.

Invariants:

- ``connect()`` is the only way to open a database. Every connection runs in autocommit
  mode (we issue ``BEGIN IMMEDIATE`` ourselves), with WAL, a busy timeout, foreign keys on
  and ``synchronous=FULL`` (see docs/architecture.md for why FULL), and refuses to open a
  database whose append-only guards are missing.
- Migrations (``migrations/NNNN_name.sql``) are applied in order, one transaction each, and
  recorded in ``schema_migrations``. An applied migration is never edited.
- Every write that reads first runs inside ``transaction()`` (``BEGIN IMMEDIATE``): a
  deferred transaction that later upgrades to a write can fail with SQLITE_BUSY without
  waiting for the busy timeout.
- ``append()`` writes events and applies them to the projections in the same transaction,
  so projections are never behind the log.
- A connection is bound to the process that opened it; using it after ``fork()`` raises.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from .errors import StoreError

BUSY_TIMEOUT_MS = 30_000
# `daydream status` warns above this write-ahead log size: the log cannot be reset while
# a reader holds an old snapshot, so a long-lived reader lets it grow without bound.
WAL_WARN_BYTES = 512 * 2**20
CHECKPOINT_WAIT_MS = 1000  # how long `daydream db checkpoint` waits for other connections
# After a checkpoint resets the write-ahead log, SQLite cuts the file back to this size
# (otherwise it keeps its largest size for as long as any connection is open).
WAL_KEEP_BYTES = 64 * 2**20
GUARD_TRIGGERS = ("events_no_update", "events_no_delete", "events_no_replace")
CHECK_PROGRESS_BYTES = 64 * 2**20  # `daydream db check` says what it does from this size
_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def isoformat(moment: datetime) -> str:
    """UTC ISO-8601 with microseconds and a Z, sortable as text."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def project_dir(name: str) -> Path:
    """A project directory (``migrations``, ``specs``): inside a wheel, or the repo root."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "_data" / name, here.parent / name):
        if candidate.is_dir():
            return candidate
    raise StoreError(f"{name}/ directory not found next to {here} (reinstall: pip install .)")


def migrations_dir() -> Path:
    return project_dir("migrations")


def list_migrations(directory: Path | None = None) -> list[tuple[int, str, Path]]:
    """The migration files in order, as (version, name, path); checks the numbering."""
    directory = directory or migrations_dir()
    found = []
    for path in sorted(directory.glob("*.sql")):
        match = _MIGRATION_NAME.match(path.name)
        if not match:
            raise StoreError(
                f"migration {path}: name must look like 0001_name.sql (4 digits, lowercase)"
            )
        found.append((int(match.group(1)), path.stem, path))
    versions = [version for version, _, _ in found]
    if versions != list(range(1, len(versions) + 1)):
        raise StoreError(
            f"migrations in {directory}: numbers must run 1, 2, 3... without gaps; found {versions}"
        )
    return found


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


def readonly_uri(path: str | Path) -> str:
    """A read-only SQLite URI for ``path``: absolute, with ``%``, ``?``, ``#`` and spaces
    escaped (the path pasted after ``file:`` breaks on a directory named ``run #2``)."""
    return Path(path).resolve().as_uri() + "?mode=ro"


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
        raise StoreError(f"database {path} does not exist (create it with: daydream db init)")
    if not path.parent.is_dir():
        raise StoreError(
            f"database {path}: directory {path.parent} does not exist (create it, or choose"
            " another --db)"
        )
    if readonly:
        conn = sqlite3.connect(
            readonly_uri(path), uri=True, isolation_level=None, factory=Connection, check_same_thread=False
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
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute(f"PRAGMA journal_size_limit = {WAL_KEEP_BYTES}")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA recursive_triggers = ON")
        if migrate and not readonly:
            apply_migrations(conn)
        check_guards(conn, path)
        if migrate and not readonly:
            from .projections import ensure_projections

            ensure_projections(conn)
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise StoreError(f"database {path}: {exc} (is it a daydream database?)") from None
    except StoreError:
        conn.close()
        raise
    return conn


def apply_migrations(conn: sqlite3.Connection, directory: Path | None = None) -> list[str]:
    """Apply the migrations not yet recorded; returns the names applied."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL) STRICT"
    )
    applied = {
        row[0]: row[1] for row in conn.execute("SELECT version, name FROM schema_migrations")
    }
    done = []
    for version, name, path in list_migrations(directory):
        if version in applied:
            if applied[version] != name:
                raise StoreError(
                    f"migration {version} is recorded as {applied[version]!r} but the file is"
                    f" {name!r}: an applied migration must never be renamed or edited"
                )
            continue
        sql = path.read_text(encoding="utf-8")
        conn.execute("BEGIN IMMEDIATE")
        try:
            # executescript() would COMMIT first; run statement by statement instead.
            for statement in _split_sql(sql):
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                (version, name, isoformat(utcnow())),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        done.append(name)
    return done


def _split_sql(sql: str) -> Iterator[str]:
    """Split a migration into statements, keeping CREATE TRIGGER ... END; blocks whole."""
    buffer = ""
    for line in sql.splitlines(keepends=True):
        if line.strip().startswith("--") and not buffer.strip():
            continue
        buffer += line
        if sqlite3.complete_statement(buffer):
            if buffer.strip():
                yield buffer.strip()
            buffer = ""
    if buffer.strip():
        yield buffer.strip()


def _has_table(conn: sqlite3.Connection, name: str) -> bool:
    found = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,))
    return found.fetchone() is not None


def check_guards(conn: sqlite3.Connection, path: str | Path = "") -> None:
    """Refuse a database whose append-only triggers are missing."""
    present = {
        row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")
    }
    if not _has_table(conn, "events"):
        raise StoreError(f"database {path}: no events table (create it with: daydream db init)")
    missing = [name for name in GUARD_TRIGGERS if name not in present]
    if missing:
        raise StoreError(
            f"database {path}: append-only guard trigger(s) {', '.join(missing)} are missing,"
            " so the event log may have been altered; refusing to open it (restore the"
            " database from a backup)"
        )


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``; rolls back on any exception.

    Nested use joins the outer transaction.
    """
    if conn.in_transaction:
        yield conn
        return
    _begin_immediate(conn)
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _begin_immediate(conn: sqlite3.Connection) -> None:
    # SQLite's own busy handler sleeps 1, 2, 5, 10... ms between tries, so with several
    # workers taking turns at a lock held for a few milliseconds, most of the time goes to
    # sleeping. Waiting for the write lock is polled here instead, at sub-millisecond
    # intervals (busy_timeout is off only for BEGIN; every other statement keeps it).
    delay = 0.0002
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    conn.execute("PRAGMA busy_timeout = 0")
    try:
        while True:
            try:
                conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
                if time.monotonic() > deadline:
                    raise StoreError(
                        "the database stayed locked for 30 s; another process holds a long"
                        " write (a plan of millions of generations?); try again"
                    ) from None
                time.sleep(delay)
                delay = min(delay * 1.5, 0.005)
    finally:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")


def text_hash(text: str) -> str:
    return "b2:" + hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


def put_text(conn: sqlite3.Connection, text: str) -> str:
    """Store a text once; returns its hash."""
    digest = text_hash(text)
    conn.execute(
        "INSERT OR IGNORE INTO texts (hash, text, length) VALUES (?, ?, ?)",
        (digest, text, len(text)),
    )
    return digest


def put_texts(conn: sqlite3.Connection, texts: Iterable[str]) -> list[str]:
    rows = [(text_hash(text), text, len(text)) for text in texts]
    conn.executemany("INSERT OR IGNORE INTO texts (hash, text, length) VALUES (?, ?, ?)", rows)
    return [row[0] for row in rows]


def put_hashed_texts(conn: sqlite3.Connection, items: Iterable[tuple[str, str]]) -> None:
    """Store texts whose hashes (``text_hash``) the caller already computed."""
    conn.executemany(
        "INSERT OR IGNORE INTO texts (hash, text, length) VALUES (?, ?, ?)",
        [(digest, text, len(text)) for digest, text in items],
    )


def get_text(conn: sqlite3.Connection, digest: str | None) -> str | None:
    if digest is None:
        return None
    row = conn.execute("SELECT text FROM texts WHERE hash = ?", (digest,)).fetchone()
    return row[0] if row else None


def append(
    conn: sqlite3.Connection,
    events: Sequence,
    *,
    actor: str,
    clock: Clock = utcnow,
) -> list[int]:
    """Append events and apply them to the projections, in one transaction.

    Joins the caller's transaction when there is one. Returns the new event ids.
    """
    from .projections import apply_event

    recorded_at = isoformat(clock())
    ids: list[int] = []
    with transaction(conn):
        for event in events:
            data = event.model_dump_json()
            cursor = conn.execute(
                "INSERT INTO events (type, subject, data, recorded_at, actor)"
                " VALUES (?, ?, ?, ?, ?)",
                (event.type, event.subject, data, recorded_at, actor),
            )
            event_id = cursor.lastrowid
            assert event_id is not None  # an INSERT into a rowid table always sets it
            apply_event(conn, event_id, event, recorded_at)
            ids.append(event_id)
    return ids


def read_events(
    conn: sqlite3.Connection,
    *,
    types: Sequence[str] = (),
    subject: str | None = None,
    after: int = 0,
    limit: int | None = None,
) -> Iterator[sqlite3.Row]:
    """The log in order, optionally filtered."""
    sql = "SELECT id, type, subject, data, recorded_at, actor FROM events WHERE id > ?"
    params: list = [after]
    if types:
        sql += f" AND type IN ({', '.join('?' for _ in types)})"
        params.extend(types)
    if subject is not None:
        sql += " AND subject = ?"
        params.append(subject)
    sql += " ORDER BY id"
    if limit is not None:
        sql += " LIMIT ?"
        params.append(limit)
    yield from conn.execute(sql, params)


def event_data(row: sqlite3.Row) -> dict:
    return json.loads(row["data"])




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


def check(
    path: str | Path, *, progress: Callable[[str], None] | None = None
) -> list[tuple[str, bool, str]]:
    """``daydream db check``: (check name, passed, detail) for each invariant.

    ``progress`` hears what a database of ``CHECK_PROGRESS_BYTES`` or more is busy with
    (an integrity check and a replay take minutes on a day-long log)."""
    from .projections import DDL_HASH, built_by, compare_with_replay

    results: list[tuple[str, bool, str]] = []
    try:
        conn = connect(path, create=False, migrate=False)  # a missing file: one-line error
    except StoreError as exc:
        if "guard" not in str(exc):
            raise
        return [("append_only_guards", False, str(exc))]
    size = database_bytes(path)
    say = progress if progress is not None and size >= CHECK_PROGRESS_BYTES else (lambda _: None)
    try:
        say(f"checking the integrity of {size / 1e6:,.0f} MB (PRAGMA integrity_check)")
        integrity = [row[0] for row in conn.execute("PRAGMA integrity_check")]
        results.append(("integrity_check", integrity == ["ok"], "; ".join(integrity)[:200]))
        fk = conn.execute("PRAGMA foreign_key_check").fetchall()
        results.append(
            ("foreign_key_check", not fk, f"{len(fk)} violation(s)" if fk else "no violations")
        )
        recorded = [
            row[0] for row in conn.execute("SELECT name FROM schema_migrations ORDER BY version")
        ]
        expected = [name for _, name, _ in list_migrations()]
        results.append(
            (
                "migrations",
                recorded == expected,
                f"{len(recorded)} applied"
                if recorded == expected
                else f"applied {recorded}, expected {expected}",
            )
        )
        results.append(("append_only_guards", True, ", ".join(GUARD_TRIGGERS) + " present"))
        built = built_by(conn) if _has_table(conn, "projection_meta") else None
        events = conn.execute("SELECT max(id) FROM events").fetchone()[0] or 0
    finally:
        conn.close()
    if built != DDL_HASH:
        # Built by another version's DDL or appliers: a replay would differ by design.
        results.append(
            (
                "projections_current",
                False,
                "the projections were built by another version of daydream; rebuild them"
                " from the log with: daydream db rebuild (any other daydream command that"
                " opens the database does it too)",
            )
        )
        return results
    say(f"replaying {events:,} events to compare with the projections")
    mismatches = compare_with_replay(str(path))
    if mismatches:
        detail = "; ".join(
            f"{table}: live {live[0]} rows, replay {replayed[0]} rows"
            + (" (same count, different content)" if live[0] == replayed[0] else "")
            for table, (live, replayed) in mismatches.items()
        )
        results.append(("replay_equals_projections", False, detail))
    else:
        results.append(
            (
                "replay_equals_projections",
                True,
                "every projection table matches a replay of the log",
            )
        )
    return results
