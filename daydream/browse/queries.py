"""The canned queries of a daydream database: a cohort's scores, failures and top essays,
and a generation's lineage with its texts. (A cohort's wide score pivot, one column per
judge of that cohort, is a page of the plugin: ``pages``, ``/<database>/-/pivot``.)
"""

from __future__ import annotations

from typing import Any

from daydream.db.projections.ranking import ranked_columns
from daydream.vocabulary import STAGES

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


# The queries that list every row of something in a cohort show a page of rows: ``size``
# of them (empty: PAGE_ROWS; negative: every row, for the CSV and JSON links) after the row
# whose gen_id is ``after`` (empty: from the first). A page of 1,000 rows took Datasette
# about 250 ms to render at any size of database; a page costs its rows. The query page
# links to the next page (templates/query.html).
PAGE_ROWS = 100
PAGED = ("cohort_scores", "cohort_failures")
_LIMIT = f"LIMIT coalesce(nullif(CAST(:size AS INTEGER), 0), {PAGE_ROWS})"

# In the order of the cohort's score cells (their key: essay, template, judge), each
# cell's evaluations found by the parent index: rows stream in order, so the page costs
# its rows, not a sort of every evaluation of the cohort. The next page starts at the
# essay of the row ``after`` (a range of the cells' key) and after that row's place.
COHORT_SCORES_SQL = f"""SELECT s.*
FROM essay_judge_scores j
JOIN generations v ON v.parent_gen_id = j.essay_gen_id AND v.stage = 'evaluation'
    AND v.template_id = j.evaluation_template AND v.model_id = j.evaluation_model
JOIN evaluation_scores s ON s.gen_id = v.gen_id
WHERE j.cohort_id = :cohort
    AND EXISTS (SELECT 1 FROM cohort_members m WHERE m.cohort_id = :cohort AND m.gen_id = v.gen_id)
    AND j.essay_gen_id >= coalesce((SELECT parent_gen_id FROM generations WHERE gen_id = :after), '')
    AND (:after = '' OR (j.essay_gen_id, j.evaluation_template, j.evaluation_model, v.replicate, v.gen_id)
        > (SELECT parent_gen_id, template_id, model_id, replicate, gen_id
            FROM generations WHERE gen_id = :after))
ORDER BY j.essay_gen_id, j.evaluation_template, j.evaluation_model, v.replicate, v.gen_id
{_LIMIT}"""


# A cohort's failures by stage, status, state, reason and id. One SELECT per stage, each
# reading the index of failures (status, stage, state, reason, gen_id) in that order,
# merged in order (UNION ALL with the ORDER BY): the page reads its rows, not a sort of
# every failure of the cohort with its raw reply (26,031 at 1,000,000 generations). The
# next page: the rows after the row ``after`` in that order (state and reason may be NULL,
# which sorts first: each is compared as (IS NOT NULL, value)).
_FAILURE_COLUMNS = """gen_id, stage, status, state, reason, error, attempts, template_id,
    model_id, combo_id, parent_gen_id, raw_text, finished_at"""
_FAILURE_KEY = """(stage, status, state IS NOT NULL, coalesce(state, ''), reason IS NOT NULL,
        coalesce(reason, ''), gen_id)"""
_AFTER_FAILURE = f"""(:after = '' OR {_FAILURE_KEY}
        > (SELECT {_FAILURE_KEY.strip("()")} FROM failures WHERE cohort_id = :cohort AND gen_id = :after))"""
COHORT_FAILURES_SQL = (
    "\nUNION ALL\n".join(
        f"SELECT {_FAILURE_COLUMNS}\nFROM failures WHERE cohort_id = :cohort AND stage = '{stage}'"
        f"\n    AND {_AFTER_FAILURE}"
        for stage in STAGES
    )
    + f"\nORDER BY stage, status, state, reason, gen_id\n{_LIMIT}"
)


# The top of each ranking of a cohort (one evaluation template, or every one): per
# template, the score and id of its N-th essay are found on the ranking index, then only
# the essays above it (a higher score, or the same score and a smaller id: two ranges of
# the index, read with each template as the outer loop: CROSS JOIN) are read and ranked.
# The columns are top_essays'.
_TOP = "coalesce(nullif(CAST(:top AS INTEGER), 0), 100)"
_NTH = """(SELECT s.{column} FROM essay_rubric_scores s
                WHERE s.cohort_id = :cohort AND s.evaluation_template = j.evaluation_template
                AND s.judges > 0
                ORDER BY s.avg_score DESC, s.essay_gen_id LIMIT 1 OFFSET {top} - 1)"""
_RUBRIC = "r.cohort_id = :cohort AND r.evaluation_template = c.template AND r.judges > 0"
COHORT_TOP_ESSAYS_SQL = f"""WITH
    chosen AS (
        SELECT j.evaluation_template AS template,
            {_NTH.format(column="avg_score", top=_TOP)} AS lowest,
            {_NTH.format(column="essay_gen_id", top=_TOP)} AS last_id
        FROM cohort_judges j
        WHERE j.cohort_id = :cohort AND (:template = '' OR j.evaluation_template = :template)
        GROUP BY j.evaluation_template
    ),
    ranked AS (
        SELECT r.*, row_number() OVER (
            PARTITION BY r.evaluation_template ORDER BY r.avg_score DESC, r.essay_gen_id
        ) AS rank
        FROM (
            SELECT r.* FROM chosen c CROSS JOIN essay_rubric_scores r
                ON {_RUBRIC} AND r.avg_score > coalesce(c.lowest, -1e308)
            UNION ALL
            SELECT r.* FROM chosen c CROSS JOIN essay_rubric_scores r
                ON {_RUBRIC} AND r.avg_score = c.lowest AND r.essay_gen_id <= c.last_id
        ) r
    )
SELECT{ranked_columns("r.rank")}
FROM ranked r
WHERE r.rank <= {_TOP}
ORDER BY r.evaluation_template, r.rank"""


def canned_queries() -> dict[str, dict[str, Any]]:
    """The canned queries (the wide score pivot is a page: ``pages``, ``-/pivot``)."""
    return {
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
                f" score and outcome state, in essay order, {PAGE_ROWS} at a time. after:"
                " the gen_id of the last row of the page before (the next-page link fills"
                f" it; empty: from the first); size: rows per page (empty: {PAGE_ROWS}; -1:"
                " every row, for the CSV and JSON links)."
            ),
            "sql": COHORT_SCORES_SQL,
            "hide_sql": True,
        },
        "cohort_failures": {
            "title": "Failures of a cohort",
            "description": (
                "The cohort's failed, blocked and cancelled generations with their error"
                f" and the raw reply when there was one, {PAGE_ROWS} at a time (after and"
                " size as in cohort_scores). Grouped by reason: the failure_reasons view."
            ),
            "sql": COHORT_FAILURES_SQL,
            "hide_sql": True,
        },
    }


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _identifier(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'
