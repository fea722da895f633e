"""The score cells (``essay_judge_scores``): per cohort, essay and judge, the planned
evaluations and the n, total, min and max of their scores.

Scores never change once recorded (a completed generation cannot be retried), so cells
only grow: an evaluation adds to a cell when it joins a cohort (with its score if it is
already scored) and when it is scored (in every cohort it belongs to).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

# essay_judge_scores: per cohort, essay and judge (evaluation template x model), the count of
# planned evaluations and the n / total / min / max of their scores. Scores never change once
# recorded (a completed generation cannot be retried), so cells only grow: an evaluation adds
# to a cell when it joins a cohort (with its score if it is already scored) and when it is
# scored (in every cohort it belongs to).
_CELL_MERGE = (
    " ON CONFLICT (cohort_id, essay_gen_id, evaluation_template, evaluation_model) DO UPDATE"
    " SET evaluations = evaluations + excluded.evaluations, n = n + excluded.n,"
    " total = total + excluded.total,"
    " min = CASE WHEN min IS NULL OR excluded.min < min THEN coalesce(excluded.min, min) ELSE min END,"
    " max = CASE WHEN max IS NULL OR excluded.max > max THEN coalesce(excluded.max, max) ELSE max END"
)


def join_score_cells(
    conn: sqlite3.Connection, cohort_id: str, gen_ids: list[str], planned: Sequence[list[Any]] = ()
) -> None:
    """Add evaluations that joined ``cohort_id`` to their cells.

    ``planned`` are the rows of generations created by the same event: unscored, so each
    cell takes all of its new evaluations in one upsert (a plan adds a million).
    """
    fresh: dict[tuple[str, str, str], int] = {}
    for row in planned:
        if row[1] == "evaluation" and row[6] is not None:
            cell = (row[2], row[4], row[6])
            fresh[cell] = fresh.get(cell, 0) + 1
    conn.executemany(
        "INSERT INTO essay_judge_scores (cohort_id, essay_gen_id, evaluation_template,"
        " evaluation_model, evaluations, n, total, min, max)"
        " VALUES (?, ?, ?, ?, ?, 0, 0, NULL, NULL)" + _CELL_MERGE,
        [(cohort_id, *cell, count) for cell, count in fresh.items()],
    )
    # Evaluations that existed before the event joined too: each adds itself (and its
    # score, if scored). The new ones are all in ``fresh`` already.
    created = sum(fresh.values())
    if len(gen_ids) > created:
        new = {row[0] for row in planned}
        gen_ids = [gen_id for gen_id in gen_ids if gen_id not in new]
    else:
        gen_ids = []
    conn.executemany(
        "INSERT INTO essay_judge_scores (cohort_id, essay_gen_id, evaluation_template,"
        " evaluation_model, evaluations, n, total, min, max)"
        " SELECT ?, parent_gen_id, template_id, model_id, 1, scored, CASE WHEN scored THEN score"
        " ELSE 0 END, CASE WHEN scored THEN score END, CASE WHEN scored THEN score END"
        " FROM (SELECT *, (state = 'ok' AND score IS NOT NULL) AS scored FROM generations"
        " WHERE gen_id = ? AND model_id IS NOT NULL) WHERE true" + _CELL_MERGE,
        [(cohort_id, gen_id) for gen_id in gen_ids],
    )


def score_cells(conn: sqlite3.Connection, gen_id: str, score: float) -> None:
    conn.execute(
        "UPDATE essay_judge_scores SET n = n + 1, total = total + ?,"
        " min = CASE WHEN min IS NULL OR ? < min THEN ? ELSE min END,"
        " max = CASE WHEN max IS NULL OR ? > max THEN ? ELSE max END"
        " WHERE (cohort_id, essay_gen_id, evaluation_template, evaluation_model) IN"
        " (SELECT m.cohort_id, g.parent_gen_id, g.template_id, g.model_id"
        "  FROM generations g JOIN cohort_members m ON m.gen_id = g.gen_id"
        "  WHERE g.gen_id = ? AND g.stage = 'evaluation')",
        (score, score, score, score, score, gen_id),
    )
