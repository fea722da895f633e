"""A cohort's score pivot, one page at a time: one row per essay with every axis of its
lineage, one column per judge of that cohort (evaluation template x judge model) holding
the mean of its scored evaluations and their n (browse's ``/-/pivot`` page).

Read from the ``essay_judge_scores`` cells in their key order (cohort, essay, judge), so
a page of ``size`` essays after ``after`` reads only its own cells; the cohort's judges
come from the same cells.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

from daydream.queue.cohorts import require_cohort
from daydream.results.rows import fetch_dicts


@dataclass
class PivotRow:
    essay_gen_id: str
    lineage: dict[str, Any]
    cells: dict[tuple[str, str], dict[str, Any]]  # judge -> evaluations, n, mean
    n: int
    mean: float | None


@dataclass
class Pivot:
    cohort_id: str
    judges: list[tuple[str, str]]
    rows: list[PivotRow]
    next_after: str | None


def score_pivot(
    conn: sqlite3.Connection, cohort_id: str, *, after: str | None = None, size: int = 100
) -> Pivot:
    """Up to ``size`` essays of ``cohort_id`` after the essay id ``after``, in id order."""
    require_cohort(conn, cohort_id)
    judges = [
        (r["evaluation_template"], r["evaluation_model"])
        for r in fetch_dicts(
            conn,
            "SELECT DISTINCT evaluation_template, evaluation_model FROM essay_judge_scores"
            " WHERE cohort_id = ? ORDER BY 1, 2",
            (cohort_id,),
        )
    ]
    essays = [
        r["essay_gen_id"]
        for r in fetch_dicts(
            conn,
            "SELECT DISTINCT essay_gen_id FROM essay_judge_scores WHERE cohort_id = ?"
            " AND essay_gen_id > ? ORDER BY essay_gen_id LIMIT ?",
            (cohort_id, after or "", size + 1),
        )
    ]
    more = len(essays) > size
    essays = essays[:size]
    rows = [_row(conn, cohort_id, essay) for essay in essays]
    return Pivot(cohort_id, judges, rows, essays[-1] if more and essays else None)


def _row(conn: sqlite3.Connection, cohort_id: str, essay: str) -> PivotRow:
    [lineage] = fetch_dicts(
        conn,
        "SELECT coalesce(d.combo_id, e.combo_id) AS combo_id, d.template_id AS draft_template,"
        " d.model_id AS draft_model, d.replicate AS draft_replicate,"
        " e.template_id AS essay_template, coalesce(e.model_id, d.model_id) AS generation_model,"
        " e.replicate AS essay_replicate, e.mode AS essay_mode FROM generations e"
        " LEFT JOIN generations d ON d.gen_id = e.parent_gen_id WHERE e.gen_id = ?",
        (essay,),
    )
    cells = {}
    for c in fetch_dicts(
        conn,
        "SELECT evaluation_template, evaluation_model, evaluations, n, total"
        " FROM essay_judge_scores WHERE cohort_id = ? AND essay_gen_id = ?",
        (cohort_id, essay),
    ):
        cells[(c["evaluation_template"], c["evaluation_model"])] = {
            "evaluations": c["evaluations"],
            "n": c["n"],
            "mean": round(c["total"] / c["n"], 3) if c["n"] else None,
        }
    n = sum(c["n"] for c in cells.values())
    total = sum(c["mean"] * c["n"] for c in cells.values() if c["n"])
    return PivotRow(essay, lineage, cells, n, round(total / n, 3) if n else None)
