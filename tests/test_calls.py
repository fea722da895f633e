"""What a model call records, end to end: real worker processes against the loopback
``FakeAPI``. The ``calls`` table's HTTP status, time at the server and wait for a pool slot
(for failed calls too); a reasoning model's reasoning beside the reply, never in it; the
reply as the next stage sees it (stripped, as upstream did) while the raw reply stays
verbatim; truncation by token count; a template's ``extra``; and which base URL wins.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from daydream.db.connection import connect
from daydream.queue.leases import claim
from daydream.worker.config import WorkerConfig
from tests.fakeapi import FakeAPI, Fault
from tests.invariants import check_invariants
from tests.scenario import (
    FixedClock,
    cohort,
    env,
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

WRITTEN_ESSAY = {"essay_template": ["write"], "essay_llm": ["m1"]}


def row(db: Path, gen_id: str) -> dict[str, Any]:
    conn = connect(db, create=False, migrate=False)
    try:
        found = conn.execute("SELECT * FROM generations WHERE gen_id = ?", (gen_id,)).fetchone()
        return dict(found)
    finally:
        conn.close()


def calls_of(db: Path, gen_id: str) -> list[tuple]:
    return query(
        db,
        "SELECT ok, http_status, latency_s, slot_wait_s FROM calls WHERE gen_id = ?"
        " ORDER BY event_id",
        [gen_id],
    )


def test_calls_record_the_status_the_time_at_the_server_and_the_slot_wait_of_every_call(
    tmp_path,
):
    faults: dict[str, list[Any]] = {}
    with FakeAPI(script=script_by_gen(faults)) as api:
        db = cohort(tmp_path, [model("m1", base_url=api.base_url)])
        first, second = gen_ids(db, "draft")
        faults[first] = [Fault("500", delay_s=0.3)]
        faults[second] = [Fault("429", retry_after="0", delay_s=0.2)]
        run(worker_cmd(db))
    failed, ok = calls_of(db, first)
    assert failed[:2] == (0, 500) and ok[:2] == (1, 200)
    # the time at the server covers the server's own delay, for a failure as for a success
    assert failed[2] >= 0.3
    throttled, ok_after = calls_of(db, second)
    assert throttled[:2] == (0, 429) and ok_after[:2] == (1, 200)
    assert throttled[2] >= 0.2
    calls = query(db, "SELECT http_status, latency_s, slot_wait_s FROM calls")
    assert len(calls) == len(api.requests) == 6  # 2 drafts, 2 judges, 2 calls again
    assert all(latency is not None and wait is not None for _, latency, wait in calls)
    assert {status for status, _, _ in calls} == {200, 429, 500}
    (event,) = events_of(db, first, ["attempt.failed"])
    assert event["latency_s"] == failed[2] and event["slot_wait_s"] == failed[3]
    check_invariants(db)


def test_the_slot_wait_is_the_time_from_the_claim_to_the_call(offline_cohort):
    db = offline_cohort()
    config = WorkerConfig(db_path=db, name="A")
    clock = FixedClock()
    conn = connect(db, create=False)
    try:
        task, other = claim(conn, config, 2, clock=clock)
    finally:
        conn.close()
    task.claimed_at -= 5.0  # as if it had waited five seconds in the worker's queue
    outcome, prompt = execute(config, [task, other], clock)
    responded = outcome.events[0]
    assert responded.type == "generation.responded"
    assert responded.slot_wait_s >= 5.0
    assert prompt.events[0].slot_wait_s < 5.0


def test_a_reasoning_models_reasoning_is_kept_beside_the_reply_and_never_parsed(tmp_path):
    faults: dict[str, list[Any]] = {}
    thoughts = {}
    with FakeAPI(script=script_by_gen(faults)) as api:
        db = cohort(tmp_path, [model("m1", base_url=api.base_url)], axes=WRITTEN_ESSAY)
        first, second = gen_ids(db, "draft")
        # vLLM, DeepSeek and llama.cpp send reasoning_content; OpenRouter sends reasoning
        for gen_id, field in ((first, "reasoning_content"), (second, "reasoning")):
            thoughts[gen_id] = f"<think-aloud> weighing {field} for {gen_id}"
            faults[gen_id] = [
                Fault(
                    "ok",
                    content="Notes one\nNotes two\nNotes three",
                    reasoning=thoughts[gen_id],
                    reasoning_field=field,
                    reasoning_tokens=42,
                )
            ]
        run(worker_cmd(db))
    essays = {gen_of(r.body): r.body for r in api.requests}
    for gen_id, thought in thoughts.items():
        g = row(db, gen_id)
        assert (g["status"], g["reasoning_tokens"]) == ("done", 42)
        assert text(db, g["reasoning_hash"]) == thought
        assert text(db, g["raw_hash"]) == text(db, g["parsed_hash"]) == (
            "Notes one\nNotes two\nNotes three"
        )
        assert query(db, "SELECT reasoning_tokens FROM calls WHERE gen_id = ?", [gen_id]) == [
            (42,)
        ]
        (essay,) = query(db, "SELECT gen_id FROM generations WHERE parent_gen_id = ?", [gen_id])
        assert thought not in essays[essay[0]]["messages"][-1]["content"]
    shown = dict(
        query(
            db,
            "SELECT gen_id, reasoning_text FROM generation_texts WHERE reasoning_text IS NOT NULL",
        )
    )
    assert shown == thoughts
    check_invariants(db)


def test_a_padded_reply_reaches_the_next_stage_stripped_and_stays_verbatim_raw(tmp_path):
    padded = "\n\n   Notes one\n  Notes two\nNotes three  \n\n\t"
    faults: dict[str, list[Any]] = {}
    with FakeAPI(script=script_by_gen(faults)) as api:
        db = cohort(tmp_path, [model("m1", base_url=api.base_url)], axes=WRITTEN_ESSAY, combos=1)
        (draft,) = gen_ids(db, "draft")
        faults[draft] = [Fault("ok", content=padded)]
        run(worker_cmd(db))
    (essay,) = gen_ids(db, "essay")
    assert text(db, row(db, draft)["raw_hash"]) == padded
    assert text(db, row(db, draft)["parsed_hash"]) == "Notes one\n  Notes two\nNotes three"
    (request,) = [r for r in api.requests if gen_of(r.body) == essay]
    assert "\nNOTES\nNotes one\n  Notes two\nNotes three\nEND\n" in (
        request.body["messages"][-1]["content"]
    )


def test_a_reply_that_uses_every_allowed_token_is_truncated_even_when_the_server_says_stop(
    tmp_path,
):
    faults: dict[str, list[Any]] = {}
    with FakeAPI(script=script_by_gen(faults)) as api:
        db = cohort(tmp_path, [model("m1", base_url=api.base_url)], combos=1)
        (draft,) = gen_ids(db, "draft")
        # the notes template allows 400 tokens; the server says "stop" anyway
        faults[draft] = [Fault("ok", completion_tokens=400)]
        run(worker_cmd(db))
    g = row(db, draft)
    assert (g["status"], g["state"], g["finish_reason"]) == ("failed", "truncated", "stop")
    assert g["error"].startswith("the reply used all 400 tokens max_tokens allowed")
    assert text(db, g["raw_hash"]) is not None  # the reply is kept
    assert api.calls == 1  # a truncated reply is a result, not retried


def test_a_templates_extra_goes_into_the_request_over_the_models(tmp_path):
    templates = {
        "draft": [{"id": "notes", "max_tokens": 400, "extra": {"stop": ["END"], "top_p": 0.5}}],
        "essay": [{"id": "copy", "generator": "copy"}],
        "evaluation": [{"id": "judge", "parser": "score", "scale": [0, 10]}],
    }
    with FakeAPI() as api:
        m1 = model("m1", base_url=api.base_url, extra={"top_p": 0.9, "top_k": 5})
        db = cohort(tmp_path, [m1], templates=templates, combos=1)
        run(worker_cmd(db))
    (draft,) = gen_ids(db, "draft")
    body = next(r.body for r in api.requests if gen_of(r.body) == draft)
    assert (body["stop"], body["top_p"], body["top_k"]) == (["END"], 0.5, 5)
    (responded,) = events_of(db, draft, ["generation.responded"])
    assert responded["params"]["extra"] == {"top_p": 0.5, "top_k": 5, "stop": ["END"]}
    judge = next(r.body for r in api.requests if gen_of(r.body) != draft)
    assert "stop" not in judge and judge["top_p"] == 0.9


def test_the_command_lines_base_url_beats_the_environment(tmp_path):
    with FakeAPI() as api:
        db = cohort(tmp_path, [model("m1")], combos=1)
        # nothing listens on port 9 of loopback: a call sent there would fail
        environ = env(DAYDREAM_VLLM_BASE_URL="http://127.0.0.1:9/v1")
        run(worker_cmd(db, base_url=api.base_url), environ=environ)
    assert api.calls == 2  # the draft and its judge (the essay is a copy)
    assert query(db, "SELECT DISTINCT status FROM generations") == [("done",)]
    assert json.loads(query(db, "SELECT settings FROM models")[0][0]) == {}
