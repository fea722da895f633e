"""Endpoints and pools as every worker sees them: which endpoints are down, which pools are
stopped (``endpoints`` and ``pool_stops``, kept by the events of ``db.projections.health``).

A worker reads both in each exchange (one query over two small tables, empty while all is
well) and claims nothing that needs a down endpoint or a stopped pool; what it learnt
itself it records in the same transaction, only where that changes something, so a
hundred calls failing on one dead server write one ``endpoint.down``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

from daydream import events as ev
from daydream.clock import Clock, utcnow
from daydream.db.log import append
from daydream.db.transaction import transaction


def read_health(conn: sqlite3.Connection) -> tuple[dict[str, str], dict[str, str]]:
    """(endpoint -> down since, pool -> why it is stopped), as the database says now."""
    down: dict[str, str] = {}
    stopped: dict[str, str] = {}
    for kind, key, value in conn.execute(
        "SELECT 'e', endpoint, down_since FROM endpoints WHERE status = 'down'"
        " UNION ALL SELECT 'p', pool, message FROM pool_stops"
    ):
        (down if kind == "e" else stopped)[key] = value
    return down, stopped


def record_health(
    conn: sqlite3.Connection, events: Iterable[ev.Event], *, actor: str, clock: Clock = utcnow
) -> None:
    """Append the events that change something: an endpoint going down that is not down
    already, one coming back that is down, a pool stopping that is not stopped yet (in
    the caller's transaction)."""
    down, stopped = read_health(conn)
    changes: list[ev.Event] = []
    for event in events:
        if isinstance(event, ev.EndpointDown) and event.endpoint not in down:
            down[event.endpoint] = ""
            changes.append(event)
        elif isinstance(event, ev.EndpointRecovered) and event.endpoint in down:
            del down[event.endpoint]
            changes.append(event)
        elif isinstance(event, ev.PoolStopped) and event.pool not in stopped:
            stopped[event.pool] = event.message
            changes.append(event)
    if changes:
        append(conn, changes, actor=actor, clock=clock)


def resume(
    conn: sqlite3.Connection,
    *,
    reached: Iterable[str] = (),
    pools: Iterable[str] | None = None,
    actor: str,
    reason: str,
) -> list[str]:
    """A run starts afresh: the down endpoints its checks ``reached`` are marked back
    (``endpoint.recovered`` by the preflight), and the stopped pools (those in ``pools``;
    all: None) may be claimed again (``pool.resumed``). Returns the pools resumed."""
    with transaction(conn):
        down, stopped = read_health(conn)
        wanted = set(stopped) if pools is None else set(pools) & set(stopped)
        events: list[ev.Event] = [
            ev.EndpointRecovered(endpoint=endpoint, by="preflight")
            for endpoint in sorted(set(reached) & set(down))
        ]
        events += [ev.PoolResumed(pool=pool, reason=reason) for pool in sorted(wanted)]
        if events:
            append(conn, events, actor=actor)
    return sorted(wanted)
