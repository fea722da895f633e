"""What a legacy import reports: generations imported per stage and outcome, already
imported, skipped (with the reason), cohorts created and linked, models added.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from daydream.catalog.recording import ImportReport
from daydream.legacy.store import Skip
from daydream.vocabulary import STAGES

OUTCOMES = ("done", "failed", "planned")


@dataclass
class LegacyReport:
    source: str
    catalog: ImportReport | None = None
    imported: dict[str, dict[str, int]] = field(
        default_factory=lambda: {s: dict.fromkeys(OUTCOMES, 0) for s in STAGES}
    )
    already: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STAGES, 0))
    skipped: list[Skip] = field(default_factory=list)
    cohorts: list[str] = field(default_factory=list)
    linked: dict[str, int] = field(default_factory=dict)  # cohort -> generations linked
    models_added: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    events: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "catalog": vars(self.catalog) if self.catalog else None,
            "imported": self.imported,
            "already_imported": self.already,
            "skipped": [{"path": s.path, "reason": s.reason} for s in self.skipped],
            "cohorts_created": self.cohorts,
            "members_linked": self.linked,
            "models_added": self.models_added,
            "warnings": self.warnings,
            "events_written": self.events,
        }
