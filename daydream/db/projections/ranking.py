"""The ranking views: a cohort's essays ranked per evaluation template (``top_essays``),
and the essays left out of that ranking because no evaluation of theirs has a score, with
the reason (``unscored_essays``). Both read the ``essay_judge_scores`` cells, so a cohort
filter reaches their key.
"""

from __future__ import annotations

RANKING_VIEWS: dict[str, str] = {}

# Top essays per cohort and evaluation template, ranked as `daydream` curation ranks them
# (curation.rank_essays, upstream's select_top_essays): per judge model the best scored
# evaluation counts, avg_score is the mean over the judge models, ties go by essay id.
# Window functions instead of a second GROUP BY keep a cohort_id / evaluation_template
# filter pushed down to the scan (SQLite stops pushing down at a nested aggregate).
RANKING_VIEWS["top_essays"] = """
SELECT
    r.cohort_id AS cohort_id,
    r.evaluation_template AS evaluation_template,
    r.rank AS rank,
    r.essay_gen_id AS essay_gen_id,
    round(r.avg_score, 3) AS avg_score,
    r.max_score AS max_score,
    r.models_covered AS models_covered,
    r.judge_scores AS judge_scores,
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
    (SELECT e.replicate FROM generations e WHERE e.gen_id = r.essay_gen_id) AS essay_replicate
FROM (
    SELECT
        cohort_id, evaluation_template, essay_gen_id, avg_score, max_score, models_covered,
        judge_scores,
        row_number() OVER (
            PARTITION BY cohort_id, evaluation_template ORDER BY avg_score DESC, essay_gen_id
        ) AS rank
    FROM (
        SELECT
            cohort_id,
            evaluation_template,
            essay_gen_id,
            avg(best) OVER judges AS avg_score,
            max(best) OVER judges AS max_score,
            count(*) OVER judges AS models_covered,
            group_concat(printf('%s %g', evaluation_model, best), ', ') OVER judges
                AS judge_scores,
            row_number() OVER judges AS first
        FROM (
            SELECT cohort_id, evaluation_template, essay_gen_id, evaluation_model, max AS best
            FROM essay_judge_scores
            WHERE n > 0
        )
        WINDOW judges AS (
            PARTITION BY cohort_id, evaluation_template, essay_gen_id
            ORDER BY evaluation_model
            ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING
        )
    )
    WHERE first = 1
) r
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
FROM (
    SELECT cohort_id, evaluation_template, essay_gen_id, sum(evaluations) AS evaluations
    FROM essay_judge_scores
    GROUP BY cohort_id, evaluation_template, essay_gen_id
    HAVING sum(n) = 0
) u
JOIN generations e ON e.gen_id = u.essay_gen_id
"""
