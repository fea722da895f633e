"""Storing outcomes: the texts and events of the calls a worker hands in, written inside
the caller's transaction (``leases.record``).

Invariant: no value inside an outcome can take the recording down. Replies are cleaned
where they become a ``Completion`` (``providers.chat``), but should anything the database
refuses still reach an outcome (an integer beyond SQLite's, text that is not UTF-8), that
outcome alone is stored as a final ``attempt.failed`` saying what was refused: the other
outcomes of the batch are stored as usual, the worker goes on, and no task is left
``running``. A database that cannot write at all (a full disk, an I/O error) is not
refused data: that error propagates, the transaction rolls back, and the worker keeps the
results in memory to write later.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

from daydream import events as ev
from daydream.clock import isoformat
from daydream.db.log import append
from daydream.db.texts import put_hashed_texts
from daydream.queue.tasks import Outcome
from daydream.values import clean_text

# What binding or applying a value the database cannot hold raises: sqlite3's OverflowError
# (an int beyond 64 bits), UnicodeEncodeError (a ValueError: a lone surrogate), a type it
# cannot bind (ProgrammingError), a CHECK or constraint it breaks (IntegrityError)...
REFUSED = (
    OverflowError,
    ValueError,
    TypeError,
    RecursionError,
    sqlite3.IntegrityError,
    sqlite3.DataError,
    sqlite3.InterfaceError,
    sqlite3.ProgrammingError,
)


def store_outcomes(
    conn: sqlite3.Connection, outcomes: list[Outcome], *, now: datetime, actor: str
) -> list[Outcome]:
    """Store ``outcomes`` (leases already checked) in the caller's transaction; returns those
    stored as refused (each replaced by its ``attempt.failed``)."""
    try:
        with _savepoint(conn):
            _store(conn, outcomes, now, actor)
        return []
    except REFUSED:
        pass
    refused = []
    for outcome in outcomes:  # one at a time, to find which one the database refuses
        try:
            with _savepoint(conn):
                _store(conn, [outcome], now, actor)
        except REFUSED as exc:
            _store(conn, [refused_outcome(outcome, exc)], now, actor)
            refused.append(outcome)
    return refused


def refused_outcome(outcome: Outcome, exc: BaseException) -> Outcome:
    """The final failure that stands for an outcome the database refused."""
    task = outcome.task
    reason = clean_text(f"{type(exc).__name__}: {exc}")[:300]
    failed = ev.AttemptFailed(
        gen_id=task.gen_id,
        token=task.token,
        state="error",
        error=(
            f"the result could not be stored ({reason}), so it was discarded; run it"
            f" again with: daydream retry COHORT --gen {task.gen_id}"
        ),
        retryable=False,
        final=True,
        error_class=type(exc).__name__,
    )
    return Outcome(task, [failed], ok=False, ended_at=outcome.ended_at)


def _store(conn: sqlite3.Connection, outcomes: list[Outcome], now: datetime, actor: str) -> None:
    texts: dict[str, str] = {}
    events: list[ev.Event] = []
    for outcome in outcomes:
        texts.update(outcome.texts)
        events.extend(_retry_from(now, outcome))
    put_hashed_texts(conn, texts.items())
    append(conn, events, actor=actor, clock=lambda: now)


def _retry_from(now: datetime, outcome: Outcome) -> list[ev.Event]:
    """The outcome's events, with retry_at set for a recording at ``now``."""
    ready = outcome.ready_at(now)
    if ready is None:
        return outcome.events
    retry_at = isoformat(ready)
    return [
        e.model_copy(update={"retry_at": retry_at})
        if isinstance(e, (ev.AttemptFailed, ev.AttemptThrottled))
        else e
        for e in outcome.events
    ]


@contextmanager
def _savepoint(conn: sqlite3.Connection) -> Iterator[None]:
    """Undo what the block wrote when the database refuses a value in it. Any other error
    (the database cannot write at all) is left to the caller's transaction to roll back."""
    conn.execute("SAVEPOINT outcomes")
    try:
        yield
    except REFUSED:
        conn.execute("ROLLBACK TO outcomes")
        conn.execute("RELEASE outcomes")
        raise
    conn.execute("RELEASE outcomes")
