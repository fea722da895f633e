"""The counters of a batch (``daydream/db/projections/tally.py``) to the value: call totals
per model and per cohort added one kind of call at a time (priced, unpriced, offline,
failed, with and without a latency or a wait for a slot), whatever the batches."""

from __future__ import annotations

import sqlite3

import pytest
import yaml

from daydream import events as ev
from daydream.db.connection import connect
from daydream.db.log import append
from daydream.db.projections.replay import compare_with_replay
from daydream.db.texts import put_text
from daydream.plan.write import plan_cohort
from tests.counting import counter_mismatches
from tests.scenario import cohort, fail_generations, gen_ids, offline_model, write_spec

LEASE = "2999-01-01T00:00:00Z"
TOTALS = (
    "calls, ok, prompt_tokens, completion_tokens, cost, latency_total, latency_n,"
    " slot_wait_total, slot_wait_n, unpriced, offline"
)


def _started(gen_id: str) -> ev.AttemptStarted:
    return ev.AttemptStarted(gen_id=gen_id, attempt=1, worker="w", lease_expires_at=LEASE)


def _responded(conn: sqlite3.Connection, gen_id: str, token: int, **call) -> ev.Event:
    text = put_text(conn, f"reply of {gen_id}")
    return ev.GenerationResponded(
        gen_id=gen_id, token=token, mode="llm", prompt_hash=text, raw_hash=text,
        model_id="m1", **call,
    )  # fmt: skip


def _failed_call(gen_id: str, token: int, **call) -> ev.AttemptFailed:
    return ev.AttemptFailed(
        gen_id=gen_id, token=token, state="provider_error", error="provider m1: HTTP 500",
        retryable=True, final=False, http_status=500, **call,
    )  # fmt: skip


def _totals(conn: sqlite3.Connection) -> list[tuple]:
    model = conn.execute(f"SELECT {TOTALS} FROM model_calls").fetchall()
    cohort = conn.execute(
        f"SELECT {TOTALS} FROM cohort_model_calls WHERE cohort_id = 'k' AND model_id = 'm1'"
    ).fetchall()
    assert [tuple(r) for r in model] == [tuple(r) for r in cohort]  # one cohort: the same
    return [tuple(r) for r in model]


# (ok, prompt, completion, cost, latency, wait, offline) per call: an online call with no
# price (unpriced), an offline one (never unpriced), a failed call (offline unknown).
CALLS = {
    "unpriced": dict(prompt_tokens=10, completion_tokens=None, cost=None, latency_s=0.5,
                     slot_wait_s=0.25, offline=False),
    "offline": dict(prompt_tokens=None, completion_tokens=7, cost=0.002, latency_s=None,
                    slot_wait_s=1.0, offline=True),
    "priced": dict(prompt_tokens=3, completion_tokens=4, cost=0.001, latency_s=1.5,
                   slot_wait_s=None, offline=False),
}  # fmt: skip


@pytest.mark.parametrize("one_batch", [True, False])
@pytest.mark.parametrize(
    "order", [("unpriced", "offline", "priced"), ("offline", "priced", "unpriced")]
)
def test_call_totals_add_each_kind_of_call_to_its_model_and_cohort(
    offline_cohort, order, one_batch
):
    db = offline_cohort(combos=4)
    drafts = sorted(gen_ids(db, "draft"))
    conn = connect(db, create=False)
    tokens = append(conn, [_started(d) for d in drafts], actor="t")
    events = [
        _responded(conn, gen_id, token, **CALLS[kind])
        for gen_id, token, kind in zip(drafts, tokens, order, strict=False)
    ]
    events.append(_failed_call(drafts[3], tokens[3], latency_s=0.75, slot_wait_s=None))
    for batch in [events] if one_batch else [[e] for e in events]:
        append(conn, batch, actor="t")
    assert _totals(conn) == [(4, 3, 13, 11, 0.003, 2.75, 3, 1.25, 2, 1, 1)]
    assert counter_mismatches(conn) == []
    conn.close()


def test_an_online_call_after_an_offline_one_leaves_the_totals_offline(offline_cohort):
    """``offline`` is the most any call had: 1 once an offline call was counted, whatever
    comes after; a failed call (offline unknown) changes nothing."""
    db = offline_cohort(combos=3)
    drafts = sorted(gen_ids(db, "draft"))
    conn = connect(db, create=False)
    tokens = append(conn, [_started(d) for d in drafts], actor="t")
    append(conn, [_failed_call(drafts[0], tokens[0])], actor="t")
    assert [r[-1] for r in _totals(conn)] == [None]
    append(conn, [_responded(conn, drafts[1], tokens[1], **CALLS["priced"])], actor="t")
    assert [r[-1] for r in _totals(conn)] == [0]
    append(conn, [_responded(conn, drafts[2], tokens[2], **CALLS["offline"])], actor="t")
    assert [r[-1] for r in _totals(conn)] == [1]
    (token,) = append(conn, [_started(drafts[0])], actor="t")
    append(conn, [_responded(conn, drafts[0], token, **CALLS["unpriced"])], actor="t")
    assert [r[-1] for r in _totals(conn)] == [1]
    assert counter_mismatches(conn) == []
    conn.close()


def test_a_second_cohort_over_more_than_500_generations_adds_every_ones_calls(tmp_path):
    """The calls of generations that join a cohort are read 500 generations at a time:
    none is missed or counted twice, in the first window, the second or the last (every
    one of the 1,020 generations has made a call, whatever its stage)."""
    axes = {"draft_replicate": list(range(1, 171))}
    db = cohort(tmp_path, [offline_model("m1")], combos=2, axes=axes)
    every = sorted(gen_ids(db))
    assert len(every) == 1020
    conn = connect(db, create=False)
    tokens = append(conn, [_started(g) for g in every], actor="t")
    calls = [
        _responded(conn, gen_id, token, prompt_tokens=1 + i, completion_tokens=1, cost=None,
                   latency_s=None, offline=True)
        for i, (gen_id, token) in enumerate(zip(every, tokens, strict=True))
    ]  # fmt: skip
    append(conn, calls, actor="t")
    plan_cohort(conn, tmp_path / "spec.yaml", "again")
    [again] = conn.execute(
        f"SELECT {TOTALS} FROM cohort_model_calls WHERE cohort_id = 'again'"
    ).fetchall()
    assert tuple(again) == (1020, 1020, sum(range(1, 1021)), 1020, 0.0, 0.0, 0, 0.0, 0, 0, 1)
    assert counter_mismatches(conn) == []
    conn.close()


def _counts(conn: sqlite3.Connection) -> list[tuple]:
    return [
        tuple(row)
        for row in conn.execute(
            "SELECT stage, status, state, generations FROM cohort_counts ORDER BY stage, status"
        )
    ]


def test_a_claim_of_a_generation_that_does_not_exist_changes_no_counter(offline_cohort):
    """``attempt.started`` updates no row when its generation is unknown (a log written by
    hand), and the tally, which finds no key to move, counts nothing either."""
    db = offline_cohort(combos=1)
    conn = connect(db, create=False)
    before = _counts(conn)
    append(conn, [_started("d_nowhere")], actor="t")
    append(conn, [_started("d_nowhere"), _started("d_elsewhere")], actor="t")
    assert _counts(conn) == before
    assert counter_mismatches(conn) == []
    conn.close()


def test_a_generation_completed_then_started_again_in_one_batch_keeps_its_state(
    offline_cohort,
):
    """``becomes`` with no state keeps the state the batch gave the row before (the
    completion's ``ok``), not the one it had when the batch began. The library never
    claims a completed generation; a log written by hand can, and is counted as it
    stands."""
    db = offline_cohort(combos=1)
    [draft] = gen_ids(db, "draft")
    conn = connect(db, create=False)
    (token,) = append(conn, [_started(draft)], actor="t")
    text = put_text(conn, "notes")
    done = ev.GenerationCompleted(gen_id=draft, token=token, parsed_hash=text)
    append(conn, [done, _started(draft)], actor="t")
    assert ("draft", "running", "ok", 1) in _counts(conn)
    assert counter_mismatches(conn) == []
    conn.close()


def test_a_child_unblocked_and_made_ready_in_one_batch_leaves_the_blocked_count(offline_cohort):
    """A replay batches what the live log wrote apart: a failed draft retried, claimed and
    completed in one batch unblocks its essay (noted while blocked) and makes it ready.
    The essay moves from blocked to ready: the key read again when its parent completes
    does not replace the one noted first."""
    db = offline_cohort(combos=1)
    [draft] = gen_ids(db, "draft")
    conn = connect(db, create=False)
    fail_generations(conn, [draft])
    assert ("essay", "blocked", "blocked", 1) in _counts(conn)
    [last] = conn.execute("SELECT max(id) FROM events").fetchone()
    text = put_text(conn, "notes")
    batch = [
        ev.GenerationsRetried(cohort_id="k", gen_ids=[draft]),
        _started(draft),
        ev.GenerationCompleted(gen_id=draft, token=last + 2, parsed_hash=text),
    ]
    append(conn, batch, actor="t")
    assert _counts(conn) == [
        ("draft", "done", "ok", 1),
        ("essay", "ready", "", 1),
        ("evaluation", "waiting", "", 1),
    ]
    assert counter_mismatches(conn) == []
    conn.close()


def test_calls_of_generations_joining_a_cohort_later_add_to_its_totals(offline_cohort, tmp_path):
    """A cohort planned again over more existing generations adds their calls to the totals
    it has, not in place of them."""
    db = offline_cohort(combos=2, root=tmp_path)
    drafts = sorted(gen_ids(db, "draft"))
    conn = connect(db, create=False)
    tokens = append(conn, [_started(d) for d in drafts], actor="t")
    calls = [
        _responded(conn, gen_id, token, prompt_tokens=tokens_used, completion_tokens=1,
                   cost=0.5, latency_s=None, offline=True)
        for gen_id, token, tokens_used in zip(drafts, tokens, (3, 4), strict=True)
    ]  # fmt: skip
    append(conn, calls, actor="t")
    prompts = dict(zip(drafts, (3, 4), strict=True))
    [first] = conn.execute(
        "SELECT gen_id FROM generations WHERE stage = 'draft' AND combo_id = 'c1'"
    )
    axes = yaml.safe_load((tmp_path / "spec.yaml").read_text(encoding="utf-8"))["axes"]
    totals = "SELECT calls, prompt_tokens, cost FROM cohort_model_calls WHERE cohort_id = 'again'"
    plan_cohort(conn, write_spec(tmp_path / "again.yaml", {**axes, "combo_id": ["c1"]}), "again")
    assert [tuple(r) for r in conn.execute(totals)] == [(1, prompts[first[0]], 0.5)]
    plan_cohort(
        conn, write_spec(tmp_path / "again.yaml", {**axes, "combo_id": ["c1", "c2"]}), "again"
    )
    [again] = conn.execute(totals).fetchall()
    assert tuple(again) == (2, 7, 1.0)
    assert counter_mismatches(conn) == []
    conn.close()


def test_a_plan_between_a_claim_and_its_reply_leaves_the_replays_call_totals_exact(
    offline_cohort, tmp_path
):
    """A replay applies the live log in batches of thousands of events: a plan between a
    claim and its reply settles the batch, and the reply's call, of a generation the batch
    then knows nothing of, is still added to its cohorts' totals."""
    db = offline_cohort(combos=2, root=tmp_path)
    draft = sorted(gen_ids(db, "draft"))[0]
    conn = connect(db, create=False)
    (token,) = append(conn, [_started(draft)], actor="t")
    plan_cohort(conn, tmp_path / "spec.yaml", "again")
    append(conn, [_responded(conn, draft, token, **CALLS["priced"])], actor="t")
    totals = "SELECT cohort_id, calls FROM cohort_model_calls ORDER BY cohort_id"
    assert [tuple(r) for r in conn.execute(totals)] == [("again", 1), ("k", 1)]
    conn.close()
    assert compare_with_replay(str(db)) == {}
