"""The score cells (``essay_judge_scores``): per cohort, essay and judge, the planned
evaluations and the n, total, min and max of their scores; and what is kept from them as
they change (``CELLS_DDL``): per cohort and judge (``cohort_judges``: which judges a
cohort has, without a pass over its cells) and per cohort, essay and evaluation template
(``essay_rubric_scores``: the ranking of ``top_essays``, and the essays with no score).

Scores never change once recorded (a completed generation cannot be retried), so cells
only grow: an evaluation adds to a cell when it joins a cohort (with its score if it is
already scored) and when it is scored (in every cohort it belongs to). A reparse is the
exception: it recounts the cells of its evaluation (``reparsing``). Whatever changes a
cell, its triggers update the two summaries in the same statement's transaction.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

_RUBRIC = (
    "cohort_id = NEW.cohort_id AND essay_gen_id = NEW.essay_gen_id"
    " AND evaluation_template = NEW.evaluation_template"
)
_JUDGE = (
    "cohort_id = NEW.cohort_id AND evaluation_template = NEW.evaluation_template"
    " AND evaluation_model = NEW.evaluation_model"
)
# A rubric row's scored judges, the mean of their best scores (what top_essays ranks by,
# as curation ranks: the best evaluation per judge model, averaged over the models) and
# the best of them, recomputed from the essay's cells of the rubric.
_RESCORE = f"""
    UPDATE essay_rubric_scores SET (judges, avg_score, max_score) = (
        SELECT count(*), avg(max), max(max) FROM essay_judge_scores WHERE {_RUBRIC} AND n > 0)
    WHERE {_RUBRIC}"""

CELLS_DDL = f"""
-- Per cohort and judge (evaluation template x model): the cells, planned evaluations and
-- scored ones (n), summed from essay_judge_scores by its triggers.
CREATE TABLE cohort_judges (
    cohort_id TEXT NOT NULL REFERENCES cohorts(cohort_id),
    evaluation_template TEXT NOT NULL,
    evaluation_model TEXT NOT NULL,
    essays INTEGER NOT NULL,
    evaluations INTEGER NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (cohort_id, evaluation_template, evaluation_model)
) WITHOUT ROWID;
-- Per cohort, essay and evaluation template: the planned evaluations, the judges with a
-- score, the mean of their best scores and the best (NULL while no judge has a score).
CREATE TABLE essay_rubric_scores (
    cohort_id TEXT NOT NULL REFERENCES cohorts(cohort_id),
    evaluation_template TEXT NOT NULL,
    essay_gen_id TEXT NOT NULL REFERENCES generations(gen_id),
    evaluations INTEGER NOT NULL,
    judges INTEGER NOT NULL,
    avg_score REAL,
    max_score REAL,
    PRIMARY KEY (cohort_id, evaluation_template, essay_gen_id)
) WITHOUT ROWID;
-- top_essays reads a rubric's essays in rank order from here; unscored_essays the others.
CREATE INDEX essay_rubric_scores_rank
    ON essay_rubric_scores (cohort_id, evaluation_template, avg_score DESC, essay_gen_id)
    WHERE judges > 0;
CREATE INDEX essay_rubric_scores_unscored
    ON essay_rubric_scores (cohort_id, evaluation_template, essay_gen_id) WHERE judges = 0;
CREATE TRIGGER essay_judge_scores_added AFTER INSERT ON essay_judge_scores
BEGIN
    INSERT INTO cohort_judges (cohort_id, evaluation_template, evaluation_model, essays,
        evaluations, n)
    VALUES (NEW.cohort_id, NEW.evaluation_template, NEW.evaluation_model, 1,
        NEW.evaluations, NEW.n)
    ON CONFLICT DO UPDATE SET essays = essays + 1,
        evaluations = evaluations + excluded.evaluations, n = n + excluded.n;
    INSERT INTO essay_rubric_scores (cohort_id, evaluation_template, essay_gen_id,
        evaluations, judges)
    VALUES (NEW.cohort_id, NEW.evaluation_template, NEW.essay_gen_id, NEW.evaluations, 0)
    ON CONFLICT DO UPDATE SET evaluations = evaluations + excluded.evaluations;
    {_RESCORE} AND NEW.n > 0;
END;
CREATE TRIGGER essay_judge_scores_changed AFTER UPDATE OF evaluations, n, max
    ON essay_judge_scores
BEGIN
    UPDATE cohort_judges SET evaluations = evaluations + NEW.evaluations - OLD.evaluations,
        n = n + NEW.n - OLD.n
    WHERE {_JUDGE};
    UPDATE essay_rubric_scores SET evaluations = evaluations + NEW.evaluations - OLD.evaluations
    WHERE {_RUBRIC} AND NEW.evaluations != OLD.evaluations;
    {_RESCORE} AND (NEW.n, NEW.max) IS NOT (OLD.n, OLD.max);
END;
"""
CELLS_TABLES = ("cohort_judges", "essay_rubric_scores")

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
