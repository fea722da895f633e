"""Why a worker with work pending may have nothing to claim, and when it stops waiting.

Work can be pending yet out of reach: its pool is stopped (a rejected key, an unknown
model), its endpoints are down, or the budget leaves no room for another call. A worker
then idles (probing down endpoints, ``worker.health``) and ends, with the reason in its
stats (``WorkerStats.stop``), when:

- only stopped pools' work is left (``pool_stopped``);
- an endpoint it needs has been down past the outage limit (``outage``);
- the budget leaves no room and no call of the scope is running, whose end could make
  some (``budget``).

A ``--forever`` worker never ends on these: it goes on waiting.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from daydream.queue.budget import Budget
from daydream.queue.tasks import has_pending, has_running, remaining_models
from daydream.worker.config import WorkerConfig


def budget(config: WorkerConfig, executor: Any) -> Budget | None:
    """The budget of ``config`` (None: no cap, or offline calls, which cost nothing);
    ``executor.max_cost`` bounds each call."""
    if config.max_cost_usd is None or config.provider_override == "offline":
        return None
    return Budget(
        config.max_cost_usd,
        config.cohort,
        bound=executor.max_cost,
        unpriced_per_token=(config.unpriced_per_mtok or 0.0) / 1_000_000,
    )


class Waiting:
    """The waiting of one ``worker.loop.Worker`` (its config, health, stats and database)."""

    def __init__(self, worker: Any) -> None:
        self.worker = worker
        self.budget: Budget | None = None
        self._models_learnt = False

    def start(self, executor: Any, *, wake: Any) -> None:
        """The worker's executor is ready: make its budget; a probe finding an endpoint
        back calls ``wake``."""
        self.budget = budget(self.worker.config, executor)
        self.worker.health.on_change = wake

    async def ended(self) -> bool:
        """Is this worker, with nothing to claim, done: nothing it could run is left, or its
        wait is over?"""
        return not await self.pending() or await self.over()

    async def pending(self) -> bool:
        """Is anything left to run, outside stopped pools? (Yes while the database cannot be
        read.) Work left only in stopped pools ends the worker with that reason."""
        worker = self.worker
        config, health = worker.config, worker.health
        stopped = tuple(health.stopped)
        try:
            if await worker._db_call(has_pending, config.cohort, config.pools, stopped):
                return True
            if stopped and await worker._db_call(has_pending, config.cohort, config.pools):
                worker.stats.stop("pool_stopped", "; ".join(sorted(health.stopped.values())))
            return False
        except sqlite3.OperationalError as exc:
            worker.log(f"worker {config.name}: reading the queue failed ({exc})")
            return True

    async def over(self) -> bool:
        """Nothing to claim, work pending: is the wait over? (See the module docstring.)"""
        worker = self.worker
        if await self._learn_models():
            return False
        outage = worker.health.outage()
        if outage:
            worker.stats.stop("outage", outage)
            return True
        budget = self.budget
        if budget is None or not budget.limited:
            return False
        try:
            if await worker._db_call(has_running, worker.config.cohort):
                return False
            left = await worker._db_call(budget.left)
        except sqlite3.OperationalError:
            return False
        worker.stats.stop(
            "budget",
            f"the budget of ${budget.cap_usd:g} leaves no room for another call"
            f" (${budget.cap_usd - left:.4f} spent)",
        )
        return True

    async def release_blocked(self) -> None:
        """Give back the worker's queued leases whose pool is stopped or whose endpoints
        are all down (they would wait in this worker for nothing)."""
        worker = self.worker
        health = worker.health
        if not (health.down or health.stopped):
            return
        skip = set(health.skip_models())
        blocked = [
            task
            for task in worker._queued()
            if task.pool in health.stopped or (task.model or {}).get("model_id") in skip
        ]
        if blocked:
            worker._abandon({task.gen_id for task in blocked})
            await worker._give_back(blocked, "its endpoint is down or its pool stopped")

    async def _learn_models(self) -> bool:
        """Once, while an endpoint is down that none of this worker's calls went to: learn
        the endpoints of the models its pending work uses, so that it probes them; returns
        whether it learnt any."""
        worker = self.worker
        if self._models_learnt or not (worker.health.down - set(worker.health.probers)):
            return False
        self._models_learnt = True
        config = worker.config
        models = await worker._db_call(remaining_models, config.cohort, config.pools)
        return worker._executor.learn(models) > 0
