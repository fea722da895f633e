"""Workers end to end: a planned cohort, real worker processes, the loopback fake API.

Each test plans a small cohort in a real SQLite file whose models call the ``vllm``
provider, points it at ``FakeAPI`` (a real HTTP server on 127.0.0.1), runs
``python -m daydream worker`` (or ``daydream run``) as a subprocess and reads the outcome
from the database. The lease logic (claim, heartbeat, record) is also driven directly,
with a fixed clock.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import time
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from daydream.clock import isoformat, utcnow
from daydream.db.connection import connect
from daydream.db.projections.replay import compare_with_replay
from daydream.db.transaction import transaction
from daydream.errors import PlanError
from daydream.queue.cohorts import cohort_status, retry
from daydream.queue.leases import Exchange, claim, exchange, heartbeat, record
from daydream.queue.pools import set_pool_limit
from daydream.results.text import format_status
from daydream.worker.config import WorkerConfig
from daydream.worker.execute import Executor
from daydream.worker.loop import CALLS_CHECK_S, Worker
from daydream.worker.stats import WorkerStats
from tests.fakeapi import FakeAPI, Fault, fake_reply
from tests.invariants import check_invariants
from tests.scenario import (
    T0,
    TEMPLATES,
    FixedClock,
    cohort,
    combo_ids,
    daydream_cmd,
    events_of,
    execute,
    fake_outcomes,
    gen_ids,
    gen_of,
    model,
    offline_model,
    plan,
    query,
    requests_per_gen,
    run,
    scalar,
    script_by_gen,
    start,
    stop,
    text,
    wait_for,
    worker_cmd,
    write_spec,
)


def drafts_by_combo(db: Path) -> dict[str, str]:
    return dict(query(db, "SELECT combo_id, gen_id FROM generations WHERE stage = 'draft'"))


def descendants(db: Path, gen_id: str) -> list[str]:
    found, frontier = [], [gen_id]
    while frontier:
        marks = ", ".join("?" for _ in frontier)
        frontier = [
            r[0]
            for r in query(
                db, f"SELECT gen_id FROM generations WHERE parent_gen_id IN ({marks})", frontier
            )
        ]
        found += frontier
    return found


def generation(db: Path, gen_id: str) -> dict[str, Any]:
    conn = connect(db, create=False, migrate=False)
    try:
        return dict(
            conn.execute("SELECT * FROM generations WHERE gen_id = ?", (gen_id,)).fetchone()
        )
    finally:
        conn.close()


def at(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def attempt_events(db: Path, gen_id: str) -> list[dict[str, Any]]:
    return [e for e in events_of(db, gen_id) if e["type"] != "leases.extended"]


def status_json(db: Path) -> dict[str, Any]:
    return json.loads(run(daydream_cmd("status", "k", "--db", str(db), "--json")).stdout)


def assert_clean_exit(done: Any) -> None:
    assert "Traceback" not in done.stderr, done.stderr


def test_a_spawned_worker_runs_its_config_and_says_how_it_went(tmp_path, offline_cohort):
    """Where a fork is not safe, ``daydream run`` starts a fresh interpreter with the
    worker's config as JSON (``runner.workers.command``), importing what the parent imported
    even from a directory holding another ``daydream/`` (or ``click/``) package. Its summary
    line is complete, and a worker that cannot start says why in one line, exit 1."""
    from daydream.runner.workers import command

    db = offline_cohort()
    elsewhere = tmp_path / "checkout"
    for shadow in ("daydream", "click"):  # neither may replace what the parent imported
        (elsewhere / shadow).mkdir(parents=True)
        (elsewhere / shadow / "__init__.py").write_text("raise ImportError('not this one')\n")

    def worker(config: WorkerConfig) -> subprocess.CompletedProcess:
        return subprocess.run(
            command(config), capture_output=True, text=True, timeout=60, cwd=elsewhere
        )

    done = worker(WorkerConfig(db_path=db, name="w1", provider_override="offline"))
    assert done.returncode == 0, done.stderr
    assert_clean_exit(done)
    total = scalar(db, "SELECT count(*) FROM generations")
    assert scalar(db, "SELECT count(*) FROM generations WHERE status = 'done'") == total
    assert f"worker w1: {total} ok, 0 failed" in done.stderr
    missing = worker(WorkerConfig(db_path=tmp_path / "none.db", name="w2"))
    assert missing.returncode == 1
    assert missing.stderr.startswith("Error: database ") and "Traceback" not in missing.stderr


def test_a_worker_config_survives_its_trip_through_json(tmp_path):
    """Every field a fresh interpreter's worker gets is the one ``daydream run`` set."""
    config = WorkerConfig(
        db_path=tmp_path / "x.db",
        name="w",
        concurrency=7,
        pools=("a", "b"),
        cohort="c",
        lease_s=33.5,
        max_attempts=9,
        exit_when_idle=False,
        grace_s=1.5,
        provider_override="offline",
        offline_latency_s=0.25,
        base_urls={"vllm": "http://127.0.0.1:9/v1"},
        timeout_s=12.0,
        batch=3,
        queue=0,
        seed=5,
        check_providers=False,
    )
    assert WorkerConfig.from_json(config.to_json()) == config
    assert WorkerConfig.from_json(WorkerConfig(db_path=Path("y.db"), name="n").to_json()) == (
        WorkerConfig(db_path=Path("y.db"), name="n")
    )


# -- end to end against the fake API --------------------------------------------------------


def test_happy_path_records_texts_usage_cost_and_request_params(tmp_path):
    with FakeAPI(latency_s=0.02) as api:
        models = [
            model(
                "m1",
                "fake-one",
                base_url=api.base_url,
                price_input_per_mtok=1.0,
                price_output_per_mtok=2.0,
                extra={"seed": 11},
            ),
            model(
                "m2",
                "fake-two",
                base_url=api.base_url,
                price_input_per_mtok=3.0,
                price_output_per_mtok=4.0,
            ),
        ]
        axes = {"essay_template": ["write"], "essay_llm": ["m1"], "evaluation_llm": ["m1", "m2"]}
        db = cohort(tmp_path, models, axes=axes)
        # No --base-url: each model's catalog base_url must bring its calls here.
        done = run(worker_cmd(db))
    assert_clean_exit(done)
    bodies = {gen_of(r.body): r.body for r in api.requests}
    assert len(api.requests) == len(bodies) == 8  # 2 drafts, 2 essays, 4 judgements: one call each
    assert sorted(bodies) == sorted(gen_ids(db))
    expected_settings = {
        "draft": (0.3, 400),
        "essay": (0.5, 600),
        "evaluation": (0.0, 300),
    }
    prices = {"m1": (1e-6, 2e-6), "m2": (3e-6, 4e-6)}
    for gen_id, body in bodies.items():
        row = generation(db, gen_id)
        prompt = body["messages"][-1]["content"]
        raw = fake_reply(body)
        assert (row["status"], row["state"], row["error"]) == ("done", "ok", None)
        assert row["attempts"] == 1
        # the request: the catalog's model string and the stage's settings, seed from extra
        temperature, max_tokens = expected_settings[row["stage"]]
        assert body["model"] == {"m1": "fake-one", "m2": "fake-two"}[row["model_id"]]
        assert (body["temperature"], body["max_tokens"]) == (temperature, max_tokens)
        assert body.get("seed") == (11 if row["model_id"] == "m1" else None)
        # the three phases' texts
        assert text(db, row["prompt_hash"]) == prompt
        assert text(db, row["raw_hash"]) == raw
        if row["stage"] == "evaluation":
            score = int(raw.splitlines()[-1].removeprefix("SCORE:"))
            assert row["score"] == score
            assert text(db, row["parsed_hash"]) == f"{float(score)}\n"
        else:
            assert text(db, row["parsed_hash"]) == raw
        # what the provider reported, and the cost from the catalog's prices
        prompt_tokens = len(prompt) // 4
        completion_tokens = len(raw) // 4
        assert (row["prompt_tokens"], row["completion_tokens"]) == (
            prompt_tokens,
            completion_tokens,
        )
        price_in, price_out = prices[row["model_id"]]
        assert row["cost"] == prompt_tokens * price_in + completion_tokens * price_out
        assert row["provider"] == "vllm"
        assert row["resolved_model"] == f"fakeapi/{body['model']}"
        assert row["finish_reason"] == "stop"
        assert row["latency_s"] >= 0.02
        assert row["offline"] == 0
        (responded,) = events_of(db, gen_id, ["generation.responded"])
        expected_params: dict[str, Any] = {"temperature": temperature, "max_tokens": max_tokens}
        if row["model_id"] == "m1":
            expected_params["extra"] = {"seed": 11}
        assert responded["params"] == expected_params

    status = status_json(db)
    assert status["states"] == {"ok": 8}
    assert {stage: counts["done"] for stage, counts in status["stages"].items()} == {
        "draft": 2,
        "essay": 2,
        "evaluation": 4,
    }
    for entry in status["models"]:
        rows = query(
            db,
            "SELECT count(*), sum(prompt_tokens), sum(completion_tokens), sum(cost)"
            " FROM generations WHERE model_id = ?",
            [entry["model_id"]],
        )
        calls, prompt_tokens, completion_tokens, cost = rows[0]
        assert (entry["calls"], entry["ok"], entry["errors"]) == (calls, calls, 0)
        assert (entry["prompt_tokens"], entry["completion_tokens"]) == (
            prompt_tokens,
            completion_tokens,
        )
        assert abs(entry["cost"] - cost) < 1e-12
    assert [m["model_id"] for m in status["models"]] == ["m1", "m2"]
    assert [m["calls"] for m in status["models"]] == [6, 2]
    check_invariants(db)


def test_rate_limit_is_throttled_not_counted_and_its_retry_after_honoured(tmp_path):
    faults: dict[str, list[Any]] = {}
    with FakeAPI(script=script_by_gen(faults)) as api:
        db = cohort(tmp_path, [model("m1")], combos=1)
        (draft,) = gen_ids(db, "draft")
        # 429, then 500, then ok. With --max-attempts 2 the 500 is survivable only if the
        # 429 did not count as an attempt.
        faults[draft] = [Fault("429", retry_after="1"), "500"]
        done = run(worker_cmd(db, "--max-attempts", "2", base_url=api.base_url))
    assert_clean_exit(done)
    row = generation(db, draft)
    assert (row["status"], row["state"], row["attempts"]) == ("done", "ok", 3)
    assert scalar(db, "SELECT throttles FROM tasks WHERE gen_id = ?", [draft]) == 1
    history = attempt_events(db, draft)
    assert [e["type"] for e in history] == [
        "attempt.started",
        "attempt.throttled",
        "attempt.started",
        "attempt.failed",
        "attempt.started",
        "generation.responded",
        "generation.completed",
    ]
    throttled, failed = history[1], history[3]
    assert throttled["retry_after"] == 1.0
    assert (
        throttled["error"]
        == "provider vllm, model m1: HTTP 429: fakeapi: scripted 429 (retry after 1s)"
    )
    # honoured: the task was held back at least Retry-After from the reply (which came after
    # the claim), never to before its own record, and not claimed before retry_at
    assert at(throttled["retry_at"]) - at(history[0]["recorded_at"]) >= timedelta(seconds=1)
    assert at(throttled["retry_at"]) >= at(throttled["recorded_at"])
    assert at(history[2]["recorded_at"]) >= at(throttled["retry_at"])
    times = [r.received_at for r in api.requests if gen_of(r.body) == draft]
    assert len(times) == 3 and times[1] - times[0] >= 1.0
    assert (failed["http_status"], failed["retryable"], failed["final"]) == (500, True, False)
    # one 429 among a handful of calls is paced by Retry-After alone: no cut (see the AIMD test)
    assert query(db, 'SELECT pool, "limit", ceiling, reason FROM pools') == []
    assert query(
        db, "SELECT http_status, ok FROM calls WHERE gen_id = ? ORDER BY event_id", [draft]
    ) == [
        (429, 0),
        (500, 0),
        (200, 1),
    ]
    check_invariants(db)


def test_transient_faults_are_retried_with_backoff_until_they_succeed(tmp_path):
    faults: dict[str, list[Any]] = {}
    with FakeAPI(script=script_by_gen(faults), hang_s=10) as api:
        db = cohort(tmp_path, [model("m1")], combos=3)
        d1, d2, d3 = (drafts_by_combo(db)[c] for c in combo_ids(3))
        faults[d1] = ["500", "502"]
        faults[d2] = ["timeout"]
        faults[d3] = ["malformed_json"]
        done = run(  # `daydream run` passes --timeout on to its workers
            daydream_cmd(
                "run",
                "k",
                "--db",
                str(db),
                "--max-attempts",
                "3",
                "--timeout",
                "0.5",
                "--base-url",
                f"vllm={api.base_url}",
            )
        )
    assert_clean_exit(done)
    assert requests_per_gen(api)[d1] == 3
    assert requests_per_gen(api)[d2] == requests_per_gen(api)[d3] == 2
    expected = {
        d1: [
            (500, "provider vllm, model m1: HTTP 500: fakeapi: scripted 500"),
            (502, "provider vllm, model m1: HTTP 502: fakeapi: scripted 502"),
        ],
        # httpx's read timeout or the whole-call deadline, whichever fires first
        d2: [(None, "provider vllm, model m1: timed out after 0.5s (")],
        d3: [
            (
                None,
                "provider vllm, model m1: response is not valid JSON: '{\"choices\": [ oops'",
            )
        ],
    }
    for draft, errors in expected.items():
        row = generation(db, draft)
        assert (row["status"], row["state"], row["attempts"]) == ("done", "ok", len(errors) + 1)
        history = attempt_events(db, draft)
        failures = [e for e in history if e["type"] == "attempt.failed"]
        assert len(failures) == len(errors)
        seen = [
            (f["http_status"], f["error"][: len(e)])
            for f, (_, e) in zip(failures, errors, strict=True)
        ]
        assert seen == errors
        for failure in failures:
            assert (failure["state"], failure["retryable"], failure["final"]) == (
                "provider_error",
                True,
                False,
            )
            # backoff: a retry time after the failure, and no attempt before it
            assert at(failure["retry_at"]) >= at(failure["recorded_at"])
            following = next(
                e for e in history if e["id"] > failure["id"] and e["type"] == "attempt.started"
            )
            assert at(following["recorded_at"]) >= at(failure["retry_at"])
    # full-jitter backoff stays within base * 2**(attempt-1): 1 s, then 2 s
    delays = [
        (at(f["retry_at"]) - at(f["recorded_at"])).total_seconds()
        for f in attempt_events(db, d1)
        if f["type"] == "attempt.failed"
    ]
    assert delays[0] <= 1.0 and delays[1] <= 2.0
    check_invariants(db)


def test_permanent_outcomes_fail_at_once_keep_the_raw_reply_and_block_children(tmp_path):
    faults: dict[str, list[Any]] = {}
    with FakeAPI(script=script_by_gen(faults)) as api:
        db = cohort(tmp_path, [model("m1", "fake-one")], combos=4)
        d1, d2, d3, d4 = (drafts_by_combo(db)[c] for c in combo_ids(4))
        (judge4,) = [g for g in descendants(db, d4) if g.startswith("v_")]
        faults[d1] = ["empty_content"]
        faults[d2] = ["length"]
        faults[d3] = [Fault("400", message="max_tokens is too large for fake-one")]
        faults[judge4] = [Fault("ok", content="A fine essay.\nI would rate it highly.")]
        done = run(worker_cmd(db, "--max-attempts", "3", base_url=api.base_url))
        bodies = {gen_of(r.body): r.body for r in api.requests}
    assert_clean_exit(done)
    expected = {
        d1: (
            "refused",
            "the model returned an empty reply (a refusal or a provider problem);"
            " retry it or try another model",
        ),
        d2: (
            "truncated",
            "the reply was cut off at the token limit (finish_reason 'length');"
            " raise the stage's max_tokens",
        ),
        d3: (
            "provider_error",
            "provider vllm, model fake-one: HTTP 400: max_tokens is too large for fake-one",
        ),
        judge4: (
            "parse_failed",
            None,  # the score grammar's own message, checked below
        ),
    }
    calls = requests_per_gen(api)
    for gen_id, (state, error) in expected.items():
        row = generation(db, gen_id)
        assert (row["status"], row["state"], row["attempts"]) == ("failed", state, 1)
        assert calls[gen_id] == 1  # no retry
        (failed,) = events_of(db, gen_id, ["attempt.failed"])
        assert (failed["retryable"], failed["final"]) == (False, True)
        if error is not None:
            assert row["error"] == error == failed["error"]
    # the raw reply is kept when there was one
    assert text(db, generation(db, d1)["raw_hash"]) == ""
    truncated = fake_reply(bodies[d2])
    assert text(db, generation(db, d2)["raw_hash"]) == truncated[: len(truncated) // 2]
    assert generation(db, d2)["finish_reason"] == "length"
    assert generation(db, d3)["raw_hash"] is None
    assert text(db, generation(db, judge4)["raw_hash"]) == "A fine essay.\nI would rate it highly."
    assert "SCORE" in generation(db, judge4)["error"]
    (failed,) = events_of(db, d3, ["attempt.failed"])
    assert failed["http_status"] == 400
    # a failed draft blocks its essay and evaluation with a visible reason
    for draft, state in ((d1, "refused"), (d2, "truncated"), (d3, "provider_error")):
        for child in descendants(db, draft):
            row = generation(db, child)
            assert (row["status"], row["error"]) == ("blocked", f"parent {draft} failed: {state}")
            assert scalar(db, "SELECT blocked_reason FROM tasks WHERE gen_id = ?", [child]) == (
                f"parent {draft} failed: {state}"
            )
    assert all(generation(db, g)["status"] == "done" for g in [d4, *descendants(db, d4)[:1]])
    status = status_json(db)
    assert status["stages"]["draft"]["failed"] == 3
    assert status["stages"]["essay"]["blocked"] == 3
    assert status["stages"]["evaluation"]["blocked"] == 3
    assert status["stages"]["evaluation"]["failed"] == 1
    check_invariants(db)


def test_a_template_error_fails_its_generations_and_the_worker_carries_on(tmp_path):
    templates = {
        **TEMPLATES,
        "draft": [*TEMPLATES["draft"], {"id": "broken", "parser": "identity"}],
    }
    # Planning rejects unknown variable names; this one is only undefined when rendered:
    # every combo has two concepts, not three.
    bodies = {("draft", "broken"): "[gen {{ gen_id }}]\nThird: {{ concepts[2].name }}.\n"}
    with FakeAPI() as api:
        db = cohort(
            tmp_path,
            [model("m1")],
            axes={"draft_template": ["notes", "broken"]},
            templates=templates,
            bodies=bodies,
        )
        done = run(worker_cmd(db, base_url=api.base_url))
    assert_clean_exit(done)
    broken = [
        r[0] for r in query(db, "SELECT gen_id FROM generations WHERE template_id = 'broken'")
    ]
    assert len(broken) == 2
    variables = "combo_id, concepts, gen_id, model_id, replicate, template_id"
    for gen_id in broken:
        row = generation(db, gen_id)
        assert (row["status"], row["state"], row["attempts"]) == ("failed", "template_error", 1)
        assert row["error"] == (
            f"template draft/broken: line 2: list object has no element 2 (variables: {variables})"
        )
        assert row["prompt_hash"] is None
        assert gen_id not in requests_per_gen(api)
    # the worker carried on: everything else completed in the same run
    others = query(
        db,
        "SELECT status, count(*) FROM generations WHERE template_id != 'broken'"
        " AND gen_id NOT IN (SELECT gen_id FROM generations WHERE status = 'blocked')"
        " GROUP BY status",
    )
    assert others == [("done", 6)]
    assert "2 failed" in done.stderr
    check_invariants(db)


def test_retry_failed_then_run_again_completes_them(tmp_path):
    faults: dict[str, list[Any]] = {}
    with FakeAPI(script=script_by_gen(faults)) as api:
        db = cohort(tmp_path, [model("m1")], combos=2)
        d1 = drafts_by_combo(db)["c1"]
        faults[d1] = [Fault("400", message="bad request")]
        run(worker_cmd(db, base_url=api.base_url))
        assert generation(db, d1)["status"] == "failed"
        children = descendants(db, d1)
        assert [generation(db, c)["status"] for c in children] == ["blocked", "blocked"]
        # what cannot be retried: a done generation (one result per id), and a child of a
        # failed one on its own (it would wait forever for its parent)
        d2 = drafts_by_combo(db)["c2"]
        conn = connect(db, create=False)
        try:
            with pytest.raises(PlanError) as error:
                retry(conn, "k", gen_ids=(d2,))
            assert str(error.value) == (
                f'generation "{d2}" is done: a completed generation is never run again'
                " (plan another replicate for a new sample)"
            )
            with pytest.raises(PlanError) as error:
                retry(conn, "k", gen_ids=(children[0],))
            assert str(error.value) == (
                f'generation "{children[0]}" cannot run: its parent "{d1}" is failed;'
                f" retry the parent instead (add --gen {d1}, or use --failed)"
            )
        finally:
            conn.close()
        assert not events_of(db, types=["generations.retried"])

        done = run(daydream_cmd("retry", "k", "--failed", "--db", str(db)))
        assert done.stdout.strip() == "1 generation(s) queued again; run: daydream run k"
        assert generation(db, d1)["status"] == "ready"
        assert [generation(db, c)["status"] for c in children] == ["waiting", "waiting"]
        assert [generation(db, c)["error"] for c in children] == [None, None]

        run(daydream_cmd("run", "k", "--db", str(db), "--base-url", f"vllm={api.base_url}"))
    assert [generation(db, g)["status"] for g in [d1, *children]] == ["done"] * 3
    assert generation(db, d1)["attempts"] == 1  # counted again from zero after the retry
    assert requests_per_gen(api)[d1] == 2
    assert status_json(db)["states"] == {"ok": 6}
    check_invariants(db)


def test_retrying_a_failed_evaluation_whose_essay_is_done_runs_it_again(tmp_path):
    """A retried generation with a parent starts from its parent's status (done: ready),
    not from its own failed one."""
    faults: dict[str, list[Any]] = {}
    with FakeAPI(script=script_by_gen(faults)) as api:
        db = cohort(tmp_path, [model("m1")], combos=1)
        draft = drafts_by_combo(db)["c1"]
        essay, evaluation = descendants(db, draft)
        faults[evaluation] = [Fault("400", message="bad request")]
        run(worker_cmd(db, base_url=api.base_url))
        assert [generation(db, g)["status"] for g in (draft, essay, evaluation)] == [
            "done",
            "done",
            "failed",
        ]
        done = run(daydream_cmd("retry", "k", "--failed", "--db", str(db)))
        assert done.stdout.strip() == "1 generation(s) queued again; run: daydream run k"
        again = generation(db, evaluation)
        assert (again["status"], again["state"], again["error"]) == ("ready", None, None)
        run(worker_cmd(db, base_url=api.base_url))
    assert generation(db, evaluation)["status"] == "done"
    assert requests_per_gen(api)[evaluation] == 2
    check_invariants(db)


def test_cancel_stops_a_running_cohort_and_discards_in_flight_results(tmp_path):
    with FakeAPI(latency_s=1.5) as api:
        db = cohort(tmp_path, [model("m1")], combos=4)
        log = tmp_path / "worker.log"
        proc = start(worker_cmd(db, "--concurrency", "2", base_url=api.base_url), log)
        try:
            wait_for(lambda: api.calls >= 2, what="two calls in flight")
            done = run(daydream_cmd("cancel", "k", "--db", str(db)))
            assert done.stdout.strip() == "12 generation(s) cancelled"
            assert proc.wait(30) == 0
        finally:
            stop([proc])
    output = log.read_text()
    assert "Traceback" not in output
    assert query(db, "SELECT status, state, count(*) FROM generations GROUP BY 1, 2") == [
        ("cancelled", "cancelled", 12)
    ]
    (cancelled,) = events_of(db, types=["cohort.cancelled"])
    assert events_of(db, types=["generation.completed"]) == []
    assert all(e["id"] < cancelled["id"] for e in events_of(db, types=["attempt.started"]))
    assert api.calls == 2  # nothing was claimed after the cancel
    status = status_json(db)
    assert sum(c["cancelled"] for c in status["stages"].values()) == 12
    check_invariants(db)


# -- the lease logic, driven directly with a fixed clock ------------------------------------

def lease(db: Path, gen_id: str) -> tuple:
    return query(
        db,
        "SELECT status, lease_owner, lease_token, lease_expires_at, attempts FROM tasks"
        " WHERE gen_id = ?",
        [gen_id],
    )[0]


def test_claim_heartbeat_record_and_expiry_with_a_fixed_clock(offline_cohort):
    db = offline_cohort()
    drafts = sorted(gen_ids(db, "draft"))
    clock = FixedClock()
    a = WorkerConfig(db_path=db, name="A", lease_s=30)
    b = WorkerConfig(db_path=db, name="B", lease_s=30)
    conn = connect(db, create=False)
    try:
        tasks = claim(conn, a, 10, clock=clock)
        assert sorted(t.gen_id for t in tasks) == drafts  # essays and judgements wait
        started = events_of(db, types=["attempt.started"])
        assert sorted(t.token for t in tasks) == [e["id"] for e in started]
        for task in tasks:
            assert lease(db, task.gen_id) == (
                "running",
                "A",
                task.token,
                isoformat(T0 + timedelta(seconds=30)),
                1,
            )
        assert claim(conn, b, 10, clock=clock) == []  # leased tasks are not claimed twice

        clock.advance(20)
        assert heartbeat(conn, a, tasks, clock=clock) == set()
        assert lease(db, tasks[0].gen_id)[3] == isoformat(T0 + timedelta(seconds=50))

        clock.advance(25)  # t0+45: still within the extended lease
        assert claim(conn, b, 10, clock=clock) == []
        first, second = tasks
        (outcome,) = execute(a, [first], clock)
        assert outcome.ok
        assert record(conn, [outcome], a, clock=clock) == (1, 0)
        assert generation(db, first.gen_id)["status"] == "done"
        assert generation(db, first.gen_id)["finished_at"] == isoformat(clock())

        clock.advance(10)  # t0+55: the second lease (until t0+50) has expired
        reclaimed = claim(conn, b, 10, clock=clock)
        # B reaped A's expired lease and took the task over, plus the essay now ready
        assert sorted(t.gen_id for t in reclaimed) == sorted(
            [second.gen_id, *[c for c in descendants(db, first.gen_id) if c.startswith("e_")]]
        )
        (expired,) = events_of(db, types=["lease.expired"])
        assert (expired["gen_id"], expired["token"], expired["worker"]) == (
            second.gen_id,
            second.token,
            "A",
        )
        retaken = next(t for t in reclaimed if t.gen_id == second.gen_id)
        assert retaken.attempt == 2 and retaken.token > second.token
        assert lease(db, second.gen_id)[:3] == ("running", "B", retaken.token)
    finally:
        conn.close()


def test_a_lease_is_held_through_its_expiry_instant_and_lost_just_after(offline_cohort):
    """A lease that expires at t is still held at t (a claim then reaps nothing and the
    holder's heartbeat and result count) and is reaped by the first claim after t."""
    db = offline_cohort()
    clock = FixedClock()
    a = WorkerConfig(db_path=db, name="A", lease_s=30)
    b = WorkerConfig(db_path=db, name="B", lease_s=30)
    conn = connect(db, create=False)
    try:
        tasks = claim(conn, a, 10, clock=clock)
        clock.advance(30)  # exactly the expiry instant
        assert claim(conn, b, 10, clock=clock) == []
        assert events_of(db, types=["lease.expired"]) == []
        assert heartbeat(conn, a, tasks[:1], clock=clock) == set()  # extended to t0+60
        clock.moment += timedelta(microseconds=1)  # one microsecond past t0+30
        reclaimed = claim(conn, b, 10, clock=clock)
        assert [t.gen_id for t in reclaimed] == [tasks[1].gen_id]
        assert [e["gen_id"] for e in events_of(db, types=["lease.expired"])] == [tasks[1].gen_id]
    finally:
        conn.close()


@contextmanager
def two_workers(tmp_path: Path, combos: int = 3, pool: str = "tiny"):
    """An offline cohort on ``pool``, a fixed clock, and workers A and B with a connection
    each: (db, clock, a, conn_a, b, conn_b)."""
    db = cohort(tmp_path, [offline_model(pool=pool)], combos=combos)
    a = WorkerConfig(db_path=db, name="A")
    b = WorkerConfig(db_path=db, name="B")
    conn_a = connect(db, create=False)
    conn_b = connect(db, create=False)
    try:
        yield db, FixedClock(), a, conn_a, b, conn_b
    finally:
        conn_a.close()
        conn_b.close()


def test_a_pool_limit_holds_across_workers(tmp_path):
    with two_workers(tmp_path) as (db, clock, a, conn_a, b, conn_b):
        assert set_pool_limit(conn_a, "tiny", 1)
        (task,) = claim(conn_a, a, 10, clock=clock)
        assert claim(conn_b, b, 10, clock=clock) == []  # the pool's one slot is taken
        assert record(conn_a, execute(a, [task], clock), a, clock=clock) == (1, 0)
        claimed = claim(conn_b, b, 10, clock=clock)
        # one more draft of the pool, plus the finished draft's essay (pool "copy")
        assert sorted(t.pool for t in claimed) == ["copy", "tiny"]
        assert task.gen_id not in [t.gen_id for t in claimed]


def test_queued_leases_hold_no_slot_until_a_finished_call_hands_its_slot_on(tmp_path):
    def slots() -> dict[str, int]:
        return dict(query(db, "SELECT gen_id, slot FROM tasks WHERE status = 'running'"))

    with two_workers(tmp_path) as (db, clock, a, conn_a, b, conn_b):
        assert set_pool_limit(conn_a, "tiny", 1)
        first, q1, q2 = claim(conn_a, a, 1, clock=clock, queue=2)
        assert [t.slot for t in (first, q1, q2)] == [True, False, False]
        assert slots() == {first.gen_id: 1, q1.gen_id: 0, q2.gen_id: 0}
        status = cohort_status(conn_a, "k")
        drafts = status.stages["draft"]  # calls and queued apart
        assert (drafts["running"], drafts["queued"], drafts["ready"]) == (1, 2, 0)
        assert status.pools == [
            {"pool": "tiny", "limit": 1, "ceiling": 1, "in_flight": 1, "queued": 2}
        ]
        assert "  pool tiny: 1 call(s) in flight of a limit of 1, 2 queued (all cohorts)" in (
            format_status(status).splitlines()
        )
        (started, *queued) = events_of(db, types=["attempt.started"])
        assert [started["queued"], *(e["queued"] for e in queued)] == [False, True, True]
        # B holds no slot of the pool, so it may neither claim nor queue there.
        assert claim(conn_b, b, 10, clock=clock, queue=5) == []

        # A's call ends; q1 starts in its slot. The exchange records the result and moves
        # the slot to q1 in one transaction: the pool stays full for B.
        (outcome,) = execute(a, [first], clock)
        result = exchange(conn_a, a, Exchange(outcomes=[outcome], taken=[q1]), clock=clock)
        assert (result.recorded, result.stale, result.tasks) == (1, 0, [])
        (taken,) = events_of(db, types=["slots.taken"])
        assert taken["leases"] == [[q1.gen_id, q1.token]] and taken["actor"] == "worker:A"
        assert slots() == {q1.gen_id: 1, q2.gen_id: 0}
        assert [t.pool for t in claim(conn_b, b, 10, clock=clock)] == ["copy"]  # first's essay

        # A promotion waits for room: none while q1 holds the slot...
        result = exchange(conn_a, a, Exchange(want=1, promote=[q2]), clock=clock)
        assert result.tasks == [] and not q2.slot
        # ...and q2 gets it once q1's result is recorded.
        (outcome,) = execute(a, [q1], clock)
        result = exchange(conn_a, a, Exchange(outcomes=[outcome], want=1, promote=[q2]), clock=clock)
        assert result.tasks == [q2] and q2.slot
        assert slots()[q2.gen_id] == 1
    assert compare_with_replay(str(db)) == {}  # slot columns included


def test_a_pool_limit_holds_for_real_calls_across_worker_processes(tmp_path):
    """Three workers, each with calls and queued leases, never exceed the pool's limit;
    queued tasks take over the slots of finished calls (slots.taken)."""
    with FakeAPI(latency_s=(0.02, 0.08), seed=7) as api:
        db = cohort(
            tmp_path,
            [model("m1", pool="api")],
            combos=6,
            axes={"draft_replicate": list(range(1, 9))},
        )
        total_calls = scalar(db, "SELECT count(*) FROM generations WHERE mode = 'llm'")
        done = run(
            daydream_cmd(
                "run",
                "k",
                "--db",
                str(db),
                "--workers",
                "3",
                "--concurrency",
                "4",
                "--pool-limit",
                "api=5",
                "--base-url",
                f"vllm={api.base_url}",
            ),
            timeout=120,
        )
        assert "Traceback" not in done.stderr
    assert api.calls == total_calls == 96
    assert api.max_in_flight <= 5
    assert events_of(db, types=["slots.taken"]), "no queued lease ever took a slot"
    assert scalar(db, "SELECT count(*) FROM tasks WHERE status = 'running'") == 0
    counts = check_invariants(db)
    assert counts["done"] == counts["generations"]


def test_a_stale_result_hands_on_no_slot(tmp_path):
    """A's lease expired and B took the task (and the pool's one slot): when A's call ends,
    the queued task A started in its place is refused a slot instead of going over."""
    with two_workers(tmp_path) as (db, clock, a, conn_a, b, conn_b):
        assert set_pool_limit(conn_a, "tiny", 1)
        first, queued = claim(conn_a, a, 1, clock=clock, queue=1)
        clock.advance(a.lease_s / 2)
        assert heartbeat(conn_a, a, [queued], clock=clock) == set()  # only the queued lease
        clock.advance(a.lease_s / 2 + 1)
        (retaken,) = [t for t in claim(conn_b, b, 1, clock=clock) if t.pool == "tiny"]
        assert retaken.gen_id == first.gen_id  # reaped, then claimed by B
        (outcome,) = execute(a, [first], clock)
        result = exchange(conn_a, a, Exchange(outcomes=[outcome], taken=[queued]), clock=clock)
        assert (result.recorded, result.stale) == (0, 1)
        assert result.untaken == {queued.gen_id}
        assert not events_of(db, types=["slots.taken"])
        slots = query(db, "SELECT count(*) FROM tasks WHERE status = 'running' AND slot = 1")
        assert slots == [(1,)]  # B's call only: the limit holds


def test_one_finished_call_hands_on_one_slot_however_many_ask(tmp_path):
    """The pool's room after a recording already counts the slots it freed: one finished
    call lets one queued task take its slot, not two."""
    with two_workers(tmp_path, combos=4) as (db, clock, a, conn_a, b, conn_b):
        assert set_pool_limit(conn_a, "tiny", 2)
        first, _, q1, q2 = claim(conn_a, a, 2, clock=clock, queue=2)
        (outcome,) = execute(a, [first], clock)
        result = exchange(conn_a, a, Exchange(outcomes=[outcome], taken=[q1, q2]), clock=clock)
        assert result.untaken == {q2.gen_id}
        slots = query(db, "SELECT count(*) FROM tasks WHERE status = 'running' AND slot = 1")
        assert slots == [(2,)]


def test_after_a_limit_cut_each_worker_lets_its_share_of_the_excess_go(offline_cohort):
    db = offline_cohort(combos=4, pool="tiny")
    clock = FixedClock()
    a = WorkerConfig(db_path=db, name="A")
    conn = connect(db, create=False)
    try:
        assert set_pool_limit(conn, "tiny", 2)
        first, second, q1 = claim(conn, a, 2, clock=clock, queue=1)
        assert [t.slot for t in (first, second, q1)] == [True, True, False]
        assert set_pool_limit(conn, "tiny", 1)
        # first ends and q1 takes its slot: two slots held against a limit of one.
        (outcome,) = execute(a, [first], clock)
        result = exchange(conn, a, Exchange(outcomes=[outcome], taken=[q1], held={"tiny": 2}), clock=clock)
        assert result.shed == {"tiny": 1}
        # second ends and nobody takes its slot: back at the limit, nothing more to shed.
        (outcome,) = execute(a, [second], clock)
        result = exchange(conn, a, Exchange(outcomes=[outcome], held={"tiny": 1}), clock=clock)
        assert result.shed == {}
    finally:
        conn.close()


def test_a_cut_pool_limit_takes_effect_as_calls_end_even_with_queued_leases(tmp_path):
    with FakeAPI(latency_s=0.15) as api:
        db = cohort(
            tmp_path,
            [model("m1", pool="api")],
            combos=6,
            axes={"draft_replicate": list(range(1, 9))},
        )
        conn = connect(db, create=False)
        set_pool_limit(conn, "api", 4)
        procs = [
            start(
                worker_cmd(db, "--name", f"w{i}", "--concurrency", "4", base_url=api.base_url),
                tmp_path / f"w{i}.log",
            )
            for i in range(2)
        ]
        try:
            wait_for(lambda: api.calls >= 8, what="calls at the first limit")
            set_pool_limit(conn, "api", 1)
            time.sleep(0.6)  # every call started before the cut has ended
            seen = []
            for _ in range(60):
                seen.append(api.in_flight)
                time.sleep(0.01)
            assert max(seen) <= 1, seen
            assert max(seen) == 1  # the work goes on, one call at a time
        finally:
            stop(procs)
            conn.close()


def test_the_queue_of_leases_holds_about_a_quarter_second_of_work(offline_cohort):
    """A worker keeps queued leases to refill its slots between exchanges; how many follows
    the length of its calls (``QUEUE_WAIT_S`` of work for the slots it holds): two per slot
    with calls of 50 ms, one in all with calls of seconds, so that little work waits in
    one worker's queue while another could run it."""
    db = offline_cohort(combos=2)
    worker = Worker(WorkerConfig(db_path=db, name="A", concurrency=32, offline_latency_s=0.3))
    assert worker.queue_size == 8  # a quarter of the concurrency until a call has ended
    asyncio.run(worker.run())
    assert worker.stats.ok == 6  # two drafts, two copied essays, two judgements
    assert worker._call_s is not None and 0.3 <= worker._call_s < 0.6  # copies are not calls

    worker.slots.held = {"api": 32}
    for call_s, depth in [(0.05, 64), (0.1, 64), (0.2, 40), (0.5, 16), (2.0, 4), (20.0, 1)]:
        worker._call_s = call_s
        assert worker.queue_size == depth, call_s
    worker.slots.held, worker._call_s = {"api": 4}, 0.05
    assert worker.queue_size == 8  # two per slot at most
    worker.slots.shed = {"api": 3}  # after a limit cut, only the slots it may keep count
    assert worker.queue_size == 2
    worker.slots.held, worker.slots.shed = {"api": 1, "other": 8}, {"api": 3}  # more to shed than held
    assert worker.queue_size == 16  # one pool's excess does not eat another's slots
    assert Worker(WorkerConfig(db_path=db, queue=3)).queue_size == 3  # set by hand


def test_a_task_whose_template_version_is_gone_fails_as_a_template_error(offline_cohort):
    """A generation pointing at a template version the database no longer has (possible
    only with foreign keys off, e.g. a hand-edited file) fails cleanly, never crashes."""
    db = offline_cohort(combos=1)
    draft = gen_ids(db, "draft")[0]
    raw = sqlite3.connect(db)
    raw.execute("PRAGMA foreign_keys = OFF")
    raw.execute("UPDATE generations SET template_version = 'gone' WHERE gen_id = ?", (draft,))
    raw.commit()
    raw.close()
    config = WorkerConfig(db_path=db, name="A")
    clock = FixedClock()
    conn = connect(db, create=False)
    try:
        (task,) = claim(conn, config, 1, clock=clock)
        assert task.gen_id == draft and task.template["missing"]
        (outcome,) = execute(config, [task], clock)
    finally:
        conn.close()
    (failed,) = outcome.events
    assert (failed.state, failed.retryable) == ("template_error", False)
    assert failed.error == (
        "template draft/notes (version gone) is not in the catalog: import the catalog that"
        " defines it, then retry"
    )


def test_queued_leases_a_worker_cannot_start_after_a_cut_are_given_back(tmp_path):
    """Two workers with 2 slots each; the limit drops from 4 to 1. The first worker to look
    after the cut owes ceil(3 x 2 / 4) = 2 slots, all it has, so its queued leases could only
    wait: they are released for whoever gets the slot. (The other may owe only one slot by
    the time it looks, as the first one's slots are already gone, and keep its queue.)"""
    with FakeAPI(latency_s=0.2) as api:
        db = cohort(
            tmp_path, [model("m1", pool="api")], combos=2, axes={"draft_replicate": [1, 2, 3, 4, 5, 6]}
        )
        conn = connect(db, create=False)
        set_pool_limit(conn, "api", 4)
        procs = [
            start(
                worker_cmd(db, "--name", name, "--concurrency", "2", base_url=api.base_url),
                tmp_path / f"{name}.log",
            )
            for name in ("A", "B")
        ]

        def both_hold_two_slots() -> bool:
            held = dict(
                query(
                    db,
                    "SELECT lease_owner, count(*) FROM generations WHERE status = 'running'"
                    " AND slot = 1 AND pool = 'api' GROUP BY lease_owner",
                )
            )
            return held == {"A": 2, "B": 2}

        try:
            wait_for(both_hold_two_slots, what="two slots held by each worker")
            set_pool_limit(conn, "api", 1)
            assert [proc.wait(60) for proc in procs] == [0, 0]
        finally:
            stop(procs)
            conn.close()
    released = [
        e for e in events_of(db, types=["lease.released"]) if e["reason"].startswith("no pool slot")
    ]
    assert released, "no worker gave back the queued leases it could no longer start"
    assert {e["actor"] for e in released} <= {"worker:A", "worker:B"}
    assert api.max_in_flight <= 4
    counts = check_invariants(db)
    assert counts["done"] == counts["generations"]


def _throttled_at_t0(tmp_path: Path) -> tuple[Any, ...]:
    """A one-draft cohort whose draft was claimed at T0 and answered 429 with Retry-After
    30 (not recorded yet): (db, open connection, config, clock, task, outcome, api)."""
    with FakeAPI(script=[Fault("429", retry_after="30")]) as api:
        db = cohort(tmp_path, [model("m1")], combos=1)
        clock = FixedClock()
        config = WorkerConfig(db_path=db, name="A", base_urls={"vllm": api.base_url})
        conn = connect(db, create=False)
        (task,) = claim(conn, config, 10, clock=clock)
        (outcome,) = execute(config, [task], clock)
    assert outcome.throttled
    return db, conn, config, clock, task, outcome, api


def test_a_throttled_task_is_not_claimed_before_its_retry_time(tmp_path):
    db, conn, config, clock, task, outcome, api = _throttled_at_t0(tmp_path)
    try:
        assert record(conn, [outcome], config, clock=clock) == (1, 0)
        (throttled,) = events_of(db, types=["attempt.throttled"])
        retry_at = at(throttled["retry_at"])
        assert T0 + timedelta(seconds=30) <= retry_at <= T0 + timedelta(seconds=30.25)
        clock.advance(29)
        assert claim(conn, config, 10, clock=clock) == []
        clock.moment = retry_at
        (again,) = claim(conn, config, 10, clock=clock)
        assert (again.gen_id, again.attempt, again.throttles) == (task.gen_id, 2, 1)
    finally:
        conn.close()
    assert api.calls == 1


@pytest.mark.parametrize("recorded_after_s", [0.5, 40])
def test_a_retry_after_counts_from_the_reply_not_from_the_record(tmp_path, recorded_after_s):
    """Results are recorded in batches, or wait in memory while a write fails: the wait a
    429 asked for starts when its reply came. A record later than that wait's end makes the
    task ready at the record (an event never says "ready before I was written")."""
    db, conn, config, clock, _, outcome, _ = _throttled_at_t0(tmp_path)
    try:
        clock.advance(recorded_after_s)
        assert record(conn, [outcome], config, clock=clock) == (1, 0)
    finally:
        conn.close()
    (throttled,) = events_of(db, types=["attempt.throttled"])
    retry_at, recorded_at = at(throttled["retry_at"]), at(throttled["recorded_at"])
    assert recorded_at == T0 + timedelta(seconds=recorded_after_s)
    if recorded_after_s < 30:
        assert T0 + timedelta(seconds=30) <= retry_at <= T0 + timedelta(seconds=30.25)
    else:
        assert retry_at == recorded_at


def test_pool_limits_adapt_to_rate_limiting_and_each_change_is_an_event(offline_cohort):
    from daydream.queue.pools import adapt_pools

    db = offline_cohort()
    conn = connect(db, create=False)
    set_pool_limit(conn, "p", 10)
    clock, signals = FixedClock(), {}

    def changes() -> list[tuple]:
        return query(
            db,
            "SELECT json_extract(data, '$.limit'), json_extract(data, '$.reason') FROM events"
            " WHERE type = 'pool.limit_changed' AND subject = 'pool:p' ORDER BY id",
        )[1:]

    def feed(pattern: str) -> None:
        with transaction(conn):
            adapt_pools(conn, fake_outcomes("p", pattern), "test", clock, signals)

    # A steady 20% of 429s (not growing with concurrency) leaves the limit alone...
    feed("....4" * 8)
    assert changes() == []
    # ...most calls rejected is a pool over its provider's limit: cut by a quarter, once.
    feed("4444444444")  # the window (the last 2 x limit = 20 calls) is now 12 429s in 20
    assert changes() == [(7, "cut: rate limited (429 on 60% of recent calls)")]
    feed("44444444444444444444")
    assert len(changes()) == 1  # within the one-second cooldown
    clock.advance(2)
    feed("4" * 20)
    assert changes()[-1] == (5, "cut: rate limited (429 on 100% of recent calls)")
    # Successes grow it back by one per `limit` calls without a 429, up to the ceiling.
    clock.advance(2)
    feed("." * 20)
    assert changes()[-1] == (6, "grow: 5 calls without 429")
    for _ in range(10):
        feed("." * 10)
    assert query(db, 'SELECT "limit", ceiling FROM pools WHERE pool = ?', ["p"]) == [(10, 10)]
    conn.close()


# -- leases under a sleeping machine, a cancel, failing writes (found by review) -----------


class _SteppedClock:
    """The wall clock, plus an offset a test moves forward (a suspended machine waking)."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(timezone.utc) + self.offset


def _watch_calls(monkeypatch, delays: dict[str, float]) -> dict[str, Any]:
    """Count the calls in flight (all, and per generation); a call of a generation in
    ``delays`` takes that much longer."""
    seen: dict[str, Any] = {"now": 0, "max": 0, "per_gen": {}, "max_per_gen": 0}
    run = Executor.run

    async def watched(self, task):
        seen["now"] += 1
        seen["max"] = max(seen["max"], seen["now"])
        per_gen = seen["per_gen"]
        per_gen[task.gen_id] = per_gen.get(task.gen_id, 0) + 1
        seen["max_per_gen"] = max(seen["max_per_gen"], per_gen[task.gen_id])
        try:
            await asyncio.sleep(delays.get(task.gen_id, 0.0))
            return await run(self, task)
        finally:
            seen["now"] -= 1
            per_gen[task.gen_id] -= 1

    monkeypatch.setattr(Executor, "run", watched)
    return seen


def _fail_writes(monkeypatch, times: int) -> None:
    """The next ``times`` recording transactions fail before they commit (an I/O error)."""
    import daydream.queue.leases as leases_module

    left = [times]

    def fail_point(name: str) -> None:
        if name == "before_commit" and left[0]:
            left[0] -= 1
            raise sqlite3.OperationalError("disk I/O error (injected)")

    monkeypatch.setattr(leases_module, "fail_point", fail_point)


def test_a_worker_whose_leases_expired_under_it_never_runs_a_task_twice_at_once(
    offline_cohort, monkeypatch
):
    """The clock jumps past the lease while calls run (a machine waking from sleep): the
    next claim reaps the worker's own leases and may take the same tasks again. The old
    calls stop; the worker never exceeds its concurrency nor calls a task twice at once,
    and its bookkeeping ends balanced."""
    db = offline_cohort(combos=4, pool="tiny")
    drafts = gen_ids(db, "draft")
    seen = _watch_calls(monkeypatch, {g: 0.6 for g in drafts[1::2]})
    clock = _SteppedClock()
    config = WorkerConfig(
        db_path=db, name="A", concurrency=2, queue=0, lease_s=30, offline_latency_s=0.1
    )
    worker = Worker(config, clock=clock)

    async def main() -> None:
        async def wake_up() -> None:
            await asyncio.sleep(0.2)  # two drafts in flight
            clock.offset += timedelta(seconds=60)

        await asyncio.gather(worker.run(), wake_up())

    asyncio.run(main())
    assert events_of(db, types=["lease.expired"]), "the clock step expired no lease"
    assert seen["max"] <= 2 and seen["max_per_gen"] == 1, seen
    assert all(n == 0 for n in worker.slots.running.values()), worker.slots.running
    assert all(n == 0 for n in worker.slots.held.values()), worker.slots.held
    assert scalar(db, "SELECT count(*) FROM generations WHERE status != 'done'") == 0


def test_calls_of_a_cancelled_cohort_stop_soon_so_the_pool_limit_holds(
    tmp_path, offline_cohort, monkeypatch
):
    """A cancel frees the slots of the cohort's calls in flight at once; the worker running
    them finds out within ``CALLS_CHECK_S`` and stops them, so another worker taking the
    freed slots does not put the pool over its limit."""
    from daydream.queue.cohorts import cancel

    db = offline_cohort(combos=4, pool="p")
    other = {
        "combo_id": combo_ids(4),
        "draft_template": ["notes"],
        "draft_llm": ["m1"],
        "draft_replicate": [2],
        "essay_template": ["copy"],
        "evaluation_template": ["judge"],
        "evaluation_llm": ["m1"],
    }
    plan(db, tmp_path / "catalog", write_spec(tmp_path / "other.yaml", other), cohort="k2")
    conn = connect(db, create=False)
    set_pool_limit(conn, "p", 2)
    seen = _watch_calls(monkeypatch, dict.fromkeys(gen_ids(db, "draft"), 3.0))
    worker = Worker(
        WorkerConfig(db_path=db, name="A", cohort="k", concurrency=2, queue=0, grace_s=0.1)
    )
    report: dict[str, int] = {}

    async def main() -> None:
        async def cancel_then_claim() -> None:
            await asyncio.sleep(0.5)
            assert seen["now"] == 2
            cancel(conn, "k")
            await asyncio.sleep(2 * CALLS_CHECK_S)
            b = WorkerConfig(db_path=db, name="B", cohort="k2")
            taken = claim(conn, b, 10, clock=utcnow)
            report["A"], report["B"] = seen["now"], sum(task.slot for task in taken)
            worker.request_stop()
            worker.request_stop()

        await asyncio.gather(worker.run(), cancel_then_claim())

    try:
        asyncio.run(main())
    finally:
        conn.close()
    assert report == {"A": 0, "B": 2}


def test_results_waiting_for_a_failing_write_keep_their_leases(offline_cohort, monkeypatch):
    """Writes of results fail for longer than a lease (heartbeats still go through): a
    result kept in memory is heartbeated like a call in flight, so no other worker takes
    its task over and the model is not called again."""
    db = offline_cohort(combos=4, pool="tiny")
    quick, slow = gen_ids(db, "draft")[:2]
    _watch_calls(monkeypatch, {slow: 30.0})
    _fail_writes(monkeypatch, 8)  # backs off 0.5 s each time (a quarter of the lease): 4 s
    config = WorkerConfig(
        db_path=db, name="A", concurrency=2, queue=0, lease_s=2.0, grace_s=0.2,
        offline_latency_s=0.05,
    )
    worker = Worker(config)

    async def main() -> None:
        async def another_worker() -> None:
            await asyncio.sleep(3.0)  # the first lease ran out at 2 s unless heartbeated
            conn = connect(db, create=False)
            try:
                claim(conn, WorkerConfig(db_path=db, name="B", lease_s=2.0), 1, clock=utcnow)
            finally:
                conn.close()
            await asyncio.sleep(2.0)
            worker.request_stop()
            worker.request_stop()

        await asyncio.gather(worker.run(), another_worker())

    asyncio.run(main())
    expired = {e["gen_id"] for e in events_of(db, types=["lease.expired"])}
    assert not expired & {quick, slow}, expired
    assert scalar(db, "SELECT status FROM generations WHERE gen_id = ?", [quick]) == "done"


def test_a_rolled_back_write_does_not_count_its_429s_twice(offline_cohort, monkeypatch):
    """The rate-limit window moves only with a committed write: four 429s written after two
    failed tries count four times, not twelve, and cut nothing (the window holds 10)."""
    from daydream import events as ev
    from daydream.queue.tasks import Outcome

    db = offline_cohort(combos=6, pool="p")
    config, clock = WorkerConfig(db_path=db, name="A"), FixedClock()
    conn = connect(db, create=False)
    set_pool_limit(conn, "p", 5)
    tasks = claim(conn, config, 4, clock=clock)
    retry_at = "2031-01-01T12:00:01.000000Z"
    outcomes = [
        Outcome(
            task,
            [ev.AttemptThrottled(gen_id=task.gen_id, token=task.token, error="429", retry_at=retry_at)],
            ok=False,
            throttled=True,
            retry_delay=1.0,
        )
        for task in tasks
    ]
    _fail_writes(monkeypatch, 2)
    signals: dict[str, Any] = {}
    try:
        for _ in range(2):
            with pytest.raises(sqlite3.OperationalError):
                exchange(conn, config, Exchange(outcomes=outcomes), clock=clock, signals=signals)
        assert exchange(conn, config, Exchange(outcomes=outcomes), clock=clock, signals=signals).recorded == 4
    finally:
        conn.close()
    assert list(signals["p"].window) == [True] * 4
    assert not events_of(db, types=["pool.limit_changed"])[1:], "a limit was cut"


def test_a_worker_of_one_pool_exits_when_its_pool_has_nothing_left(offline_cohort):
    db = offline_cohort(combos=2, pool="p")
    worker = Worker(WorkerConfig(db_path=db, name="A", pools=("other",)))

    async def main() -> WorkerStats:
        return await asyncio.wait_for(worker.run(), 10.0)

    assert asyncio.run(main()).claimed == 0
    assert scalar(db, "SELECT count(*) FROM generations WHERE status = 'ready'") > 0


def test_a_provider_that_cannot_be_set_up_fails_its_task_as_a_provider_error(
    tmp_path, monkeypatch
):
    """`daydream run` and `daydream worker` check providers before starting; a task that
    still meets one (a --forever worker, a key unset since) fails with the message."""
    monkeypatch.delenv("OPENROUTER_API_KEY", raising=False)
    db = cohort(tmp_path, [{"id": "m1", "provider": "openrouter", "model": "x/y"}], combos=1)
    config, clock = WorkerConfig(db_path=db, name="A"), FixedClock()
    conn = connect(db, create=False)
    try:
        (outcome,) = execute(config, claim(conn, config, 1, clock=clock), clock)
    finally:
        conn.close()
    (failed,) = [e for e in outcome.events if e.type == "attempt.failed"]
    assert (failed.state, failed.final, failed.retryable) == ("provider_error", True, False)
    assert failed.error == (
        "provider openrouter: OPENROUTER_API_KEY is not set (export it or put it in .env)"
    )


def test_a_task_claimed_again_just_after_its_old_call_ended_leaves_the_counts_balanced(
    offline_cohort,
):
    """The old lease's call has ended but its completion callback has not run yet when
    the task is claimed again: the call count must not keep the old call forever."""
    from dataclasses import replace

    db = offline_cohort(combos=1)
    config = WorkerConfig(db_path=db, name="A", concurrency=2, queue=0)
    conn = connect(db, create=False)
    try:
        task = claim(conn, config, 1, clock=FixedClock())[0]
    finally:
        conn.close()
    worker = Worker(config)

    async def main() -> None:
        worker._executor = Executor(config)
        worker._start(task)
        old = worker._inflight[task.gen_id][1]
        old.remove_done_callback(worker._finished)  # run it by hand, late
        await old
        again = replace(task, token=task.token + 1)
        worker._reclaimed(again)
        worker._start(again)
        worker._finished(old)
        await worker._inflight[again.gen_id][1]
        await asyncio.sleep(0)  # the new call's callback
        await worker._executor.aclose()

    asyncio.run(main())
    assert worker._inflight == {}
    assert worker.slots.running == {task.pool: 0}
    assert [o.task.token for o in worker._done] == [task.token, task.token + 1]


@pytest.mark.parametrize("safe_path", ["", "1"])
def test_launched_processes_import_what_the_parent_imported(tmp_path, safe_path):
    """``launch.python_command`` drops only the working directory that ``python -c`` adds
    (none under PYTHONSAFEPATH: then every entry stays), and the child's daydream is the
    parent's."""
    import daydream
    from daydream.launch import python_command

    modules = tmp_path / "modules"
    modules.mkdir()
    (modules / "launchprobe.py").write_text(
        "import json, sys\n"
        "def main():\n"
        "    import daydream\n"
        "    print(json.dumps({'daydream': daydream.__file__, 'argv': sys.argv[1:]}))\n"
    )
    elsewhere = tmp_path / "cwd"
    (elsewhere / "daydream").mkdir(parents=True)
    (elsewhere / "daydream" / "__init__.py").write_text("raise ImportError('not this one')\n")
    environ = {**os.environ, "PYTHONPATH": str(modules), "PYTHONSAFEPATH": safe_path}
    done = subprocess.run(
        python_command("launchprobe", "a", "b"),
        capture_output=True, text=True, cwd=elsewhere, env=environ, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    child = json.loads(done.stdout)
    assert child["argv"] == ["a", "b"]
    assert Path(child["daydream"]).samefile(daydream.__file__)


def test_a_second_stop_ends_a_long_write_backoff(offline_cohort, monkeypatch):
    """While writes fail the worker waits between tries (up to 30 s); Ctrl-C twice means
    stop now, so the worker returns at once, its results unwritten (their leases expire)."""
    import daydream.queue.leases as leases_module

    db = offline_cohort(combos=2)
    worker = Worker(WorkerConfig(db_path=db, name="A", concurrency=2, queue=0, grace_s=60))

    def fail_point(name: str) -> None:
        if name == "before_commit":
            worker._write_failures = max(worker._write_failures, 5)  # the wait is 16 s
            raise sqlite3.OperationalError("disk I/O error (injected)")

    monkeypatch.setattr(leases_module, "fail_point", fail_point)
    took: dict[str, float] = {}

    async def main() -> None:
        async def stop_twice() -> None:
            await asyncio.sleep(1.0)
            took["asked"] = time.monotonic()
            worker.request_stop()
            await asyncio.sleep(0.2)
            worker.request_stop()

        await asyncio.gather(worker.run(), stop_twice())
        took["done"] = time.monotonic()

    asyncio.run(main())
    assert took["done"] - took["asked"] < 8.0  # not the 16 s wait, nor the 60 s grace
    assert scalar(db, "SELECT count(*) FROM generations WHERE status = 'done'") == 0


def test_a_stop_request_ends_an_idle_workers_wait_at_once(offline_cohort, monkeypatch):
    """A worker with nothing to claim while work is pending (another worker holds it)
    sleeps between looks at the queue; a stop request (what ``daydream run`` sends its idle
    workers once nothing is left) ends the sleep at once, however long it was to be."""
    import daydream.worker.loop as worker_module

    db = offline_cohort(combos=1)
    conn = connect(db, create=False)
    try:  # another worker holds the drafts; everything after them waits for them
        assert claim(conn, WorkerConfig(db_path=db, name="other"), 100)
    finally:
        conn.close()
    monkeypatch.setattr(worker_module, "IDLE_FIRST_S", 3600.0)
    worker = Worker(WorkerConfig(db_path=db, name="A", concurrency=2))

    async def go() -> WorkerStats:
        job = asyncio.ensure_future(worker.run())
        await asyncio.sleep(0.5)
        assert not job.done(), "the worker should be idle, waiting for the other's work"
        worker.request_stop()
        return await asyncio.wait_for(job, 10)

    stats = asyncio.run(go())
    assert stats.claimed == 0


def test_the_runner_stops_its_idle_workers_only_once_nothing_is_left(offline_cohort):
    """When a worker of ``daydream run`` exits having found nothing to run, the runner asks
    the others to stop (they would only poll to find the same) if the cohort has nothing
    left at all; while anything is pending they go on."""
    import signal

    from daydream.runner.run import _stop_idle
    from daydream.worker.process import run_worker

    class Handle:  # the runner's view of a worker process: poll() and send_signal()
        def __init__(self, code: int | None) -> None:
            self.code, self.signals = code, []

        def poll(self) -> int | None:
            return self.code

        def send_signal(self, signum: int) -> None:
            self.signals.append(signum)

    db = offline_cohort(combos=1)
    running, exited = Handle(None), Handle(0)
    conn = connect(db, create=False)
    try:
        assert _stop_idle(conn, "k", {1: running, 2: exited}) is False
        assert running.signals == []
        run_worker(WorkerConfig(db_path=db, name="A", concurrency=4))
        assert _stop_idle(conn, "k", {1: running, 2: exited}) is True
    finally:
        conn.close()
    assert running.signals == [signal.SIGTERM] and exited.signals == []


def test_run_once_is_one_step_a_test_can_drive_with_a_fixed_clock(offline_cohort):
    """``Worker.run_once`` records what ended and claims what fits in one transaction,
    then waits briefly for calls to end: stepped by hand with a fixed clock, a worker
    finishes a cohort, every event stamped with the test's time, and the steps tell when
    there is nothing left (no call in flight, nothing claimed)."""
    db = offline_cohort(combos=2)
    clock = FixedClock()
    config = WorkerConfig(db_path=db, name="stepper", concurrency=4, queue=0)
    steps: list[bool] = []

    async def drive() -> None:
        async with Worker(config, clock=clock) as worker:
            for _ in range(200):
                busy = await worker.run_once()
                steps.append(busy)
                if not busy:
                    break

    asyncio.run(drive())
    total = scalar(db, "SELECT count(*) FROM generations")
    assert scalar(db, "SELECT count(*) FROM generations WHERE status = 'done'") == total
    assert steps[-1] is False and all(steps[:-1]), steps
    stamps = query(db, "SELECT DISTINCT recorded_at FROM events WHERE actor = 'worker:stepper'")
    assert stamps == [(isoformat(clock()),)]
    check_invariants(db, drained=True, now=clock())


def test_no_worker_waits_for_work_under_an_ancestor_that_will_never_complete(offline_cohort):
    """Waiting generations whose parent or grandparent failed can never run: ``has_pending``
    does not count them, even where their own rows were left waiting (so a worker whose
    children were not blocked, by a bug or a hand edit, exits instead of polling forever)."""
    from daydream.queue.tasks import has_pending
    from tests.scenario import fail_generations

    db = offline_cohort(combos=1)
    conn = connect(db, create=False)
    try:
        assert has_pending(conn, None)
        (draft,) = gen_ids(db, "draft")
        fail_generations(conn, [draft])
        raw = sqlite3.connect(db)
        raw.execute("UPDATE generations SET status = 'waiting' WHERE status = 'blocked'")
        raw.commit()
        raw.close()
        assert scalar(db, "SELECT count(*) FROM generations WHERE status = 'waiting'") > 1
        assert not has_pending(conn, None)
    finally:
        conn.close()
