"""What a bad reply gets, end to end: hostile replies from the loopback ``FakeAPI`` through
real worker processes, and values the database refuses handed straight to the recording
path. Each ends in a clear recorded state; no worker dies, no task is left ``running``,
no bystander is harmed and no reply lands on another generation.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daydream import events as ev
from daydream.db.check import check
from daydream.db.connection import connect
from daydream.queue.leases import claim, record
from daydream.values import COUNT_MAX, SQLITE_INT_MAX
from daydream.worker.config import WorkerConfig
from tests.fakeapi import STRAY_TEXT, FakeAPI, Fault, fake_reply
from tests.invariants import check_invariants
from tests.scenario import (
    FixedClock,
    cohort,
    events_of,
    execute,
    gen_ids,
    gen_of,
    model,
    query,
    run,
    script_by_gen,
    text,
    worker_cmd,
)

NESTED = b"[" * 50_000 + b"]" * 50_000
THREE_LINES = "first line \ud800 of the notes\nsecond line\nthird line"


def generation(db: Path, gen_id: str) -> dict[str, Any]:
    columns = "status, state, attempts, error, prompt_tokens, completion_tokens, cost, raw_hash"
    row = query(db, f"SELECT {columns} FROM generations WHERE gen_id = ?", [gen_id])[0]
    return dict(zip([c.strip() for c in columns.split(",")], row, strict=True))


def test_hostile_replies_through_a_worker_end_in_clear_states_and_harm_no_bystander(tmp_path):
    faults: dict[str, list[Any]] = {}
    with FakeAPI(script=script_by_gen(faults)) as api:
        db = cohort(tmp_path, [model("m1")], combos=10)
        drafts = gen_ids(db, "draft")
        huge, nested, surrogate, short, stray, interim, overlong = drafts[:7]
        faults[huge] = [Fault(usage={"prompt_tokens": 10**30, "completion_tokens": 2**64})]
        faults[nested] = [Fault("body", body=NESTED), Fault("body", body=NESTED)]
        faults[surrogate] = [Fault(content=THREE_LINES)]
        faults[short] = ["short_body"]  # then ok: a second attempt
        faults[stray] = ["extra_response"]
        faults[interim] = ["continue"]
        faults[overlong] = ["overlong"]
        done = run(
            worker_cmd(
                db,
                "--concurrency",
                "2",
                "--timeout",
                "2",
                "--max-attempts",
                "2",
                base_url=api.base_url,
            )
        )
        bodies = {gen_of(r.body): r.body for r in api.requests}
        strays = api.strays_sent
    assert "Traceback" not in done.stderr, done.stderr
    assert strays == 1
    expected = {
        huge: ("done", "ok", 1),
        nested: ("failed", "provider_error", 2),
        surrogate: ("done", "ok", 1),
        short: ("done", "ok", 2),
        stray: ("done", "ok", 1),
        interim: ("done", "ok", 1),
        overlong: ("done", "ok", 1),
    }
    for gen_id in gen_ids(db):
        row = generation(db, gen_id)
        if gen_id in expected:
            assert (row["status"], row["state"], row["attempts"]) == expected[gen_id], gen_id
        elif gen_id.startswith("d_") or not _blocked_by(db, gen_id, nested):
            assert (row["status"], row["state"], row["attempts"]) == ("done", "ok", 1), gen_id
    assert generation(db, huge)["prompt_tokens"] is None
    assert generation(db, huge)["completion_tokens"] is None
    assert generation(db, nested)["error"].startswith(
        "provider vllm, model m1: response is nested too deeply to read: '[[[["
    )
    assert text(db, generation(db, surrogate)["raw_hash"]) == THREE_LINES.replace(
        "\ud800", "\ufffd"
    )
    # Every recorded reply answers its own generation's request; the stray is nowhere.
    for gen_id, body in bodies.items():
        raw = text(db, generation(db, gen_id)["raw_hash"])
        if gen_id not in (nested, surrogate) and raw is not None:
            assert raw == fake_reply(body), gen_id
    assert not query(db, "SELECT hash FROM texts WHERE instr(text, ?)", [STRAY_TEXT])
    check_invariants(db)


def _blocked_by(db: Path, gen_id: str, draft: str) -> bool:
    return bool(
        query(db, "SELECT 1 FROM generations WHERE gen_id = ? AND status = 'blocked'", [gen_id])
    ) and draft in (generation(db, gen_id)["error"] or "")


def test_a_value_the_database_refuses_fails_only_its_own_generation(offline_cohort):
    """Past the reply parser's cleaning, the recording path still refuses to crash: an
    outcome holding an integer beyond SQLite's, a float that is not finite (JSON would
    write null: a replay would differ) or text with a lone surrogate is stored as its own
    final failure, and the rest of the batch as usual."""
    db = offline_cohort(combos=4)
    clock = FixedClock()
    config = WorkerConfig(db_path=db, name="A")
    conn = connect(db, create=False)
    try:
        tasks = claim(conn, config, 4, clock=clock)
        outcomes = execute(config, tasks, clock)
        too_big, infinite, bad_text, bystander = outcomes
        for outcome, change in (
            (too_big, {"prompt_tokens": 10**30}),
            (infinite, {"cost": math.inf}),
        ):
            responded = outcome.events[0]
            assert isinstance(responded, ev.GenerationResponded)
            outcome.events[0] = responded.model_copy(update=change)
        bad_text.texts = {digest: "lone \ud800" for digest in bad_text.texts}
        assert record(conn, outcomes, config, clock=clock) == (4, 0)
    finally:
        conn.close()
    problems = [
        (too_big, "generation.responded prompt_tokens: an integer beyond 64 bits"),
        (infinite, "generation.responded cost: inf is not a finite number"),
        (bad_text, "a text of the reply: text that is not UTF-8"),
    ]
    for outcome, problem in problems:
        gen_id = outcome.task.gen_id
        row = generation(db, gen_id)
        assert (row["status"], row["state"], row["raw_hash"]) == ("failed", "error", None)
        assert row["error"] == (
            f"the result could not be stored ({problem}), so it was discarded; run it again"
            f" with: daydream retry COHORT --gen {gen_id}"
        )
        (failed,) = events_of(db, gen_id, ["attempt.failed"])
        # final and not retryable: no worker runs it again by itself (the error says how to)
        assert (failed["error_class"], failed["final"], failed["retryable"]) == (
            "Unstorable",
            True,
            False,
        )
    assert generation(db, bystander.task.gen_id)["status"] == "done"
    assert query(db, "SELECT count(*) FROM generations WHERE status = 'running'") == [(0,)]
    assert all(passed for _, passed, _ in check(db))  # replay equals the projections


def test_every_generated_reply_is_recorded_as_a_storable_outcome(tmp_path):
    """Property: whatever body a server returns (random JSON shapes, types, sizes and
    encodings), the worker's executor and the recording path end the task cleanly, and
    every stored value is one SQLite holds."""
    current: list[bytes] = [b""]
    with FakeAPI(script=lambda index, body: Fault("body", body=current[0])) as api:
        axes = {"draft_replicate": list(range(1, 31))}
        db = cohort(tmp_path, [model("m1")], combos=10, axes=axes)
        config = WorkerConfig(
            db_path=db, name="prop", max_attempts=1, base_urls={"vllm": api.base_url}
        )
        clock = FixedClock()
        conn = connect(db, create=False)

        @settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
        @given(REPLIES)
        def check(body: bytes) -> None:
            current[0] = body
            (task,) = claim(conn, config, 1, clock=clock)
            (outcome,) = execute(config, [task], clock)
            assert record(conn, [outcome], config, clock=clock) == (1, 0)
            row = generation(db, task.gen_id)
            assert row["status"] in ("done", "failed")
            assert row["state"] != "error", row["error"]
            for count in (row["prompt_tokens"], row["completion_tokens"]):
                assert count is None or 0 <= count <= COUNT_MAX
            assert row["cost"] is None or math.isfinite(row["cost"])

        try:
            check()
        finally:
            conn.close()
    calls = query(db, "SELECT max(prompt_tokens), max(completion_tokens) FROM calls")[0]
    assert all(value is None or value <= SQLITE_INT_MAX for value in calls)


_LEAF = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
)
_ANY = st.recursive(
    _LEAF,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=12,
)
_CONTENT = st.one_of(
    st.just("one\ntwo\nthree"),
    st.text(max_size=80).map(lambda t: f"a\nb\n{t}"),
    _ANY,
)
_REPLY = st.fixed_dictionaries(
    {
        "choices": st.lists(
            st.fixed_dictionaries(
                {"message": st.fixed_dictionaries({"content": _CONTENT})},
                optional={"finish_reason": _ANY | st.sampled_from(["stop", "length"])},
            ),
            min_size=0,
            max_size=2,
        )
    },
    optional={
        "usage": st.dictionaries(
            st.sampled_from(["prompt_tokens", "completion_tokens", "cost"]), _LEAF
        ),
        "model": _ANY,
        "id": _ANY,
    },
)


def _encode(value: Any, encoding: str) -> bytes:
    return json.dumps(value, allow_nan=True).encode(encoding)


REPLIES = st.one_of(
    st.builds(_encode, _REPLY, st.sampled_from(["utf-8", "utf-16", "utf-32"])),
    st.builds(_encode, _ANY, st.just("utf-8")),
    st.binary(max_size=120),
    st.integers(min_value=900, max_value=5000).map(lambda n: b"[" * n + b"]" * n),
)
