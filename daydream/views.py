"""SQL views over the projections: what researchers query, browse and report on.

Views live in the database (created with the projections, rebuilt with them), so
``datasette daydream.db``, ``sqlite3`` and the reports all see the same definitions.

``evaluation_scores`` is the base: one row per evaluation with its lineage (essay, draft,
combination, templates, models), score and outcome state. Copy-mode essays have no model
of their own: ``generation_model`` is then the draft's model (upstream reported the string
"None" and lost those essays from every pivot).
"""

from __future__ import annotations

VIEWS: dict[str, str] = {}

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
LEFT JOIN template_versions t ON t.version = v.template_version
WHERE v.stage = 'evaluation'
"""

VIEWS_DDL = "\n".join(
    f'CREATE VIEW "{name}" AS {body.strip()};' for name, body in VIEWS.items()
)
