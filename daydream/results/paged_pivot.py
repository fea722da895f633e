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
from daydream.results.rows import ESSAY_AXES, fetch_dicts


@dataclass
class PivotRow:
    essay_gen_id: str
    lineage: dict[str, Any]
    cells: dict[tuple[str, str], dict[str, Any]]  # judge -> evaluations, n, mean
    n: int
    mean: float | None
    evaluations: int = 0  # planned, failed included


@dataclass
class Pivot:
    cohort_id: str
    judges: list[tuple[str, str]]
    rows: list[PivotRow]
    next_after: str | None

    def columns(self) -> list[str]:
        """The wide table's columns: the essay, its lineage, ``<template> / <model>`` per
        judge (the mean), then n, mean and evaluations over every judge."""
        judges = [f"{t} / {m}" for t, m in self.judges]
        return ["essay_gen_id", *ESSAY_AXES, *judges, "n", "mean", "evaluations"]

    def records(self) -> list[dict[str, Any]]:
        """The rows as dicts of ``columns()`` (what the page's JSON and CSV hold)."""
        return [
            {
                "essay_gen_id": r.essay_gen_id,
                **{c: r.lineage[c] for c in ESSAY_AXES},
                **{f"{t} / {m}": (r.cells.get((t, m)) or {}).get("mean") for t, m in self.judges},
                "n": r.n,
                "mean": r.mean,
                "evaluations": r.evaluations,
            }
            for r in self.rows
        ]


def score_pivot(
    conn: sqlite3.Connection, cohort_id: str, *, after: str | None = None, size: int | None = 100
) -> Pivot:
    """Up to ``size`` essays (None: all) of ``cohort_id`` after the essay id ``after``, in
    id order."""
    require_cohort(conn, cohort_id)
    judges = [
        (r["evaluation_template"], r["evaluation_model"])
        for r in fetch_dicts(
            conn,
            "SELECT evaluation_template, evaluation_model FROM cohort_judges"
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
            (cohort_id, after or "", -1 if size is None else size + 1),
        )
    ]
    more = size is not None and len(essays) > size
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
            "total": c["total"],
        }
    n = sum(c["n"] for c in cells.values())
    total = sum(c["total"] for c in cells.values())
    evaluations = sum(c["evaluations"] for c in cells.values())
    return PivotRow(essay, lineage, cells, n, round(total / n, 3) if n else None, evaluations)
