"""Counting per batch (``daydream/db/projections/tally.py``): the counters are written once
per appended batch of events, so they must come out exact whatever a batch mixes (stages,
results, retries, failures that block descendants, a row changed several times, a call on
a failed attempt), and a replay that batches the same events differently must leave the
same counter rows."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from daydream import events as ev
from daydream.db.check import check
from daydream.db.connection import connect
from daydream.db.log import append
from daydream.db.projections import apply
from daydream.db.projections.replay import compare_with_replay, replay, table_digests
from daydream.db.projections.schema import _create
from daydream.db.texts import put_text
from daydream.plan.write import plan_cohort
from tests.counting import COUNTERS, counter_mismatches
from tests.scenario import gen_ids, query

LEASE = "2999-01-01T00:00:00Z"
def _lineages(db: Path) -> list[tuple[str, str, str]]:
    """(draft, essay, evaluation) of each combination."""
    essays = dict(query(db, "SELECT parent_gen_id, gen_id FROM generations WHERE stage = 'essay'"))
    evaluations = dict(
        query(db, "SELECT parent_gen_id, gen_id FROM generations WHERE stage = 'evaluation'")
    )
    return [(d, essays[d], evaluations[essays[d]]) for d in sorted(gen_ids(db, "draft"))]


def _started(gen_id: str, token_hint: int = 1, queued: bool = False) -> ev.AttemptStarted:
    return ev.AttemptStarted(
        gen_id=gen_id, attempt=token_hint, worker="w", lease_expires_at=LEASE, queued=queued
    )


def _succeeded(
    conn: sqlite3.Connection, gen_id: str, token: int, score: float | None = None, mode="llm"
) -> list[ev.Event]:
    text = put_text(conn, f"reply of {gen_id}\nSCORE: {score}")
    return [
        ev.GenerationResponded(
            gen_id=gen_id,
            token=token,
            mode=mode,
            prompt_hash=text,
            raw_hash=text,
            model_id="m1",
            prompt_tokens=10,
            completion_tokens=20,
            latency_s=0.25,
            cost=0.001,
            offline=True,
        ),
        ev.GenerationCompleted(gen_id=gen_id, token=token, parsed_hash=text, score=score),
    ]


def _failed(gen_id: str, token: int, *, final: bool) -> ev.AttemptFailed:
    return ev.AttemptFailed(
        gen_id=gen_id,
        token=token,
        state="provider_error",
        error="provider m1: HTTP 500\nsecond line",
        retryable=not final,
        final=final,
        http_status=500,
    )


def _mixed_batches(db: Path) -> sqlite3.Connection:
    """Three lineages through a few batches, the last of which mixes everything."""
    (d1, e1, v1), (d2, _, _), (d3, e3, v3) = _lineages(db)
    conn = connect(db, create=False)
    t1, t2, t3 = append(conn, [_started(d1), _started(d2), _started(d3, queued=True)], actor="t")
    # One batch: d1 succeeds (its essay becomes ready) and that essay is claimed, answered
    # and completed (its evaluation becomes ready) and so is the evaluation, with a score;
    # d2 fails and is retried (a failed call) and claimed again; d3 takes a slot, then fails
    # for good (its essay and evaluation are blocked). The essay is a copy: no call.
    batch: list[ev.Event] = [*_succeeded(conn, d1, t1), _failed(d2, t2, final=False)]
    token = t3 + 1 + len(batch)  # the ids the events of this batch will take
    batch += [_started(e1, queued=True), ev.SlotsTaken(worker="w", leases=[[e1, token]])]
    batch += _succeeded(conn, e1, token, mode="copy")
    token += 4
    batch += [_started(v1), *_succeeded(conn, v1, token, score=7.0), _started(d2, 2)]
    batch += [ev.SlotsTaken(worker="w", leases=[[d3, t3]]), _failed(d3, t3, final=True)]
    append(conn, batch, actor="t")
    return conn


def test_counters_are_exact_after_a_batch_that_mixes_stages_failures_and_retries(
    offline_cohort,
):
    db = offline_cohort(combos=3)
    (d1, e1, v1), (d2, _, _), (d3, e3, v3) = _lineages(db)
    conn = _mixed_batches(db)
    try:
        status = dict(conn.execute("SELECT gen_id, status FROM generations").fetchall())
        assert [status[g] for g in (d1, e1, v1, d2, d3, e3, v3)] == [
            "done",
            "done",
            "done",
            "running",
            "failed",
            "blocked",
            "blocked",
        ]  # the batch did what it says, so the counts below are not vacuous
        assert counter_mismatches(conn) == []
        by_status = dict(
            conn.execute(
                "SELECT status, sum(generations) FROM cohort_counts GROUP BY status"
            ).fetchall()
        )
        assert by_status == {"done": 3, "running": 1, "failed": 1, "blocked": 2, "waiting": 2}
        assert [tuple(r) for r in conn.execute("SELECT calls, ok FROM model_calls")] == [(4, 2)]
        assert [tuple(r) for r in conn.execute("SELECT n FROM cohort_judges")] == [(1,)]
    finally:
        conn.close()
    assert compare_with_replay(str(db)) == {}


def test_no_counter_row_at_zero_is_left_so_replay_batches_do_not_matter(offline_cohort):
    """A generation's move leaves no row at 0 behind (the live batches here differ from
    any replay's), and replays one event at a time and all at once give the live rows."""
    db = offline_cohort(combos=3)
    _mixed_batches(db).close()
    live = sqlite3.connect(db)
    assert live.execute("SELECT count(*) FROM cohort_counts WHERE generations = 0").fetchone() == (
        0,
    )
    assert live.execute(
        "SELECT count(*) FROM cohort_counts WHERE status = 'queued'"
    ).fetchone() == (0,)  # every queued lease of the batches took a slot or ended
    expected = {t: d for t, d in table_digests(live).items() if t in COUNTERS}
    live.close()
    for batch in (1, 5000):
        scratch = sqlite3.connect(":memory:", isolation_level=None)
        scratch.execute("ATTACH DATABASE ? AS src", (f"file:{db}?mode=ro",))
        scratch.execute("PRAGMA foreign_keys = OFF")
        scratch.execute("CREATE TABLE texts (hash TEXT PRIMARY KEY, text TEXT, length INTEGER)")
        _create(scratch, views=False)
        scratch.execute("BEGIN")
        replay(scratch, source="src", batch=batch)
        digests = table_digests(scratch)
        scratch.close()
        assert {t: d for t, d in digests.items() if t in COUNTERS} == expected, batch


def test_db_check_finds_nothing_wrong_after_mixed_batches(offline_cohort):
    db = offline_cohort(combos=3)
    _mixed_batches(db).close()
    results = check(db)
    assert results and all(ok for _, ok, _ in results), results


def _counters(conn: sqlite3.Connection) -> dict[str, list[tuple]]:
    return {t: sorted(tuple(r) for r in conn.execute(f"SELECT * FROM {t}")) for t in COUNTERS}


def test_a_batch_sqlite_rolls_back_itself_counts_nothing(offline_cohort, monkeypatch):
    """A full disk makes SQLite roll back the whole transaction itself. The batch's counter
    changes go with it: nothing is written after the rollback (it would commit on its
    own), and the full disk is the error the caller sees (the worker keeps its results to
    write again)."""
    db = offline_cohort(combos=2)
    conn = connect(db, create=False)
    drafts = sorted(gen_ids(db, "draft"))
    before, events = _counters(conn), conn.execute("SELECT count(*) FROM events").fetchone()[0]
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages + 20}")
    started = apply._APPLIERS["attempt.started"]

    def then_a_disk_full(conn, event_id, event, recorded_at):  # after the first claim
        started(conn, event_id, event, recorded_at)
        if event.gen_id == drafts[1]:
            conn.execute("INSERT INTO texts (hash, text, length) VALUES ('x', ?, 1)", ("y" * 2**21,))

    monkeypatch.setitem(apply._APPLIERS, "attempt.started", then_a_disk_full)
    with pytest.raises(sqlite3.OperationalError, match="full"):
        append(conn, [_started(d) for d in drafts], actor="t")
    assert not conn.in_transaction
    assert _counters(conn) == before
    assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == events
    assert counter_mismatches(conn) == []
    conn.close()


def test_calls_of_generations_joining_a_cohort_add_up_as_a_replay_adds_them(offline_cohort, tmp_path):
    """A second cohort planned over generations that already made calls counts their calls
    one by one in event order, as a replay does: latencies of 0.1, 0.2 and 0.3 s added in
    another order (the ids') differ in the last bit, and db check would see a mismatch."""
    db = offline_cohort(combos=3, root=tmp_path)
    conn = connect(db, create=False)
    drafts = sorted(gen_ids(db, "draft"), reverse=True)  # events in the ids' reverse order
    tokens = append(conn, [_started(d) for d in drafts], actor="t")
    for gen_id, token, latency in zip(drafts, tokens, (0.1, 0.2, 0.3), strict=True):
        text = put_text(conn, f"reply of {gen_id}")
        responded = ev.GenerationResponded(
            gen_id=gen_id, token=token, mode="llm", prompt_hash=text, raw_hash=text,
            model_id="m1", prompt_tokens=1, completion_tokens=1, latency_s=latency,
            cost=None, offline=True,
        )  # fmt: skip
        done = ev.GenerationCompleted(gen_id=gen_id, token=token, parsed_hash=text)
        append(conn, [responded, done], actor="t")
    plan_cohort(conn, tmp_path / "spec.yaml", "again")
    [(total,)] = conn.execute(
        "SELECT latency_total FROM cohort_model_calls WHERE cohort_id = 'again'"
    ).fetchall()
    assert total == (0.1 + 0.2) + 0.3 != (0.3 + 0.2) + 0.1
    conn.close()
    results = check(db)
    assert results and all(ok for _, ok, _ in results), results
