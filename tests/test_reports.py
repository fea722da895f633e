"""Reports, rankings and the curation loop, checked against hand-computed numbers.

The fixture cohort (example catalog, with feasibility-rubric re-scaled to 1-5 so two
scales meet) has one draft and three essays: E1 and E2 are replicates 1 and 2 of
focused-essay by offline-large, E3 is the copy-mode essay (generation model: the draft's,
offline-small). Judges: novelty-rubric (0-10) and feasibility-rubric (1-5), each by
offline-small (S) and offline-large (L); E1 also has a second novelty/S replicate. Scores
are appended as events by hand:

    essay  novelty S   novelty L   feasibility S   feasibility L
    E1     8, 9        10          4               2
    E2     6           7           5               parse failure
    E3     3           never run   1               2

Thresholds: novelty high >= 8, low <= 3, top 10; feasibility high >= 4.2, low <= 2.2, top 5.
"""

from __future__ import annotations

import csv
import html
import io
import json
import random
import re
import shutil
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from daydream.catalog.load import load_catalog
from daydream.catalog.recording import import_catalog
from daydream.cli import cli
from daydream.db.connection import connect
from daydream.errors import ConfigError, PlanError, SpecError
from daydream.plan.write import plan_cohort
from daydream.results.curation import curation_rows, export_essays, rank_essays, write_ranking
from daydream.results.reports import build_report, write_report
from daydream.results.rows import EVALUATION_COLUMNS, cohort_rows, csv_text
from daydream.results.scores import stability
from tests.example_catalog import EXAMPLE
from tests.reference_views import REFERENCE
from tests.scored import complete, fail

NOV, FEAS = "novelty-rubric", "feasibility-rubric"
S, L = "offline-small", "offline-large"


def _catalog(tmp_path: Path) -> Path:
    directory = tmp_path / "catalog"
    shutil.copytree(EXAMPLE, directory)
    templates = directory / "templates.yaml"
    text = templates.read_text(encoding="utf-8")
    block = re.search(r"- id: feasibility-rubric\n(?:    .*\n)*", text).group(0)
    assert "scale: [0, 10]" in block
    templates.write_text(
        text.replace(block, block.replace("scale: [0, 10]", "scale: [1, 5]")), encoding="utf-8"
    )
    return directory


def _rows() -> list[dict]:
    base = {"combo_id": "fungal-market", "draft_template": "rolling-idea", "draft_llm": S}
    rows = []
    for essay in (
        {"essay_template": "focused-essay", "essay_llm": L, "essay_replicate": 1},
        {"essay_template": "focused-essay", "essay_llm": L, "essay_replicate": 2},
        {"essay_template": "idea-verbatim", "essay_llm": None},
    ):
        for template in (NOV, FEAS):
            for model in (S, L):
                rows.append(
                    {**base, **essay, "evaluation_template": template, "evaluation_llm": model}
                )
    rows.append(
        {**rows[0], "evaluation_template": NOV, "evaluation_llm": S, "evaluation_replicate": 2}
    )
    return rows


@pytest.fixture
def cohort(tmp_path):
    """The database path and the ids: {"draft", "E1", "E2", "E3", (essay, tpl, model, rep): id}."""
    db = tmp_path / "r.db"
    conn = connect(db)
    import_catalog(conn, load_catalog(_catalog(tmp_path)), actor="test")
    plan_cohort(conn, tmp_path / "spec.yaml", "c1", rows=_rows())
    ids: dict = {}
    for gen_id, stage, replicate, mode in conn.execute(
        "SELECT gen_id, stage, replicate, mode FROM generations"
    ):
        if stage == "draft":
            ids["draft"] = gen_id
        elif stage == "essay":
            ids["E3" if mode == "copy" else f"E{replicate}"] = gen_id
    essay_names = {v: k for k, v in ids.items()}
    for gen_id, template, model, replicate, parent in conn.execute(
        "SELECT gen_id, template_id, model_id, replicate, parent_gen_id FROM generations"
        " WHERE stage = 'evaluation'"
    ):
        ids[(essay_names[parent], template, model, replicate)] = gen_id
    complete(conn, ids["draft"], "Draft notes.\nIDEA: fungal market makers")
    complete(conn, ids["E1"], "Essay one: mycelial market makers.")
    complete(conn, ids["E2"], "Essay two: a second draw.")
    complete(conn, ids["E3"], "fungal market makers", mode="copy")
    scores = {
        ("E1", NOV, S, 1): 8,
        ("E1", NOV, S, 2): 9,
        ("E1", NOV, L, 1): 10,
        ("E1", FEAS, S, 1): 4,
        ("E1", FEAS, L, 1): 2,
        ("E2", NOV, S, 1): 6,
        ("E2", NOV, L, 1): 7,
        ("E2", FEAS, S, 1): 5,
        ("E3", NOV, S, 1): 3,
        ("E3", FEAS, S, 1): 1,
        ("E3", FEAS, L, 1): 2,
    }
    for key, score in scores.items():
        complete(conn, ids[key], f"reasoning\nSCORE: {score}", score=float(score))
    fail(conn, ids[("E2", FEAS, L, 1)])
    conn.close()
    return db, ids


def _report(db):
    conn = connect(db)
    try:
        return build_report(conn, "c1")
    finally:
        conn.close()


def _pick(rows, **where):
    found = [r for r in rows if all(r[k] == v for k, v in where.items())]
    assert len(found) == 1, (where, found)
    return found[0]


def test_evaluation_table_lists_every_evaluation_with_lineage_and_outcome(cohort):
    db, ids = cohort
    rows = _report(db).tables["evaluation_scores"].rows
    assert len(rows) == 13
    assert [r["essay_gen_id"] for r in rows] == [ids["E1"]] * 5 + [ids["E2"]] * 4 + [ids["E3"]] * 4
    failed = _pick(rows, gen_id=ids[("E2", FEAS, L, 1)])
    assert (failed["status"], failed["state"], failed["score"]) == ("failed", "parse_failed", None)
    assert failed["error"] == "no SCORE line in the last lines"
    missing = _pick(rows, gen_id=ids[("E3", NOV, L, 1)])
    assert (missing["status"], missing["state"], missing["score"]) == ("ready", None, None)
    copy = _pick(rows, gen_id=ids[("E3", FEAS, S, 1)])
    assert (copy["essay_mode"], copy["generation_model"], copy["draft_model"]) == ("copy", S, S)
    assert (copy["scale_min"], copy["scale_max"], copy["score"]) == (1.0, 5.0, 1.0)


def test_essay_pivot_keeps_replicates_and_copy_essays_apart(cohort):
    db, ids = cohort
    table = _report(db).tables["essay_pivot"]
    judges = [
        "feasibility-rubric__offline-large",
        "feasibility-rubric__offline-small",
        "novelty-rubric__offline-large",
        "novelty-rubric__offline-small",
    ]
    assert table.columns[11:] == [
        *(c for j in judges for c in (j, f"{j}_min", f"{j}_max", f"{j}_n")),
        "mean",
        "std",
        "n",
        "judges",
        "mean_unit",
        "ci_low",
        "ci_high",
    ]
    e1, e2, e3 = table.rows
    assert [e1["essay_gen_id"], e2["essay_gen_id"], e3["essay_gen_id"]] == [
        ids["E1"],
        ids["E2"],
        ids["E3"],
    ]
    assert (e1["essay_replicate"], e2["essay_replicate"]) == (1, 2)
    assert (e3["essay_mode"], e3["generation_model"]) == ("copy", S)

    def judge(row, key):
        return (row[key], row[f"{key}_min"], row[f"{key}_max"], row[f"{key}_n"])

    assert judge(e1, "novelty-rubric__offline-small") == (8.5, 8.0, 9.0, 2)
    assert judge(e1, "novelty-rubric__offline-large") == (10.0, 10.0, 10.0, 1)
    assert judge(e1, "feasibility-rubric__offline-large") == (2.0, 2.0, 2.0, 1)
    assert judge(e2, "feasibility-rubric__offline-large") == (None, None, None, 0)
    assert judge(e3, "novelty-rubric__offline-large") == (None, None, None, 0)
    assert judge(e3, "feasibility-rubric__offline-small") == (1.0, 1.0, 1.0, 1)
    summary = ("mean", "std", "n", "judges", "mean_unit")
    assert tuple(e1[k] for k in summary) == (6.6, 3.435, 5, 4, 0.74)
    assert tuple(e2[k] for k in summary) == (6.0, 1.0, 3, 3, 0.767)
    assert tuple(e3[k] for k in summary) == (2.0, 1.0, 3, 3, 0.183)
    # Student's t interval over the essay's five scored evaluations: 6.6 +- t(.975, 4) *
    # 3.435 / sqrt(5).
    assert (e1["ci_low"], e1["ci_high"]) == (2.335, 10.865)


def test_final_results_count_high_low_and_top_on_each_templates_scale(cohort):
    db, _ = cohort
    rows = _report(db).tables["final_results"].rows
    stats = ("scale", "count", "mean", "std", "min", "max", "mean_unit")
    counts = ("top_of_scale", "top_of_scale_pct", "high", "high_pct", "low", "low_pct")
    overall = _pick(rows, analysis_type="overall")
    assert tuple(overall[k] for k in stats) == ("0-10;1-5", 11, 5.182, 3.06, 1.0, 10.0, 0.595)
    assert tuple(overall[k] for k in counts) == (2, 18.2, 4, 36.4, 4, 36.4)
    feas = _pick(rows, analysis_type="by_evaluation_template", evaluation_template=FEAS)
    assert tuple(feas[k] for k in stats) == ("1-5", 5, 2.8, 1.643, 1.0, 5.0, 0.45)
    assert tuple(feas[k] for k in counts) == (1, 20.0, 1, 20.0, 3, 60.0)
    nov = _pick(rows, analysis_type="by_evaluation_template", evaluation_template=NOV)
    assert tuple(nov[k] for k in ("count", "mean", "std", "high", "low", "top_of_scale")) == (
        6,
        7.167,
        2.483,
        3,
        1,
        1,
    )
    # The copy essay is in the per-model groups, under its draft's model.
    copy = _pick(rows, analysis_type="by_generation_model", generation_model=S)
    assert tuple(copy[k] for k in ("count", "mean", "high", "low", "top_of_scale")) == (
        3,
        2.0,
        0,
        3,
        0,
    )
    large = _pick(rows, analysis_type="by_generation_model", generation_model=L)
    assert tuple(large[k] for k in ("count", "mean", "std", "high", "low", "top_of_scale")) == (
        8,
        6.375,
        2.669,
        4,
        1,
        2,
    )
    single = _pick(
        rows,
        analysis_type="by_generation_vs_evaluation_model",
        generation_model=S,
        evaluation_model=L,
    )
    assert (single["count"], single["mean"], single["std"]) == (1, 2.0, None)
    assert [r["analysis_type"] for r in rows].count("by_essay_template_and_generation_model") == 2
    assert {r["analysis_type"] for r in rows} == {
        "by_draft_template",
        "by_draft_model",
        "by_draft_replicate",
        "by_essay_template",
        "by_essay_replicate",
        "by_generation_model",
        "by_essay_template_and_generation_model",
        "by_evaluation_template",
        "by_evaluation_model",
        "by_evaluation_template_and_model",
        "by_generation_vs_evaluation_model",
        "by_combo",
        "overall",
    }


def test_judge_agreement_classes_scale_with_the_template(cohort):
    db, ids = cohort
    rows = _report(db).tables["judge_agreement"].rows
    got = [
        (
            r["essay_gen_id"],
            r["evaluation_template"],
            r["judges"],
            r["mean"],
            r["range"],
            r["range_pct"],
            r["stability"],
        )
        for r in rows
    ]
    assert got == [
        (ids["E1"], FEAS, 2, 3.0, 2.0, 50.0, "poor_agreement"),
        (ids["E1"], NOV, 2, 9.25, 1.5, 15.0, "moderate_agreement"),
        (ids["E2"], FEAS, 1, 5.0, None, None, "insufficient_data"),
        (ids["E2"], NOV, 2, 6.5, 1.0, 10.0, "high_agreement"),
        (ids["E3"], FEAS, 2, 1.5, 1.0, 25.0, "low_agreement"),
        (ids["E3"], NOV, 1, 3.0, None, None, "insufficient_data"),
    ]
    assert _pick(rows, essay_gen_id=ids["E1"], evaluation_template=NOV)["std"] == 1.061
    assert _pick(rows, essay_gen_id=ids["E1"], evaluation_template=NOV)["judge_models"] == (
        "offline-large, offline-small"
    )


def test_stability_thresholds_are_upstreams_on_a_0_to_9_scale():
    assert stability(1.0, 2, 0, 9) == "high_agreement"
    assert stability(1.5, 2, 0, 9) == "moderate_agreement"
    assert stability(2.0, 2, 0, 9) == "moderate_agreement"
    assert stability(3.0, 3, 0, 9) == "low_agreement"
    assert stability(3.01, 3, 0, 9) == "poor_agreement"
    assert stability(0.0, 1, 0, 9) == "insufficient_data"
    # Scaled: on 1-5 (span 4) a range of 1 is above 2 * 4 / 9 and below 3 * 4 / 9.
    assert stability(1.0, 2, 1, 5) == "low_agreement"
    assert stability(10 / 9, 2, 0, 10) == "high_agreement"


def test_top_of_scale_finds_each_templates_maximum(cohort):
    db, ids = cohort
    rows = _report(db).tables["top_of_scale"].rows
    assert [(r["gen_id"], r["score"], r["scale_max"]) for r in rows] == [
        (ids[("E1", NOV, L, 1)], 10.0, 10.0),
        (ids[("E2", FEAS, S, 1)], 5.0, 5.0),
    ]


def test_summary_counts_outcomes_and_classes(cohort):
    db, _ = cohort
    s = _report(db).summary
    assert (s["evaluations"], s["scored"], s["failed"], s["unfinished"]) == (13, 11, 1, 1)
    assert (s["essays"], s["copy_essays"], s["top_of_scale"], s["scored_pct"]) == (3, 1, 2, 84.6)
    assert s["agreement"] == {
        "high_agreement": 1,
        "moderate_agreement": 1,
        "low_agreement": 1,
        "poor_agreement": 1,
        "insufficient_data": 2,
    }


def test_sql_views_agree_with_the_report(cohort):
    db, ids = cohort
    report = _report(db)
    conn = connect(db)
    long = {
        (r["essay_gen_id"], r["judge"]): (r["mean"], r["min"], r["max"], r["n"])
        for r in conn.execute("SELECT * FROM essay_scores WHERE cohort_id = 'c1'")
    }
    assert len(long) == 12
    for row in report.tables["essay_pivot"].rows:
        for judge in report.judges:
            expected = tuple(row[k] for k in (judge, f"{judge}_min", f"{judge}_max", f"{judge}_n"))
            assert long[(row["essay_gen_id"], judge)] == expected
    summary = {
        r["essay_gen_id"]: (r["mean"], r["n"], r["judges"], r["mean_unit"])
        for r in conn.execute("SELECT * FROM essay_score_summary WHERE cohort_id = 'c1'")
    }
    assert summary == {
        ids["E1"]: (6.6, 5, 4, 0.74),
        ids["E2"]: (6.0, 3, 3, 0.767),
        ids["E3"]: (2.0, 3, 3, 0.183),
    }
    agreement = [
        (
            r["essay_gen_id"],
            r["evaluation_template"],
            r["judges"],
            r["mean"],
            r["range"],
            r["stability"],
            r["judge_models"],
        )
        for r in conn.execute(
            "SELECT * FROM judge_agreement WHERE cohort_id = 'c1'"
            " ORDER BY essay_gen_id, evaluation_template"
        )
    ]
    expected = sorted(
        (
            r["essay_gen_id"],
            r["evaluation_template"],
            r["judges"],
            r["mean"],
            r["range"],
            r["stability"],
            r["judge_models"],
        )
        for r in report.tables["judge_agreement"].rows
    )
    assert agreement == expected
    top = [r["gen_id"] for r in conn.execute("SELECT gen_id FROM top_of_scale ORDER BY score DESC")]
    assert top == [ids[("E1", NOV, L, 1)], ids[("E2", FEAS, S, 1)]]
    conn.close()


@pytest.mark.parametrize("catalog", ["as scored", "novelty rescaled after scoring"])
@pytest.mark.parametrize("view", ["essay_score_summary", "judge_agreement", "top_of_scale"])
def test_report_views_read_from_the_cells_show_what_a_pass_over_every_evaluation_shows(
    cohort, tmp_path, view, catalog
):
    """The report views read the score cells; on a cohort with two scales, a parse
    failure, an unrun judge and scores at the maximum they show, row for row, what their
    earlier definitions over every evaluation show (tests/reference_views.py). Also once
    the novelty rubric's scale changed (0-10 to 0-20) after its evaluations were scored:
    each score stays on the scale of the version it was parsed with."""
    db, _ = cohort
    if catalog != "as scored":
        rescaled = _catalog(tmp_path / "rescaled")
        templates = rescaled / "templates.yaml"
        text = templates.read_text(encoding="utf-8")
        block = re.search(r"- id: novelty-rubric\n(?:    .*\n)*", text).group(0)
        templates.write_text(
            text.replace(block, block.replace("scale: [0, 10]", "scale: [0, 20]")),
            encoding="utf-8",
        )
        conn = connect(db)
        import_catalog(conn, load_catalog(rescaled), actor="test")
        versions = conn.execute(
            "SELECT count(*) FROM template_versions WHERE template_id = ?", (NOV,)
        ).fetchone()[0]
        conn.close()
        assert versions == 2
    conn = connect(db)
    try:
        order = "cohort_id, essay_gen_id" + (", gen_id" if view == "top_of_scale" else "")
        if view == "judge_agreement":
            order += ", evaluation_template"
        new = [dict(r) for r in conn.execute(f"SELECT * FROM {view} ORDER BY {order}")]
        old = [
            dict(r)
            for r in conn.execute(f"SELECT * FROM ({REFERENCE[view]}) ORDER BY {order}")
        ]
    finally:
        conn.close()
    assert len(new) == len(old) >= 2
    for mine, theirs in zip(new, old, strict=True):
        assert mine == pytest.approx(theirs)


# What the report read before cohort_rows: the evaluation_scores view in lineage order,
# and the essays that are members or parents of an evaluation.
_EVALUATIONS_SQL = (
    "SELECT s.* FROM evaluation_scores s"
    " JOIN cohort_members m ON m.gen_id = s.gen_id AND m.cohort_id = ?"
    " ORDER BY s.combo_id, s.draft_template, s.draft_replicate, s.essay_template,"
    " s.generation_model, s.essay_replicate, s.essay_gen_id, s.evaluation_template,"
    " s.evaluation_model, s.evaluation_replicate, s.gen_id"
)
_ESSAYS_SQL = (
    "SELECT e.gen_id FROM generations e LEFT JOIN generations d ON d.gen_id = e.parent_gen_id"
    " WHERE e.stage = 'essay' AND e.gen_id IN ("
    "   SELECT gen_id FROM cohort_members WHERE cohort_id = ? AND stage = 'essay'"
    "   UNION SELECT v.parent_gen_id FROM cohort_members m JOIN generations v ON v.gen_id = m.gen_id"
    "   WHERE m.cohort_id = ? AND m.stage = 'evaluation')"
    " ORDER BY coalesce(d.combo_id, e.combo_id), d.template_id, d.replicate, e.template_id,"
    " coalesce(e.model_id, d.model_id), e.replicate, e.gen_id"
)


@pytest.mark.parametrize("members", ["every essay", "one essay not a member"])
def test_cohort_rows_read_the_view_s_rows_in_its_order(cohort, tmp_path, members):
    """cohort_rows reads the evaluations and their essays' lineage apart; it gives the
    evaluation_scores view's rows in the lineage order, and the essays in theirs, also for
    an essay that is only the parent of the cohort's evaluations (not a member)."""
    db, ids = cohort
    if members != "every essay":
        raw = sqlite3.connect(db)
        raw.execute("DELETE FROM cohort_members WHERE gen_id = ?", (ids["E2"],))
        raw.commit()
        raw.close()
    conn = connect(db)
    try:
        essays, evaluations = cohort_rows(conn, "c1")
        view = [dict(r) for r in conn.execute(_EVALUATIONS_SQL, ("c1",))]
        order = [r[0] for r in conn.execute(_ESSAYS_SQL, ("c1", "c1"))]
    finally:
        conn.close()
    assert evaluations == [{c: r[c] for c in EVALUATION_COLUMNS} for r in view]
    assert [e["essay_gen_id"] for e in essays] == order
    assert len(order) == 3 and len(evaluations) == 13


def test_rank_essays_takes_the_best_score_per_model_then_the_mean(cohort):
    db, ids = cohort
    conn = connect(db)
    ranking = rank_essays(conn, "c1", NOV)
    got = [
        (
            r["selection_rank"],
            r["essay_gen_id"],
            r["avg_score"],
            r["max_score"],
            r["models_covered"],
            r["score__offline-large"],
            r["score__offline-small"],
        )
        for r in ranking.rows
    ]
    assert got == [
        (1, ids["E1"], 9.5, 10.0, 2, 10.0, 9.0),
        (2, ids["E2"], 6.5, 7.0, 2, 7.0, 6.0),
        (3, ids["E3"], 3.0, 3.0, 1, None, 3.0),
    ]
    browse = conn.execute(
        "SELECT essay_gen_id, avg_score, max_score, models_covered FROM top_essays"
        " WHERE cohort_id = 'c1' AND evaluation_template = ? ORDER BY rank",
        (NOV,),
    ).fetchall()
    assert [tuple(r) for r in browse] == [(g[1], g[2], g[3], g[4]) for g in got]
    assert [r["essay_gen_id"] for r in rank_essays(conn, "c1", NOV, top_n=2).rows] == [
        ids["E1"],
        ids["E2"],
    ]
    # The span keeps every essay within 3 of the best average (9.5 - 3 = 6.5, inclusive).
    spanned = rank_essays(conn, "c1", NOV, span=3.0)
    assert [r["essay_gen_id"] for r in spanned.rows] == [ids["E1"], ids["E2"]]
    assert (spanned.rows[0]["selection_method"], spanned.rows[0]["selection_limit"]) == (
        "score_span",
        "3",
    )
    one = rank_essays(conn, "c1", NOV, models=[L])
    assert [(r["essay_gen_id"], r["avg_score"]) for r in one.rows] == [
        (ids["E1"], 10.0),
        (ids["E2"], 7.0),
    ]
    assert one.columns[:7] == [
        "selection_rank",
        "selected",
        "essay_gen_id",
        "avg_score",
        "max_score",
        "models_covered",
        "score__offline-large",
    ]
    with pytest.raises(ConfigError) as caught:
        rank_essays(conn, "c1", "novelty")
    assert str(caught.value) == (
        'cohort "c1" has no evaluations with template "novelty" (its evaluation templates:'
        " feasibility-rubric, novelty-rubric); pick one with --template"
    )
    with pytest.raises(ConfigError) as caught:
        rank_essays(conn, "c1", NOV, models=["sonnet-4.5"])
    assert str(caught.value) == (
        'model "sonnet-4.5" did not judge "novelty-rubric" in cohort "c1"'
        " (its judges: offline-large, offline-small); fix --models"
    )
    with pytest.raises(PlanError) as caught:
        build_report(conn, "nope")
    assert str(caught.value) == (
        'cohort "nope" does not exist (cohorts: c1; plan one with: daydream plan SPEC --cohort ID)'
    )
    conn.close()


def test_export_writes_each_essay_headed_by_its_lineage(cohort, tmp_path):
    db, ids = cohort
    conn = connect(db)
    ranking = rank_essays(conn, "c1", NOV)
    written = export_essays(conn, ranking, tmp_path / "out")
    conn.close()
    assert [p.name for p in written] == [
        f"1-{ids['E1']}.md",
        f"2-{ids['E2']}.md",
        f"3-{ids['E3']}.md",
    ]
    first = written[0].read_text(encoding="utf-8")
    assert first.startswith(f"# Essay {ids['E1']}\n")
    assert "- Scores (best per judge model): offline-large 10, offline-small 9\n" in first
    assert "- Combination: fungal-market (Mycelial Networks + Market Making)\n" in first
    assert (
        f"- Draft: {ids['draft']}, template rolling-idea, model offline-small, replicate 1\n"
        in first
    )
    assert "- Essay: template focused-essay, model offline-large, replicate 1\n" in first
    assert first.endswith("---\n\nEssay one: mycelial market makers.\n")
    copy = written[2].read_text(encoding="utf-8")
    assert "- Essay: template idea-verbatim, copy of the draft (no model call;" in copy


def test_curation_loop_rejudges_only_the_chosen_essays(cohort, tmp_path):
    db, ids = cohort
    listing = tmp_path / "list.csv"
    runner = CliRunner()
    result = runner.invoke(
        cli, ["top", "c1", "--db", str(db), "--template", NOV, "-n", "2", "--out", str(listing)]
    )
    assert result.exit_code == 0, result.output
    with listing.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["essay_gen_id"], r["selected"]) for r in rows] == [
        (ids["E1"], "true"),
        (ids["E2"], "true"),
    ]
    again = runner.invoke(
        cli, ["top", "c1", "--db", str(db), "--template", NOV, "--out", str(listing)]
    )
    assert again.exit_code == 1
    assert (
        "exists (it may hold your edits); choose another --out or add --overwrite" in again.output
    )
    # The researcher keeps only E1.
    rows[1]["selected"] = "false"
    with listing.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    result = runner.invoke(
        cli,
        [
            "plan",
            "--db",
            str(db),
            "--from-list",
            str(listing),
            "--cohort",
            "c2",
            "--judge",
            f"{NOV}:{L}",
            "--judge",
            f"{FEAS}:sonnet-4.5",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    plan = json.loads(result.output)
    assert plan["stages"] == {
        "draft": {"in_cohort": 0, "new": 0, "shared": 0, "completed": 0},
        "essay": {"in_cohort": 1, "new": 0, "shared": 1, "completed": 1},
        "evaluation": {"in_cohort": 2, "new": 1, "shared": 1, "completed": 1},
    }
    assert plan["new_calls_by_model"] == {"sonnet-4.5": 1}
    conn = connect(db)
    members = conn.execute(
        "SELECT g.stage, g.parent_gen_id, g.template_id, g.model_id, g.status"
        " FROM cohort_members m JOIN generations g USING (gen_id)"
        " WHERE m.cohort_id = 'c2' ORDER BY g.stage, g.model_id"
    ).fetchall()
    assert [tuple(r) for r in members] == [
        ("essay", ids["draft"], "focused-essay", L, "done"),
        ("evaluation", ids["E1"], NOV, L, "done"),
        ("evaluation", ids["E1"], FEAS, "sonnet-4.5", "ready"),
    ]
    new_report = build_report(conn, "c2")
    conn.close()
    assert (new_report.summary["evaluations"], new_report.summary["scored"]) == (2, 1)
    assert [r["essay_gen_id"] for r in new_report.tables["essay_pivot"].rows] == [ids["E1"]]


def test_curation_rows_default_to_the_lists_judges_and_check_the_list(tmp_path):
    listing = tmp_path / "list.csv"
    listing.write_text(
        "selection_rank,selected,essay_gen_id,evaluation_template,source_models\n"
        '1,TRUE,e_a,novelty-rubric,"offline-large, offline-small"\n'
        '2,no,e_b,novelty-rubric,"offline-large, offline-small"\n'
        '3,y,e_c,novelty-rubric,"offline-large, offline-small"\n',
        encoding="utf-8",
    )
    assert curation_rows(listing) == [
        {"essay_id": "e_a", "evaluation_template": NOV, "evaluation_llm": L},
        {"essay_id": "e_a", "evaluation_template": NOV, "evaluation_llm": S},
        {"essay_id": "e_c", "evaluation_template": NOV, "evaluation_llm": L},
        {"essay_id": "e_c", "evaluation_template": NOV, "evaluation_llm": S},
    ]
    assert curation_rows(listing, [(FEAS, "sonnet-4.5")]) == [
        {"essay_id": "e_a", "evaluation_template": FEAS, "evaluation_llm": "sonnet-4.5"},
        {"essay_id": "e_c", "evaluation_template": FEAS, "evaluation_llm": "sonnet-4.5"},
    ]
    none = tmp_path / "none.csv"
    none.write_text("essay_gen_id,selected\ne_a,false\n", encoding="utf-8")
    with pytest.raises(SpecError) as caught:
        curation_rows(none, [(NOV, L)])
    assert str(caught.value) == (
        f"list {none}: no essay is selected (set selected to true on the rows to keep)"
    )
    bad = tmp_path / "bad.csv"
    bad.write_text("id,selected\ne_a,true\n", encoding="utf-8")
    with pytest.raises(SpecError) as caught:
        curation_rows(bad, [(NOV, L)])
    assert str(caught.value) == (
        f"list {bad}: no essay id column (expected essay_gen_id, parent_gen_id or essay_id;"
        " found: id, selected)"
    )


def test_plan_takes_exactly_one_of_spec_and_list(cohort, tmp_path):
    db, _ = cohort
    result = CliRunner().invoke(cli, ["plan", "--db", str(db), "--cohort", "x"])
    assert result.exit_code == 2
    assert "give exactly one of SPEC or --from-list LIST" in result.output


def test_report_command_writes_csv_json_and_a_self_contained_page(cohort, tmp_path):
    db, _ = cohort
    out = tmp_path / "rep"
    result = CliRunner().invoke(cli, ["report", "c1", "--db", str(db), "--out", str(out), "--html"])
    assert result.exit_code == 0, result.output
    assert "cohort c1: 13 evaluation(s), 11 scored (84.6%), 1 failed" in result.output
    assert sorted(p.name for p in out.iterdir()) == [
        "essay_pivot.csv",
        "evaluation_scores.csv",
        "final_results.csv",
        "judge_agreement.csv",
        "judge_calibration.csv",
        "judge_reliability.csv",
        "report.html",
        "top_of_scale.csv",
        "unscored_essays.csv",
    ]
    with (out / "final_results.csv").open(encoding="utf-8", newline="") as handle:
        overall = [r for r in csv.DictReader(handle) if r["analysis_type"] == "overall"]
    assert (overall[0]["count"], overall[0]["mean"], overall[0]["std"]) == ("11", "5.182", "3.06")
    page = (out / "report.html").read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.I)
    assert "http://" not in page and "https://" not in page
    assert "<script" not in page.lower() and "<link" not in page.lower()
    assert "<style>" in page and page.count("<svg") >= 2 + 4 + 2 + 1 + 1
    assert "Cohort c1" in page

    as_json = tmp_path / "json"
    result = CliRunner().invoke(
        cli, ["report", "c1", "--db", str(db), "--out", str(as_json), "--format", "json", "--json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["scored"] == 11
    pivot = json.loads((as_json / "essay_pivot.json").read_text(encoding="utf-8"))
    assert [r["mean"] for r in pivot] == [6.6, 6.0, 2.0]


def test_write_report_and_ranking_files(cohort, tmp_path):
    db, _ = cohort
    report = _report(db)
    written = write_report(report, tmp_path / "r")
    assert [p.name for p in written] == [
        "evaluation_scores.csv",
        "essay_pivot.csv",
        "final_results.csv",
        "judge_agreement.csv",
        "top_of_scale.csv",
        "judge_reliability.csv",
        "judge_calibration.csv",
        "unscored_essays.csv",
    ]
    conn = connect(db)
    ranking = rank_essays(conn, "c1", FEAS)
    conn.close()
    path = write_ranking(ranking, tmp_path / "list.csv")
    header = path.read_text(encoding="utf-8").splitlines()[0]
    assert header == (
        "selection_rank,selected,essay_gen_id,avg_score,max_score,models_covered,"
        "score__offline-large,score__offline-small,evaluation_template,source_models,combo_id,"
        "draft_template,draft_model,draft_replicate,essay_template,generation_model,"
        "essay_replicate,selection_method,selection_limit,source_cohort_id"
    )
    with pytest.raises(ConfigError):
        write_ranking(ranking, path)


def test_the_report_page_holds_its_best_essays_texts_every_axis_and_the_unscored(browse_db, tmp_path):
    """The demo: its best essays' texts (folded), a small combination x axis matrix per
    varied axis, every lineage axis of each best essay, and the essays a rubric left
    without a score, with the reason; still one self-contained file."""
    conn = connect(browse_db)
    report = build_report(conn, "demo")
    texts = {
        r["gen_id"]: r["text"]
        for r in conn.execute(
            "SELECT g.gen_id, t.text FROM generations g JOIN texts t ON t.hash = g.parsed_hash"
            " WHERE g.stage = 'essay'"
        )
    }
    conn.close()
    [path] = [p for p in write_report(report, tmp_path, html=True) if p.suffix == ".html"]
    page = path.read_text(encoding="utf-8")
    best = sorted(
        (r for r in report.tables["essay_pivot"].rows if r["mean_unit"] is not None),
        key=lambda r: (-r["mean_unit"], r["essay_gen_id"]),
    )[:10]
    assert best
    for rank, row in enumerate(best, 1):
        assert f"{rank}. {row['essay_gen_id']}" in page
        assert f"<details><summary>Read the essay ({len(texts[row['essay_gen_id']]):,} characters)</summary><pre>{html.escape(texts[row['essay_gen_id']])}</pre>" in page
    head = page[page.index("<h2>Best essays</h2>") :].split("</thead>")[0]
    for title in ("draft model", "draft rep", "essay rep", "draft template", "generation model"):
        assert f"<th>{title}</th>" in head
    for axis in ("draft template", "essay template", "generation model", "judge model"):
        assert f"<figcaption>combination x {axis}</figcaption>" in page
    assert "<figcaption>combination x draft model</figcaption>" not in page  # one level only
    unscored = report.tables["unscored_essays"].rows
    assert unscored and all(r["evaluation_template"] == "clarity-five" for r in unscored)
    section = page[page.index("<h2>Essays without a score</h2>") :]
    for r in unscored:
        assert f"<td class=\"t\">{r['essay_gen_id']}</td><td class=\"t\">clarity-five</td><td>1</td><td class=\"t\">its evaluations: 1 failed (parse_failed)</td>" in section
    assert "<script" not in page.lower() and "http://" not in page and "https://" not in page


def test_csv_text_is_what_csv_writer_writes():
    # csv_text builds a column at a time; every cell must come out as csv.writer writes
    # it: quoted for a comma, quote or line break, floats (numpy's too) by float's repr,
    # None and missing keys empty, a lone empty cell quoted.
    import numpy as np

    values = ["a", "", "x,y", 'say "hi"', "two\nlines", "cr\rx", "a\r\nb", " pad ", "é",
              0, -3, True, 0.0, -0.0, 2.675, 1e22, float("nan"), np.float64(2.5), None, (1, "t")]  # fmt: skip
    rng = random.Random(4)
    for _ in range(500):
        columns = [rng.choice(["c", "d,e", 'q"']) + str(i) for i in range(rng.randint(1, 4))]
        rows = [
            {c: rng.choice(values) for c in columns if rng.random() > 0.1}
            for _ in range(rng.randint(0, 5))
        ]
        buffer = io.StringIO(newline="")
        writer = csv.writer(buffer)
        writer.writerow(columns)
        writer.writerows([row.get(c) for c in columns] for row in rows)
        assert csv_text(columns, rows) == buffer.getvalue(), (columns, rows)
