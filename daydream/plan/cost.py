"""A plan's cost range: the new model calls priced from the catalog, with rough input and
output sizes per stage (``daydream run --rehearse`` forecasts from the real prompts).
"""

from __future__ import annotations

import sqlite3

from daydream.catalog.registry import Registry
from daydream.plan.report import PlanReport

# Rough output sizes (tokens) per stage for the cost range: (low, high).
_OUTPUT_TOKENS = {"draft": (400, 3000), "essay": (500, 2000), "evaluation": (150, 1200)}


def estimate_cost(conn: sqlite3.Connection, report: PlanReport) -> None:
    """A rough cost range for the new model calls, from catalog prices.

    Input tokens: the template body plus the stage's input (concept texts for drafts, the
    parent's expected output for essays and evaluations); output tokens: a low/high guess
    per stage. ``daydream run --rehearse`` gives a forecast from the real rendered prompts.
    """
    registry = Registry.load(conn)
    by_model: dict[str, int] = {}
    unpriced: set[str] = set()
    low = high = 0.0
    for key, count in report.new_calls.items():
        stage, template_id, model_id = key.split("\t")
        by_model[model_id] = by_model.get(model_id, 0) + count
        model = registry.models.get(model_id)
        if model is None or model.price_input is None or model.price_output is None:
            if model is not None and model.provider != "offline":
                unpriced.add(model_id)
            continue
        template = registry.templates.get((stage, template_id))
        body = len(template.body or "") // 4 if template else 500
        parent_low, parent_high = _OUTPUT_TOKENS.get(
            {"essay": "draft", "evaluation": "essay"}.get(stage, ""), (300, 600)
        )
        out_low, out_high = _OUTPUT_TOKENS[stage]
        low += count * ((body + parent_low) * model.price_input + out_low * model.price_output)
        high += count * ((body + parent_high) * model.price_input + out_high * model.price_output)
    report.new_calls = dict(sorted(by_model.items()))
    report.cost_low, report.cost_high = low, high
    report.unpriced_models = sorted(unpriced)
