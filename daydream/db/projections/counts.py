"""Counters kept as the log grows, so that a cohort's progress, failures and usage cost
what they show, not a pass over the cohort: ``cohort_counts`` (a cohort's generations per
stage, status, outcome state, model and failure reason), ``cohort_model_calls`` and
``model_calls`` (calls, tokens, cost and latency per cohort and model, and per model over
the whole database).

Invariants:

- A counter changes in the transaction of the event that changes what it counts, so it is
  never behind the log, and a replay rebuilds it like any other projection (``db check``
  compares it). Every applier that changes a generation's status, slot, state or error,
  or inserts a call, tells the batch's ``Tally`` (``tally.py``), which writes the changes
  once per batch of events: one upsert per counter row that moved, not per row changed.
  Planning adds the new memberships itself (``count_members``): a million inserts are
  counted in Python, not row by row.
- A counter row is keyed by values, never NULL ('' stands for none), so an upsert finds it;
  a ``cohort_counts`` row whose count falls to 0 is deleted, so the rows do not depend on
  how events were batched (a replay batches them differently).
- ``status`` is the task status, except that a running lease without a pool slot counts
  as ``queued`` (``cohort_progress`` and ``daydream status`` show them apart).
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Sequence
from typing import Any

FINISHED_BADLY = ("failed", "blocked", "cancelled")

# A failure's reason, for grouping: the error's first line; "parent <id> failed: X"
# becomes "parent failed: X" so blocked children group. ``{g}`` is the table (or NEW/OLD).
_REASON = """CASE
            WHEN {g}.error IS NULL THEN {g}.state
            WHEN {g}.error LIKE 'parent % %'
                THEN 'parent' || substr({g}.error, 7 + instr(substr({g}.error, 8), ' '))
            WHEN instr({g}.error, char(10)) > 0
                THEN substr({g}.error, 1, instr({g}.error, char(10)) - 1)
            ELSE {g}.error
        END"""
FAILURE_REASON = _REASON.format(g="g")  # over ``generations g``


def _bucket(g: str) -> str:
    return f"CASE WHEN {g}.status = 'running' AND {g}.slot = 0 THEN 'queued' ELSE {g}.status END"


def _reason(g: str) -> str:
    return (
        f"CASE WHEN {g}.status IN ('failed', 'blocked', 'cancelled')"
        f" THEN coalesce({_REASON.format(g=g)}, '') ELSE '' END"
    )


def counter_key(g: str) -> str:
    """The counter key of a generation row, after the cohort: stage, status, state, model,
    reason."""
    return (
        f"{g}.stage, {_bucket(g)}, coalesce({g}.state, ''), coalesce({g}.model_id, ''),"
        f" {_reason(g)}"
    )


# The columns of both call counters after their keys (``tally._add`` adds a call to them).
_CALL_SUMS = (
    ("calls", "INTEGER"),
    ("ok", "INTEGER"),
    ("prompt_tokens", "INTEGER"),
    ("completion_tokens", "INTEGER"),
    ("cost", "REAL"),
    ("latency_total", "REAL"),
    ("latency_n", "INTEGER"),
    ("slot_wait_total", "REAL"),
    ("slot_wait_n", "INTEGER"),
    # successful calls with no cost (no prices): the total is then unknown, never $0
    ("unpriced", "INTEGER"),
)
CALL_TOTALS = (*(name for name, _ in _CALL_SUMS), "offline")
_CALL_TABLE_COLUMNS = "".join(f"    {name} {kind} NOT NULL,\n" for name, kind in _CALL_SUMS)


COUNTS_DDL = f"""
-- Per cohort: its generations by stage, status ('queued': running without a pool slot),
-- outcome state, model and failure reason ('' for none), kept by the appliers through the
-- batch's tally and by the planning applier (counts.py, tally.py).
CREATE TABLE cohort_counts (
    cohort_id TEXT NOT NULL REFERENCES cohorts(cohort_id),
    stage TEXT NOT NULL,
    status TEXT NOT NULL,
    state TEXT NOT NULL,
    model_id TEXT NOT NULL,
    reason TEXT NOT NULL,
    generations INTEGER NOT NULL,
    PRIMARY KEY (cohort_id, stage, status, state, model_id, reason)
) WITHOUT ROWID;
-- The first failed, blocked or cancelled generation of a group of cohort_counts (its
-- example), found by key.
CREATE INDEX generations_failures
    ON generations (status, stage, state, ({FAILURE_REASON.replace("g.", "")}), gen_id)
    WHERE status IN ('failed', 'blocked', 'cancelled');
-- Calls, tokens, cost and latency per model (over the whole database) and per cohort and
-- model, kept by the appliers through the batch's tally and by the planning applier.
CREATE TABLE model_calls (
    model_id TEXT PRIMARY KEY, -- '' for calls without a model
{_CALL_TABLE_COLUMNS}    offline INTEGER
) WITHOUT ROWID;
CREATE TABLE cohort_model_calls (
    cohort_id TEXT NOT NULL REFERENCES cohorts(cohort_id),
    model_id TEXT NOT NULL,
{_CALL_TABLE_COLUMNS}    offline INTEGER,
    PRIMARY KEY (cohort_id, model_id)
) WITHOUT ROWID;
"""

COUNTS_TABLES = ("cohort_counts", "cohort_model_calls", "model_calls")


def count_members(
    conn: sqlite3.Connection,
    cohort_id: str,
    new: Sequence[Sequence[Any]],
    status: dict[str, str],
    existing: list[str],
) -> None:
    """Count generations that joined ``cohort_id``: ``new`` are the rows of generations the
    event created (each starting in ``status[gen_id]``; a blocked one is counted by SQL,
    for its reason), ``existing`` the ids of generations planned before that joined too
    (counted as they stand; their calls: ``tally.add_member_calls``)."""
    counted: Counter[tuple[str, str, str]] = Counter()
    blocked: list[str] = []
    for row in new:
        if status[row[0]] == "blocked":
            blocked.append(row[0])
        else:
            counted[(row[1], status[row[0]], row[6] or "")] += 1
    conn.executemany(
        "INSERT INTO cohort_counts (cohort_id, stage, status, state, model_id, reason,"
        " generations) VALUES (?, ?, ?, '', ?, '', ?)"
        " ON CONFLICT DO UPDATE SET generations = generations + excluded.generations",
        [(cohort_id, *key, n) for key, n in sorted(counted.items())],
    )
    _by_ids(
        conn,
        "INSERT INTO cohort_counts (cohort_id, stage, status, state, model_id, reason,"
        f" generations) SELECT ?, {counter_key('g')}, count(*) FROM generations g"
        " WHERE g.gen_id IN ({ids}) GROUP BY 2, 3, 4, 5, 6"
        " ON CONFLICT DO UPDATE SET generations = generations + excluded.generations",
        cohort_id,
        blocked + existing,
    )
    # Their calls so far count in the cohort too (a call counts in each cohort of its
    # generation): tally.add_member_calls, called by the planning applier after this.


def _by_ids(conn: sqlite3.Connection, sql: str, cohort_id: str, gen_ids: list[str]) -> None:
    """Run ``sql`` (its ``{ids}`` a list of placeholders) over ``gen_ids`` in chunks."""
    for start in range(0, len(gen_ids), 500):
        part = gen_ids[start : start + 500]
        conn.execute(sql.replace("{ids}", ", ".join("?" for _ in part)), [cohort_id, *part])
