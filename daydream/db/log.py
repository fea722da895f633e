"""The event log: append events (applying them to the projections in the same
transaction) and read them back.

Invariants: the log only grows (triggers abort UPDATE and DELETE on ``events``), and
``append()`` applies each event to the projections inside the transaction that writes
it, so the projections are never behind the log.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence

from daydream.clock import Clock, isoformat, utcnow
from daydream.db.projections.apply import apply_batch, apply_event
from daydream.db.transaction import transaction


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
    recorded_at = isoformat(clock())
    ids: list[int] = []
    with transaction(conn), apply_batch(conn, events):
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
