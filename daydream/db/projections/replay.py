"""Rebuilding the projections from the log, and proving a rebuild equals the live tables.

Every projection row is a function of the log: ``rebuild()`` drops the tables, replays
every event through ``apply_event()`` and must reproduce the live tables exactly
(``compare_with_replay()`` checks it by content, for ``daydream db check``).
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import sys
import tempfile
from collections.abc import Callable

from daydream import events as ev
from daydream.db.files import database_bytes, open_scratch, readonly_uri
from daydream.db.projections.apply import apply_batch, apply_event
from daydream.db.projections.schema import (
    DDL_HASH,
    PROJECTION_TABLES,
    TABLES_HASH,
    _create,
    _drop,
    built_by,
    record_built,
    remake_views,
)
from daydream.db.transaction import transaction


def ensure_projections(conn: sqlite3.Connection) -> bool:
    """Create the projections if missing, or rebuild them if their DDL changed.

    Returns True when a rebuild happened.
    """
    conn.execute(
        "CREATE TABLE IF NOT EXISTS projection_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
    )
    if built_by(conn) == DDL_HASH:
        return False
    with transaction(conn):
        # Checked again under the write lock: of several processes opening an outdated
        # database at once, the first rebuilds and the others find it done.
        built = built_by(conn)
        if built == DDL_HASH:
            return False
        if built is not None and built_by(conn, "tables_hash") == TABLES_HASH:
            remake_views(conn)  # only the views changed: the tables' rows stand
            record_built(conn)
            return False
        if built is not None:  # not a new database: say why the command waits
            events = conn.execute("SELECT count(*) FROM events").fetchone()[0]
            print(
                f"daydream: this database's tables were built by another daydream version;"
                f" rebuilding them from its log of {events:,} events (once; minutes for"
                " millions of events)...",
                file=sys.stderr,
                flush=True,
            )
        rebuild(conn)
    return built is not None


def rebuild(conn: sqlite3.Connection, *, batch: int = 5000) -> int:
    """Drop every projection and replay the whole log into fresh ones. Returns events applied."""
    with transaction(conn):
        _drop(conn)
        _create(conn)
        applied = replay(conn, batch=batch)
        record_built(conn)
    return applied


def replay(
    conn: sqlite3.Connection,
    *,
    source: str = "main",
    batch: int = 5000,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Apply every event of ``source``.events, in order, to the projections of ``main``;
    ``progress`` hears the events applied so far after each batch."""
    applied = 0
    last = 0
    while True:
        rows = conn.execute(
            f"SELECT id, type, data, recorded_at FROM {source}.events"
            " WHERE id > ? ORDER BY id LIMIT ?",
            (last, batch),
        ).fetchall()
        if not rows:
            return applied
        events = [ev.parse_event(type_, data) for _, type_, data, _ in rows]
        with apply_batch(conn, events):
            for (event_id, _, _, recorded_at), event in zip(rows, events, strict=True):
                apply_event(conn, event_id, event, recorded_at)
        applied += len(rows)
        last = rows[-1][0]
        if progress is not None:
            progress(applied)


def table_digests(conn: sqlite3.Connection, schema: str = "main") -> dict[str, tuple[int, str]]:
    """Per projection table: (row count, hash of its rows in primary-key order)."""
    digests = {}
    for table in PROJECTION_TABLES:
        columns = [r[1] for r in conn.execute(f"PRAGMA {schema}.table_info({table})")]
        keys = [
            r[1]
            for r in sorted(
                conn.execute(f"PRAGMA {schema}.table_info({table})"), key=lambda r: r[5]
            )
            if r[5]
        ]
        order = ", ".join(f'"{k}"' for k in keys) or "rowid"
        quoted = ", ".join(f'"{c}"' for c in columns)
        digest = hashlib.blake2b(digest_size=16)
        count = 0
        for row in conn.execute(f"SELECT {quoted} FROM {schema}.{table} ORDER BY {order}"):
            digest.update(json.dumps(list(row), default=str).encode())
            count += 1
        digests[table] = (count, digest.hexdigest())
    return digests


REPLAY_IN_MEMORY_BELOW = 256 * 1024 * 1024  # database bytes; a bigger one replays to a file


def compare_with_replay(
    path: str, *, progress: Callable[[int], None] | None = None, batch: int = 5000
) -> dict[str, tuple[tuple[int, str], tuple[int, str]]]:
    """Replay the log of the database at ``path`` into a scratch database and compare.

    Returns the mismatching tables: name -> ((live count, live hash), (replay count, hash)).
    The database at ``path`` is only read. ``progress`` hears the events replayed so far,
    every ``batch`` events.
    """
    scratch_path = _scratch_path(path)
    scratch = open_scratch(scratch_path)
    try:
        scratch.execute("ATTACH DATABASE ? AS src", (readonly_uri(path),))
        scratch.execute("PRAGMA foreign_keys = OFF")
        scratch.execute("CREATE TABLE texts (hash TEXT PRIMARY KEY, text TEXT, length INTEGER)")
        _create(scratch, views=False)
        scratch.execute("BEGIN")
        replay(scratch, source="src", batch=batch, progress=progress)
        scratch.execute("COMMIT")
        replayed = table_digests(scratch, "main")
        live = table_digests(scratch, "src")
    finally:
        scratch.close()
        if scratch_path != ":memory:":
            os.remove(scratch_path)
    return {t: (live[t], replayed[t]) for t in PROJECTION_TABLES if live[t] != replayed[t]}


def _scratch_path(path: str) -> str:
    """Where a replay builds its tables: in memory for a database under
    ``REPLAY_IN_MEMORY_BELOW`` bytes, else a temporary file beside it (a day-long log's
    projections would not fit in memory), or in the temporary directory if that fails."""
    if database_bytes(path) < REPLAY_IN_MEMORY_BELOW:
        return ":memory:"
    try:
        handle, scratch = tempfile.mkstemp(".replay.db", dir=os.path.dirname(os.path.abspath(path)))
    except OSError:
        handle, scratch = tempfile.mkstemp(".replay.db")
    os.close(handle)
    return scratch
