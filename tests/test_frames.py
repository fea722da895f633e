"""daydream.results as pandas DataFrames: the report's tables and comparisons, one line each,
with pandas loaded only when a frame is asked for."""

from __future__ import annotations

import subprocess
import sys

import pytest

import daydream.results as dr
from daydream.db.connection import connect
from daydream.errors import ConfigError
from daydream.results.reports import build_report
from tests.scenario import combo_ids
from tests.scored import scored_cohort

COMBOS = combo_ids(8)


@pytest.fixture
def db(tmp_path):
    return scored_cohort(
        tmp_path,
        lambda row: 2 + COMBOS.index(row["combo"]) % 5 + (row["essay_template"] == "B"),
        judges=("m1", "m2"),
    )


def test_frames_are_the_reports_tables(db):
    conn = connect(db)
    try:
        report = build_report(conn, "k")
    finally:
        conn.close()
    for frame, name in (
        (dr.evaluations(db, "k"), "evaluation_scores"),
        (dr.pivot(str(db), "k"), "essay_pivot"),
        (dr.final_results(db, "k"), "final_results"),
        (dr.judge_reliability(db, "k"), "judge_reliability"),
    ):
        table = report.tables[name]
        assert list(frame.columns) == table.columns
        assert len(frame) == len(table.rows)
    scores = dr.evaluations(db, "k")
    assert scores.groupby("essay_template")["score"].mean().diff().iloc[-1] == 1.0


def test_compare_frame_within_a_cohort(db):
    conn = connect(db)
    try:
        frame = dr.compare(conn, "k", axis="essay_template")  # an open connection works too
    finally:
        conn.close()
    assert frame[["a", "b", "n_pairs", "mean_diff", "ci_low", "ci_high"]].values.tolist() == [
        ["A", "B", 16, 1.0, 1.0, 1.0]
    ]
    with pytest.raises(ConfigError, match="either axis= .* or other="):
        dr.compare(db, "k")


def test_importing_results_does_not_import_pandas():
    code = "import sys, daydream.results; print('pandas' in sys.modules, 'scipy' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "False"]


def test_a_missing_pandas_says_how_to_install_it(db, monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas now raises ImportError
    with pytest.raises(ConfigError) as caught:
        dr.pivot(db, "k")
    assert str(caught.value) == (
        "daydream.results frames need pandas, an optional extra: pip install 'daydream[analysis]'"
    )
