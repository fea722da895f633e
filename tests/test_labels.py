"""Human labels: the blind sheet, ratings checked against the rubric's scale and recorded as
events, the report's calibration of each judge against them, and the essay_ratings view."""

from __future__ import annotations

import csv
import json

import pytest
from click.testing import CliRunner

from daydream.cli import cli
from daydream.db.connection import connect
from daydream.results.html import render_html
from daydream.results.reports import build_report
from tests.scenario import combo_ids, query, scalar
from tests.scored import scored_cohort

COMBOS = combo_ids(8)


def _score(row):
    """m2 judges exactly one point above m1; B essays a point above A."""
    return 2 + COMBOS.index(row["combo"]) % 5 + (row["judge"] == "m2") + (row["essay_template"] == "B")


@pytest.fixture
def rated(tmp_path):
    """The cohort, its sheet exported, and the sheet filled by two raters who agree with m1."""
    db = scored_cohort(tmp_path, _score, judges=("m1", "m2"))
    sheet = tmp_path / "sheet.csv"
    result = CliRunner().invoke(
        cli, ["label", "export", "k", "--template", "judge", "--out", str(sheet), "--db", str(db)]
    )
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"wrote 16 essay(s) to {sheet}")
    m1 = dict(
        query(db, "SELECT essay_gen_id, score FROM evaluation_scores WHERE evaluation_model = 'm1'")
    )
    with sheet.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    filled = tmp_path / "filled.csv"
    with filled.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        for rater in ("ab", "cd"):
            for row in rows:
                writer.writerow({**row, "rater": rater, "score": m1[row["essay_gen_id"]]})
        writer.writerow({**rows[0], "rater": "ef", "score": ""})  # not rated yet
    return db, sheet, filled, rows


def test_the_sheet_is_blind_and_has_the_import_columns(rated):
    db, sheet, _, rows = rated
    assert list(rows[0]) == [
        "essay_gen_id", "evaluation_template", "rater", "score", "note", "scale", "essay_text",
    ]
    assert {(r["evaluation_template"], r["rater"], r["score"], r["scale"]) for r in rows} == {
        ("judge", "", "", "0-10")
    }
    essays = dict(query(db, "SELECT gen_id, parsed_hash FROM generations WHERE stage = 'essay'"))
    assert sorted(r["essay_gen_id"] for r in rows) == sorted(essays)
    assert [r["essay_gen_id"] for r in rows] != sorted(essays)  # shuffled
    assert rows[0]["essay_text"] == f"essay text of {rows[0]['essay_gen_id']}"
    again = CliRunner().invoke(
        cli, ["label", "export", "k", "--template", "judge", "--out", str(sheet), "--db", str(db)]
    )
    assert again.exit_code == 1
    assert again.output.strip() == (
        f"Error: {sheet} exists (it may hold ratings): pass --overwrite to replace it"
    )


def test_ratings_are_recorded_and_judges_calibrated_against_them(rated):
    db, _, filled, _ = rated
    runner = CliRunner()
    result = runner.invoke(cli, ["label", "import", str(filled), "--db", str(db)])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == (
        f"{filled}: 32 rating(s) recorded, 0 unchanged, 1 row(s) without a score skipped"
    )
    assert scalar(db, "SELECT count(*) FROM events WHERE type = 'rating.recorded'") == 32
    again = runner.invoke(cli, ["label", "import", str(filled), "--db", str(db), "--json"])
    assert (json.loads(again.output)["recorded"], json.loads(again.output)["unchanged"]) == (0, 32)

    conn = connect(db)
    try:
        report = build_report(conn, "k")
    finally:
        conn.close()
    rows = {r["evaluation_model"]: r for r in report.tables["judge_calibration"].rows}
    m1, m2, both = rows["m1"], rows["m2"], rows["(all judges)"]
    assert (m1["essays"], m1["raters"], m1["human_ratings"]) == (16, 2, 32)
    # The raters wrote m1's scores: perfect ranks, no bias, perfect agreement; m2 is one up.
    assert (m1["spearman"], m1["kendall"], m1["mean_bias"], m1["alpha_with_humans"]) == (
        1.0, 1.0, 0.0, 1.0,
    )
    assert (m2["spearman"], m2["kendall"], m2["mean_bias"], m2["human_alpha"]) == (
        1.0, 1.0, 1.0, 1.0,
    )
    assert m2["alpha_with_humans"] < 1.0
    assert both["mean_bias"] == 0.5
    page = render_html(report)
    section = page.split("<h2>Judges against human ratings</h2>")[1].split("<h2>")[0]
    assert section.count("<tr><td class=\"t\">judge</td>") == 3  # m1, m2, all judges
    view = query(
        db,
        "SELECT ratings, human_mean, judge_mean FROM essay_ratings WHERE essay_gen_id = ?",
        [report.tables["essay_pivot"].rows[0]["essay_gen_id"]],
    )
    [(ratings, human, judges)] = view
    assert (ratings, judges - human) == (2, 0.5)


def test_a_score_outside_the_scale_refuses_the_file_and_writes_nothing(rated, tmp_path):
    db, _, filled, rows = rated
    bad = tmp_path / "bad.csv"
    text = filled.read_text(encoding="utf-8").splitlines()
    lines = [text[0], *text[1:4]]
    with bad.open("w", encoding="utf-8", newline="") as handle:
        handle.write("\n".join(lines) + "\n")
    with bad.open("a", encoding="utf-8", newline="") as handle:
        csv.writer(handle).writerow([rows[0]["essay_gen_id"], "judge", "ab", "12", "", "", ""])
    events = scalar(db, "SELECT count(*) FROM events")
    result = CliRunner().invoke(cli, ["label", "import", str(bad), "--db", str(db)])
    assert result.exit_code == 1
    assert result.output.strip() == (
        f"Error: {bad} line {len(lines) + 1}: score \"12\" is outside judge's scale 0-10"
        " (fix the score)"
    )
    assert scalar(db, "SELECT count(*) FROM events") == events


def test_ratings_are_browsable_beside_the_judges_scores(rated):
    import asyncio

    from daydream.browse.app import make_datasette

    db, _, filled, rows = rated
    assert CliRunner().invoke(cli, ["label", "import", str(filled), "--db", str(db)]).exit_code == 0
    essay = rows[0]["essay_gen_id"]
    ds = make_datasette(db)
    name = db.stem

    async def fetch(path):
        return await ds.client.get(path)

    view = asyncio.run(fetch(f"/{name}/essay_ratings.json?essay_gen_id={essay}&_shape=array"))
    assert view.status_code == 200, view.text
    [row] = view.json()
    assert (row["ratings"], row["judge_mean"] - row["human_mean"]) == (2, 0.5)
    assert row["human_scores"].startswith("ab ") and "m1 " in row["judge_scores"]
    # The essay's page lists its ratings and links to them; `daydream show` prints them.
    page = asyncio.run(fetch(f"/{name}/-/generation/{essay}"))
    assert page.status_code == 200
    assert "Human ratings (2)" in page.text
    assert f"/human_ratings?essay_gen_id={essay}" in page.text
    shown = CliRunner().invoke(cli, ["show", essay, "--db", str(db)])
    assert "== human ratings (2) ==" in shown.output
