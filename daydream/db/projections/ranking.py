"""The ranking views: a cohort's essays ranked per evaluation template (``top_essays``),
and the essays left out of that ranking because no evaluation of theirs has a score, with
the reason (``unscored_essays``). Both read ``essay_rubric_scores`` (``cells``), kept up
to date as evaluations are planned and scored, by its indexes: a cohort and template
filter reaches their key, and the top of a ranking is read in rank order.
"""

from __future__ import annotations

RANKING_VIEWS: dict[str, str] = {}

# The lineage columns of an essay row ``r`` (by its essay_gen_id), as correlated lookups:
# a page of rows reads only its own essays, and a count of rows reads none.
ESSAY_LINEAGE = """
    (SELECT e.combo_id FROM generations e WHERE e.gen_id = r.essay_gen_id) AS combo_id,
    (SELECT d.template_id FROM generations e JOIN generations d ON d.gen_id = e.parent_gen_id
        WHERE e.gen_id = r.essay_gen_id) AS draft_template,
    (SELECT d.model_id FROM generations e JOIN generations d ON d.gen_id = e.parent_gen_id
        WHERE e.gen_id = r.essay_gen_id) AS draft_model,
    (SELECT d.replicate FROM generations e JOIN generations d ON d.gen_id = e.parent_gen_id
        WHERE e.gen_id = r.essay_gen_id) AS draft_replicate,
    (SELECT e.template_id FROM generations e WHERE e.gen_id = r.essay_gen_id)
        AS essay_template,
    (SELECT coalesce(e.model_id, d.model_id) FROM generations e
        LEFT JOIN generations d ON d.gen_id = e.parent_gen_id
        WHERE e.gen_id = r.essay_gen_id) AS generation_model,
    (SELECT e.replicate FROM generations e WHERE e.gen_id = r.essay_gen_id) AS essay_replicate"""

# An essay's rank in its cohort and evaluation template: 1 + the essays before it (a higher
# mean, or the same mean and a smaller id), counted on the ranking index: the cost of a
# rank is the rank, so the top of a ranking costs little whatever the cohort's size.
RANK = """1 + (SELECT count(*) FROM essay_rubric_scores b
        WHERE b.cohort_id = r.cohort_id AND b.evaluation_template = r.evaluation_template
        AND b.judges > 0 AND b.avg_score > r.avg_score)
    + (SELECT count(*) FROM essay_rubric_scores b
        WHERE b.cohort_id = r.cohort_id AND b.evaluation_template = r.evaluation_template
        AND b.judges > 0 AND b.avg_score = r.avg_score AND b.essay_gen_id < r.essay_gen_id)"""

# Each judge model's best score of the essay, "model score, ..." in model order.
JUDGE_SCORES = """(SELECT group_concat(printf('%s %g', evaluation_model, max), ', ')
        FROM (SELECT evaluation_model, max FROM essay_judge_scores c
            WHERE c.cohort_id = r.cohort_id AND c.essay_gen_id = r.essay_gen_id
            AND c.evaluation_template = r.evaluation_template AND c.n > 0
            ORDER BY evaluation_model))"""

# Top essays per cohort and evaluation template, ranked as `daydream` curation ranks them
# (curation.rank_essays, upstream's select_top_essays): per judge model the best scored
# evaluation counts, avg_score is the mean over the judge models, ties go by essay id.
# Read from essay_rubric_scores (kept as evaluations are scored) in rank order, so the
# first page of a cohort's ranking reads its first rows.
def ranked_columns(rank: str) -> str:
    """top_essays' columns of an essay_rubric_scores row ``r`` with its ``rank``."""
    return f"""
    r.cohort_id AS cohort_id,
    r.evaluation_template AS evaluation_template,
    {rank} AS rank,
    r.essay_gen_id AS essay_gen_id,
    round(r.avg_score, 3) AS avg_score,
    r.max_score AS max_score,
    r.judges AS models_covered,
    {JUDGE_SCORES} AS judge_scores,{ESSAY_LINEAGE}"""


# The ranking index gives the rank order (cohort, template, avg_score DESC, essay id)
# without an ORDER BY: with one, SQLite would not flatten the view, and a page's count(*)
# would compute every row's rank (95 s at 100,000 generations).
RANKING_VIEWS["top_essays"] = f"""
SELECT{ranked_columns(RANK)}
FROM essay_rubric_scores r INDEXED BY essay_rubric_scores_rank
WHERE r.judges > 0
"""

# Essays of a cohort with evaluations of a template planned but none scored: what
# top_essays leaves out, and why (the essay did not complete, or its evaluations failed,
# were blocked or have not run).
RANKING_VIEWS["unscored_essays"] = """
SELECT
    u.cohort_id AS cohort_id,
    u.evaluation_template AS evaluation_template,
    u.essay_gen_id AS essay_gen_id,
    u.evaluations AS evaluations,
    CASE
        WHEN e.status != 'done'
            THEN 'the essay ' || e.status || coalesce(' (' || e.state || ')', '')
                || coalesce(': ' || e.error, '')
        ELSE 'its evaluations: ' || (
            SELECT group_concat(n || ' ' || what, ', ') FROM (
                SELECT count(*) AS n,
                    CASE WHEN v.status = 'done' THEN 'done without a score'
                        ELSE v.status || coalesce(' (' || v.state || ')', '') END AS what
                FROM generations v
                JOIN cohort_members m ON m.cohort_id = u.cohort_id AND m.gen_id = v.gen_id
                WHERE v.parent_gen_id = u.essay_gen_id AND v.stage = 'evaluation'
                    AND v.template_id = u.evaluation_template
                GROUP BY what ORDER BY n DESC, what))
    END AS reason,
    e.combo_id AS combo_id,
    e.template_id AS essay_template,
    e.model_id AS essay_model
FROM essay_rubric_scores u
LEFT JOIN generations e ON e.gen_id = u.essay_gen_id
WHERE u.judges = 0
"""
