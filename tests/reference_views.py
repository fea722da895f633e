"""The summary views as they were before their counters: each a pass over a cohort's
generations, calls or score cells. The tests compare the views read from the counters
(``cohort_progress``, ``failure_reasons``, ``model_usage``, ``cohort_model_usage``,
``top_essays``, ``unscored_essays``) and the report views read from the score cells
(``essay_score_summary``, ``judge_agreement``, ``top_of_scale``) with these, row for row.
"""

from __future__ import annotations

FAILURE_REASON = """CASE
            WHEN g.error IS NULL THEN g.state
            WHEN g.error LIKE 'parent % %'
                THEN 'parent' || substr(g.error, 7 + instr(substr(g.error, 8), ' '))
            WHEN instr(g.error, char(10)) > 0
                THEN substr(g.error, 1, instr(g.error, char(10)) - 1)
            ELSE g.error
        END"""

REFERENCE: dict[str, str] = {}

REFERENCE["cohort_progress"] = """
SELECT
    m.cohort_id AS cohort_id,
    m.stage AS stage,
    count(*) AS generations,
    sum(g.status = 'done') AS done,
    sum(g.status = 'failed') AS failed,
    sum(g.status = 'blocked') AS blocked,
    sum(g.status = 'cancelled') AS cancelled,
    -- running: calls in flight (leases holding a pool slot); queued: leases held ahead.
    sum(g.status = 'running' AND g.slot = 1) AS running,
    sum(g.status = 'running' AND g.slot = 0) AS queued,
    sum(g.status = 'ready') AS ready,
    sum(g.status = 'waiting') AS waiting,
    round(100.0 * sum(g.status = 'done') / count(*), 1) AS pct_done,
    round(100.0 * sum(g.status IN ('done', 'failed', 'blocked', 'cancelled')) / count(*), 1)
        AS pct_finished
FROM cohort_members m
JOIN generations g ON g.gen_id = m.gen_id
GROUP BY m.cohort_id, m.stage
ORDER BY m.cohort_id, CASE m.stage WHEN 'draft' THEN 1 WHEN 'essay' THEN 2 ELSE 3 END
"""

REFERENCE["model_usage"] = """
SELECT
    c.model_id AS model_id,
    count(*) AS calls,
    sum(c.ok) AS ok,
    count(*) - sum(c.ok) AS errors,
    coalesce(sum(c.prompt_tokens), 0) AS prompt_tokens,
    coalesce(sum(c.completion_tokens), 0) AS completion_tokens,
    -- unknown (empty), never 0, when a successful call had no cost (no prices)
    CASE WHEN sum(c.ok = 1 AND c.cost IS NULL AND NOT coalesce(c.offline, 0)) > 0 THEN NULL
        ELSE round(coalesce(sum(c.cost), 0), 6) END AS cost,
    round(avg(c.latency_s), 3) AS mean_latency_s,
    round(avg(c.slot_wait_s), 3) AS mean_slot_wait_s,
    max(c.offline) AS offline
FROM calls c
GROUP BY c.model_id
ORDER BY c.model_id
"""

REFERENCE["cohort_model_usage"] = """
SELECT
    m.cohort_id AS cohort_id,
    c.model_id AS model_id,
    count(*) AS calls,
    sum(c.ok) AS ok,
    count(*) - sum(c.ok) AS errors,
    coalesce(sum(c.prompt_tokens), 0) AS prompt_tokens,
    coalesce(sum(c.completion_tokens), 0) AS completion_tokens,
    -- unknown (empty), never 0, when a successful call had no cost (no prices)
    CASE WHEN sum(c.ok = 1 AND c.cost IS NULL AND NOT coalesce(c.offline, 0)) > 0 THEN NULL
        ELSE round(coalesce(sum(c.cost), 0), 6) END AS cost,
    round(avg(c.latency_s), 3) AS mean_latency_s,
    round(avg(c.slot_wait_s), 3) AS mean_slot_wait_s,
    max(c.offline) AS offline
FROM cohort_members m
JOIN calls c ON c.gen_id = m.gen_id
GROUP BY m.cohort_id, c.model_id
ORDER BY m.cohort_id, c.model_id
"""

REFERENCE["failure_reasons"] = f"""
SELECT
    cohort_id,
    stage,
    status,
    state,
    reason,
    count(*) AS generations,
    group_concat(DISTINCT model_id) AS models,
    min(gen_id) AS example_gen_id
FROM (
    SELECT
        m.cohort_id AS cohort_id,
        g.stage AS stage,
        g.status AS status,
        g.state AS state,
        g.model_id AS model_id,
        g.gen_id AS gen_id,
        {FAILURE_REASON} AS reason
    FROM cohort_members m
    JOIN generations g ON g.gen_id = m.gen_id
    WHERE g.status IN ('failed', 'blocked', 'cancelled')
)
GROUP BY cohort_id, stage, status, state, reason
ORDER BY cohort_id, generations DESC, stage, reason
"""

REFERENCE["top_essays"] = """
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

REFERENCE["unscored_essays"] = """
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


# The canned cohort_scores query before it read the score cells: a sort of every evaluation.
COHORT_SCORES = """SELECT s.*
FROM cohort_members m
JOIN evaluation_scores s ON s.gen_id = m.gen_id
WHERE m.cohort_id = :cohort AND m.stage = 'evaluation'
ORDER BY s.essay_gen_id, s.evaluation_template, s.evaluation_model, s.evaluation_replicate"""


# essay_scores with its lineage joined (its count(*) looked up every essay and draft).
REFERENCE["essay_scores"] = """
SELECT
    j.cohort_id AS cohort_id,
    j.essay_gen_id AS essay_gen_id,
    e.parent_gen_id AS draft_gen_id,
    coalesce(d.combo_id, e.combo_id) AS combo_id,
    d.template_id AS draft_template,
    d.model_id AS draft_model,
    e.template_id AS essay_template,
    e.mode AS essay_mode,
    coalesce(e.model_id, d.model_id) AS generation_model,
    d.replicate AS draft_replicate,
    e.replicate AS essay_replicate,
    j.evaluation_template AS evaluation_template,
    j.evaluation_model AS evaluation_model,
    j.evaluation_template || '__' || j.evaluation_model AS judge,
    t.scale_min AS scale_min,
    t.scale_max AS scale_max,
    j.evaluations AS evaluations,
    j.n AS n,
    CASE WHEN j.n > 0 THEN round(j.total / j.n, 3) END AS mean,
    j.min AS min,
    j.max AS max
FROM essay_judge_scores j
LEFT JOIN generations e ON e.gen_id = j.essay_gen_id
LEFT JOIN generations d ON d.gen_id = e.parent_gen_id
LEFT JOIN templates t ON t.stage = 'evaluation' AND t.template_id = j.evaluation_template
"""


# The report views as they were before they read the score cells: each a pass over
# every evaluation of the cohort (essay_score_summary, judge_agreement, top_of_scale).
_EVALUATION_LINEAGE = """
    s.essay_gen_id AS essay_gen_id,
    s.draft_gen_id AS draft_gen_id,
    s.combo_id AS combo_id,
    s.draft_template AS draft_template,
    s.draft_model AS draft_model,
    s.essay_template AS essay_template,
    s.essay_mode AS essay_mode,
    s.generation_model AS generation_model,
    s.draft_replicate AS draft_replicate,
    s.essay_replicate AS essay_replicate,"""

REFERENCE["essay_score_summary"] = f"""
SELECT
    m.cohort_id AS cohort_id,{_EVALUATION_LINEAGE}
    count(*) AS evaluations,
    count(DISTINCT CASE WHEN s.state = 'ok' AND s.score IS NOT NULL
        THEN s.evaluation_template || '__' || s.evaluation_model END) AS judges,
    count(CASE WHEN s.state = 'ok' THEN s.score END) AS n,
    round(avg(CASE WHEN s.state = 'ok' THEN s.score END), 3) AS mean,
    min(CASE WHEN s.state = 'ok' THEN s.score END) AS min,
    max(CASE WHEN s.state = 'ok' THEN s.score END) AS max,
    round(avg(CASE WHEN s.state = 'ok' AND s.scale_max > s.scale_min
        THEN (s.score - s.scale_min) / (s.scale_max - s.scale_min) END), 3) AS mean_unit
FROM evaluation_scores s
JOIN cohort_members m ON m.gen_id = s.gen_id
GROUP BY m.cohort_id, s.essay_gen_id
"""

_RANGE = "(j_max - j_min) * 9"
_SPAN = "coalesce(scale_max - scale_min, 9)"
REFERENCE["judge_agreement"] = f"""
SELECT
    cohort_id, essay_gen_id, combo_id, draft_template, essay_template, generation_model,
    draft_replicate, essay_replicate, evaluation_template, scale_min, scale_max,
    judges,
    judge_models,
    round(j_mean, 3) AS mean,
    round(j_min, 3) AS min,
    round(j_max, 3) AS max,
    CASE WHEN judges >= 2 THEN round(j_max - j_min, 3) END AS range,
    CASE
        WHEN judges < 2 THEN 'insufficient_data'
        WHEN {_RANGE} <= 1 * {_SPAN} + 1e-9 THEN 'high_agreement'
        WHEN {_RANGE} <= 2 * {_SPAN} + 1e-9 THEN 'moderate_agreement'
        WHEN {_RANGE} <= 3 * {_SPAN} + 1e-9 THEN 'low_agreement'
        ELSE 'poor_agreement'
    END AS stability
FROM (
    SELECT
        *,
        count(judge_mean) OVER rubric AS judges,
        group_concat(CASE WHEN judge_mean IS NOT NULL THEN evaluation_model END, ', ')
            OVER rubric AS judge_models,
        avg(judge_mean) OVER rubric AS j_mean,
        min(judge_mean) OVER rubric AS j_min,
        max(judge_mean) OVER rubric AS j_max,
        row_number() OVER (
            PARTITION BY cohort_id, essay_gen_id, evaluation_template
            ORDER BY evaluation_model DESC
        ) AS last
    FROM (
        SELECT
            m.cohort_id AS cohort_id,{_EVALUATION_LINEAGE}
            s.evaluation_template AS evaluation_template,
            s.evaluation_model AS evaluation_model,
            s.scale_min AS scale_min,
            s.scale_max AS scale_max,
            avg(CASE WHEN s.state = 'ok' THEN s.score END) AS judge_mean
        FROM evaluation_scores s
        JOIN cohort_members m ON m.gen_id = s.gen_id
        GROUP BY m.cohort_id, s.essay_gen_id, s.evaluation_template, s.evaluation_model
    )
    WINDOW rubric AS (
        PARTITION BY cohort_id, essay_gen_id, evaluation_template
        ORDER BY evaluation_model
        ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING
    )
)
WHERE last = 1
"""

REFERENCE["top_of_scale"] = """
SELECT
    m.cohort_id AS cohort_id,
    s.gen_id AS gen_id,
    s.essay_gen_id AS essay_gen_id,
    s.combo_id AS combo_id,
    s.draft_template AS draft_template,
    s.essay_template AS essay_template,
    s.generation_model AS generation_model,
    s.evaluation_template AS evaluation_template,
    s.evaluation_model AS evaluation_model,
    s.evaluation_replicate AS evaluation_replicate,
    s.score AS score,
    s.scale_max AS scale_max
FROM evaluation_scores s
JOIN cohort_members m ON m.gen_id = s.gen_id
WHERE s.state = 'ok' AND s.score >= s.scale_max
"""
