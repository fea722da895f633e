"""Walking the lineage inside an applier: a generation's children, blocking descendants,
and statements over many ids in chunks.
"""

from __future__ import annotations

import sqlite3

from daydream.db.projections.tally import tally_of


def select_in(
    conn: sqlite3.Connection, sql: str, ids: list[str], prefix: tuple = (), chunk: int = 500
) -> list:
    """Run ``sql (?, ?, ...)`` over ``ids`` in chunks (after ``prefix`` parameters)."""
    out: list = []
    for start in range(0, len(ids), chunk):
        part = ids[start : start + chunk]
        marks = ", ".join("?" for _ in part)
        out.extend(conn.execute(f"{sql} ({marks})", [*prefix, *part]).fetchall())
    return out


# Children are found by the parent index: "+status" keeps SQLite from choosing the queue
# index (status, stage) instead, which reads every waiting generation (800,000 of a
# million-generation cohort) for each parent that completes.
CHILDREN_SQL = (
    "SELECT gen_id FROM generations WHERE +status IN ('waiting', 'ready') AND parent_gen_id IN"
)
BLOCKED_CHILDREN_SQL = (
    "SELECT gen_id FROM generations WHERE +status = 'blocked' AND parent_gen_id IN"
)


def children_of(conn: sqlite3.Connection, gen_ids: list[str]) -> list[str]:
    return [gid for (gid,) in select_in(conn, CHILDREN_SQL, gen_ids)]


def set_blocked(conn: sqlite3.Connection, gen_ids: list[str], reason: str) -> None:
    """Block generations and, transitively, their waiting descendants."""
    while gen_ids:
        tally_of(conn).touch(conn, gen_ids)
        select_in(
            conn,
            "UPDATE generations SET status = 'blocked', blocked_reason = ?, state = 'blocked',"
            " error = ? WHERE gen_id IN",
            gen_ids,
            (reason, reason),
        )
        gen_ids = children_of(conn, gen_ids)


def unblock_descendants(conn: sqlite3.Connection, gen_id: str) -> None:
    """Descendants blocked by ``gen_id`` wait for it again (its children become ready
    once it is done)."""
    frontier = [gen_id]
    while frontier:
        children = [
            gid
            for (gid,) in select_in(conn, BLOCKED_CHILDREN_SQL, frontier)
        ]
        if children:
            tally_of(conn).touch(conn, children)
            select_in(
                conn,
                "UPDATE generations SET status = 'waiting', blocked_reason = NULL,"
                " state = NULL, error = NULL, finished_at = NULL WHERE gen_id IN",
                children,
            )
        frontier = children
