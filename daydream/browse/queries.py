"""The canned queries of a daydream database: a cohort's wide score pivot (one column per
judge), its scores, failures and top essays, and a generation's lineage with its texts.
"""

from __future__ import annotations

import sqlite3
from typing import Any

MAX_PIVOT_JUDGES = 60


def judges_of(conn: sqlite3.Connection) -> list[tuple[str, str]]:
    rows = conn.execute(
        "SELECT DISTINCT template_id, model_id FROM generations"
        " WHERE stage = 'evaluation' AND model_id IS NOT NULL ORDER BY 1, 2"
    ).fetchall()
    return [(t, m) for t, m in rows][:MAX_PIVOT_JUDGES]


_ESSAY_CONTEXT = """
    (SELECT e.combo_id FROM generations e WHERE e.gen_id = {essay}) AS combo_id,
    (SELECT d.template_id FROM generations e JOIN generations d ON d.gen_id = e.parent_gen_id
        WHERE e.gen_id = {essay}) AS draft_template,
    (SELECT d.model_id FROM generations e JOIN generations d ON d.gen_id = e.parent_gen_id
        WHERE e.gen_id = {essay}) AS draft_model,
    (SELECT d.replicate FROM generations e JOIN generations d ON d.gen_id = e.parent_gen_id
        WHERE e.gen_id = {essay}) AS draft_replicate,
    (SELECT e.template_id FROM generations e WHERE e.gen_id = {essay}) AS essay_template,
    (SELECT coalesce(e.model_id, d.model_id) FROM generations e
        LEFT JOIN generations d ON d.gen_id = e.parent_gen_id
        WHERE e.gen_id = {essay}) AS generation_model,
    (SELECT e.replicate FROM generations e WHERE e.gen_id = {essay}) AS essay_replicate"""


def pivot_sql(judges: list[tuple[str, str]]) -> str:
    """The wide score pivot of cohort ``:cohort``: one row per essay, one column per judge.

    A judge column holds the mean of that judge's scored evaluations of the essay (its
    evaluation replicates pooled), as in ``essay_scores.mean``; ``n`` and ``mean`` cover
    every judge. It reads the ``essay_judge_scores`` cells of the cohort in essay order. Datasette cannot bind column names, so the judges' ids are written into
    the SQL as quoted identifiers and string literals.
    """
    cells = "".join(
        f"\n    max(CASE WHEN j.evaluation_template = {_literal(template)}"
        f" AND j.evaluation_model = {_literal(model)} AND j.n > 0"
        f" THEN round(j.total / j.n, 3) END) AS {_identifier(f'{template} / {model}')},"
        for template, model in judges
    )
    return f"""SELECT
    j.essay_gen_id AS essay_gen_id,{_ESSAY_CONTEXT.format(essay="j.essay_gen_id")},{cells}
    sum(j.n) AS n,
    CASE WHEN sum(j.n) > 0 THEN round(sum(j.total) / sum(j.n), 3) END AS mean,
    sum(j.evaluations) AS evaluations
FROM essay_judge_scores j
WHERE j.cohort_id = :cohort
GROUP BY j.essay_gen_id"""


_CONCEPTS = """(SELECT group_concat(name, ' + ') FROM (
        SELECT k.name FROM combo_concepts cc JOIN concepts k ON k.concept_id = cc.concept_id
        WHERE cc.combo_id = g.combo_id ORDER BY cc.position))"""


GENERATION_SQL = f"""WITH RECURSIVE
    ancestors(gen_id, depth) AS (
        SELECT :gen_id, 0
        UNION ALL
        SELECT g.parent_gen_id, a.depth - 1
        FROM ancestors a JOIN generations g ON g.gen_id = a.gen_id
        WHERE g.parent_gen_id IS NOT NULL
    ),
    descendants(gen_id, depth) AS (
        SELECT gen_id, 1 FROM generations WHERE parent_gen_id = :gen_id
        UNION ALL
        SELECT g.gen_id, d.depth + 1
        FROM descendants d JOIN generations g ON g.parent_gen_id = d.gen_id
    ),
    chain(gen_id, depth) AS (
        SELECT gen_id, depth FROM ancestors UNION ALL SELECT gen_id, depth FROM descendants
    )
SELECT
    CASE WHEN c.depth < 0 THEN 'ancestor' WHEN c.depth = 0 THEN 'this' ELSE 'descendant' END
        AS relation,
    g.gen_id AS gen_id,
    g.stage AS stage,
    g.parent_gen_id AS parent_gen_id,
    g.template_id AS template_id,
    g.model_id AS model_id,
    g.replicate AS replicate,
    g.combo_id AS combo_id,
    {_CONCEPTS} AS concepts,
    g.status AS status,
    g.state AS state,
    g.score AS score,
    g.error AS error,
    (SELECT text FROM texts WHERE hash = g.parsed_hash) AS parsed_text,
    CASE WHEN g.raw_hash IS NOT g.parsed_hash
        THEN (SELECT text FROM texts WHERE hash = g.raw_hash) END AS raw_text,
    CASE WHEN c.depth = 0
        THEN (SELECT text FROM texts WHERE hash = g.prompt_hash) END AS prompt_text
FROM chain c
JOIN generations g ON g.gen_id = c.gen_id
ORDER BY c.depth, g.parent_gen_id, g.template_id, g.model_id, g.replicate, g.gen_id"""


COHORT_SCORES_SQL = """SELECT s.*
FROM cohort_members m
JOIN evaluation_scores s ON s.gen_id = m.gen_id
WHERE m.cohort_id = :cohort AND m.stage = 'evaluation'
ORDER BY s.essay_gen_id, s.evaluation_template, s.evaluation_model, s.evaluation_replicate"""


COHORT_FAILURES_SQL = """SELECT gen_id, stage, status, state, error, attempts, template_id,
    model_id, combo_id, parent_gen_id, raw_text, finished_at
FROM failures
WHERE cohort_id = :cohort
ORDER BY CASE stage WHEN 'draft' THEN 1 WHEN 'essay' THEN 2 ELSE 3 END, status, state, gen_id"""


COHORT_TOP_ESSAYS_SQL = """SELECT *
FROM top_essays
WHERE cohort_id = :cohort
    AND (:template = '' OR evaluation_template = :template)
    AND rank <= coalesce(nullif(CAST(:top AS INTEGER), 0), 100)"""


def canned_queries(judges: list[tuple[str, str]]) -> dict[str, dict[str, Any]]:
    """The canned queries; the wide pivot has one column per judge in ``judges``."""
    shown = ", ".join(f"{t} / {m}" for t, m in judges) or "none yet"
    return {
        "cohort_pivot": {
            "title": "Score pivot of a cohort (one row per essay)",
            "description": (
                "One row per essay of the cohort, one column per judge (evaluation"
                " template / judge model) holding the mean of that judge's scored"
                " evaluations (replicates pooled); n and mean over every judge;"
                " evaluations counts the planned ones, failed included. The long form with"
                " min, max and n per judge is the essay_scores view. Judges (every cohort's,"
                f" when browsing started): {shown}. The pivot page (-/pivot?cohort=ID) shows"
                " only the chosen cohort's judges, and every axis."
            ),
            "sql": pivot_sql(judges),
            "hide_sql": True,
        },
        "cohort_top_essays": {
            "title": "Top essays of a cohort",
            "description": (
                "Essays ranked per evaluation template as `daydream` curation ranks them:"
                " the best score per judge model, averaged over judge models; ties by"
                " essay id. template: one evaluation template (empty: every template);"
                " top: how many per template (empty: 100)."
            ),
            "sql": COHORT_TOP_ESSAYS_SQL,
            "hide_sql": True,
        },
        "generation": {
            "title": "A generation with its lineage and texts",
            "description": (
                "The generation (relation 'this', with its prompt), its ancestors (essay,"
                " draft) and its descendants (essays, evaluations), each with its parsed"
                " output, and the raw reply where it differs from the parsed text."
            ),
            "sql": GENERATION_SQL,
            "hide_sql": True,
        },
        "cohort_scores": {
            "title": "Every evaluation of a cohort",
            "description": (
                "The evaluation_scores rows of the cohort's evaluations: lineage, judge,"
                " score and outcome state, in essay order."
            ),
            "sql": COHORT_SCORES_SQL,
            "hide_sql": True,
        },
        "cohort_failures": {
            "title": "Failures of a cohort",
            "description": (
                "The cohort's failed, blocked and cancelled generations with their error"
                " and the raw reply when there was one. Grouped by reason: the"
                " failure_reasons view."
            ),
            "sql": COHORT_FAILURES_SQL,
            "hide_sql": True,
        },
    }


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _identifier(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'
