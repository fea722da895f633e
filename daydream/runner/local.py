"""Pool limits for local model servers, from the servers themselves.

A pool whose unfinished calls all go to local servers (``providers.serving``: llama.cpp,
Ollama, LM Studio) gets, before a run's workers start, the number of requests those servers
serve at once (their sum, for a pool spread over several servers): what the server reports,
or 1 with a note saying why. Without it the default limit (16) would send a server that
answers one request at a time sixteen, and each call's latency would include the server's
queue.

Invariants: a limit the user set (``--pool-limit``, ``pool.limit_changed`` with reason "set
by user") is never replaced; an unchanged limit writes no event; the offline provider and
rehearsals are left alone.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Mapping
from typing import Any

from daydream import events as ev
from daydream.db.log import append
from daydream.db.transaction import transaction
from daydream.providers.config import resolve_provider_config
from daydream.providers.serving import ServerSlots, is_local, server_slots
from daydream.queue.tasks import unfinished
from daydream.worker.config import WorkerConfig

USER_SET = "set by user"


def set_local_pool_limits(
    conn: sqlite3.Connection,
    config: WorkerConfig,
    *,
    skip: set[str] | frozenset[str] = frozenset(),
    environ: Mapping[str, str] | None = None,
) -> list[str]:
    """Set the limit of each pool of ``config``'s unfinished calls that only local servers
    answer (not the pools in ``skip``: the run sets those itself); returns one note per
    pool whose limit is not what its servers reported (a default of 1, or a user's limit)."""
    if config.provider_override:
        return []
    environ = os.environ if environ is None else environ
    notes, changes = [], []
    for pool, endpoints in _local_pools(conn, config, environ).items():
        if pool in skip:
            continue
        answers = [server_slots(endpoint, environ=environ) for endpoint in endpoints.values()]
        slots = sum(answer.slots for answer in answers)
        why = "; ".join(answer.source for answer in answers)
        row = conn.execute('SELECT "limit", ceiling, reason FROM pools WHERE pool = ?', (pool,))
        current = row.fetchone()
        if current and current[2] == USER_SET:
            if current[0] != slots:
                notes.append(
                    f"pool {pool}: limit {current[0]}, set by user ({why}; the server"
                    f" answers {slots} at once)"
                )
            continue
        if not all(answer.reported for answer in answers):
            notes.append(_default_note(pool, slots, answers))
        if current is None or tuple(current[:2]) != (slots, slots):
            reason = f"local server: {why}"
            changes.append(ev.PoolLimitChanged(pool=pool, limit=slots, ceiling=slots, reason=reason))
    if changes:
        with transaction(conn):
            append(conn, changes, actor="cli:run")
    return notes


def _local_pools(
    conn: sqlite3.Connection, config: WorkerConfig, environ: Mapping[str, str]
) -> dict[str, dict[str, Any]]:
    """pool -> {base URL: provider config} for the pools of the run's unfinished calls
    whose every unfinished call (in any cohort: the limit is shared) goes to a local server."""
    where, params = unfinished(config.cohort, config.pools)
    pools = [
        row[0]
        for row in conn.execute(
            f"SELECT DISTINCT g.pool FROM generations g WHERE {where} AND g.mode = 'llm'", params
        )
    ]
    found: dict[str, dict[str, Any]] = {}
    for pool in pools:
        where, params = unfinished(None, (pool,))
        rows = conn.execute(
            "SELECT DISTINCT m.provider, m.settings FROM generations g"
            f" JOIN models m ON m.model_id = g.model_id WHERE {where} AND g.mode = 'llm'",
            params,
        ).fetchall()
        endpoints = {}
        for provider, settings in rows:
            if not is_local(provider):
                break
            endpoint = resolve_provider_config(
                provider,
                base_url=_catalog_url(settings),
                environ=environ,
                command_line_url=config.base_urls.get(provider),
            )
            endpoints[endpoint.base_url] = endpoint
        else:
            if endpoints:
                found[pool] = endpoints
    return found


def _catalog_url(settings: str) -> str | None:
    return json.loads(settings).get("base_url")


def _default_note(pool: str, slots: int, answers: list[ServerSlots]) -> str:
    unsaid = "; ".join(answer.source for answer in answers if not answer.reported)
    return (
        f"pool {pool}: limit {slots}, one call at a time per server that does not say"
        f" otherwise ({unsaid}); if it serves more, run with --pool-limit {pool}=N"
    )
