"""Appliers of what workers learn about endpoints and pools: an endpoint down or back
(``endpoints``), a pool stopped by an error no retry can fix or resumed (``pool_stops``).

Every worker reads these tables when it claims, so one worker's finding holds for all of
them, and for ``daydream status``; a replay rebuilds them like any other table.
"""

from __future__ import annotations

from collections.abc import Callable

from daydream import events as ev


def _endpoint_down(conn, event_id, e: ev.EndpointDown, at):
    conn.execute(
        "INSERT INTO endpoints (endpoint, provider, status, pool, error, down_since, changed_at)"
        " VALUES (?, ?, 'down', ?, ?, ?, ?) ON CONFLICT (endpoint) DO UPDATE SET"
        " provider = excluded.provider, pool = excluded.pool, error = excluded.error,"
        " down_since = CASE WHEN endpoints.status = 'down' THEN endpoints.down_since"
        " ELSE excluded.down_since END, status = 'down', changed_at = excluded.changed_at",
        (e.endpoint, e.provider, e.pool, e.error, at, at),
    )


def _endpoint_recovered(conn, event_id, e: ev.EndpointRecovered, at):
    conn.execute(
        "UPDATE endpoints SET status = 'up', down_since = NULL, changed_at = ?"
        " WHERE endpoint = ?",
        (at, e.endpoint),
    )


def _pool_stopped(conn, event_id, e: ev.PoolStopped, at):
    conn.execute(
        "INSERT OR IGNORE INTO pool_stops (pool, provider, model_id, http_status, message,"
        " stopped_at) VALUES (?, ?, ?, ?, ?, ?)",
        (e.pool, e.provider, e.model_id, e.http_status, e.message, at),
    )


def _pool_resumed(conn, event_id, e: ev.PoolResumed, at):
    conn.execute("DELETE FROM pool_stops WHERE pool = ?", (e.pool,))


APPLIERS: dict[str, Callable[..., None]] = {
    ev.EndpointDown.type: _endpoint_down,
    ev.EndpointRecovered.type: _endpoint_recovered,
    ev.PoolStopped.type: _pool_stopped,
    ev.PoolResumed.type: _pool_resumed,
}
