"""Replay (I4): after a mixed workload, rebuilding the projections from the log gives the
same tables, rebuilding twice changes nothing, and a tampered projection is detected.

The workload goes through the real code paths: catalog import, planning, the worker's
claim -> run -> record step with a fixed clock (throttles, retryable and permanent provider
errors, template errors, an expired lease taken over by another worker, a stale result,
heartbeats, a clean release), retry, cancel, a judge added to a finished cohort, a pool
limit, and finally real worker processes (``daydream run``) for the last stretch.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import sqlite3
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml

from daydream import events as ev
from daydream.browse.queries import (
    COHORT_FAILURES_SQL,
    COHORT_SCORES_SQL,
    COHORT_TOP_ESSAYS_SQL,
    PAGE_ROWS,
)
from daydream.catalog.load import load_catalog
from daydream.catalog.recording import import_catalog
from daydream.db.check import check
from daydream.db.connection import connect
from daydream.db.log import append
from daydream.db.projections import replay, schema
from daydream.errors import ProviderError
from daydream.plan.write import plan_cohort
from daydream.providers.offline import OfflineProvider
from daydream.queue.cohorts import cancel, retry
from daydream.queue.leases import claim, heartbeat, record, release
from daydream.queue.pools import set_pool_limit
from daydream.queue.tasks import has_pending
from daydream.worker.config import WorkerConfig
from daydream.worker.execute import Executor
from tests.counting import COUNTERS, counter_mismatches
from tests.example_catalog import EXAMPLE, write_spec
from tests.invariants import check_invariants, check_results, tamper_with
from tests.reference_views import COHORT_SCORES, REFERENCE
from tests.scenario import FixedClock


class FlakyProvider:
    """The offline provider behind a scripted list of faults, one per call (None = answer)."""

    endpoints: tuple[str, ...] = ()

    def __init__(self, faults: list[int | None]) -> None:
        self.faults = list(faults)
        self.inner = OfflineProvider()
        self.calls = 0

    async def complete(self, request):
        self.calls += 1
        fault = self.faults.pop(0) if self.faults else None
        if fault == 429:
            raise ProviderError("rate limited", retryable=True, status=429, retry_after=2.0)
        if fault == 500:
            raise ProviderError("upstream error", retryable=True, status=500)
        if fault == 400:
            raise ProviderError("bad request: context too long", retryable=False, status=400)
        return await self.inner.complete(request)

    async def aclose(self) -> None:
        pass


class FlakyExecutor(Executor):
    def __init__(self, config, *, clock, provider) -> None:
        super().__init__(config, clock=clock)
        self.flaky = provider

    def provider(self, *args, **kwargs):
        return self.flaky


def run_tasks(executor: Executor, tasks) -> list:
    async def go():
        return [await executor.run(task) for task in tasks]

    return asyncio.run(go())


def drain(conn, config, clock, executor, *, batch: int = 7, cohort: str | None = None) -> int:
    """claim -> run -> record until nothing is left; moves the clock past any not_before."""
    steps = 0
    while True:
        steps += 1
        assert steps < 500, "the workload does not drain"
        tasks = claim(conn, config, batch, clock=clock)
        if not tasks:
            if not has_pending(conn, cohort):
                return steps
            clock.advance(30)
            continue
        record(conn, run_tasks(executor, tasks), config, clock=clock)
        clock.advance(1)


MAIN = {
    "axes": {
        "combo_id": ["fungal-market", "memory-codes", "noisy-minds"],
        "draft_template": ["rolling-idea", "free-notes"],
        "draft_llm": ["offline-small"],
        "evaluation_template": ["novelty-rubric"],
        "evaluation_llm": ["offline-small"],
    },
    "rules": {
        "tuples": {
            "essay_bundle": {
                "axes": ["essay_template", "essay_llm"],
                "items": [["focused-essay", "offline-large"], ["idea-verbatim", "none"]],
            }
        },
        "pairs": {
            "draft_essay": {
                "left": "draft_template",
                "right": "essay_bundle",
                "allowed": [
                    ["rolling-idea", ["focused-essay", "offline-large"]],
                    ["rolling-idea", ["idea-verbatim", "none"]],
                    ["free-notes", ["focused-essay", "offline-large"]],
                ],
            }
        },
    },
}
# Essays straight from a combination with a template that needs a draft: a template error
# at run time, which blocks their evaluations.
BROKEN = {
    "axes": {
        "combo_id": ["fungal-market", "drifting-tides"],
        "essay_template": ["broken-essay"],
        "essay_llm": ["offline-small"],
        "evaluation_template": ["feasibility-rubric"],
        "evaluation_llm": ["offline-small"],
    }
}
LATER = {
    "axes": {
        "combo_id": ["memory-codes", "drifting-tides"],
        "draft_template": ["free-notes"],
        "draft_llm": ["offline-large"],
        "draft_replicate": [1, 2, 3],
    }
}


def _catalog_with_a_broken_essay(tmp_path):
    """The example catalog plus an essay template that passes planning's checks (it only
    reads ``concepts``) but fails when rendered (there is no 8th concept)."""
    catalog = tmp_path / "catalog"
    shutil.copytree(EXAMPLE, catalog)
    (catalog / "templates" / "essay" / "broken-essay.j2").write_text("{{ concepts[7].name }}\n")
    templates = yaml.safe_load((catalog / "templates.yaml").read_text())
    templates["essay"].append(
        {
            "id": "broken-essay",
            "name": "Broken",
            "description": "fails at render time",
            "parser": "identity",
        }
    )
    (catalog / "templates.yaml").write_text(yaml.safe_dump(templates, sort_keys=False))
    return catalog


@pytest.fixture(scope="module")
def workload(tmp_path_factory):
    """A database after the whole workload; returns its path."""
    tmp_path = tmp_path_factory.mktemp("replay")
    path = tmp_path / "replay.db"
    clock = FixedClock(datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc))
    conn = connect(path)
    import_catalog(conn, load_catalog(_catalog_with_a_broken_essay(tmp_path)))
    set_pool_limit(conn, "offline", 64)
    main_spec = write_spec(tmp_path, "main", MAIN)
    plan_cohort(conn, main_spec, "main")
    plan_cohort(conn, write_spec(tmp_path, "broken", BROKEN), "broken")

    config = WorkerConfig(db_path=path, name="w1", lease_s=60, max_attempts=3)
    # First calls: a 429 (throttled, not an attempt), a 500 (retried), a 400 (fails at once).
    flaky = FlakyProvider([429, 500, None, 400])
    executor = FlakyExecutor(config, clock=clock, provider=flaky)

    # A worker whose lease expires mid-call: another worker takes the task over, and the
    # first one's heartbeat and result write nothing.
    slow = WorkerConfig(db_path=path, name="slow", lease_s=60)
    (stalled,) = claim(conn, slow, 1, clock=clock)
    assert heartbeat(conn, slow, [stalled], clock=clock) == set()
    clock.advance(120)
    taken = claim(conn, config, 3, clock=clock)
    assert stalled.gen_id in {t.gen_id for t in taken}
    late = run_tasks(Executor(slow, clock=clock), [stalled])
    assert record(conn, late, slow, clock=clock) == (0, 1)
    assert heartbeat(conn, slow, [stalled], clock=clock) == {stalled.gen_id}
    # A clean stop gives the other claimed tasks back.
    others = [t for t in taken if t.gen_id != stalled.gen_id]
    assert release(conn, others, "worker stopped", actor="worker:w1") == len(others)
    record(
        conn,
        run_tasks(executor, [t for t in taken if t.gen_id == stalled.gen_id]),
        config,
        clock=clock,
    )

    # Mid-run (leases held, calls failed and throttled): the counters follow every change.
    assert counter_mismatches(conn) == []
    drain(conn, config, clock, executor)
    assert flaky.faults == [] and flaky.calls > 4

    # Retry the failures (the broken essays fail again the same way) and plan, then
    # cancel, a third cohort before it runs.
    assert len(retry(conn, "broken", failed=True)) == 2  # template errors: fail again
    assert len(retry(conn, "main", failed=True)) == 1  # the 400: succeeds this time
    drain(conn, config, clock, executor)
    plan_cohort(conn, write_spec(tmp_path, "later", LATER), "later")
    cancelled = cancel(conn, "later")
    assert len(cancelled) == 6

    # Add a judge to the finished main cohort: only the new evaluations run, in real
    # worker processes.
    judged = {
        **MAIN,
        "axes": {**MAIN["axes"], "evaluation_llm": ["offline-small", "offline-large"]},
    }
    write_spec(tmp_path, "main", judged)
    report = plan_cohort(conn, main_spec, "main")
    assert report.stages["evaluation"].new == 9
    conn.close()
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "daydream",
            "run",
            "main",
            "--db",
            str(path),
            "--offline",
            "--workers",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    # A human rating and a re-parse, as `daydream label import` and `daydream reparse`
    # record them (the reparse's result differs: the judgement now failed to parse).
    conn = connect(path)
    essay = conn.execute(
        "SELECT gen_id FROM generations WHERE stage = 'essay' AND status = 'done' LIMIT 1"
    ).fetchone()[0]
    rubric, version, low = conn.execute(
        "SELECT t.template_id, t.version, v.scale_min FROM templates t"
        " JOIN template_versions v USING (version) WHERE t.stage = 'evaluation' LIMIT 1"
    ).fetchone()
    judged = conn.execute(
        "SELECT gen_id, template_version FROM generations WHERE stage = 'evaluation'"
        " AND status = 'done' AND score IS NOT NULL LIMIT 1"
    ).fetchone()
    append(
        conn,
        [
            ev.RatingRecorded(
                essay_gen_id=essay,
                evaluation_template=rubric,
                template_version=version,
                rater="r1",
                score=low,
                source="ratings.csv",
            ),
            ev.GenerationReparsed(
                gen_id=judged[0],
                template_version=judged[1],
                parser="score",
                parser_version=1,
                state="parse_failed",
                error="no SCORE line (test)",
            ),
            # An endpoint that went down and came back, and a pool stopped (a bad key).
            ev.EndpointDown(
                endpoint="http://127.0.0.1:9/v1", provider="vllm", pool="api", error="refused"
            ),
            ev.EndpointRecovered(endpoint="http://127.0.0.1:9/v1", by="probe"),
            ev.PoolStopped(
                pool="api", provider="vllm", model_id="m", message="HTTP 401", http_status=401
            ),
        ],
        actor="test",
        clock=clock,
    )
    conn.close()
    return path


def _types(path: Path) -> dict[str, int]:
    raw = sqlite3.connect(path)
    try:
        return dict(raw.execute("SELECT type, count(*) FROM events GROUP BY type").fetchall())
    finally:
        raw.close()


def test_the_workload_exercises_every_kind_of_event(workload):
    types = _types(workload)
    for kind in (
        "concept.defined",
        "combo.defined",
        "template.defined",
        "model.defined",
        "cohort.planned",
        "generations.planned",
        "attempt.started",
        "leases.extended",
        "lease.expired",
        "lease.released",
        "attempt.throttled",
        "generation.responded",
        "generation.completed",
        "attempt.failed",
        "generations.retried",
        "cohort.cancelled",
        "pool.limit_changed",
    ):
        assert types.get(kind, 0) > 0, f"the workload wrote no {kind} event"
    conn = connect(workload)
    statuses = dict(conn.execute("SELECT status, count(*) FROM generations GROUP BY 1").fetchall())
    conn.close()
    assert set(statuses) == {"done", "failed", "blocked", "cancelled"}
    assert statuses["cancelled"] == 6


def test_invariants_hold_after_the_workload(workload):
    counts = check_invariants(workload)  # I1-I7, drained: no lease left anywhere
    assert counts["generations"] == 43


def test_counters_equal_a_fresh_count_after_runs_retries_reparse_and_cancel(workload):
    """cohort_counts, the call totals, cohort_judges and essay_rubric_scores hold what a
    count over generations, memberships and calls gives (tests/counting.py, in Python),
    after the workload's runs, retries, cancel, reparse and added judge; and not vacuously:
    every counter has rows, in every status the workload left."""
    conn = connect(workload)
    try:
        assert counter_mismatches(conn) == []
        for table in COUNTERS:
            assert conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] > 0, table
        statuses = {
            r[0] for r in conn.execute("SELECT status FROM cohort_counts WHERE generations > 0")
        }
        assert statuses == {"done", "failed", "blocked", "cancelled"}
    finally:
        conn.close()


@pytest.mark.parametrize("table", COUNTERS)
def test_a_counter_that_drifts_from_its_rows_is_found(workload, tmp_path, table):
    """The fresh count is no rubber stamp: one counter cell changed by one is named."""
    copy = copy_of(workload, tmp_path / "copy.db")
    raw = sqlite3.connect(copy)
    column = {
        "cohort_counts": "generations",
        "model_calls": "calls",
        "cohort_model_calls": "ok",
        "cohort_judges": "n",
        "essay_rubric_scores": "evaluations",
    }[table]
    keys = _keys(raw, table)
    raw.execute(
        f"UPDATE {table} SET {column} = {column} + 1"
        f" WHERE ({keys}) IN (SELECT {keys} FROM {table} LIMIT 1)"
    )
    raw.commit()
    [problem] = counter_mismatches(raw)
    raw.close()
    assert table in problem.split(" differs")[0]


def _keys(raw: sqlite3.Connection, table: str) -> str:
    columns = raw.execute(f"PRAGMA table_info({table})").fetchall()
    return ", ".join(c[1] for c in sorted(columns, key=lambda c: c[5]) if c[5])


# No evaluation of the workload scores its scale's maximum: tests/test_reports.py compares
# top_of_scale on a cohort where two do.
@pytest.mark.parametrize("view", sorted(set(REFERENCE) - {"top_of_scale"}))
def test_a_view_read_from_counters_shows_what_a_pass_over_the_cohort_shows(workload, view):
    """Each summary view now reads counters; row for row it shows what its earlier
    definition (a pass over the cohort's rows: tests/reference_views.py) shows."""
    conn = connect(workload)
    try:
        new = [dict(r) for r in conn.execute(f"SELECT * FROM {view}")]
        old = [dict(r) for r in conn.execute(REFERENCE[view])]
    finally:
        conn.close()
    assert new and len(new) == len(old)
    for mine, theirs in zip(new, old, strict=True):
        if view == "failure_reasons":  # group_concat(DISTINCT) has no order
            mine["models"] = ",".join(sorted((mine["models"] or "").split(",")))
            theirs["models"] = ",".join(sorted((theirs["models"] or "").split(",")))
        assert mine == pytest.approx(theirs), view


@pytest.mark.parametrize("cohort", ["main", "nothing"])
def test_the_cohort_scores_query_streams_what_a_sort_of_every_evaluation_gives(
    workload, cohort
):
    """cohort_scores reads the cohort's score cells in key order; it lists the same rows in
    the same order as sorting every evaluation of the cohort (retried, failed, reparsed
    and cancelled ones included)."""
    conn = connect(workload)
    try:
        params = {"cohort": cohort, "after": "", "size": "-1"}
        new = [tuple(r) for r in conn.execute(COHORT_SCORES_SQL, params)]
        old = [tuple(r) for r in conn.execute(COHORT_SCORES, params)]
    finally:
        conn.close()
    assert new == old
    assert bool(new) == (cohort == "main")


@pytest.mark.parametrize("cohort", ["main", "broken"])
def test_the_cohort_failures_query_merges_what_a_sort_of_every_failure_gives(workload, cohort):
    """cohort_failures reads each stage's failures from the index of failures in order and
    merges them; it lists what sorting every failure of the cohort lists, without a sort."""
    conn = connect(workload)
    try:
        params = {"cohort": cohort, "after": "", "size": "-1"}
        new = [tuple(r) for r in conn.execute(COHORT_FAILURES_SQL, params)]
        old = [
            tuple(r)
            for r in conn.execute(
                "SELECT gen_id, stage, status, state, reason, error, attempts, template_id,"
                " model_id, combo_id, parent_gen_id, raw_text, finished_at FROM failures"
                " WHERE cohort_id = :cohort ORDER BY stage, status, state, reason, gen_id",
                params,
            )
        ]
        plan = [r[3] for r in conn.execute(f"EXPLAIN QUERY PLAN {COHORT_FAILURES_SQL}", params)]
    finally:
        conn.close()
    assert new == old
    # broken: an essay fails and its evaluations are blocked, so two stages are merged
    assert len({row[1] for row in new}) == (2 if cohort == "broken" else 1)
    assert not [step for step in plan if "TEMP B-TREE" in step], plan
    assert [step for step in plan if "generations_failures" in step], plan


@pytest.mark.parametrize(
    ("sql", "cohort", "size"),
    [
        (COHORT_SCORES_SQL, "main", "1"),
        (COHORT_SCORES_SQL, "main", "5"),
        (COHORT_FAILURES_SQL, "broken", "1"),
        (COHORT_FAILURES_SQL, "broken", "3"),
        (COHORT_FAILURES_SQL, "later", "2"),  # cancelled before a run: no error
    ],
)
def test_the_paged_queries_pages_join_up_to_every_row(workload, sql, cohort, size):
    """cohort_scores and cohort_failures show ``size`` rows after the row ``after``: the
    pages, each after the last row of the one before, are every row once, in order (across
    stages and states), and the default page is PAGE_ROWS rows."""
    conn = connect(workload)
    try:
        every = [tuple(r) for r in conn.execute(sql, {"cohort": cohort, "after": "", "size": "-1"})]
        first = conn.execute(sql, {"cohort": cohort, "after": "", "size": ""}).fetchall()
        pages, after = [], ""
        while len(pages) <= len(every):
            page = [tuple(r) for r in conn.execute(sql, {"cohort": cohort, "after": after, "size": size})]
            pages.append(page)
            if len(page) < int(size):
                break
            after = page[-1][0]
    finally:
        conn.close()
    assert len(pages) > 1
    if cohort == "later":
        assert {(row[2], row[5]) for row in every} == {("cancelled", None)}
    assert [row for page in pages for row in page] == every
    assert all(len(page) == int(size) for page in pages[:-1])
    assert len(first) == min(PAGE_ROWS, len(every))


@pytest.mark.parametrize("template", ["", "novelty-rubric", "feasibility-rubric", "nothing"])
@pytest.mark.parametrize("top", ["", "1", "2", "3", "100", "-1", "x"])
def test_the_top_essays_query_shows_the_top_of_each_ranking(workload, template, top):
    """cohort_top_essays reads only the top of each ranking; it shows what filtering the
    whole ranking by rank shows (ties at the cut included, by essay id)."""
    conn = connect(workload)
    try:
        params = {"cohort": "main", "template": template, "top": top}
        new = [dict(r) for r in conn.execute(COHORT_TOP_ESSAYS_SQL, params)]
        old = [
            dict(r)
            for r in conn.execute(
                f"SELECT * FROM ({REFERENCE['top_essays']}) WHERE cohort_id = :cohort"
                " AND (:template = '' OR evaluation_template = :template)"
                " AND rank <= coalesce(nullif(CAST(:top AS INTEGER), 0), 100)"
                " ORDER BY evaluation_template, rank",
                params,
            )
        ]
    finally:
        conn.close()
    assert new == old
    if template in ("", "novelty-rubric") and top not in ("-1",):
        assert new


def test_check_passes_after_the_workload(workload):
    results = check(workload)
    assert [name for name, _, _ in results] == [
        "integrity_check",
        "foreign_key_check",
        "migrations",
        "append_only_guards",
        "replay_equals_projections",
        "search_index",
    ]
    assert all(ok for _, ok, _ in results), results


def test_a_big_database_replays_into_a_scratch_file_beside_it(workload, tmp_path, monkeypatch):
    """Over REPLAY_IN_MEMORY_BELOW bytes the replay builds its tables in a temporary file next
    to the database (a day-long log would not fit in memory); the file is gone afterwards,
    and the comparison finds a tampered row as the in-memory one does."""
    copy = copy_of(workload, tmp_path / "copy.db")
    monkeypatch.setattr(replay, "REPLAY_IN_MEMORY_BELOW", 0)
    made = []
    real_mkstemp = replay.tempfile.mkstemp

    def mkstemp(*args, **kwargs):
        made.append(real_mkstemp(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(replay.tempfile, "mkstemp", mkstemp)
    assert replay.compare_with_replay(str(copy)) == {}
    tamper_with(copy, "UPDATE generations SET lease_owner = 'ghost' WHERE status = 'cancelled'")
    assert list(replay.compare_with_replay(str(copy))) == ["generations"]
    assert [Path(name).parent for _, name in made] == [tmp_path, tmp_path]
    assert [p.name for p in tmp_path.iterdir() if "replay" in p.name] == []  # removed


def copy_of(path: Path, copy: Path) -> Path:
    """A consistent copy of the database at ``path`` (SQLite's backup API)."""
    source = sqlite3.connect(path)
    target = sqlite3.connect(copy)
    source.backup(target)
    source.close()
    target.close()
    return copy


def test_rebuild_reproduces_every_table_and_is_idempotent(workload, tmp_path):
    copy = copy_of(workload, tmp_path / "copy.db")
    conn = connect(copy)
    live = replay.table_digests(conn)
    assert live["generations"][0] == 43 and live["calls"][0] > 30
    events = conn.execute("SELECT count(*) FROM events").fetchone()[0]
    applied = replay.rebuild(conn)
    assert applied == events
    assert replay.table_digests(conn) == live
    replay.rebuild(conn)
    assert replay.table_digests(conn) == live
    assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == events
    conn.close()


def test_projections_of_an_earlier_layout_are_rebuilt_when_the_database_is_opened(
    workload, tmp_path, capsys
):
    """An older daydream kept the queue in a tasks table; opening its database with this
    version replays the log into the current projections (tasks becomes a view), and says
    so on stderr first (on a large log it takes minutes)."""
    copy = copy_of(workload, tmp_path / "old.db")
    conn = connect(copy)
    live = replay.table_digests(conn)
    conn.close()
    raw = sqlite3.connect(copy)
    raw.execute("DROP VIEW tasks")
    raw.execute("CREATE TABLE tasks (gen_id TEXT PRIMARY KEY, status TEXT NOT NULL)")
    raw.execute("INSERT INTO tasks SELECT gen_id, status FROM generations")
    raw.execute("UPDATE projection_meta SET value = 'earlier' WHERE key = 'ddl_hash'")
    raw.execute("DELETE FROM projection_meta WHERE key = 'tables_hash'")  # not kept then
    raw.execute("DELETE FROM essay_judge_scores")  # stale content is replaced, not kept
    raw.commit()
    raw.close()
    capsys.readouterr()
    conn = connect(copy)
    said = capsys.readouterr().err
    events = conn.execute("SELECT count(*) FROM events").fetchone()[0]
    assert f"rebuilding them from its log of {events:,} events" in said
    assert replay.table_digests(conn) == live
    kinds = dict(conn.execute("SELECT name, type FROM sqlite_master WHERE name = 'tasks'"))
    assert kinds == {"tasks": "view"}
    conn.close()
    assert all(ok for _, ok, _ in check(copy))


def test_when_only_the_views_changed_opening_makes_the_views_again_without_a_replay(
    workload, tmp_path
):
    """The tables' hash is the same, the whole hash is not: the views and read indexes are
    made again (an altered view is put right, a missing index made) and the tables keep
    their rows: no replay (a marker that a replay would remove stays). Then the database
    is current."""
    copy = copy_of(workload, tmp_path / "views.db")
    raw = sqlite3.connect(copy)
    raw.execute("UPDATE projection_meta SET value = 'other views' WHERE key = 'ddl_hash'")
    raw.execute("DROP VIEW top_essays")
    raw.execute("CREATE VIEW top_essays AS SELECT 1 AS altered")
    raw.execute("DROP INDEX calls_gen")  # as a database of the version before it
    raw.execute("UPDATE cohorts SET spec_path = 'marker' WHERE cohort_id = 'main'")
    raw.commit()
    raw.close()
    conn = connect(copy)
    try:
        marker = conn.execute("SELECT spec_path FROM cohorts WHERE cohort_id = 'main'")
        assert marker.fetchone()[0] == "marker"
        columns = [r[1] for r in conn.execute("PRAGMA table_info(top_essays)")]
        assert "altered" not in columns and "avg_score" in columns
        assert conn.execute("SELECT count(*) FROM top_essays").fetchone()[0] > 0
        plan = conn.execute("EXPLAIN QUERY PLAN SELECT * FROM calls WHERE gen_id = 'x'")
        assert "calls_gen" in " ".join(r[3] for r in plan)
        assert replay.built_by(conn) == schema.DDL_HASH
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("tamper", "table", "detail"),
    [
        (
            "UPDATE generations SET score = score + 1 WHERE score IS NOT NULL"
            " AND gen_id = (SELECT min(gen_id) FROM generations WHERE score IS NOT NULL)",
            "generations",
            "(same count, different content)",
        ),
        (
            "DELETE FROM cohort_members WHERE (cohort_id, gen_id) ="
            " (SELECT cohort_id, gen_id FROM cohort_members LIMIT 1)",
            "cohort_members",
            None,
        ),
        (
            "UPDATE generations SET lease_owner = 'ghost' WHERE status = 'cancelled'",
            "generations",
            "(same count, different content)",
        ),
    ],
)
def test_a_tampered_projection_fails_check_until_rebuilt(workload, tmp_path, tamper, table, detail):
    copy = copy_of(workload, tmp_path / "copy.db")
    assert tamper_with(copy, tamper) >= 1
    results = check_results(copy)
    ok, text = results["replay_equals_projections"]
    assert not ok
    assert text.startswith(f"{table}: live ")
    if detail:
        assert text.endswith(detail)
    else:
        counts = re.fullmatch(rf"{table}: live (\d+) rows, replay (\d+) rows", text)
        assert counts and int(counts[1]) == int(counts[2]) - 1
    assert all(ok for name, (ok, _) in results.items() if name != "replay_equals_projections")
    conn = connect(copy)
    replay.rebuild(conn)
    conn.close()
    assert all(ok for _, ok, _ in check(copy))


# Every projection table, named here rather than taken from the code's list: a table left
# out of the comparison must fail this test, not shrink it.
PROJECTIONS = (
    "cohort_counts",
    "cohort_model_calls",
    "model_calls",
    "cohort_judges",
    "essay_rubric_scores",
    "search_texts",
    "endpoints",
    "pool_stops",
    "human_ratings",
    "reparses",
    "concepts",
    "concept_descriptions",
    "combos",
    "combo_concepts",
    "template_versions",
    "templates",
    "models",
    "cohorts",
    "generations",
    "cohort_members",
    "calls",
    "essay_judge_scores",
    "pools",
)


def test_the_replay_compares_every_projection_table():
    assert sorted(schema.PROJECTION_TABLES) == sorted(PROJECTIONS)


@pytest.mark.parametrize("how", ["change", "delete"])
@pytest.mark.parametrize("table", PROJECTIONS)
def test_tampering_with_any_projection_table_fails_check(workload, tmp_path, table, how):
    """Every table is compared by content, not only by count: one changed value or one
    missing row in any projection is a replay mismatch naming that table."""
    copy = copy_of(workload, tmp_path / "copy.db")
    raw = sqlite3.connect(copy)
    columns = raw.execute(f"PRAGMA table_info({table})").fetchall()
    keys = [c[1] for c in sorted(columns, key=lambda c: c[5]) if c[5]] or ["rowid"]
    first = raw.execute(f"SELECT * FROM {table} ORDER BY {', '.join(keys)} LIMIT 1").fetchone()
    assert first is not None, f"the workload leaves {table} empty"
    row = dict(zip([c[1] for c in columns], first, strict=True))
    where = " AND ".join(f'"{k}" = ?' for k in keys)
    if how == "delete":
        raw.execute(f"DELETE FROM {table} WHERE {where}", [row[k] for k in keys])
    else:
        name, kind = next((c[1], c[2]) for c in columns if not c[5] and row[c[1]] is not None)
        changed = row[name] + 1 if kind in ("INTEGER", "REAL") else f"{row[name]}~"
        raw.execute(
            f'UPDATE {table} SET "{name}" = ? WHERE {where}', [changed, *(row[k] for k in keys)]
        )
    raw.commit()
    raw.close()
    ok, text = {name: (ok, text) for name, ok, text in check(copy)}["replay_equals_projections"]
    # The summaries a table's triggers keep (cohort_judges and essay_rubric_scores follow
    # essay_judge_scores) change with it, and are named beside it.
    assert not ok and re.search(rf"(^|; ){table}: live ", text), text


def test_check_names_projections_built_by_another_version_instead_of_a_replay_mismatch(
    workload, tmp_path
):
    copy = copy_of(workload, tmp_path / "older.db")
    tamper_with(copy, "UPDATE projection_meta SET value = 'older' WHERE key = 'ddl_hash'")
    results = check_results(copy)
    assert results["projections_current"] == (
        False,
        "the projections were built by another version of daydream; rebuild them from the"
        " log with: daydream db rebuild (any other daydream command that opens the database"
        " does it too)",
    )
    assert "replay_equals_projections" not in results  # a replay would differ by design
    assert results["integrity_check"][0] and results["append_only_guards"][0]
    conn = connect(copy)  # opening it rebuilds
    conn.close()
    assert all(ok for _, ok, _ in check(copy))


@pytest.mark.parametrize("parents", [1, 3, 500])
@pytest.mark.parametrize("sql", ["CHILDREN_SQL", "BLOCKED_CHILDREN_SQL"])
def test_a_generations_children_are_found_by_the_parent_index(workload, sql, parents):
    """Each completed or failed generation looks up its children: by the parent index,
    never by the queue index, which would read every waiting generation of the database
    for each parent (what made a million-generation run slow down as it grew)."""
    from daydream.db.projections import lineage

    conn = connect(workload)
    try:
        plan = [
            row[3]
            for row in conn.execute(
                f"EXPLAIN QUERY PLAN {getattr(lineage, sql)} ({', '.join('?' * parents)})",
                [f"x{i}" for i in range(parents)],
            )
        ]
    finally:
        conn.close()
    assert any("generations_parent" in step for step in plan), plan
    assert not any("generations_queue" in step for step in plan), plan


def test_opening_says_whether_it_rebuilt_the_projections(offline_cohort, capsys):
    """``ensure_projections``: nothing to do on current projections (False); a replay of the
    whole log, announced on stderr, when the tables were built by another version (True);
    only the views made again when only they changed (False, silent)."""
    conn = connect(offline_cohort())
    events = conn.execute("SELECT count(*) FROM events").fetchone()[0]
    live = replay.table_digests(conn)
    capsys.readouterr()
    assert replay.ensure_projections(conn) is False
    conn.execute("UPDATE projection_meta SET value = 'older' WHERE key = 'ddl_hash'")
    assert replay.ensure_projections(conn) is False
    assert capsys.readouterr().err == ""
    assert replay.built_by(conn) == schema.DDL_HASH
    conn.execute("UPDATE projection_meta SET value = 'older'")
    assert replay.ensure_projections(conn) is True
    assert capsys.readouterr().err == (
        "daydream: this database's tables were built by another daydream version;"
        f" rebuilding them from its log of {events:,} events (once; minutes for millions of"
        " events)...\n"
    )
    assert replay.built_by(conn) == schema.DDL_HASH
    assert replay.built_by(conn, "tables_hash") == schema.TABLES_HASH
    assert replay.table_digests(conn) == live
    conn.close()


def test_a_replay_reports_the_events_applied_after_each_batch(offline_cohort):
    path = offline_cohort()
    conn = connect(path)
    events = conn.execute("SELECT count(*) FROM events").fetchone()[0]
    conn.close()
    heard: list[int] = []
    assert replay.compare_with_replay(str(path), progress=heard.append, batch=2) == {}
    assert events > 4 and heard == sorted({min(n, events) for n in range(2, events + 2, 2)})


def test_a_big_database_replays_in_the_temporary_directory_when_its_own_refuses(
    offline_cohort, monkeypatch
):
    """A scratch file that cannot be made beside the database (a read-only directory) is
    made in the temporary directory instead, and removed afterwards."""
    path = offline_cohort()
    monkeypatch.setattr(replay, "REPLAY_IN_MEMORY_BELOW", 0)
    made = []
    real_mkstemp = replay.tempfile.mkstemp

    def mkstemp(*args, **kwargs):
        if kwargs.get("dir") is not None:
            raise PermissionError(13, "Permission denied", kwargs["dir"])
        made.append(real_mkstemp(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(replay.tempfile, "mkstemp", mkstemp)
    assert replay.compare_with_replay(str(path)) == {}
    assert len(made) == 1 and made[0][1].endswith(".replay.db")
    assert Path(made[0][1]).parent == Path(replay.tempfile.gettempdir())
    assert not Path(made[0][1]).exists()
