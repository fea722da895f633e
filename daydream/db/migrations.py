"""The durable schema: ``migrations/NNNN_name.sql`` applied in order, and the append-only
guards they install.

Invariants: migrations are applied in order, one transaction each, and recorded in
``schema_migrations``; an applied migration is never edited or renamed. A database whose
guard triggers (the log's append-only ones, the texts' immutability ones) are missing,
or differ from the SQL of the migration that created them, is refused: a trigger with the
right name that does nothing guards nothing.
"""

from __future__ import annotations

import functools
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from daydream.clock import isoformat, utcnow
from daydream.errors import StoreError
from daydream.paths import project_dir

GUARD_TRIGGERS = (
    "events_no_update",
    "events_no_delete",
    "events_no_replace",
    "texts_no_update",
    "texts_no_delete",
)


_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


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
            for statement in split_sql(sql):
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


def split_sql(sql: str) -> Iterator[str]:
    """Split SQL (a migration, the projections' DDL) into statements, keeping CREATE
    TRIGGER ... END; blocks whole."""
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
    """Refuse a database whose guard triggers are missing or altered (their SQL is not
    the SQL their migration wrote)."""
    if not _has_table(conn, "events"):
        raise StoreError(f"database {path}: no events table (create it with: daydream db init)")
    present = dict(conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'"))
    expected = guard_sql()
    missing = [name for name in GUARD_TRIGGERS if name not in present]
    if missing:
        raise StoreError(
            f"database {path}: append-only guard trigger(s) {', '.join(missing)} are missing,"
            " so the event log may have been altered; refusing to open it (restore the"
            " database from a backup)"
        )
    altered = [
        name for name in GUARD_TRIGGERS if _normal(present[name] or "") != expected.get(name)
    ]
    if altered:
        raise StoreError(
            f"database {path}: append-only guard trigger(s) {', '.join(altered)} differ from"
            " the migration that created them, so the event log may have been altered;"
            " refusing to open it (restore the database from a backup)"
        )


@functools.cache
def guard_sql(directory: Path | None = None) -> dict[str, str]:
    """Each guard trigger's SQL as its migration writes it (whitespace normalised)."""
    found: dict[str, str] = {}
    for _, _, migration in list_migrations(directory):
        for statement in split_sql(migration.read_text(encoding="utf-8")):
            match = _TRIGGER.match(statement)
            if match and match.group(1) in GUARD_TRIGGERS:
                found[match.group(1)] = _normal(statement.rstrip(";"))
    return found


_TRIGGER = re.compile(r"CREATE\s+TRIGGER\s+(\w+)", re.IGNORECASE)


def _normal(sql: str) -> str:
    """SQL with runs of whitespace as one space (SQLite keeps a trigger's text as written)."""
    return " ".join(sql.split())
