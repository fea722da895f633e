"""Applying one event to the projections: the table of appliers, one per event type.

``apply_event()`` never reads the clock or anything outside the event and the database,
so a replay is deterministic. The appliers live beside what they maintain: the catalog,
plans and cohort operations in ``planning``, the life of an attempt in ``attempts``,
a reply parsed again in ``reparsing``,
endpoints and stopped pools in ``health``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from daydream import events as ev
from daydream.db.projections import attempts, health, planning, reparsing
from daydream.db.projections.tally import counting, is_counting

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
    """Apply one event; its counter changes settle with the batch open on ``conn``
    (``apply_batch``), or at once when none is."""
    if is_counting(conn):
        _APPLIERS[event.type](conn, event_id, event, recorded_at)
        return
    with counting(conn):
        _APPLIERS[event.type](conn, event_id, event, recorded_at)


@contextmanager
def apply_batch(conn: sqlite3.Connection, events: Sequence[ev.Event]) -> Iterator[None]:
    """Apply ``events`` (with ``apply_event``, inside the block) as one batch: the counters
    change once at its end (``tally``), and the keys of the generations the events name are
    read in one query rather than one per event."""
    with counting(conn) as tally:
        named = (getattr(e, "gen_id", None) for e in events)
        tally.note(conn, [gen_id for gen_id in named if isinstance(gen_id, str)])
        yield
