"""Local model servers set their pool's limit: ``daydream run`` against the loopback
``FakeAPI`` standing in for llama.cpp's server (``GET /props``), Ollama and LM Studio, and
``providers.serving.server_slots`` on its own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from daydream.db.connection import connect
from daydream.providers.config import resolve_provider_config
from daydream.providers.serving import server_slots
from daydream.queue.pools import set_pool_limit
from daydream.runner.local import set_local_pool_limits
from daydream.worker.config import WorkerConfig
from tests.fakeapi import FakeAPI
from tests.invariants import check_invariants
from tests.scenario import cohort, daydream_cmd, env, events_of, run


def local_model(provider: str) -> dict[str, Any]:
    return {"id": "m1", "provider": provider, "model": "local-model"}


def run_cohort(db: Path, *args: str, environ: dict[str, str] | None = None) -> Any:
    return run(daydream_cmd("run", "k", "--db", str(db), *args), environ=environ or env())


def limit_events(db: Path) -> list[tuple[str, int, int, str]]:
    return [
        (e["pool"], e["limit"], e["ceiling"], e["reason"])
        for e in events_of(db, types=["pool.limit_changed"])
    ]


def posts(api: FakeAPI) -> int:
    return sum(r.method == "POST" for r in api.requests)


def test_a_llamacpp_pool_takes_the_slots_its_server_reports(tmp_path):
    with FakeAPI(latency_s=0.05, props={"total_slots": 3}) as api:
        root = f"http://127.0.0.1:{api.port}"
        db = cohort(tmp_path, [local_model("llamacpp")], combos=8)
        done = run_cohort(db, "--base-url", f"llamacpp={root}/v1")
    assert limit_events(db) == [
        ("llamacpp", 3, 3, f"local server: {root}/props reports total_slots 3")
    ]
    assert "pool llamacpp" not in done.stderr  # the server said: nothing to note
    assert api.max_in_flight <= 3
    assert posts(api) == 16  # 8 drafts and 8 judgements (the essays are copies)
    check_invariants(db)


def test_a_local_server_that_does_not_say_gets_one_call_at_a_time_and_a_note(tmp_path):
    with FakeAPI(latency_s=0.02) as api:  # no /props: llama-cpp-python's server, say
        root = f"http://127.0.0.1:{api.port}"
        db = cohort(tmp_path, [local_model("llamacpp")], combos=4)
        done = run_cohort(db, "--base-url", f"llamacpp={root}/v1")
    why = f"{root}/props does not report total_slots (HTTP 404)"
    assert limit_events(db) == [("llamacpp", 1, 1, f"local server: {why}")]
    note = (
        f"pool llamacpp: limit 1, one call at a time per server that does not say otherwise"
        f" ({why}); if it serves more, run with --pool-limit llamacpp=N"
    )
    assert done.stderr.splitlines()[0] == note
    assert api.max_in_flight == 1
    check_invariants(db)


def test_asking_again_with_the_same_answer_writes_nothing(tmp_path):
    with FakeAPI(props={"total_slots": 2}) as api:
        db = cohort(tmp_path, [local_model("llamacpp")], combos=2)
        config = WorkerConfig(db_path=db, base_urls={"llamacpp": api.base_url})
        conn = connect(db, create=False)
        try:
            assert set_local_pool_limits(conn, config, environ={}) == []
            assert set_local_pool_limits(conn, config, environ={}) == []
        finally:
            conn.close()
    assert [event[:3] for event in limit_events(db)] == [("llamacpp", 2, 2)]  # once


def test_an_ollama_pool_takes_ollama_num_parallel_else_one(tmp_path):
    with FakeAPI(latency_s=0.02) as api:
        db = cohort(tmp_path, [local_model("ollama")], combos=2)
        url = ["--base-url", f"ollama=http://127.0.0.1:{api.port}/v1"]
        done = run_cohort(db, *url)
        assert "Ollama does not report its parallel setting" in done.stderr
        db2 = cohort(tmp_path / "second", [local_model("ollama")], combos=2)
        run_cohort(db2, *url, environ=env(OLLAMA_NUM_PARALLEL="4"))
    assert limit_events(db)[0][:3] == ("ollama", 1, 1)
    assert limit_events(db2) == [("ollama", 4, 4, "local server: OLLAMA_NUM_PARALLEL=4")]


def test_a_limit_the_user_sets_wins_over_the_server(tmp_path):
    with FakeAPI(props={"total_slots": 2}) as api:
        url = f"llamacpp=http://127.0.0.1:{api.port}/v1"
        db = cohort(tmp_path, [local_model("llamacpp")], combos=2)
        run_cohort(db, "--base-url", url, "--pool-limit", "llamacpp=5")
        earlier = cohort(tmp_path / "second", [local_model("llamacpp")], combos=2)
        conn = connect(earlier, create=False)
        try:
            set_pool_limit(conn, "llamacpp", 4)  # set by the user before this run
        finally:
            conn.close()
        later = run_cohort(earlier, "--base-url", url)
    assert limit_events(db) == [("llamacpp", 5, 5, "set by user")]
    assert limit_events(earlier) == [("llamacpp", 4, 4, "set by user")]
    assert "pool llamacpp: limit 4, set by user" in later.stderr


def test_pools_of_servers_that_batch_keep_the_default_limit(tmp_path):
    with FakeAPI(props={"total_slots": 1}) as api:
        db = cohort(tmp_path, [local_model("vllm")], combos=2)
        run_cohort(db, "--base-url", f"vllm=http://127.0.0.1:{api.port}/v1")
    assert limit_events(db) == []
    assert all(r.method == "POST" for r in api.requests)  # not even asked


def test_server_slots_reads_llamacpp_props_and_falls_back_to_one(tmp_path):
    with FakeAPI(props={"total_slots": 6, "default_generation_settings": {"n_ctx": 4096}}) as api:
        config = resolve_provider_config("llamacpp", base_url=api.base_url, environ={})
        answer = server_slots(config, environ={})
    assert (answer.slots, answer.reported) == (6, True)
    unreachable = resolve_provider_config("llamacpp", base_url="http://127.0.0.1:9/v1", environ={})
    answer = server_slots(unreachable, environ={})
    assert (answer.slots, answer.reported) == (1, False)
    assert answer.source == "http://127.0.0.1:9/props could not be read (ConnectError)"
    studio = server_slots(resolve_provider_config("lmstudio", environ={}), environ={})
    assert (studio.slots, studio.reported) == (1, False)
