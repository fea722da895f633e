"""Re-scoring without calls: a cohort run by real workers against the loopback API, its
rubric's scale changed in the catalog, then ``daydream reparse`` (a subprocess) parses the
stored replies again. The API counts every request, so "no model call" is measured where
calls would arrive."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from daydream.cli import cli
from daydream.db.connection import connect
from daydream.results.reports import build_report
from daydream.results.search import search
from tests.fakeapi import FakeAPI
from tests.invariants import check_invariants, log_snapshot
from tests.scenario import (
    TEMPLATES,
    cohort,
    daydream_cmd,
    model,
    query,
    run,
    scalar,
    worker_cmd,
    write_catalog,
)
from tests.scored import ESSAY_TEMPLATES, scored_cohort


def _judge_scale(low: int, high: int) -> dict:
    judge = {**TEMPLATES["evaluation"][0], "scale": [low, high]}
    return {**TEMPLATES, "evaluation": [judge]}


def _reimport(tmp_path: Path, db: Path, templates: dict) -> None:
    catalog = write_catalog(
        tmp_path / "catalog", models=[model("m1")], combos=6, templates=templates
    )
    run(daydream_cmd("catalog", "import", str(catalog), "--db", str(db)))


def _evaluations(db: Path) -> dict[str, tuple]:
    return {
        r[0]: r[1:]
        for r in query(
            db,
            "SELECT gen_id, status, state, score, error FROM generations WHERE stage = 'evaluation'",
        )
    }


def test_a_changed_scale_rescores_stored_replies_without_a_model_call(tmp_path):
    with FakeAPI() as api:
        db = cohort(
            tmp_path,
            [model("m1")],
            combos=6,
            axes={"evaluation_replicate": [1, 2]},
        )
        run(worker_cmd(db, base_url=api.base_url))
        calls = len(api.requests)
        before = _evaluations(db)
        assert len(before) == 12 and all(v[:2] == ("done", "ok") for v in before.values())
        kept = {g for g, v in before.items() if 1 <= v[2] <= 5}
        assert kept and len(kept) < len(before)  # the new scale keeps some scores, not all

        _reimport(tmp_path, db, _judge_scale(1, 5))
        snapshot = log_snapshot(db)
        out = run(daydream_cmd("reparse", "k", "--stage", "evaluation", "--db", str(db)))
        assert len(api.requests) == calls  # not a single model call

        after = _evaluations(db)
        for gen_id, (status, state, score, error) in after.items():
            old = before[gen_id][2]
            if gen_id in kept:  # the same number, now on the 1-5 scale
                assert (status, state, score, error) == ("done", "ok", old, None)
            else:
                assert (status, state, score) == ("failed", "parse_failed", None)
                assert error.startswith(f"score {old:g} is outside the template's scale 1-5")
        rejected = len(before) - len(kept)
        assert "12 stored replies parsed again: 12 changed, 0 unchanged" in out.stdout
        assert f"ok -> ok: {len(kept)}" in out.stdout
        assert f"ok -> parse_failed: {rejected}" in out.stdout

        # The old results stay in the log; the new ones are events with the parser version.
        completed = scalar(
            db,
            "SELECT count(*) FROM events WHERE type = 'generation.completed'"
            " AND subject IN (SELECT gen_id FROM generations WHERE stage = 'evaluation')",
        )
        assert completed == 12
        reparsed = query(
            db,
            "SELECT json_extract(data, '$.parser_version'), json_extract(data, '$.state')"
            " FROM events WHERE type = 'generation.reparsed'",
        )
        assert sorted(reparsed) == [(1, "ok")] * len(kept) + [(1, "parse_failed")] * rejected
        assert query(db, "SELECT previous_state, state, count(*) FROM reparses GROUP BY 1, 2") == [
            ("ok", "ok", len(kept)),
            ("ok", "parse_failed", rejected),
        ]
        check_invariants(db, before=snapshot)  # db check (replay == projections) included
        run(daydream_cmd("db", "check", "--db", str(db)))

        # Reports follow: only the kept scores count, on the new scale.
        conn = connect(db)
        try:
            report = build_report(conn, "k")
        finally:
            conn.close()
        [judge] = [
            r for r in report.tables["final_results"].rows if r["analysis_type"] == "overall"
        ]
        assert (judge["count"], judge["scale"]) == (len(kept), "1-5")
        cells = query(db, "SELECT sum(evaluations), sum(n), sum(total) FROM essay_judge_scores")
        assert cells == [(12, len(kept), sum(before[g][2] for g in kept))]

        again = run(daydream_cmd("reparse", "k", "--db", str(db), "--json"))
        assert (json.loads(again.stdout)["changed"], json.loads(again.stdout)["events"]) == (0, 0)

        # The scale back: every rejected score returns, still without a call.
        _reimport(tmp_path, db, _judge_scale(0, 10))
        run(daydream_cmd("reparse", "k", "--db", str(db)))
        assert _evaluations(db) == before
        assert len(api.requests) == calls
        check_invariants(db)


def test_a_draft_that_now_parses_unblocks_its_children(tmp_path):
    strict = {**TEMPLATES, "draft": [{**TEMPLATES["draft"][0], "parser": "essay_block"}]}
    with FakeAPI() as api:
        db = cohort(tmp_path, [model("m1")], combos=2, templates=strict)
        run(worker_cmd(db, base_url=api.base_url))
        # The fake replies have no <essay> block: every draft failed, the rest is blocked.
        assert set(query(db, "SELECT stage, status FROM generations")) == {
            ("draft", "failed"),
            ("essay", "blocked"),
            ("evaluation", "blocked"),
        }
        _reimport(tmp_path, db, TEMPLATES)  # the lenient identity parser again
        dry = run(daydream_cmd("reparse", "k", "--dry-run", "--json", "--db", str(db)))
        assert json.loads(dry.stdout)["changed"] == 2
        assert scalar(db, "SELECT count(*) FROM generations WHERE status = 'failed'") == 2
        run(daydream_cmd("reparse", "k", "--stage", "draft", "--db", str(db)))
        assert set(query(db, "SELECT stage, status FROM generations")) == {
            ("draft", "done"),
            ("essay", "ready"),
            ("evaluation", "waiting"),
        }
        # The drafts' new parsed texts are in the full-text index: search finds them there.
        drafts = dict(query(db, "SELECT gen_id, parsed_hash FROM generations WHERE stage = 'draft'"))
        [word] = query(db, "SELECT text FROM texts WHERE hash = ?", (next(iter(drafts.values())),))
        word = max(word[0].split(), key=len).strip(".,:;!?")
        conn = connect(db)
        try:
            found = {h.gen_id for h in search(conn, word, stage="draft", field="parsed")}
        finally:
            conn.close()
        assert found and found <= set(drafts)
        calls = len(api.requests)
        run(worker_cmd(db, base_url=api.base_url))
        assert len(api.requests) == calls + 2  # the two judges; the copy essays call nobody
        assert set(query(db, "SELECT status FROM generations")) == {("done",)}
        check_invariants(db)


def test_an_essay_that_no_longer_parses_keeps_its_judged_children_and_says_so(tmp_path):
    db = scored_cohort(tmp_path, lambda row: 5, combos=3)
    strict = {
        **ESSAY_TEMPLATES,
        "essay": [
            {**ESSAY_TEMPLATES["essay"][0], "parser": "essay_block"},
            ESSAY_TEMPLATES["essay"][1],
        ],
    }
    catalog = write_catalog(tmp_path / "catalog", models=[model("m1")], combos=3, templates=strict)
    run(daydream_cmd("catalog", "import", str(catalog), "--db", str(db)))
    runner = CliRunner()
    wrong = runner.invoke(cli, ["reparse", "k", "--template", "nope", "--db", str(db)])
    assert wrong.exit_code == 2
    assert wrong.output.strip().splitlines()[-1] == (
        'Error: Invalid value for --template: template "nope" is not used by cohort "k"'
        " (templates: A, B, judge, notes)"
    )
    result = runner.invoke(cli, ["reparse", "k", "--stage", "essay", "--db", str(db), "--json"])
    report = json.loads(result.output)
    assert (report["changed"], report["transitions"], report["stale_children"]) == (
        3,
        {"ok -> parse_failed": 3},
        3,
    )
    pairs = query(
        db,
        "SELECT e.template_id, e.status, v.status FROM generations e"
        " JOIN generations v ON v.parent_gen_id = e.gen_id WHERE e.stage = 'essay'",
    )
    assert set(pairs) == {
        ("A", "failed", "done"),
        ("B", "done", "done"),
    }
    check_invariants(db)


def test_a_generation_that_moves_while_replies_are_parsed_is_left_alone(tmp_path):
    from daydream import events as ev
    from daydream.db.log import append
    from daydream.worker.reparse import reparse

    db = scored_cohort(tmp_path, lambda row: 8, combos=2)
    catalog = write_catalog(
        tmp_path / "catalog",
        models=[model("m1")],
        combos=2,
        templates={
            **ESSAY_TEMPLATES,
            "evaluation": _judge_scale(1, 5)["evaluation"],
        },
    )
    run(daydream_cmd("catalog", "import", str(catalog), "--db", str(db)))
    [first, second] = [
        r[0]
        for r in query(
            db, "SELECT gen_id FROM generations WHERE stage = 'evaluation' ORDER BY rowid"
        )
    ][:2]

    def meanwhile(done: int, total: int) -> None:  # a worker claims one of them again
        other = connect(db)
        try:
            append(
                other,
                [
                    ev.AttemptStarted(
                        gen_id=first, attempt=2, worker="w", lease_expires_at="2030-01-01T00:00:00Z"
                    )
                ],
                actor="w",
            )
        finally:
            other.close()

    conn = connect(db)
    try:
        report = reparse(conn, "k", stage="evaluation", progress=meanwhile)
    finally:
        conn.close()
    assert (report.changed, report.moved, report.events) == (4, 1, 3)
    assert query(
        db,
        "SELECT gen_id, status FROM generations WHERE gen_id IN (?, ?) ORDER BY gen_id",
        sorted([first, second]),
    ) == sorted([(first, "running"), (second, "failed")])
