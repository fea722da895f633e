"""Storing outcomes: the texts and events of the calls a worker hands in, written inside
the caller's transaction (``leases.record``).

Invariant: no value inside an outcome can take the recording down. Replies are cleaned
where they become a ``Completion`` (``providers.chat``), but should anything the database
or a replay of the log could not hold still reach an outcome (an integer beyond 64 bits,
a float that is not finite, text that is not UTF-8: ``values.storage_problem``), that
outcome alone is stored as a final ``attempt.failed`` saying what was refused: the other
outcomes of the batch are stored as usual, the worker goes on, and no task is left
``running``. The check runs before anything is written (a savepoint per batch, to undo a
refused write, cost a fifth of the worker's throughput). A database that cannot write at
all (a full disk, an I/O error) is no refused value: that error propagates, the
transaction rolls back, and the worker keeps the results in memory to write later.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime

from daydream import events as ev
from daydream.clock import isoformat
from daydream.db.log import append
from daydream.db.texts import put_hashed_texts
from daydream.queue.tasks import Outcome
from daydream.values import storage_problem


def store_outcomes(
    conn: sqlite3.Connection, outcomes: list[Outcome], *, now: datetime, actor: str
) -> list[Outcome]:
    """Store ``outcomes`` (leases already checked) in the caller's transaction; returns those
    refused, each stored as its ``attempt.failed`` instead (``refused_outcome``)."""
    stored: list[Outcome] = []
    refused: list[Outcome] = []
    for outcome in outcomes:
        problem = unstorable(outcome)
        if problem is None:
            stored.append(outcome)
        else:
            stored.append(refused_outcome(outcome, problem))
            refused.append(outcome)
    texts: dict[str, str] = {}
    events: list[ev.Event] = []
    for outcome in stored:
        texts.update(outcome.texts)
        events.extend(_retry_from(now, outcome))
    put_hashed_texts(conn, texts.items())
    append(conn, events, actor=actor, clock=lambda: now)
    return refused


def unstorable(outcome: Outcome) -> str | None:
    """What in ``outcome`` cannot be stored (naming the event field or the text), or None."""
    for text in outcome.texts.values():
        problem = storage_problem(text)
        if problem is not None:
            return f"a text of the reply: {problem}"
    for event in outcome.events:
        for name, value in event.__dict__.items():  # a pydantic model's fields
            problem = storage_problem(value)
            if problem is not None:
                return f"{event.type} {name}: {problem}"
    return None


def refused_outcome(outcome: Outcome, problem: str) -> Outcome:
    """The final failure that stands for an outcome that cannot be stored."""
    task = outcome.task
    failed = ev.AttemptFailed(
        gen_id=task.gen_id,
        token=task.token,
        state="error",
        error=(
            f"the result could not be stored ({problem}), so it was discarded; run it"
            f" again with: daydream retry COHORT --gen {task.gen_id}"
        ),
        retryable=False,
        final=True,
        error_class="Unstorable",
    )
    return Outcome(task, [failed], ok=False, ended_at=outcome.ended_at)


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
