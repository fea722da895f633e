"""What a plan reports: counts per stage (in the cohort, new, shared with other cohorts,
already completed), the new model calls, a cost range and notes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from daydream.vocabulary import STAGES


@dataclass
class StageCounts:
    in_cohort: int = 0
    new: int = 0
    shared: int = 0
    completed: int = 0


@dataclass
class PlanReport:
    cohort_id: str
    spec_path: str
    dry_run: bool
    rows: int = 0
    stages: dict[str, StageCounts] = field(
        default_factory=lambda: {s: StageCounts() for s in STAGES}
    )
    cost_low: float = 0.0
    cost_high: float = 0.0
    unpriced_models: list[str] = field(default_factory=list)
    new_calls: dict[str, int] = field(default_factory=dict)  # model_id -> new llm generations
    events: int = 0
    notes: list[str] = field(default_factory=list)
    # template id -> completed generations reused although made with an older version
    stale: dict[str, int] = field(default_factory=dict)

    def estimate(self) -> dict[str, Any] | None:
        """The cost range of the new calls: ``low`` and ``high`` in USD (None, unknown, when
        no model of them has prices; never $0 for calls of unknown price), and whether it
        covers every call (``complete``: no model without prices)."""
        if not self.new_calls:
            return None
        priced = set(self.new_calls) - set(self.unpriced_models)
        low, high = (round(self.cost_low, 4), round(self.cost_high, 4)) if priced else (None, None)
        return {"low": low, "high": high, "complete": not self.unpriced_models}

    def to_dict(self) -> dict[str, Any]:
        return {
            "cohort_id": self.cohort_id,
            "spec": self.spec_path,
            "dry_run": self.dry_run,
            "rows": self.rows,
            "stages": {s: vars(c) for s, c in self.stages.items()},
            "new_calls_by_model": self.new_calls,
            "cost_estimate_usd": self.estimate(),
            "unpriced_models": self.unpriced_models,
            "events_written": self.events,
            "notes": self.notes,
        }
