"""Pools: concurrency limits shared by every worker through the database, and their
adaptation to rate limiting.

A claim counts the slots held in each pool (``generations.slot``) inside its transaction,
so a pool's limit holds across processes. ``adapt_pools`` cuts a limit when most recent
calls were rate limited and grows it back after a run of calls without 429 (AIMD), each
change an event (see docs/running.md).
"""

from __future__ import annotations

import sqlite3
from collections import deque
from datetime import datetime
from typing import Any

from daydream import events as ev
from daydream.db.log import append
from daydream.db.transaction import transaction
from daydream.errors import ConfigError
from daydream.values import quote

DEFAULT_POOL_LIMITS = {"offline": 1024, "copy": 1024}


DEFAULT_POOL_LIMIT = 16


POOL_LIMIT_MAX = 100_000  # calls at once in one pool, across all workers


CUT_COOLDOWN_S = 1.0


CUT_SHARE = 0.4  # cut a pool when more than this share of its recent calls got 429


def default_pool_limit(pool: str) -> int:
    """A pool's limit until one is set: 16, or 1024 for the offline and copy pools."""
    return DEFAULT_POOL_LIMITS.get(pool, DEFAULT_POOL_LIMIT)


def pool_slots(conn: sqlite3.Connection) -> dict[str, tuple[int, int]]:
    """pool -> (limit, slots held), for every pool with a set limit or a slot held."""
    limits = {pool: limit for pool, limit in conn.execute('SELECT pool, "limit" FROM pools')}
    held = dict(
        conn.execute(
            "SELECT pool, count(*) FROM generations WHERE status = 'running' AND slot = 1"
            " GROUP BY pool"
        )
    )
    return {
        p: (limits.get(p, default_pool_limit(p)), held.get(p, 0)) for p in set(limits) | set(held)
    }


def pool_capacity(conn: sqlite3.Connection) -> dict[str, int]:
    """pool -> free slots (negative when a cut left the pool over its limit)."""
    return {pool: limit - held for pool, (limit, held) in pool_slots(conn).items()}


def excess_shares(conn: sqlite3.Connection, held: dict[str, int]) -> dict[str, int]:
    """Pools holding more slots than their limit -> this worker's share of the excess.

    Slots passed from a finished call to a queued task ignore the limit (the task is
    already calling), so after a cut a pool can be over it; each worker then lets its
    share of the excess go as its calls end (rounded up), and the pool comes down to the
    limit without any call being interrupted. ``held``: the worker's slots per pool.
    """
    shares: dict[str, int] = {}
    for pool, (limit, total) in pool_slots(conn).items():
        mine = min(held.get(pool, 0), total)
        if total > limit and mine > 0:
            shares[pool] = -(-(total - limit) * mine // total)  # ceil(excess * mine / total)
    return shares


class PoolSignal:
    """What one worker saw of a pool's recent calls: a window of rate-limited or not."""

    __slots__ = ("window", "successes")

    def __init__(self) -> None:
        self.window: deque[bool] = deque()
        self.successes = 0

    def copy(self) -> PoolSignal:
        twin = PoolSignal()
        twin.window, twin.successes = deque(self.window), self.successes
        return twin

    def add(self, limited: bool, size: int) -> None:
        self.window.append(limited)
        while len(self.window) > size:
            self.window.popleft()

    @property
    def limited_share(self) -> float:
        return sum(self.window) / len(self.window) if self.window else 0.0


def adapt_pools(conn, outcomes, actor, clock, signals: dict[str, Any]) -> None:
    """Adapt pool limits to rate limiting (AIMD), recording every change as an event.

    Cut by a quarter (at most once per second per pool) when more than ``CUT_SHARE`` of the
    pool's recent calls (a full window of the last ``2 x limit``) were answered
    429: a provider rejecting a
    share of calls that does not grow with concurrency is paced by Retry-After alone (the
    429s come back fast and their tasks wait), while a pool over its provider's limit sees
    most calls rejected and is cut. Grow by one per ``limit`` successes, up to the ceiling.
    """
    calls = [o for o in outcomes if o.task.mode == "llm" and (o.ok or o.throttled)]
    if not calls:
        return
    changes = []
    now = clock()
    for pool in {o.task.pool for o in calls}:
        row = conn.execute(
            'SELECT "limit", ceiling, changed_at FROM pools WHERE pool = ?', (pool,)
        ).fetchone()
        limit, ceiling, changed_at = (
            row if row else (default_pool_limit(pool), default_pool_limit(pool), None)
        )
        signal_ = signals.setdefault(pool, PoolSignal())
        for o in calls:
            if o.task.pool == pool:
                signal_.add(o.throttled, max(10, 2 * limit))
                signal_.successes += o.ok
        recent = (
            changed_at is not None
            and (now - parse_time(changed_at)).total_seconds() < CUT_COOLDOWN_S
        )
        enough = len(signal_.window) >= max(10, 2 * limit)  # a full window: 429s come back first
        if enough and signal_.limited_share > CUT_SHARE and not recent and limit > 1:
            share = signal_.limited_share
            signal_.window.clear()
            signal_.successes = 0
            changes.append(
                ev.PoolLimitChanged(
                    pool=pool,
                    limit=max(1, int(limit * 0.75)),
                    ceiling=ceiling,
                    reason=f"cut: rate limited (429 on {share:.0%} of recent calls)",
                )
            )
        elif signal_.successes >= limit and limit < ceiling and not any(signal_.window):
            signal_.successes = 0
            changes.append(
                ev.PoolLimitChanged(
                    pool=pool,
                    limit=limit + 1,
                    ceiling=ceiling,
                    reason=f"grow: {limit} calls without 429",
                )
            )
    if changes:
        append(conn, changes, actor=actor, clock=clock)


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def set_pool_limit(conn: sqlite3.Connection, pool: str, limit: int, *, actor: str = "cli") -> bool:
    """Set a pool's concurrency limit and ceiling; returns False when already set so."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= POOL_LIMIT_MAX:
        raise ConfigError(
            f"pool {pool}: limit {quote(limit)} is not a whole number from 1 to {POOL_LIMIT_MAX}"
        )
    with transaction(conn):
        row = conn.execute('SELECT "limit", ceiling FROM pools WHERE pool = ?', (pool,)).fetchone()
        if row and row[1] == limit:
            return False
        append(
            conn,
            [ev.PoolLimitChanged(pool=pool, limit=limit, ceiling=limit, reason="set by user")],
            actor=actor,
        )
    return True
