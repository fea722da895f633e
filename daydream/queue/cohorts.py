"""Cohort operations after planning: status, retry, cancel.

``cohort_status()`` is the one progress query (``daydream status``, the runner's progress
line). ``retry()`` and ``cancel()`` append events; the projections do the state changes, so
a replay reproduces them.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from typing import Any

from daydream import events as ev
from daydream.clock import Clock, utcnow
from daydream.db.log import append
from daydream.db.projections.counts import FAILURE_REASON
from daydream.db.transaction import transaction
from daydream.errors import PlanError
from daydream.queue.pools import default_pool_limit, parse_time
from daydream.vocabulary import STAGES, STATUSES


@dataclass
class Status:
    cohort: str | None
    stages: dict[str, dict[str, int]] = field(default_factory=dict)
    states: dict[str, int] = field(default_factory=dict)
    models: list[dict[str, Any]] = field(default_factory=list)
    # Every pool with a set limit or a lease, across all cohorts and workers.
    pools: list[dict[str, Any]] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0  # of the calls whose cost is known
    offline_calls: int = 0
    # Models whose successful calls have no cost (no prices): the total is then unknown.
    unpriced_models: list[str] = field(default_factory=list)
    # Pools no call of which can succeed until a run resumes them (``pool.stopped``), and
    # endpoints workers wait for (``endpoint.down``), across all cohorts.
    stopped: list[dict[str, Any]] = field(default_factory=list)
    down: list[dict[str, Any]] = field(default_factory=list)
    # Failures grouped by status, state and reason (``cohort_status(failures=True)``).
    failures: list[dict[str, Any]] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(sum(c.values()) for c in self.stages.values())

    def count(self, *statuses: str) -> int:
        return sum(c.get(s, 0) for c in self.stages.values() for s in statuses)

    @property
    def remaining(self) -> int:
        return self.count("running", "queued", "ready", "waiting")

    @property
    def total_cost(self) -> float | None:
        """What the calls cost, or None ("unknown") when a model has no prices."""
        return None if self.unpriced_models else round(self.cost, 6)

    def to_dict(self) -> dict[str, Any]:
        return {
            "cohort": self.cohort,
            "stages": self.stages,
            "states": self.states,
            "models": self.models,
            "pools": self.pools,
            "tokens": {"prompt": self.prompt_tokens, "completion": self.completion_tokens},
            "cost_usd": self.total_cost,
            "cost_usd_known": round(self.cost, 6),
            "unpriced_models": self.unpriced_models,
            "offline_calls": self.offline_calls,
            "stopped_pools": self.stopped,
            "down_endpoints": self.down,
            "failures": self.failures,
        }


def cohort_status(
    conn: sqlite3.Connection, cohort: str | None, *, failures: bool = False, clock: Clock = utcnow
) -> Status:
    """Per-stage task counts, outcome states and per-model totals (one cohort or all), the
    stopped pools and down endpoints (``down_s`` counted to ``clock()``), and with
    ``failures`` the failures grouped (``failure_groups``)."""
    status = Status(cohort)
    for stage in STAGES:
        status.stages[stage] = dict.fromkeys(STATUSES, 0)
    if cohort:
        # The cohort's counters (cohort_counts, kept with the log): a few rows, whatever
        # the cohort's size. "queued" is already apart from "running" there.
        states: dict[str, int] = {}
        for stage, task_status, outcome, count in conn.execute(
            "SELECT stage, status, state, sum(generations) FROM cohort_counts"
            " WHERE cohort_id = ? GROUP BY 1, 2, 3",
            [cohort],
        ):
            counts = status.stages.setdefault(stage, dict.fromkeys(STATUSES, 0))
            counts[task_status] += count
            if outcome and count:
                states[outcome] = states.get(outcome, 0) + count
        status.states = dict(sorted(states.items(), key=lambda item: -item[1]))
    else:
        # Every generation: the queue index (status, stage) counts without reading rows.
        for stage, task_status, count in conn.execute(
            "SELECT stage, status, count(*) FROM generations GROUP BY 1, 2"
        ):
            status.stages.setdefault(stage, dict.fromkeys(STATUSES, 0))[task_status] = count
        for stage, count in conn.execute(
            "SELECT stage, count(*) FROM generations WHERE status = 'running' AND slot = 0"
            " GROUP BY 1"
        ):
            status.stages[stage]["running"] -= count
            status.stages[stage]["queued"] = count
        status.states = dict(
            conn.execute(
                "SELECT state, count(*) FROM generations WHERE state IS NOT NULL"
                " GROUP BY 1 ORDER BY 2 DESC"
            ).fetchall()
        )
    # The call counters (model_calls, cohort_model_calls): one row per model.
    calls, params = "model_calls c", []
    if cohort:
        calls, params = "cohort_model_calls c WHERE c.cohort_id = ?", [cohort]
    for row in conn.execute(
        "SELECT nullif(c.model_id, '') AS model_id, c.calls AS calls, c.ok AS ok,"
        " c.calls - c.ok AS errors, c.prompt_tokens AS prompt_tokens,"
        " c.completion_tokens AS completion_tokens, c.cost AS cost, c.offline AS offline,"
        " c.unpriced AS unpriced_calls,"
        " c.latency_total / nullif(c.latency_n, 0) AS mean_latency_s"
        f" FROM {calls} ORDER BY c.model_id",
        params,
    ):
        model = dict(row)
        status.prompt_tokens += model["prompt_tokens"]
        status.completion_tokens += model["completion_tokens"]
        status.cost += model["cost"]
        if model.pop("unpriced_calls"):
            model["cost"] = None  # unknown, never $0
            status.unpriced_models.append(model["model_id"])
        status.models.append(model)
        if model["offline"]:
            status.offline_calls += model["ok"] or 0
    status.pools = pool_usage(conn)
    status.stopped, status.down = _health(conn, clock)
    if failures:
        status.failures = failure_groups(conn, cohort)
    return status


def _health(conn: sqlite3.Connection, clock: Clock) -> tuple[list[dict], list[dict]]:
    """The stopped pools and the endpoints down (with how long, in seconds)."""
    stopped = [
        dict(row)
        for row in conn.execute(
            "SELECT pool, provider, model_id, http_status, message, stopped_at FROM pool_stops"
            " ORDER BY pool"
        )
    ]
    now = clock()
    down = []
    for row in conn.execute(
        "SELECT endpoint, provider, pool, error, down_since FROM endpoints"
        " WHERE status = 'down' ORDER BY endpoint"
    ):
        entry = dict(row)
        entry["down_s"] = round((now - parse_time(entry["down_since"])).total_seconds(), 1)
        down.append(entry)
    return stopped, down


def failure_groups(
    conn: sqlite3.Connection, cohort: str | None, *, limit: int = 10
) -> list[dict[str, Any]]:
    """The failed, blocked and cancelled generations grouped by status, state and reason
    (the error's first line; a blocked child's names no parent id), most frequent first:
    ``count``, ``status``, ``state``, ``reason``, ``example`` (a generation id)."""
    if not cohort:
        return [
            dict(row)
            for row in conn.execute(
                f"SELECT count(*) AS count, g.status AS status, g.state AS state,"
                f" {FAILURE_REASON} AS reason, min(g.gen_id) AS example FROM generations g"
                " WHERE g.status IN ('failed', 'blocked', 'cancelled')"
                " GROUP BY 2, 3, 4 ORDER BY 1 DESC, 2, 3, 4 LIMIT ?",
                [limit],
            )
        ]
    # From the cohort's counters; each group's example is its first generation in each of
    # its stages, found by the index of failures.
    groups = [
        dict(row)
        for row in conn.execute(
            "SELECT sum(generations) AS count, status, nullif(state, '') AS state,"
            " nullif(reason, '') AS reason, group_concat(DISTINCT stage) AS stages"
            " FROM cohort_counts WHERE cohort_id = ? AND generations > 0"
            " AND status IN ('failed', 'blocked', 'cancelled')"
            " GROUP BY status, state, reason ORDER BY 1 DESC, 2, 3, 4 LIMIT ?",
            [cohort, limit],
        )
    ]
    for group in groups:
        stages = group.pop("stages").split(",")
        examples = [_first_failure(conn, cohort, stage, group) for stage in stages]
        group["example"] = min((e for e in examples if e is not None), default=None)
    return groups


def _first_failure(
    conn: sqlite3.Connection, cohort: str, stage: str, group: dict[str, Any]
) -> str | None:
    row = conn.execute(
        # By the index of failures: SQLite would choose the queue index (status, stage) and
        # sort every failure of the stage (1.5 s for 16,000 failed evaluations).
        "SELECT g.gen_id FROM generations g INDEXED BY generations_failures"
        " WHERE g.status IN ('failed', 'blocked', 'cancelled') AND g.status = ? AND g.stage = ?"
        f" AND g.state IS ? AND ({FAILURE_REASON}) IS ?"
        " AND EXISTS (SELECT 1 FROM cohort_members m WHERE m.cohort_id = ? AND m.gen_id = g.gen_id)"
        " ORDER BY g.gen_id LIMIT 1",
        (group["status"], stage, group["state"], group["reason"], cohort),
    ).fetchone()
    return row[0] if row else None


def pool_usage(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """Each pool with a set limit or a lease: its limit and ceiling, the calls in flight
    (slots held) and the leases queued in workers, across all cohorts and workers."""
    usage: dict[str, dict[str, Any]] = {}
    for pool, limit, ceiling in conn.execute('SELECT pool, "limit", ceiling FROM pools'):
        usage[pool] = {
            "pool": pool,
            "limit": limit,
            "ceiling": ceiling,
            "in_flight": 0,
            "queued": 0,
        }
    for pool, slot, count in conn.execute(
        "SELECT pool, slot, count(*) FROM generations WHERE status = 'running' GROUP BY 1, 2"
    ):
        default = default_pool_limit(pool)
        entry = usage.setdefault(
            pool, {"pool": pool, "limit": default, "ceiling": default, "in_flight": 0, "queued": 0}
        )
        entry["in_flight" if slot else "queued"] += count
    return [usage[pool] for pool in sorted(usage)]


def require_cohort(conn: sqlite3.Connection, cohort: str) -> None:
    if not conn.execute("SELECT 1 FROM cohorts WHERE cohort_id = ?", (cohort,)).fetchone():
        known = [r[0] for r in conn.execute("SELECT cohort_id FROM cohorts ORDER BY 1")]
        raise PlanError(
            f'cohort "{cohort}" does not exist (cohorts: {", ".join(known) or "none"};'
            " plan one with: daydream plan SPEC --cohort ID)"
        )


def retry(
    conn: sqlite3.Connection,
    cohort: str,
    *,
    failed: bool = False,
    gen_ids: tuple[str, ...] = (),
    actor: str = "cli:retry",
) -> list[str]:
    """Put failed (or cancelled/blocked-by-them) generations back to work. Returns their ids.

    A generation can run again only if its parent is done or comes back with it: ``failed``
    skips those whose parent stays failed, blocked or cancelled, and naming one in
    ``gen_ids`` is an error, as is naming a done generation (a completed generation is
    never run again: exactly one result per id).
    """
    with transaction(conn):
        require_cohort(conn, cohort)
        chosen: list[str] = []
        parents: dict[str, tuple[str, str]] = {}  # gen_id -> (parent id, parent status)
        if failed:
            for gen_id, parent, parent_status in conn.execute(
                "SELECT g.gen_id, g.parent_gen_id, p.status FROM generations g"
                " JOIN cohort_members m USING (gen_id)"
                " LEFT JOIN generations p ON p.gen_id = g.parent_gen_id"
                " WHERE m.cohort_id = ? AND g.status IN ('failed', 'cancelled')"
                " ORDER BY g.rowid",
                (cohort,),
            ):
                chosen.append(gen_id)
                if parent:
                    parents[gen_id] = (parent, parent_status)
        for gen_id in gen_ids:
            row = conn.execute(
                "SELECT g.status, g.parent_gen_id, p.status FROM generations g"
                " JOIN cohort_members m USING (gen_id)"
                " LEFT JOIN generations p ON p.gen_id = g.parent_gen_id"
                " WHERE m.cohort_id = ? AND g.gen_id = ?",
                (cohort, gen_id),
            ).fetchone()
            if row is None:
                raise PlanError(f'generation "{gen_id}" is not in cohort "{cohort}"')
            if row[0] in ("running", "ready", "waiting"):
                raise PlanError(f'generation "{gen_id}" is {row[0]}: nothing to retry')
            if row[0] == "done":
                raise PlanError(
                    f'generation "{gen_id}" is done: a completed generation is never run'
                    " again (plan another replicate for a new sample)"
                )
            if gen_id not in chosen:
                chosen.append(gen_id)
            if row[1]:
                parents[gen_id] = (row[1], row[2])
        stuck = {
            gen_id
            for gen_id, (parent, status) in parents.items()
            if status in ("failed", "blocked", "cancelled") and parent not in chosen
        }
        for gen_id in gen_ids:
            if gen_id in stuck:
                parent, status = parents[gen_id]
                raise PlanError(
                    f'generation "{gen_id}" cannot run: its parent "{parent}" is {status};'
                    f" retry the parent instead (add --gen {parent}, or use --failed)"
                )
        while stuck:  # --failed: leave out what still could not run, and what depends on it
            chosen = [gen_id for gen_id in chosen if gen_id not in stuck]
            stuck = {
                gen_id
                for gen_id, (parent, _) in parents.items()
                if gen_id in chosen and parent in parents and parent not in chosen
            }
        if chosen:
            append(conn, [ev.GenerationsRetried(cohort_id=cohort, gen_ids=chosen)], actor=actor)
    return chosen


def cancel(conn: sqlite3.Connection, cohort: str, *, actor: str = "cli:cancel") -> list[str]:
    """Cancel the cohort's unfinished generations that no other live cohort needs."""
    with transaction(conn):
        require_cohort(conn, cohort)
        gen_ids = [
            r[0]
            for r in conn.execute(
                "SELECT g.gen_id FROM generations g JOIN cohort_members m USING (gen_id)"
                " WHERE m.cohort_id = ? AND g.status IN ('ready', 'running', 'waiting', 'blocked')"
                " AND NOT EXISTS (SELECT 1 FROM cohort_members o JOIN cohorts c USING (cohort_id)"
                "  WHERE o.gen_id = g.gen_id AND o.cohort_id != ? AND c.cancelled_at IS NULL)"
                " ORDER BY g.rowid",
                (cohort, cohort),
            )
        ]
        append(conn, [ev.CohortCancelled(cohort_id=cohort, gen_ids=gen_ids)], actor=actor)
    return gen_ids


def kept_for_others(conn: sqlite3.Connection, cohort: str) -> tuple[int, list[str]]:
    """The cohort's unfinished generations that a cancel keeps (another cohort that is not
    cancelled needs them), and those cohorts."""
    count, others = conn.execute(
        "SELECT count(DISTINCT g.gen_id), group_concat(DISTINCT o.cohort_id)"
        " FROM cohort_members m JOIN generations g ON g.gen_id = m.gen_id"
        " JOIN cohort_members o ON o.gen_id = g.gen_id AND o.cohort_id != m.cohort_id"
        " JOIN cohorts c ON c.cohort_id = o.cohort_id AND c.cancelled_at IS NULL"
        " WHERE m.cohort_id = ? AND g.status IN ('ready', 'running', 'waiting', 'blocked')",
        (cohort,),
    ).fetchone()
    return count, sorted(others.split(",")) if others else []
