"""Running one worker to the end: check its providers, then loop until idle or stopped.

``daydream worker`` and each worker process of ``daydream run`` (``runner.workers``) call
``run_worker``; ``check_providers`` is also what ``daydream run`` checks once, before it
starts any worker.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from pathlib import Path

from daydream import crashpoints
from daydream.db.connection import connect
from daydream.errors import DaydreamError
from daydream.queue.cohorts import require_cohort
from daydream.queue.health import resume
from daydream.queue.tasks import remaining_models
from daydream.worker.config import WorkerConfig
from daydream.worker.execute import Executor
from daydream.worker.loop import Worker
from daydream.worker.stats import WorkerStats


def check_providers(config: WorkerConfig, conn: sqlite3.Connection | None = None) -> None:
    """Build the provider of every model that the unfinished calls in ``config``'s scope
    will use, as a worker would: a missing API key, an unknown provider or a bad base URL
    is one ``ConfigError`` before any call, not a failed generation per task (and a
    cohort that does not exist is a ``PlanError``, not an idle worker). ``conn``: an
    open connection to the database, else one is opened for this."""
    own = conn is None
    conn = conn or connect(config.db_path, create=False)
    try:
        if config.cohort:
            require_cohort(conn, config.cohort)
        models = remaining_models(conn, config.cohort, config.pools)
    finally:
        if own:
            conn.close()
    executor = Executor(config)
    for model in models:
        executor.provider(model)  # builds and checks; the HTTP clients are made on first use


def run_worker(config: WorkerConfig, *, log: Callable[[str], None] | None = None) -> WorkerStats:
    """Run one worker until idle (or stopped by a signal); first ``check_providers``
    and resume the stopped pools of its scope (a worker started on its own is a new run),
    unless ``config.check_providers`` is off (``daydream run`` checks once for all its
    workers)."""
    if not Path(config.db_path).exists():
        raise DaydreamError(f"database {config.db_path} does not exist (plan a cohort first)")
    crashpoints.check()
    if config.check_providers:
        check_providers(config)
        conn = connect(config.db_path, create=False)
        try:
            resume(
                conn,
                pools=config.pools or None,
                actor=f"worker:{config.name}",
                reason="a worker started on its own; its checks passed",
            )
        finally:
            conn.close()
    return asyncio.run(Worker(config, log=log).run())
