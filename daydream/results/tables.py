"""A report's shape: its tables (name, columns, rows) and the columns of each."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from daydream.results.rows import ESSAY_AXES

AXES = (
    ("by_draft_template", ("draft_template",)),
    ("by_draft_model", ("draft_model",)),
    ("by_draft_replicate", ("draft_replicate",)),
    ("by_essay_template", ("essay_template",)),
    ("by_generation_model", ("generation_model",)),
    ("by_essay_replicate", ("essay_replicate",)),
    ("by_essay_template_and_generation_model", ("essay_template", "generation_model")),
    ("by_evaluation_template", ("evaluation_template",)),
    ("by_evaluation_model", ("evaluation_model",)),
    ("by_evaluation_template_and_model", ("evaluation_template", "evaluation_model")),
    ("by_generation_vs_evaluation_model", ("generation_model", "evaluation_model")),
    ("by_combo", ("combo_id",)),
    ("overall", ()),
)


AXIS_COLUMNS = (
    *ESSAY_AXES[1:],
    "evaluation_template",
    "evaluation_model",
    "combo_id",
)


# The 95% interval of a group's mean (and of its mean_unit), resampling ``ci_unit``
# (combo_id; essay_gen_id within one combination) ``ci_clusters`` times over.
INTERVAL_COLUMNS = (
    "ci_low",
    "ci_high",
    "ci_unit",
    "ci_clusters",
    "mean_unit_ci_low",
    "mean_unit_ci_high",
)


AGREEMENT_COLUMNS = (
    "essay_gen_id",
    "combo_id",
    "draft_template",
    "essay_template",
    "generation_model",
    "draft_replicate",
    "essay_replicate",
    "evaluation_template",
    "scale",
    "judges",
    "judge_models",
    "mean",
    "std",
    "min",
    "max",
    "range",
    "range_pct",
    "stability",
)


# Essays with evaluations of a template planned, none scored: left out of its scores.
UNSCORED_COLUMNS = (
    "essay_gen_id",
    *ESSAY_AXES,
    "essay_state",
    "evaluation_template",
    "evaluations",
    "reason",
)


TOP_OF_SCALE_COLUMNS = (
    "gen_id",
    "essay_gen_id",
    "combo_id",
    "draft_template",
    "essay_template",
    "generation_model",
    "evaluation_template",
    "evaluation_model",
    "evaluation_replicate",
    "score",
    "scale_max",
)


@dataclass
class Table:
    """One report table: its file stem, its columns in order, and its rows."""

    name: str
    columns: list[str]
    rows: Sequence[dict[str, Any]]


@dataclass
class Report:
    """Every table of a cohort's report, plus the summary printed on stdout."""

    cohort_id: str
    tables: dict[str, Table]
    summary: dict[str, Any]
    judges: list[str] = field(default_factory=list)  # "<template>__<model>" keys in order
    texts: dict[str, str] = field(default_factory=dict)  # the best essays' parsed texts
