"""Score summaries of cohorts that share evaluations (``cohort_judges``,
``essay_rubric_scores`` and the cells under them, ``daydream/db/projections/cells.py``):
an evaluation shared by two cohorts fails, is retried through one cohort and scored, is
parsed again on a narrower scale (its score gone), and is retried again and scored anew.
After each step every summary of both cohorts equals a fresh count from the generations
(``tests/counting.py``) and a replay of the log (``db check``), whichever cohort was
planned first and whenever the second one joined.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from daydream.catalog.load import load_catalog
from daydream.catalog.recording import import_catalog
from daydream.db.check import check
from daydream.db.connection import connect
from daydream.errors import PlanError
from daydream.plan.write import plan_cohort
from daydream.queue.cohorts import retry
from daydream.queue.leases import claim, record
from daydream.worker.config import WorkerConfig
from daydream.worker.execute import Executor
from daydream.worker.reparse import reparse
from tests.counting import counter_mismatches
from tests.fakeapi import FakeAPI, Fault
from tests.scenario import TEMPLATES, FixedClock, model, script_by_gen, write_catalog, write_spec

SPEC = {
    "combo_id": ["c1"],
    "draft_template": ["notes"],
    "draft_llm": ["m1"],
    "essay_template": ["copy"],
    "evaluation_template": ["judge"],
    "evaluation_llm": ["m1", "m2"],
}
# The judges' replies, by (judge model, replicate): taken in order, one per call.
REPLIES = {
    ("m1", 1): ["SCORE: 4"],
    ("m1", 2): ["wrong_content", "SCORE: 9", "SCORE: 2"],  # fails, 9 on retry, 2 after
    ("m1", 3): ["SCORE: 3"],
    ("m2", 1): ["SCORE: 5"],
    ("m2", 2): ["SCORE: 8", "SCORE: 1"],  # 8 is outside 0-5 once the scale changes
    ("m2", 3): ["wrong_content", "wrong_content", "wrong_content"],  # never parses
}


def _catalog(root: Path, high: int) -> Path:
    judge = {**TEMPLATES["evaluation"][0], "scale": [0, high]}
    return write_catalog(
        root / "catalog",
        models=[model("m1"), model("m2")],
        combos=1,
        templates={**TEMPLATES, "evaluation": [judge]},
    )


def _plan(conn: sqlite3.Connection, root: Path, cohort: str, replicates: list[int]) -> None:
    path = write_spec(root / f"{cohort}.yaml", {**SPEC, "evaluation_replicate": replicates})
    plan_cohort(conn, path, cohort, actor="test")


def _fault(reply: str) -> Fault:
    if reply == "wrong_content":
        return Fault("wrong_content")
    return Fault("ok", content=f"The essay is clear and plausible.\n{reply}")


def _evaluations(conn: sqlite3.Connection) -> list[str]:
    return [r[0] for r in conn.execute("SELECT gen_id FROM generations WHERE stage = 'evaluation'")]


def _script(conn: sqlite3.Connection, faults: dict[str, list[Any]]) -> None:
    """Fill the API's script with each evaluation's replies (once it is planned)."""
    for gen_id, judge, replicate in conn.execute(
        "SELECT gen_id, model_id, replicate FROM generations WHERE stage = 'evaluation'"
    ):
        if gen_id not in faults:
            faults[gen_id] = [_fault(r) for r in REPLIES[(judge, replicate)]]


def _drain(conn: sqlite3.Connection, config: WorkerConfig, clock: FixedClock) -> None:
    """claim -> run -> record through a worker's executor until nothing is ready."""

    async def run(tasks):
        executor = Executor(config, clock=clock)
        try:
            return [await executor.run(task) for task in tasks]
        finally:
            await executor.aclose()

    for _ in range(20):
        tasks = claim(conn, config, 50, clock=clock)
        if not tasks:
            return
        record(conn, asyncio.run(run(tasks)), config, clock=clock)
        clock.advance(1)
    raise AssertionError("the cohort does not drain")


def _summaries(conn: sqlite3.Connection, cohort: str) -> tuple[list, list]:
    judges = conn.execute(
        "SELECT evaluation_model, essays, evaluations, n FROM cohort_judges"
        " WHERE cohort_id = ? ORDER BY 1",
        (cohort,),
    ).fetchall()
    rubric = conn.execute(
        "SELECT evaluations, judges, avg_score, max_score FROM essay_rubric_scores"
        " WHERE cohort_id = ?",
        (cohort,),
    ).fetchall()
    return [tuple(r) for r in judges], [tuple(r) for r in rubric]


def _agree(db: Path, conn: sqlite3.Connection) -> None:
    assert counter_mismatches(conn) == []
    results = check(db)
    assert results and all(ok for _, ok, _ in results), results


@pytest.mark.parametrize("second", ["b", "z"], ids=["second-sorts-first", "second-sorts-last"])
@pytest.mark.parametrize("joins", ["at-once", "after-scores", "after-reparse"])
def test_shared_evaluations_retried_and_reparsed_keep_both_cohorts_summaries_exact(
    tmp_path, joins, second
):
    """Cohort k has replicates 1-3 of each judge, the second cohort replicates 2 and 3
    (shared), planned right after k, once k's scores exist, or once they were parsed
    again; its name sorts before or after k's."""
    faults: dict[str, list[Any]] = {}
    clock = FixedClock()
    db = tmp_path / "run.db"
    with FakeAPI(script=script_by_gen(faults)) as api:
        conn = connect(db, create=True)
        config = WorkerConfig(
            db_path=db, name="w", max_attempts=1, base_urls={"vllm": api.base_url}
        )
        try:
            import_catalog(conn, load_catalog(_catalog(tmp_path, 10)), actor="test")
            _plan(conn, tmp_path, "k", [1, 2, 3])
            if joins == "at-once":
                _plan(conn, tmp_path, second, [2, 3])
            _script(conn, faults)
            _drain(conn, config, clock)
            if joins == "after-scores":
                _plan(conn, tmp_path, second, [2, 3])
            _agree(db, conn)
            # m1 replicate 2 failed to parse; retried through k, it scores 9, the best of
            # m1 in both cohorts (m2 replicate 3 fails again).
            assert len(retry(conn, "k", failed=True)) == 2
            _drain(conn, config, clock)
            _agree(db, conn)
            # The rubric's scale becomes 0-5: the 9 and the 8 no longer parse.
            import_catalog(conn, load_catalog(_catalog(tmp_path, 5)), actor="test")
            assert reparse(conn, "k", stage="evaluation").transitions["ok -> parse_failed"] == 2
            if joins == "after-reparse":
                _plan(conn, tmp_path, second, [2, 3])
            _agree(db, conn)
            assert _summaries(conn, second) == (
                [("m1", 1, 2, 1), ("m2", 1, 2, 0)],
                [(4, 1, 3.0, 3.0)],  # the 9 is gone: only m1's 3 is left
            )
            # Retried through the second cohort: new attempts replace the dropped scores.
            assert len(retry(conn, second, failed=True)) == 3
            _drain(conn, config, clock)
            _agree(db, conn)
            assert _summaries(conn, "k") == (
                [("m1", 1, 3, 3), ("m2", 1, 3, 2)],
                [(6, 2, 4.5, 5.0)],  # the best of m1: 4, of m2: 5
            )
            assert _summaries(conn, second) == (
                [("m1", 1, 2, 2), ("m2", 1, 2, 1)],
                [(4, 2, 2.0, 3.0)],  # the best of m1: 3, of m2: 1
            )
        finally:
            conn.close()
    assert all(not queue for queue in faults.values())  # every scripted reply was used


def test_a_scored_evaluation_is_never_retried_so_no_summary_must_take_its_score_back(tmp_path):
    """The cells only take a score back when a reparse changes it: a retry of a scored
    evaluation (through either cohort holding it) is refused, so the score a completion
    added to every cohort's summaries stays right. (An event log that retries a completed
    evaluation anyway, written by hand, leaves that score in the summaries, live and
    replayed alike; a fresh count from ``generations`` no longer counts it.)"""
    faults: dict[str, list[Any]] = {}
    db = tmp_path / "run.db"
    with FakeAPI(script=script_by_gen(faults)) as api:
        conn = connect(db, create=True)
        config = WorkerConfig(db_path=db, name="w", base_urls={"vllm": api.base_url})
        try:
            import_catalog(conn, load_catalog(_catalog(tmp_path, 10)), actor="test")
            _plan(conn, tmp_path, "k", [1, 2])
            _plan(conn, tmp_path, "b", [2])
            faults.update({g: [_fault("SCORE: 6")] for g in _evaluations(conn)})
            _drain(conn, config, FixedClock())
            before = _summaries(conn, "k"), _summaries(conn, "b")
            assert before[1] == ([("m1", 1, 1, 1), ("m2", 1, 1, 1)], [(2, 2, 6.0, 6.0)])
            shared = conn.execute(
                "SELECT gen_id FROM cohort_members WHERE cohort_id = 'b' AND stage = 'evaluation'"
                " ORDER BY gen_id"
            ).fetchone()[0]
            for cohort in ("k", "b"):
                with pytest.raises(PlanError) as refused:
                    retry(conn, cohort, gen_ids=(shared,))
                assert str(refused.value) == (
                    f'generation "{shared}" is done: a completed generation is never run'
                    " again (plan another replicate for a new sample)"
                )
            assert (_summaries(conn, "k"), _summaries(conn, "b")) == before
            _agree(db, conn)
        finally:
            conn.close()
