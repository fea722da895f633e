"""Runs that survive real model servers: outages wait instead of failing, errors no retry
can fix stop their pool at once, and a run ends with its failures grouped and an exit code
that says how it went.

Every test runs real ``daydream run`` processes (forked worker processes) against
``FakeAPI``, a real HTTP server on 127.0.0.1 that can be stopped and started again on the
same port, as a model server killed and restarted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from daydream.queue.cohorts import Status
from daydream.results.text import format_progress
from daydream.runner.run import RunSummary
from daydream.vocabulary import EXIT_CODES, STATUSES
from tests.fakeapi import FakeAPI, Fault
from tests.invariants import check_invariants
from tests.scenario import (
    cohort,
    daydream_cmd,
    events_of,
    model,
    offline_model,
    query,
    run,
    scalar,
    script_by_gen,
    start,
    stop,
    wait_for,
    worker_cmd,
)

WRITE = {"essay_template": ["write"], "essay_llm": ["m1"]}  # essays are model calls too


def run_cmd(db: Path, *args: str, base_url: str | None = None) -> list[str]:
    cmd = daydream_cmd("run", "k", "--db", str(db), *args)
    return cmd + (["--base-url", f"vllm={base_url}"] if base_url else [])


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("Error:")]


def statuses(db: Path) -> dict[str, int]:
    return dict(query(db, "SELECT status, count(*) FROM generations GROUP BY 1"))


def counted_attempts(db: Path) -> set[int]:
    """Attempts each model call spent (attempts less throttles, releases and deferrals)."""
    rows = query(
        db,
        "SELECT attempts - throttles - releases - deferrals FROM generations WHERE mode = 'llm'",
    )
    return {row[0] for row in rows}


def test_a_server_killed_and_restarted_mid_run_three_times_ends_with_everything_done(tmp_path):
    """The calls in flight when the server dies, and those claimed while it is down, wait
    for it (``attempt.deferred``: no attempt spent); workers probe it and resume when it
    answers. The run ends with every generation done, none failed, exit 0."""
    with FakeAPI(latency_s=0.15) as api:
        endpoint = api.base_url
        db = cohort(tmp_path, [model("m1")], combos=10, axes=WRITE)
        runner = start(
            run_cmd(db, "--concurrency", "2", "--max-attempts", "2", base_url=api.base_url),
            tmp_path / "run.log",
        )
        try:
            for outage in range(1, 4):
                calls = api.calls
                wait_for(lambda c=calls: api.calls >= c + 3, timeout=60, what="calls")
                api.stop()
                wait_for(
                    lambda n=outage: len(events_of(db, types=["endpoint.down"])) >= n,
                    timeout=60,
                    what=f"outage {outage} to be seen",
                )
                api.start()
                wait_for(
                    lambda n=outage: len(events_of(db, types=["endpoint.recovered"])) >= n,
                    timeout=60,
                    what=f"the end of outage {outage} to be seen",
                )
            assert runner.wait(120) == 0, (tmp_path / "run.log").read_text()
        finally:
            stop([runner])
    log = (tmp_path / "run.log").read_text()
    assert "Traceback" not in log and "Error:" not in log
    assert statuses(db) == {"done": 30}
    deferred = events_of(db, types=["attempt.deferred"])
    assert deferred and {e["reason"] for e in deferred} == {"endpoint_down"}
    assert counted_attempts(db) == {1}  # waiting for the server spent no attempt
    down = events_of(db, types=["endpoint.down"])
    assert [e["endpoint"] for e in down] == [endpoint] * 3
    assert [e["by"] for e in events_of(db, types=["endpoint.recovered"])] == ["probe"] * 3
    check_invariants(db)


def test_an_endpoint_down_past_the_outage_limit_stops_the_run_with_its_work_pending(tmp_path):
    with FakeAPI(latency_s=0.1) as api:
        endpoint = api.base_url
        db = cohort(tmp_path, [model("m1")], combos=6)
        runner = start(
            run_cmd(db, "--outage-limit", "1", "--concurrency", "1", base_url=api.base_url),
            tmp_path / "run.log",
        )
        try:
            wait_for(lambda: api.calls >= 2, timeout=60, what="calls")
            api.stop()
            code = runner.wait(120)
        finally:
            stop([runner])
        pending = scalar(db, "SELECT count(*) FROM generations WHERE status IN ('ready', 'waiting')")
        check_invariants(db, drained=True, pending=True)
        api.start()  # the next run's preflight reaches it: marked up, no probe needed first
        again = run(run_cmd(db, base_url=api.base_url), check=False)
    assert again.returncode == 0, again.stderr
    assert [e["by"] for e in events_of(db, types=["endpoint.recovered"])] == ["preflight"]
    assert statuses(db) == {"done": 18}
    log = (tmp_path / "run.log").read_text()
    assert code == 5, log
    errors = error_lines(log)
    assert len(errors) == 1, log
    assert pending > 0
    assert errors[0].startswith(f"Error: stopped: endpoint {endpoint} has been down for ")
    assert errors[0].endswith(
        f"; {pending} generation(s) are still pending, none failed: start the server, then run"
        " the same command again"
    )
    assert counted_attempts(db) == {1}  # the outage spent no attempt


def test_a_rejected_key_stops_its_pool_at_once_and_other_pools_go_on(tmp_path):
    """A 401 is not retried on every generation: the pool stops for every worker at the
    first one, in one line naming provider, model and fix; nothing fails; the offline
    pool's work finishes. Once the key is right, running again resumes the pool."""
    rejected = {"on": True}

    def script(index: int, body: Any) -> Any:
        return Fault("401", message="invalid api key") if rejected["on"] else None

    with FakeAPI(script=script) as api:
        db = cohort(
            tmp_path,
            [model("m1"), offline_model("m2")],
            combos=6,
            axes={"draft_llm": ["m1", "m2"], "evaluation_llm": ["m2"]},
        )
        done = run(run_cmd(db, "--concurrency", "2", base_url=api.base_url), check=False)
        assert done.returncode == 4, done.stderr
        pending = scalar(
            db, "SELECT count(*) FROM generations WHERE status IN ('ready', 'waiting')"
        )
        assert error_lines(done.stderr) == [
            "Error: pool vllm stopped: provider vllm, model m1: HTTP 401: invalid api key; fix:"
            " check the API key in $VLLM_API_KEY for provider vllm (or the server's --api-key);"
            f" {pending} generation(s) are still pending, none failed by it: run the same"
            " command again once fixed"
        ]
        assert pending == 18  # m1's 6 drafts, their essays and evaluations
        assert api.calls <= 4  # at most the calls in flight when it stopped: 2 workers x 2
        assert "failed" not in statuses(db)
        done_by_m2 = "SELECT count(*) FROM generations WHERE status = 'done' AND (model_id = 'm2'"
        assert scalar(db, done_by_m2 + " OR parent_gen_id IN (SELECT gen_id FROM generations"
                      " WHERE model_id = 'm2' AND stage = 'draft'))") == 18
        (stopped,) = events_of(db, types=["pool.stopped"])
        assert (stopped["pool"], stopped["model_id"], stopped["http_status"]) == ("vllm", "m1", 401)
        status = run(daydream_cmd("status", "k", "--db", str(db))).stdout
        assert "  pool vllm stopped: provider vllm, model m1: HTTP 401: invalid api key" in status
        # A worker started on its own resumes the pool, meets the 401 and stops it again.
        alone = run(worker_cmd(db, base_url=api.base_url), check=False)
        assert alone.returncode == 4, alone.stderr
        assert error_lines(alone.stderr) == [error_lines(done.stderr)[0].rsplit("; ", 1)[0]]

        rejected["on"] = False  # the key is fixed
        again = run(run_cmd(db, base_url=api.base_url), check=False)
    assert again.returncode == 0, again.stderr
    resumed = events_of(db, types=["pool.resumed"])
    assert [(e["pool"], e["actor"].split(":")[0]) for e in resumed] == [
        ("vllm", "worker"),
        ("vllm", "cli"),
    ]
    assert statuses(db) == {"done": 36}
    check_invariants(db)


def test_a_request_refused_three_times_in_a_row_stops_the_pool(tmp_path):
    """A 400 fails its generation (the request is wrong); three in a row, with no answer
    between them, mean the catalog makes every call wrong: the pool stops."""
    too_long = Fault("400", message="max_tokens 400 exceeds the context length of 256")
    with FakeAPI(script=lambda index, body: too_long) as api:
        db = cohort(tmp_path, [model("m1")], combos=8)
        done = run(
            run_cmd(db, "--workers", "1", "--concurrency", "1", base_url=api.base_url),
            check=False,
        )
    assert done.returncode == 4, done.stderr
    assert api.calls == 3
    assert scalar(db, "SELECT count(*) FROM generations WHERE status = 'failed'") == 2
    (line,) = error_lines(done.stderr)
    assert line.startswith(
        "Error: pool vllm stopped: provider vllm, model m1: HTTP 400: max_tokens 400 exceeds"
        " the context length of 256; fix: the server refused every call of model m1: check"
        " its and its templates' settings in the catalog"
    )


def test_exit_codes_tell_infrastructure_failures_from_model_output_and_list_the_reasons(
    tmp_path,
):
    """Replies no parser accepts are results (exit 0, listed); a call that never answers
    is an infrastructure failure (exit 3). Both end with the failures grouped and where to
    see them in browse, as does ``daydream status``."""
    faults: dict[str, list[Any]] = {}
    with FakeAPI(script=script_by_gen(faults)) as api:
        db = cohort(tmp_path / "a", [model("m1")], combos=3)
        for gen_id, in query(db, "SELECT gen_id FROM generations WHERE stage = 'evaluation'"):
            faults[gen_id] = [Fault("ok", content="A fine essay.\nNo score here.")]
        results = run(run_cmd(db, base_url=api.base_url), check=False)
        db_b = cohort(tmp_path / "b", [model("m1")], combos=3)
        first = scalar(db_b, "SELECT gen_id FROM generations WHERE stage = 'draft' LIMIT 1")
        faults[first] = ["500"]
        broken = run(run_cmd(db_b, "--max-attempts", "1", base_url=api.base_url), check=False)
    assert results.returncode == 0, results.stderr
    assert error_lines(results.stderr) == []
    example = scalar(db, "SELECT min(gen_id) FROM generations WHERE state = 'parse_failed'")
    assert "failures (count, status/state, an example, the reason):" in results.stdout
    assert f"       3 failed/parse_failed e.g. {example}: " in results.stdout
    assert (
        f"  all of them in `daydream browse --db {db}`: /run/failure_reasons?cohort_id=k"
        " (grouped), /run/failures?cohort_id=k (each, with its raw reply)"
    ) in results.stdout

    assert broken.returncode == 3, broken.stderr
    assert error_lines(broken.stderr) == [
        "Error: 1 generation(s) ended with an infrastructure failure (see the failures above);"
        " fix the cause, then: daydream retry COHORT --failed"
    ]
    assert (
        f"       1 failed/provider_error e.g. {first}: provider vllm, model m1: HTTP 500:"
        " fakeapi: scripted 500 (gave up after 1 attempt(s))"
    ) in broken.stdout
    assert "       2 blocked/blocked e.g. " in broken.stdout
    status = run(daydream_cmd("status", "k", "--db", str(db_b))).stdout
    assert f"1 failed/provider_error e.g. {first}" in status


def test_replicas_share_the_calls_and_survive_one_going_down(tmp_path):
    """A model with two base URLs (replicas, from the catalog): calls spread over both;
    when one dies, its calls wait and go to the other; every generation ends done, each
    call's endpoint recorded, and the ids are those of one endpoint."""
    with FakeAPI(latency_s=0.1) as one, FakeAPI(latency_s=0.1) as two:
        replicas = [one.base_url, two.base_url]
        db = cohort(tmp_path, [model("m1", base_url=replicas)], combos=10, axes=WRITE)
        alone = cohort(tmp_path / "alone", [model("m1")], combos=10, axes=WRITE)
        runner = start(run_cmd(db, "--concurrency", "3"), tmp_path / "run.log")
        try:
            both = "SELECT count(DISTINCT endpoint) FROM calls WHERE ok = 1"
            wait_for(lambda: scalar(db, both) == 2, timeout=60, what="both to answer")
            two.stop()
            assert runner.wait(120) == 0, (tmp_path / "run.log").read_text()
        finally:
            stop([runner])
        served = (one.calls, two.calls)
    assert statuses(db) == {"done": 30}
    assert counted_attempts(db) == {1}
    answered = dict(query(db, "SELECT endpoint, count(*) FROM calls WHERE ok = 1 GROUP BY 1"))
    assert set(answered) == set(replicas) and sum(answered.values()) == 30
    assert answered[replicas[0]] == served[0] and answered[replicas[1]] < served[1] + 1
    assert [e["endpoint"] for e in events_of(db, types=["endpoint.down"])] == [replicas[1]]
    ids = "SELECT gen_id FROM generations ORDER BY gen_id"
    assert query(db, ids) == query(alone, ids)  # which replica answered changes no id
    check_invariants(db)


def test_the_progress_line_shows_an_endpoint_down_and_a_stopped_pool():
    status = Status(
        "k",
        stages={"draft": {**dict.fromkeys(STATUSES, 0), "done": 3, "ready": 5}},
        down=[{"endpoint": "http://gpu:8000/v1", "pool": "vllm", "down_s": 12.4, "error": "x"}],
        stopped=[{"pool": "openrouter", "message": "pool openrouter stopped: ..."}],
    )
    line = format_progress(status, 30.0, 0.5)
    assert line.endswith(" | pool vllm: endpoint down 12 s, retrying | pool openrouter stopped")


def test_an_interrupt_then_a_stopped_pool_then_an_outage_then_the_budget_decide_the_exit():
    """When several reasons apply, the documented order decides the exit code."""

    def outcome(remaining: int, stops: set[str], states: dict[str, int], **kwargs: Any) -> str:
        stages = {"draft": {**dict.fromkeys(STATUSES, 0), "ready": remaining}}
        status = Status("k", stages=stages, states=states)
        return RunSummary(status, 1.0, 0, False, stops=stops, **kwargs).outcome

    everything = {"pool_stopped", "outage", "budget"}
    assert outcome(3, everything, {"provider_error": 1}) == "pool_stopped"
    assert outcome(3, {"outage", "budget"}, {}) == "outage"
    assert outcome(3, {"budget"}, {"provider_error": 1}) == "budget"
    assert outcome(3, set(), {}) == "error"
    assert outcome(0, set(), {"ok": 5, "template_error": 1}) == "failures"
    assert outcome(0, set(), {"ok": 5, "parse_failed": 2, "refused": 1}) == "ok"
    interrupted = RunSummary(Status("k"), 1.0, 0, True, stops=everything)
    assert interrupted.outcome == "interrupted"
    assert {EXIT_CODES[o] for o in ("ok", "failures", "pool_stopped", "outage", "budget")} == {
        0, 3, 4, 5, 6
    }
