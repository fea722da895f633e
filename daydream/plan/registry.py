"""The catalog a plan checks against: the database's registry, plus the combinations a
spec enumerates from a concept pool (new ones become ``combo.defined`` events).
"""

from __future__ import annotations

import sqlite3
from typing import Any

from daydream import events as ev
from daydream.catalog.entries import Combo
from daydream.catalog.registry import Registry
from daydream.errors import PlanError


def planning_registry(
    conn: sqlite3.Connection, derived_combos: dict[str, Any], spec_path: str
) -> tuple[Registry, list[ev.ComboDefined]]:
    """The catalog a plan checks against: the database's, plus the combinations the spec
    enumerates from a concept pool (returned as the events that define the new ones)."""
    registry = Registry.load(conn)
    if not registry.templates:
        raise PlanError(
            f"plan {spec_path}: the database has no catalog; import one first with:"
            " daydream catalog import DIR"
        )
    combo_events = _derived_combo_events(registry, derived_combos, spec_path)
    for event in combo_events:
        registry.combos[event.combo_id] = (event.level, tuple(event.concept_ids))
    return registry, combo_events


def _derived_combo_events(
    registry: Registry, derived: dict[str, Any], source: str
) -> list[ev.ComboDefined]:
    events = []
    for combo_id, d in derived.items():
        missing = [c for c in d.concepts if c not in registry.concepts]
        if missing:
            raise PlanError(
                f"plan {source}: combo_id pool names unknown concept(s) {', '.join(missing)}"
                " (import them with: daydream catalog import DIR)"
            )
        if combo_id in registry.combos:
            continue
        combo = Combo(combo_id=combo_id, concept_ids=tuple(d.concepts), level=d.level)
        events.append(
            ev.ComboDefined(
                combo_id=combo_id,
                version=combo.version,
                concept_ids=list(d.concepts),
                level=d.level,
                source=source,
            )
        )
    return events
