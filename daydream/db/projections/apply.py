"""Applying one event to the projections: the table of appliers, one per event type.

``apply_event()`` never reads the clock or anything outside the event and the database,
so a replay is deterministic. The appliers live beside what they maintain: the catalog,
plans and cohort operations in ``planning``, the life of an attempt in ``attempts``,
a reply parsed again in ``reparsing``,
endpoints and stopped pools in ``health``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

from daydream import events as ev
from daydream.db.projections import attempts, health, planning, reparsing

Applier = Callable[[sqlite3.Connection, int, Any, str], None]
"""An applier: (connection, event id, event, recorded_at) -> None, inside the append's
transaction."""

_APPLIERS: dict[str, Applier] = {
    **planning.APPLIERS,
    **attempts.APPLIERS,
    **reparsing.APPLIERS,
    **health.APPLIERS,
}


def apply_event(conn: sqlite3.Connection, event_id: int, event: ev.Event, recorded_at: str) -> None:
    _APPLIERS[event.type](conn, event_id, event, recorded_at)
