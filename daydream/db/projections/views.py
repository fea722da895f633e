"""SQL views over the projections: what researchers query, browse and report on.

Views live in the database (created with the projections, rebuilt with them), so
``datasette daydream.db``, ``sqlite3`` and the reports all see the same definitions.

``evaluation_scores`` is the base: one row per evaluation with its lineage (essay, draft,
combination, templates, models), score and outcome state. Its scale is the one the score
was parsed against: the version of a reparse (``parsed_with``), else the planned one. Copy-mode essays have no model
of their own: ``generation_model`` is then the draft's model (upstream reported the string
"None" and lost those essays from every pivot).
"""

from __future__ import annotations

from daydream.db.projections.counts import FAILURE_REASON
from daydream.db.projections.ranking import RANKING_VIEWS
from daydream.db.projections.search import SEARCH_VIEWS

VIEWS: dict[str, str] = {}

# The work queue: each generation is its own task (the queue columns live in generations).
VIEWS["tasks"] = """
SELECT gen_id, stage, pool, parent_gen_id, status, attempts, throttles, releases, not_before,
    lease_owner, lease_token, lease_expires_at, slot, last_error, blocked_reason
FROM generations
"""

VIEWS["evaluation_scores"] = """
SELECT
    v.gen_id AS gen_id,
    v.parent_gen_id AS essay_gen_id,
    e.parent_gen_id AS draft_gen_id,
    coalesce(d.combo_id, e.combo_id, v.combo_id) AS combo_id,
    d.template_id AS draft_template,
    d.model_id AS draft_model,
    e.template_id AS essay_template,
    e.mode AS essay_mode,
    coalesce(e.model_id, d.model_id) AS generation_model,
    e.replicate AS essay_replicate,
    d.replicate AS draft_replicate,
    v.template_id AS evaluation_template,
    v.model_id AS evaluation_model,
    v.replicate AS evaluation_replicate,
    v.status AS status,
    v.state AS state,
    v.score AS score,
    t.scale_min AS scale_min,
    t.scale_max AS scale_max,
    v.written_scale AS written_scale,
    v.error AS error,
    v.offline AS offline
FROM generations v
JOIN generations e ON e.gen_id = v.parent_gen_id
LEFT JOIN generations d ON d.gen_id = e.parent_gen_id
LEFT JOIN template_versions t ON t.version = coalesce(v.parsed_with, v.template_version)
WHERE v.stage = 'evaluation'
"""

# -- report views (reports.py computes the same numbers; tests/test_reports.py checks it) ---

# Long form of the essay pivot: one row per cohort x essay x judge (evaluation template x
# judge model). n, mean, min and max count only scored evaluations (state ok); evaluation
# replicates of one judge pool together; essay replicates and copy essays stay apart. Read
# from the essay_judge_scores projection (kept up to date as evaluations are planned and
# scored), so a page never aggregates every evaluation. The essay's lineage columns are
# correlated lookups, so a page's count(*) reads the cells alone (joins to the essay and
# its draft made it look up both for each of a cohort's cells: 10 s at 1,000,000).
_ESSAY = "FROM generations e WHERE e.gen_id = j.essay_gen_id"
_DRAFT = "FROM generations e JOIN generations d ON d.gen_id = e.parent_gen_id" + (
    " WHERE e.gen_id = j.essay_gen_id"
)
_EITHER = "FROM generations e LEFT JOIN generations d ON d.gen_id = e.parent_gen_id" + (
    " WHERE e.gen_id = j.essay_gen_id"
)
_LOOKUP = {
    "draft_gen_id": f"(SELECT e.parent_gen_id {_ESSAY})",
    "combo_id": f"(SELECT coalesce(d.combo_id, e.combo_id) {_EITHER})",
    "draft_template": f"(SELECT d.template_id {_DRAFT})",
    "draft_model": f"(SELECT d.model_id {_DRAFT})",
    "essay_template": f"(SELECT e.template_id {_ESSAY})",
    "essay_mode": f"(SELECT e.mode {_ESSAY})",
    "generation_model": f"(SELECT coalesce(e.model_id, d.model_id) {_EITHER})",
    "draft_replicate": f"(SELECT d.replicate {_DRAFT})",
    "essay_replicate": f"(SELECT e.replicate {_ESSAY})",
}


def _lineage(*columns: str) -> str:
    """The essay's lineage columns of a score cell ``j``, as correlated lookups."""
    return "".join(f"\n    {_LOOKUP[column]} AS {column}," for column in columns)


_ALL = tuple(_LOOKUP)
_EVALUATION_TEMPLATE = (
    "LEFT JOIN templates t ON t.stage = 'evaluation' AND t.template_id = j.evaluation_template"
)
VIEWS["essay_scores"] = f"""
SELECT
    j.cohort_id AS cohort_id,
    j.essay_gen_id AS essay_gen_id,{_lineage(*_ALL)}
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
{_EVALUATION_TEMPLATE}
"""

# The report views below read the same cells (n, total, min and max of each judge's
# scores), so a page reads a cohort's cells in key order, never every evaluation. Each
# score is on the scale of the template version it was parsed with, as in the report's
# files: a template whose versions share one scale (the usual case) has it in
# _SCALES; the cells of a template whose versions differ are opened and each
# evaluation's own scale is read (the cell does not say which version each score had).
_SCALES = """WITH scales AS MATERIALIZED (
    SELECT template_id,
        count(DISTINCT coalesce(scale_min, '') || ':' || coalesce(scale_max, '')) = 1 AS one,
        min(scale_min) AS scale_min,
        min(scale_max) AS scale_max
    FROM template_versions WHERE stage = 'evaluation' GROUP BY template_id
)"""
_CELL_EVALUATIONS = """FROM generations v
        JOIN template_versions tv ON tv.version = coalesce(v.parsed_with, v.template_version)
        WHERE v.parent_gen_id = j.essay_gen_id AND v.stage = 'evaluation'
            AND v.template_id = j.evaluation_template AND v.model_id = j.evaluation_model
            AND EXISTS (SELECT 1 FROM cohort_members m
                WHERE m.cohort_id = j.cohort_id AND m.gen_id = v.gen_id)"""
_UNIT = "(v.score - tv.scale_min) / (tv.scale_max - tv.scale_min)"
_SCORED_UNIT = "v.state = 'ok' AND v.score IS NOT NULL AND tv.scale_max > tv.scale_min"
_ONE_SPAN = "s.one AND s.scale_max > s.scale_min"

# The essay pivot's summary columns: one row per cohort x essay over every scored
# evaluation. mean_unit maps each score to 0-1 on its scale first.
VIEWS["essay_score_summary"] = f"""{_SCALES}
SELECT
    j.cohort_id AS cohort_id,
    j.essay_gen_id AS essay_gen_id,{_lineage(*_ALL)}
    sum(j.evaluations) AS evaluations,
    sum(j.n > 0) AS judges,
    sum(j.n) AS n,
    round(sum(j.total) / nullif(sum(j.n), 0), 3) AS mean,
    min(j.min) AS min,
    max(j.max) AS max,
    round(sum(CASE
            WHEN {_ONE_SPAN} THEN (j.total - j.n * s.scale_min) / (s.scale_max - s.scale_min)
            WHEN NOT s.one THEN (SELECT sum({_UNIT}) {_CELL_EVALUATIONS} AND {_SCORED_UNIT})
        END)
        / nullif(sum(CASE
            WHEN {_ONE_SPAN} THEN j.n
            WHEN NOT s.one THEN (SELECT count(*) {_CELL_EVALUATIONS} AND {_SCORED_UNIT})
        END), 0), 3) AS mean_unit
FROM essay_judge_scores j
LEFT JOIN scales s ON s.template_id = j.evaluation_template
GROUP BY j.cohort_id, j.essay_gen_id
"""

# Judge agreement: per cohort x essay x evaluation template, the spread of the judge
# models' mean scores (a cell's total / n). Upstream's classes (range <= 1 / 2 / 3 on its
# 0-9 scale) scaled to the template's span: range * 9 <= k * span. Fewer than two judges:
# insufficient_data. Windows over the cells in key order (by model: judge_models lists
# the scored judges in that order), kept at the last model's row; the scale is the
# template's, or where its versions differ, that of an evaluation of the last model.
_RANGE = "(j_max - j_min) * 9"
_SPAN = "coalesce(scale_max - scale_min, 9)"
_JUDGE_MEAN = "j.total / nullif(j.n, 0)"
_LAST_SCALE = f"(SELECT tv.{{0}} {_CELL_EVALUATIONS} ORDER BY v.gen_id LIMIT 1)"
VIEWS["judge_agreement"] = f"""{_SCALES}
SELECT
    j.cohort_id AS cohort_id,
    j.essay_gen_id AS essay_gen_id,{_lineage(
        "combo_id", "draft_template", "essay_template", "generation_model",
        "draft_replicate", "essay_replicate")}
    j.evaluation_template AS evaluation_template,
    scale_min,
    scale_max,
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
        j.*,
        CASE WHEN s.one THEN s.scale_min ELSE {_LAST_SCALE.format("scale_min")} END
            AS scale_min,
        CASE WHEN s.one THEN s.scale_max ELSE {_LAST_SCALE.format("scale_max")} END
            AS scale_max,
        count(CASE WHEN j.n > 0 THEN 1 END) OVER rubric AS judges,
        group_concat(CASE WHEN j.n > 0 THEN j.evaluation_model END, ', ') OVER rubric
            AS judge_models,
        avg({_JUDGE_MEAN}) OVER rubric AS j_mean,
        min({_JUDGE_MEAN}) OVER rubric AS j_min,
        max({_JUDGE_MEAN}) OVER rubric AS j_max,
        count(*) OVER rubric AS cells,
        row_number() OVER rubric AS position
    FROM essay_judge_scores j
    LEFT JOIN scales s ON s.template_id = j.evaluation_template
    WINDOW rubric AS (
        PARTITION BY j.cohort_id, j.essay_gen_id, j.evaluation_template
        ORDER BY j.evaluation_model
        ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING
    )
) j
WHERE position = cells
"""

# Scored evaluations at their template's declared maximum (upstream looked for 10 on a
# 0-9 scale and never found one), each on the scale it was parsed with. Only the cells
# whose best score reaches the lowest maximum of the template's versions are opened, and
# their evaluations found by the parent index: a page reads cells, not every evaluation.
VIEWS["top_of_scale"] = f"""
SELECT
    j.cohort_id AS cohort_id,
    v.gen_id AS gen_id,
    j.essay_gen_id AS essay_gen_id,
    coalesce({_LOOKUP["combo_id"]}, v.combo_id) AS combo_id,
    {_LOOKUP["draft_template"]} AS draft_template,
    {_LOOKUP["essay_template"]} AS essay_template,
    {_LOOKUP["generation_model"]} AS generation_model,
    j.evaluation_template AS evaluation_template,
    j.evaluation_model AS evaluation_model,
    v.replicate AS evaluation_replicate,
    v.score AS score,
    tv.scale_max AS scale_max
FROM essay_judge_scores j
CROSS JOIN generations v ON v.parent_gen_id = j.essay_gen_id
JOIN template_versions tv ON tv.version = coalesce(v.parsed_with, v.template_version)
WHERE j.n > 0
    AND j.max >= (SELECT min(x.scale_max) FROM template_versions x
        WHERE x.stage = 'evaluation' AND x.template_id = j.evaluation_template)
    AND v.stage = 'evaluation' AND v.template_id = j.evaluation_template
    AND v.model_id = j.evaluation_model AND v.state = 'ok' AND v.score >= tv.scale_max
    AND EXISTS (SELECT 1 FROM cohort_members m
        WHERE m.cohort_id = j.cohort_id AND m.gen_id = v.gen_id)
"""

# -- browsing views (browse.py describes them to Datasette; docs/browse.md) ---------------
# Cohort-scoped views carry cohort_id and hold one row per cohort membership, so a filter
# on cohort_id (Datasette: ?cohort_id=demo) is pushed down to cohort_members' primary key.
# Lineage and context columns are correlated subqueries, not joins, so Datasette's
# count(*) of a page never evaluates them; generations is LEFT JOINed (every member has
# its row), so SQLite drops the join from a count and counts memberships alone.

_CONCEPT_IDS = """(SELECT group_concat(concept_id, ', ') FROM (
        SELECT cc.concept_id FROM combo_concepts cc
        WHERE cc.combo_id = {combo} ORDER BY cc.position))"""
_CONCEPT_NAMES = """(SELECT group_concat(name, ' + ') FROM (
        SELECT k.name FROM combo_concepts cc JOIN concepts k ON k.concept_id = cc.concept_id
        WHERE cc.combo_id = {combo} ORDER BY cc.position))"""

# Progress per cohort and stage: generations by status, and the share done / finished.
# From the cohort_counts counters (counts.py): a few rows per cohort, whatever its size.
_COUNT = "sum(CASE WHEN c.status = '{status}' THEN c.generations ELSE 0 END)"
VIEWS["cohort_progress"] = f"""
SELECT
    c.cohort_id AS cohort_id,
    c.stage AS stage,
    sum(c.generations) AS generations,
    {_COUNT.format(status="done")} AS done,
    {_COUNT.format(status="failed")} AS failed,
    {_COUNT.format(status="blocked")} AS blocked,
    {_COUNT.format(status="cancelled")} AS cancelled,
    -- running: calls in flight (leases holding a pool slot); queued: leases held ahead.
    {_COUNT.format(status="running")} AS running,
    {_COUNT.format(status="queued")} AS queued,
    {_COUNT.format(status="ready")} AS ready,
    {_COUNT.format(status="waiting")} AS waiting,
    round(100.0 * {_COUNT.format(status="done")} / sum(c.generations), 1) AS pct_done,
    round(100.0 * sum(CASE WHEN c.status IN ('done', 'failed', 'blocked', 'cancelled')
        THEN c.generations ELSE 0 END) / sum(c.generations), 1) AS pct_finished
FROM cohort_counts c
GROUP BY c.cohort_id, c.stage
HAVING sum(c.generations) > 0
ORDER BY c.cohort_id, CASE c.stage WHEN 'draft' THEN 1 WHEN 'essay' THEN 2 ELSE 3 END
"""

# Every generation with its texts: parsed output, raw reply (and a reasoning model's
# reasoning beside it, never inside it) and the rendered prompt.
VIEWS["generation_texts"] = """
SELECT
    m.cohort_id AS cohort_id,
    g.gen_id AS gen_id,
    m.stage AS stage, -- the membership's copy: a stage filter needs no generation lookup
    g.status AS status,
    g.state AS state,
    g.template_id AS template_id,
    g.model_id AS model_id,
    g.combo_id AS combo_id,
    g.parent_gen_id AS parent_gen_id,
    g.replicate AS replicate,
    g.mode AS mode,
    g.score AS score,
    g.error AS error,
    (SELECT text FROM texts WHERE hash = g.parsed_hash) AS parsed_text,
    (SELECT text FROM texts WHERE hash = g.raw_hash) AS raw_text,
    (SELECT text FROM texts WHERE hash = g.reasoning_hash) AS reasoning_text,
    (SELECT text FROM texts WHERE hash = g.prompt_hash) AS prompt_text,
    g.finish_reason AS finish_reason,
    g.prompt_tokens AS prompt_tokens,
    g.completion_tokens AS completion_tokens,
    g.reasoning_tokens AS reasoning_tokens,
    g.cost AS cost,
    g.offline AS offline,
    g.finished_at AS finished_at
FROM cohort_members m
LEFT JOIN generations g ON g.gen_id = m.gen_id
"""

# A combination's concepts in order, by id and by name.
VIEWS["combos_with_concepts"] = f"""
SELECT
    c.combo_id AS combo_id,
    c.level AS level,
    c.size AS size,
    {_CONCEPT_IDS.format(combo="c.combo_id")} AS concept_ids,
    {_CONCEPT_NAMES.format(combo="c.combo_id")} AS concept_names
FROM combos c
"""

# Lineage of every generation: evaluation -> essay -> draft -> combination -> concepts.
VIEWS["lineage"] = f"""
SELECT
    m.cohort_id AS cohort_id,
    g.gen_id AS gen_id,
    g.stage AS stage,
    CASE g.stage WHEN 'evaluation' THEN g.gen_id END AS evaluation_gen_id,
    CASE g.stage WHEN 'evaluation' THEN g.parent_gen_id WHEN 'essay' THEN g.gen_id END
        AS essay_gen_id,
    CASE g.stage
        WHEN 'evaluation'
            THEN (SELECT e.parent_gen_id FROM generations e WHERE e.gen_id = g.parent_gen_id)
        WHEN 'essay' THEN g.parent_gen_id
        ELSE g.gen_id
    END AS draft_gen_id,
    g.combo_id AS combo_id,
    {_CONCEPT_IDS.format(combo="g.combo_id")} AS concept_ids,
    {_CONCEPT_NAMES.format(combo="g.combo_id")} AS concept_names,
    g.template_id AS template_id,
    g.model_id AS model_id,
    g.replicate AS replicate,
    g.status AS status,
    g.state AS state,
    g.score AS score
FROM cohort_members m
LEFT JOIN generations g ON g.gen_id = m.gen_id
"""

# Generations that ended without a result (failed, blocked or cancelled), with the reason
# and the raw reply when there was one (parse failures keep it). Read from the failed
# generations (an index holds them), then their memberships: the cost of the page is the
# failures, not the cohort. reason is failure_reasons' (counts.FAILURE_REASON), the
# expression of the index of failures, so a query ordered by it reads that index in order.
VIEWS["failures"] = f"""
SELECT
    m.cohort_id AS cohort_id,
    g.gen_id AS gen_id,
    g.stage AS stage,
    g.status AS status,
    g.state AS state,
    g.error AS error,
    g.attempts AS attempts,
    g.template_id AS template_id,
    g.model_id AS model_id,
    g.combo_id AS combo_id,
    g.parent_gen_id AS parent_gen_id,
    g.finish_reason AS finish_reason,
    (SELECT text FROM texts WHERE hash = g.raw_hash) AS raw_text,
    g.finished_at AS finished_at,
    {FAILURE_REASON} AS reason
FROM generations g
CROSS JOIN cohort_members m ON m.gen_id = g.gen_id
WHERE g.status IN ('failed', 'blocked', 'cancelled')
"""

# Failures grouped by cohort, stage, state and reason (counts.FAILURE_REASON), from the
# cohort_counts counters; the example is the group's first generation, found by the index
# of failures (generations_failures).
VIEWS["failure_reasons"] = f"""
SELECT
    cohort_id,
    stage,
    status,
    nullif(state, '') AS state,
    nullif(reason, '') AS reason,
    sum(generations) AS generations,
    group_concat(nullif(model_id, '')) AS models,
    min((SELECT g.gen_id FROM generations g INDEXED BY generations_failures
        WHERE g.status IN ('failed', 'blocked', 'cancelled')
        AND g.status = c.status AND g.stage = c.stage AND g.state IS nullif(c.state, '')
        AND ({FAILURE_REASON}) IS nullif(c.reason, '')
        AND EXISTS (SELECT 1 FROM cohort_members m
            WHERE m.cohort_id = c.cohort_id AND m.gen_id = g.gen_id)
        ORDER BY g.gen_id LIMIT 1)) AS example_gen_id
FROM cohort_counts c
WHERE status IN ('failed', 'blocked', 'cancelled') AND generations > 0
GROUP BY cohort_id, stage, status, state, reason
ORDER BY cohort_id, generations DESC, stage, reason
"""

# Human ratings beside the judges' scores: per essay and rubric, the raters' mean and the
# judges' scored evaluations (all cohorts: a rating belongs to the essay, not a cohort).
VIEWS["essay_ratings"] = """
SELECT
    r.essay_gen_id AS essay_gen_id,
    r.evaluation_template AS evaluation_template,
    count(*) AS ratings,
    group_concat(r.rater || ' ' || r.score, ', ') AS human_scores,
    round(avg(r.score), 3) AS human_mean,
    (SELECT round(avg(v.score), 3) FROM generations v
        WHERE v.parent_gen_id = r.essay_gen_id AND v.template_id = r.evaluation_template
        AND v.stage = 'evaluation' AND v.state = 'ok') AS judge_mean,
    (SELECT group_concat(v.model_id || ' ' || v.score, ', ') FROM generations v
        WHERE v.parent_gen_id = r.essay_gen_id AND v.template_id = r.evaluation_template
        AND v.stage = 'evaluation' AND v.state = 'ok') AS judge_scores
FROM human_ratings r
GROUP BY r.essay_gen_id, r.evaluation_template
"""

# Calls, tokens and cost per model over the whole database, and per cohort (a generation
# shared by two cohorts counts in both), from the call counters (counts.py): one row per
# model call, failed calls included, copy-mode essays excluded.
_USAGE = """
    nullif(c.model_id, '') AS model_id,
    c.calls AS calls,
    c.ok AS ok,
    c.calls - c.ok AS errors,
    c.prompt_tokens AS prompt_tokens,
    c.completion_tokens AS completion_tokens,
    -- unknown (empty), never 0, when a successful call had no cost (no prices)
    CASE WHEN c.unpriced > 0 THEN NULL ELSE round(c.cost, 6) END AS cost,
    round(c.latency_total / nullif(c.latency_n, 0), 3) AS mean_latency_s,
    round(c.slot_wait_total / nullif(c.slot_wait_n, 0), 3) AS mean_slot_wait_s,
    c.offline AS offline"""
VIEWS["model_usage"] = f"""
SELECT{_USAGE}
FROM model_calls c
ORDER BY c.model_id
"""

VIEWS["cohort_model_usage"] = f"""
SELECT
    c.cohort_id AS cohort_id,{_USAGE}
FROM cohort_model_calls c
ORDER BY c.cohort_id, c.model_id
"""

VIEWS.update(RANKING_VIEWS)  # top essays and the essays with no score (ranking.py)
VIEWS.update(SEARCH_VIEWS)  # full-text search (search.py)

VIEWS_DDL = "\n".join(f'CREATE VIEW "{name}" AS {body.strip()};' for name, body in VIEWS.items())
