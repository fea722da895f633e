"""Write transactions: ``BEGIN IMMEDIATE`` ... ``COMMIT``, waiting for the write lock.

Every write that reads first runs inside ``transaction()``: a deferred transaction that
later upgrades to a write can fail with SQLITE_BUSY without waiting for the busy timeout.
Nested use joins the outer transaction.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager

from daydream.errors import StoreError

BUSY_TIMEOUT_MS = 30_000


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
        if conn.in_transaction:  # SQLite rolls back itself after some errors (a full disk)
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
