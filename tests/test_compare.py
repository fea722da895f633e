"""Paired comparisons and the report's intervals on cohorts whose true difference is known:
scores written so that essay template B is exactly one point above A on every
combination, a null case where B's advantage cancels out, three judges a point apart,
and two cohorts sharing their essays."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from daydream.cli import cli
from daydream.db.connection import connect
from daydream.errors import OptionError
from daydream.results.comparison import compare_cohorts, compare_levels
from daydream.results.inference import cluster_totals, seed_for
from daydream.results.reports import build_report
from tests.scenario import combo_ids, plan, write_spec
from tests.scored import scipy_interval, scored_cohort

COMBOS = combo_ids(8)


def _base(row) -> float:
    """A score that varies by combination and judge, so nothing is constant but B - A."""
    return 2 + COMBOS.index(row["combo"]) % 5 + (row["judge"] == "m2")


def one_point_up(row):
    return _base(row) + (row["essay_template"] == "B")


def cancelling(row):
    """B is a point up on even combinations and a point down on odd ones: no difference."""
    sign = 1 if COMBOS.index(row["combo"]) % 2 == 0 else -1
    return _base(row) + (sign if row["essay_template"] == "B" else 0)


@pytest.fixture
def known(tmp_path, request):

    return scored_cohort(tmp_path, request.param, judges=("m1", "m2"))


def _compare(db, axis, **options):
    conn = connect(db)
    try:
        return compare_levels(conn, "k", axis, **options).comparisons
    finally:
        conn.close()


@pytest.mark.parametrize("known", [one_point_up], indirect=True)
def test_b_exactly_one_point_above_a_on_every_combination(known):
    [row] = _compare(known, "essay_template")
    assert (row["a"], row["b"], row["template"], row["matched_on"]) == (
        "A",
        "B",
        "judge",
        "the same drafts",
    )
    # 8 drafts x 2 judges are the pairs; the combinations are the clusters.
    assert (row["n_pairs"], row["n_combinations"], row["unmatched_a"], row["unmatched_b"]) == (
        16,
        8,
        0,
        0,
    )
    assert (row["mean_diff"], row["ci_low"], row["ci_high"]) == (1.0, 1.0, 1.0)
    # Eight combinations all one way: the exact signed-rank p-value is 2 / 2**8.
    assert row["p_value"] == pytest.approx(2 / 2**8, rel=1e-3)
    assert (row["effect_size"], row["verdict"]) == (1.0, "b_higher")
    assert row["mean_b"] - row["mean_a"] == pytest.approx(1.0)
    assert row["summary"] == (
        "B scores 1.00 higher than A on the same drafts (95% CI 1.00 to 1.00, n=16 pairs in"
        " 8 combinations; Wilcoxon p=0.008, rank-biserial r=1.00)"
    )


@pytest.mark.parametrize("known", [cancelling], indirect=True)
def test_null_case_interval_contains_zero(known):
    [row] = _compare(known, "essay_template", levels=["A", "B"])
    assert row["mean_diff"] == 0.0
    assert row["ci_low"] < 0 < row["ci_high"]
    assert row["p_value"] == 1.0
    assert row["verdict"] == "no_clear_difference"
    assert row["summary"].startswith(
        "no clear difference between A and B on the same drafts: B minus A is +0.00 (95% CI"
    )


@pytest.mark.parametrize("known", [one_point_up], indirect=True)
def test_the_reports_intervals_resample_combinations(known):
    conn = connect(known)
    try:
        report = build_report(conn, "k")
    finally:
        conn.close()
    rows = report.tables["final_results"].rows
    b = next(
        r for r in rows if r["analysis_type"] == "by_essay_template" and r["essay_template"] == "B"
    )
    evaluations = [r for r in report.tables["evaluation_scores"].rows if r["essay_template"] == "B"]
    sums, counts = cluster_totals(
        [r["score"] for r in evaluations], [r["combo_id"] for r in evaluations]
    )
    expected = scipy_interval(sums, counts, seed=seed_for("by_essay_template", "B"))
    assert (b["ci_unit"], b["ci_clusters"], b["count"]) == ("combo_id", 8, 16)
    assert (b["ci_low"], b["ci_high"]) == (round(expected.low, 3), round(expected.high, 3))
    assert b["ci_low"] < b["mean"] < b["ci_high"]
    combo = next(r for r in rows if r["analysis_type"] == "by_combo")
    assert (combo["ci_unit"], combo["ci_clusters"]) == ("essay_gen_id", 2)
    unit = (b["mean_unit_ci_low"], b["mean_unit_ci_high"])
    assert unit == pytest.approx((expected.low / 10, expected.high / 10), abs=1e-3)


@pytest.mark.parametrize("known", [one_point_up], indirect=True)
def test_the_html_report_draws_error_bars(known, tmp_path):
    out = tmp_path / "rep"
    result = CliRunner().invoke(
        cli, ["report", "k", "--db", str(known), "--out", str(out), "--html"]
    )
    assert result.exit_code == 0, result.output
    page = (out / "report.html").read_text(encoding="utf-8")
    section = page.split("<h2>Means with 95% confidence intervals</h2>")[1].split("<h2>")[0]
    # One chart per axis with two or more groups: essay template, judge model, and essay
    # template x generation model.
    assert section.count("<svg") == 3 and section.count("<circle") == 6
    assert section.count("stroke-width") == 6 * 3  # a bar and two caps per group
    assert ">B</text>" in section and "5.125 [4.25 to 6.125] n=16" in section
    assert "95% CI (combinations)" in page


def test_three_judges_a_point_apart_are_all_compared_with_holm(tmp_path):

    def judged(row):
        return 3 + COMBOS.index(row["combo"]) % 4 + int(row["judge"][1]) - 1

    db = scored_cohort(tmp_path, judged, judges=("m1", "m2", "m3"))
    rows = _compare(db, "judge_model")
    assert [(r["a"], r["b"], r["mean_diff"]) for r in rows] == [
        ("m1", "m2", 1.0),
        ("m1", "m3", 2.0),
        ("m2", "m3", 1.0),
    ]
    assert all(r["n_pairs"] == 16 and r["matched_on"] == "the same essays" for r in rows)
    # Three equal raw p-values 2 / 2**8: Holm multiplies the smallest by 3 and keeps the max.
    assert [r["p_adjusted"] for r in rows] == [pytest.approx(3 * 2 / 2**8, rel=5e-3)] * 3
    assert "Holm-adjusted p=0.023" in rows[0]["summary"]


def test_unmatched_units_are_counted_and_left_out(tmp_path):

    def some_b_failed(row):
        if row["essay_template"] == "B" and row["combo"] in ("c1", "c2") and row["judge"] == "m1":
            return None
        return one_point_up(row)

    db = scored_cohort(tmp_path, some_b_failed, judges=("m1", "m2"))
    [row] = _compare(db, "essay_template")
    assert (row["n_pairs"], row["unmatched_a"], row["unmatched_b"]) == (14, 2, 0)
    assert row["mean_diff"] == 1.0


def test_few_combinations_are_too_few_to_tell(tmp_path):

    db = scored_cohort(tmp_path, one_point_up, combos=3)
    [row] = _compare(db, "essay_template")
    assert row["verdict"] == "too_few"
    assert row["summary"] == (
        "too few combinations to tell (3; a paired test needs at least 6 to reach"
        " p < 0.05): B minus A is +1.00 over 3 pairs"
    )


def test_two_cohorts_compare_on_their_shared_essays(tmp_path):

    db = scored_cohort(tmp_path, one_point_up, judges=("m1", "m2"))
    spec = write_spec(
        tmp_path / "k2.yaml",
        {
            "combo_id": COMBOS,
            "draft_template": ["notes"],
            "draft_llm": ["m1"],
            "essay_template": ["A", "B"],
            "essay_llm": ["m1"],
            "evaluation_template": ["judge"],
            "evaluation_llm": ["m2"],
        },
    )
    plan(db, tmp_path / "catalog", spec, cohort="k2")
    conn = connect(db)
    try:
        [row] = compare_cohorts(conn, "k", "k2").comparisons
    finally:
        conn.close()
    # k averages both judges, k2 has only m2, one point above m1: half a point up.
    assert (row["axis"], row["a"], row["b"], row["matched_on"]) == (
        "cohort",
        "k",
        "k2",
        "the same essays",
    )
    assert (row["n_pairs"], row["mean_diff"], row["ci_low"], row["ci_high"]) == (16, 0.5, 0.5, 0.5)


@pytest.mark.parametrize("known", [one_point_up], indirect=True)
def test_compare_command_text_and_json(known):
    runner = CliRunner()
    text = runner.invoke(
        cli, ["compare", "k", "--axis", "essay_template", "--levels", "A", "B", "--db", str(known)]
    )
    assert text.exit_code == 0, text.output
    assert text.output.splitlines()[:3] == [
        "compare essay_template in cohort k (b minus a; 95% intervals resample combinations):",
        "  rubric judge, matched on the same drafts:",
        "    B vs A: B scores 1.00 higher than A on the same drafts (95% CI 1.00 to 1.00, n=16"
        " pairs in 8 combinations; Wilcoxon p=0.008, rank-biserial r=1.00)",
    ]
    as_json = runner.invoke(
        cli, ["compare", "k", "--axis", "essay_template", "--json", "--db", str(known)]
    )
    [row] = json.loads(as_json.output)["comparisons"]
    for key in ("axis", "template", "a", "b", "n_pairs", "mean_diff", "ci_low", "ci_high"):
        assert key in row
    assert (row["axis"], row["template"], row["mean_diff"], row["effect_size"]) == (
        "essay_template",
        "judge",
        1.0,
        1.0,
    )
    assert row["p_value"] == pytest.approx(0.0078125, rel=1e-3)


@pytest.mark.parametrize("known", [one_point_up], indirect=True)
def test_compare_refuses_what_it_cannot_compare(known):
    runner = CliRunner()

    def error(*args):
        result = runner.invoke(cli, ["compare", *args, "--db", str(known)])
        assert result.exit_code == 2, result.output
        return result.output.strip().splitlines()[-1]

    assert error("k", "--axis", "combo") == (
        'Error: Invalid value for --axis: axis "combo" cannot be compared: use one of'
        " draft_template, draft_model, essay_template, generation_model, evaluation_model"
    )
    assert error("k", "--axis", "essay_template", "--levels", "A,C") == (
        'Error: Invalid value for --levels: essay_template "C" has no scores in cohort "k"'
        " (levels with scores: A, B)"
    )
    assert error("k") == (
        "Error: give --axis AXIS to compare levels within a cohort, or two cohorts to compare them"
    )
    assert error("k", "--axis", "draft_template") == (
        'Error: Invalid value for --axis: cohort "k" has scores at 1 level(s) of draft_template'
        " (notes): nothing to compare; pick another --axis"
    )
    with pytest.raises(OptionError, match='evaluation template "nope" has no scores'):
        conn = connect(known)
        try:
            compare_levels(conn, "k", "essay_template", template="nope")
        finally:
            conn.close()


def test_judge_reliability_matches_the_krippendorff_package(tmp_path):
    krippendorff = pytest.importorskip("krippendorff")

    def score(row):  # m2 one point above m1; replicates of a judge always agree
        return _base(row) + (row["essay_template"] == "B")

    db = scored_cohort(tmp_path, score, judges=("m1", "m2"), replicates=2)
    conn = connect(db)
    try:
        report = build_report(conn, "k")
    finally:
        conn.close()
    rows = {(r["scope"], r["evaluation_model"]): r for r in report.tables["judge_reliability"].rows}
    essays = sorted({r["essay_gen_id"] for r in report.tables["evaluation_scores"].rows})
    matrix = [
        [
            next(
                r["score"]
                for r in report.tables["evaluation_scores"].rows
                if r["essay_gen_id"] == essay and r["evaluation_model"] == judge
            )
            for essay in essays
        ]
        for judge in ("m1", "m2")
    ]
    expected = krippendorff.alpha(reliability_data=matrix, level_of_measurement="interval")
    judges = rows[("judge models", None)]
    assert (judges["coders"], judges["essays"], judges["icc_essays"]) == (2, 16, 16)
    assert judges["alpha"] == round(expected, 3)
    assert judges["alpha"] < 1 and judges["icc"] < 1  # a constant offset is disagreement
    for model in ("m1", "m2"):
        replicas = rows[("replicates", model)]
        assert (replicas["alpha"], replicas["alpha_reading"], replicas["icc"]) == (
            1.0,
            "reliable",
            1.0,
        )
    text = CliRunner().invoke(cli, ["report", "k", "--db", str(db), "--out", str(tmp_path / "r")])
    assert (
        f"judge, between judge models (2): alpha {judges['alpha']:.3f} ({judges['alpha_reading']},"
        " 16 essays)" in text.output
    )
    assert "detail, judge agreement classes" in text.output


def test_a_copy_template_is_compared_on_the_same_drafts(tmp_path):
    """A copy essay has no model: against it, the other template's essays of the same draft
    match whatever their model."""

    def written_beats_copied(row):
        return _base(row) + (2 if row["essay_template"] == "A" else 0)

    db = scored_cohort(tmp_path, written_beats_copied, essays=("A", "copy"))
    [row] = _compare(db, "essay_template", levels=["copy", "A"])
    assert (row["n_pairs"], row["unmatched_a"], row["unmatched_b"]) == (8, 0, 0)
    assert (row["mean_diff"], row["verdict"]) == (2.0, "b_higher")
