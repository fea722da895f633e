"""Counting per batch: the counters of ``counts.py`` (``cohort_counts``, ``model_calls``,
``cohort_model_calls``) change once per batch of events, not once per changed row.

A batch is one ``log.append`` (a worker records all its finished calls in one) or a chunk
of a replay: ``counting(conn)`` opens a ``Tally`` for it and settles it at the end, in the
same transaction. The keys (and cohorts) of the generations the batch's events name are
read in one query at its start. Inside, an applier about to change a counted column of
``generations`` (status, slot, state, error) tells the tally first, which notes each
row's counter key the first time: ``becomes`` when the applier knows the key the row
takes (a claim, a result, a child made ready), ``touch`` when it does not (the key is read
again when settling); a call is noted as it is inserted. ``settle`` takes, for each row
whose key moved, one from the old key and adds one to the new in every cohort of the
generation: one upsert per counter row that changed, whatever the batch's size. Then it
adds the calls to their model's and cohorts' totals.

Invariants:

- A row noted in a batch is counted once for the whole batch, its first key against its
  last, however often it changed: noting twice is harmless, a row touched once is read
  again however many changes the tally knew, and a batch opened inside another joins it.
- A counter row at 0 generations is deleted (and none is written), so ``cohort_counts``
  depends only on the rows it counts, not on how events were batched: a replay batches
  differently from the workers and must leave the same rows.
- Memberships change only in a settled tally (``generations.planned`` settles before it
  counts new members), so the cohorts read when settling are those the rows had
  throughout the batch.
- Call totals add one call at a time in the order of the events, starting from the stored
  totals, so floating-point sums come out the same however the calls were batched.
- An applier that changes a counted column without telling the tally first leaves the
  counters wrong: ``tests/test_counting_batches.py`` and the counters' fresh counts after
  every kind of event (``tests/counting.py``) are there to catch it.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from daydream.db.projections.counts import CALL_TOTALS, counter_key

_OPEN: dict[int, Tally] = {}  # id(connection) -> its open tally

# A generation's id, its counter key (after the cohort) and a cohort of it (a row for
# each), for ids given as one JSON array: the statement's text is the same for any number.
KEYED = f"g.gen_id, {counter_key('g')}, m.cohort_id"
_KEYS_SQL = (
    f"SELECT {KEYED} FROM json_each(?) j JOIN generations g ON g.gen_id = j.value"
    " LEFT JOIN cohort_members m ON m.gen_id = g.gen_id"
)
# The same for the waiting children of a generation.
WAITING_CHILDREN_SQL = (
    f"SELECT {KEYED} FROM generations g LEFT JOIN cohort_members m ON m.gen_id = g.gen_id"
    " WHERE g.parent_gen_id = ? AND g.status = 'waiting'"
)

# What the inserts into ``calls`` return for the tally (``Tally.add_call``).
CALL_RETURNING = (
    " RETURNING gen_id, coalesce(model_id, ''), ok, prompt_tokens, completion_tokens, cost,"
    " latency_s, slot_wait_s, offline"
)


class Tally:
    """The pending counter changes of one batch (see the module's docstring).

    A row's key after the batch is read again when settling, unless every change of it was
    one whose result the applier knew (``becomes``): a result, a claim, a child made ready.
    """

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self.before: dict[str, tuple] = {}  # gen_id -> its key when first noted
        self.cohorts: dict[str, list[str]] = {}  # gen_id -> its cohorts
        self.after: dict[str, tuple] = {}  # gen_id -> its key now, where known
        self.unknown: set[str] = set()  # touched: to read again when settling
        self.calls: list[tuple] = []  # rows as CALL_RETURNING gives them, in order

    def note(self, conn: sqlite3.Connection, gen_ids: Iterable[str]) -> None:
        """Note the keys and cohorts of ``gen_ids`` not noted yet (before changing them)."""
        new = [gen_id for gen_id in dict.fromkeys(gen_ids) if gen_id not in self.before]
        if new:
            self.seen(conn.execute(_KEYS_SQL, (json.dumps(new),)))

    def seen(self, rows: Iterable[Sequence[Any]]) -> None:
        """Note keys the caller read itself (rows of ``KEYED``), for ids not noted yet."""
        found: dict[str, tuple] = {}
        cohorts: dict[str, list[str]] = {}
        for row in rows:
            if row[0] not in self.before:
                found[row[0]] = tuple(row[1:6])
                if row[6] is not None:
                    cohorts.setdefault(row[0], []).append(row[6])
        self.before.update(found)
        self.cohorts.update(cohorts)

    def touch(self, conn: sqlite3.Connection, gen_ids: Sequence[str]) -> None:
        """``gen_ids`` are about to change in a way the tally does not know: their keys are
        read again when settling."""
        self.note(conn, gen_ids)
        self.unknown.update(gen_ids)

    def becomes(
        self, conn: sqlite3.Connection, gen_id: str, status: str, state: str | None = None
    ) -> None:
        """``gen_id`` is about to take ``status`` (one that has no failure reason: not
        failed, blocked or cancelled; 'queued' for a running lease without a slot) and
        ``state`` (None: its state stays), whatever its row holds."""
        if gen_id not in self.before:
            self.note(conn, (gen_id,))
        if gen_id in self.unknown or gen_id not in self.before:
            return
        stage, _, now, model, _ = self.after.get(gen_id) or self.before[gen_id]
        self.after[gen_id] = (stage, status, now if state is None else state, model, "")

    def add_call(self, row: Sequence[Any] | None) -> None:
        if row is not None:
            self.calls.append(tuple(row))

    def settle(self, conn: sqlite3.Connection) -> None:
        """Write the batch's changes to the counters and start afresh."""
        before, after, calls = self.before, self.after, self.calls
        unknown = self.unknown | {call[0] for call in calls if call[0] not in self.cohorts}
        cohorts = self.cohorts
        self._reset()
        if unknown:
            read = Tally()
            read.note(conn, unknown)
            after = {**after, **read.before}
            cohorts = {**cohorts, **read.cohorts}
        moved = {}
        for gen_id, old in before.items():
            new = after.get(gen_id, old)
            if new != old:
                moved[gen_id] = (old, new)
        if moved:
            _write_counts(conn, moved, cohorts)
        if calls:
            _write_calls(conn, calls, cohorts)


@contextmanager
def counting(conn: sqlite3.Connection) -> Iterator[Tally]:
    """The tally of ``conn``'s current batch: a new one, settled at the end of the block,
    or the batch already open on ``conn``. A block that raises is not settled: its
    transaction is rolled back (``transaction``; SQLite may already have done so, after
    a full disk or an I/O error, and then anything written now would commit on its own),
    so there is nothing to count."""
    open_ = _OPEN.get(id(conn))
    if open_ is not None:
        yield open_
        return
    _OPEN[id(conn)] = tally = Tally()
    try:
        yield tally
    finally:
        del _OPEN[id(conn)]
    tally.settle(conn)


def is_counting(conn: sqlite3.Connection) -> bool:
    return id(conn) in _OPEN


def tally_of(conn: sqlite3.Connection) -> Tally:
    """The tally of the batch open on ``conn`` (appliers run inside ``counting``)."""
    return _OPEN[id(conn)]


def _write_counts(
    conn: sqlite3.Connection, moved: dict[str, tuple[tuple, tuple]], cohorts: dict[str, list[str]]
) -> None:
    delta: Counter[tuple] = Counter()
    for gen_id, (old, new) in moved.items():
        for cohort_id in cohorts.get(gen_id, ()):
            delta[(cohort_id,) + old] -= 1
            delta[(cohort_id,) + new] += 1
    changes = sorted((key, n) for key, n in delta.items() if n)
    conn.executemany(
        "INSERT INTO cohort_counts (cohort_id, stage, status, state, model_id, reason,"
        " generations) VALUES (?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT DO UPDATE SET generations = generations + excluded.generations",
        [(*key, n) for key, n in changes],
    )
    conn.executemany(
        "DELETE FROM cohort_counts WHERE (cohort_id, stage, status, state, model_id, reason)"
        " = (?, ?, ?, ?, ?, ?) AND generations = 0",
        [key for key, n in changes if n < 0],
    )


_NAMES = ", ".join(CALL_TOTALS)
_TO_MODEL = (
    f"INSERT INTO model_calls (model_id, {_NAMES}) VALUES (?{', ?' * len(CALL_TOTALS)})"
    " ON CONFLICT DO UPDATE SET " + ", ".join(f"{n} = excluded.{n}" for n in CALL_TOTALS)
)
_TO_COHORT = (
    f"INSERT INTO cohort_model_calls (cohort_id, model_id, {_NAMES})"
    f" VALUES (?, ?{', ?' * len(CALL_TOTALS)})"
    " ON CONFLICT DO UPDATE SET " + ", ".join(f"{n} = excluded.{n}" for n in CALL_TOTALS)
)


def _write_calls(
    conn: sqlite3.Connection, calls: list[tuple], cohorts: dict[str, list[str]]
) -> None:
    """Add ``calls`` to the totals of their model and of (each cohort, model)."""
    totals: dict[tuple, list | None] = {}
    for call in calls:
        model = call[1]
        for key in ((model,), *((cohort, model) for cohort in cohorts.get(call[0], ()))):
            if key not in totals:
                totals[key] = _stored_totals(conn, key)
            totals[key] = _add(totals[key], call[2:])
    conn.executemany(_TO_MODEL, [(*k, *t) for k, t in totals.items() if len(k) == 1 and t])
    conn.executemany(_TO_COHORT, [(*k, *t) for k, t in totals.items() if len(k) == 2 and t])


def add_member_calls(conn: sqlite3.Connection, cohort_id: str, gen_ids: Sequence[str]) -> None:
    """Add the calls of generations planned before that joined ``cohort_id`` to its totals
    per model: one by one in the order of their events, as they were added to the model's
    totals (a sum in SQL would add them in the order of whichever index it read, and a
    replay, with other indexes, could differ in a float's last bit)."""
    totals: dict[tuple, list | None] = {}
    for start in range(0, len(gen_ids), 500):
        part = list(gen_ids[start : start + 500])
        rows = conn.execute(
            "SELECT coalesce(model_id, ''), ok, prompt_tokens, completion_tokens, cost,"
            " latency_s, slot_wait_s, offline FROM calls"
            f" WHERE gen_id IN ({', '.join('?' * len(part))}) ORDER BY event_id",
            part,
        )
        for model, *call in rows:
            key = (cohort_id, model)
            if key not in totals:
                totals[key] = _stored_totals(conn, key)
            totals[key] = _add(totals[key], tuple(call))
    conn.executemany(_TO_COHORT, [(*k, *t) for k, t in totals.items() if t])


def _stored_totals(conn: sqlite3.Connection, key: tuple) -> list | None:
    if len(key) == 1:
        sql = f"SELECT {_NAMES} FROM model_calls WHERE model_id = ?"
    else:
        sql = f"SELECT {_NAMES} FROM cohort_model_calls WHERE cohort_id = ? AND model_id = ?"
    row = conn.execute(sql, key).fetchone()
    return list(row) if row is not None else None


def _add(totals: list | None, call: tuple) -> list:
    """``totals`` (CALL_TOTALS; None: none yet) with one more call: ok, prompt and
    completion tokens, cost, latency, wait for a slot, offline."""
    ok, prompt, completion, cost, latency, wait, offline = call
    if totals is None:
        totals = [0, 0, 0, 0, 0.0, 0.0, 0, 0.0, 0, 0, None]
    calls, oks, prompts, completions, costs, latencies, latency_n, waits, wait_n, unpriced, was = (
        totals
    )
    return [
        calls + 1,
        oks + ok,
        prompts + (prompt or 0),
        completions + (completion or 0),
        costs + (cost if cost is not None else 0.0),
        latencies + (latency if latency is not None else 0.0),
        latency_n + (latency is not None),
        waits + (wait if wait is not None else 0.0),
        wait_n + (wait is not None),
        unpriced + (ok == 1 and cost is None and not offline),
        was if offline is None or (was is not None and was >= offline) else offline,
    ]
