"""The runner: start N worker processes for a cohort, show progress, stop cleanly.

``run_cohort()`` launches worker processes, each with a copy of one ``WorkerConfig``
(``runner.workers.start``: forks of this process where that is safe, which start in
milliseconds, else fresh interpreters importing this copy of daydream; never a fork of a
process holding the database open),
polls the projections read-only for progress, restarts a worker
that died while work remains (at most ``max_restarts`` times), and returns when every
worker has exited. Ctrl-C, SIGTERM and SIGHUP are forwarded to the workers exactly once
(as SIGINT, SIGTERM, SIGTERM): they finish their in-flight calls within their grace period
or release the leases, so running again resumes exactly where this run stopped. The workers
run in their own session so that a terminal's Ctrl-C does not reach them directly as well: a
second signal means "stop now, skip the grace period" (a second Ctrl-C does that on purpose).

"""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from daydream.db.connection import connect
from daydream.errors import OptionError, PreflightError
from daydream.launch import Forked, fork_blocker
from daydream.queue.budget import budget_problems
from daydream.queue.cohorts import Status, cohort_status, require_cohort
from daydream.queue.health import resume
from daydream.queue.pools import set_pool_limit
from daydream.queue.tasks import has_pending
from daydream.runner.local import set_local_pool_limits
from daydream.runner.preflight import preflight
from daydream.runner.workers import start
from daydream.vocabulary import EXIT_CODES, INFRASTRUCTURE_STATES, TERMINAL
from daydream.worker.config import WorkerConfig

# A worker's exit code that says it stopped with work left that it cannot run (the
# reason, as in ``WorkerStats.stop``): not a crash, not restarted.
STOP_CODES = {EXIT_CODES[reason]: reason for reason in ("pool_stopped", "outage", "budget")}


@dataclass
class RunSummary:
    status: Status
    elapsed_s: float
    restarts: int
    interrupted: bool
    # How the workers started: "fork", or "spawn" and why a fork was not safe
    # (``launch.fork_blocker``); a restarted worker is always spawned.
    started: str = ""
    # Why workers stopped with work left (``STOP_CODES``), and the run's budget, if any.
    stops: set[str] = field(default_factory=set)
    budget_usd: float | None = None

    @property
    def outcome(self) -> str:
        """How the run ended, a key of ``vocabulary.EXIT_CODES`` (see there)."""
        if self.interrupted:
            return "interrupted"
        if self.status.remaining:
            for reason in ("pool_stopped", "outage", "budget"):
                if reason in self.stops or (reason == "pool_stopped" and self.status.stopped):
                    return reason
            return "error"
        if any(self.status.states.get(state) for state in INFRASTRUCTURE_STATES):
            return "failures"
        return "ok"


def run_cohort(
    config: WorkerConfig,
    *,
    workers: int = 2,
    progress: Callable[[Status, float, float], None] | None = None,
    interval_s: float = 0.5,
    max_restarts: int = 10,
) -> RunSummary:
    """Run the remaining work of ``config.cohort`` (all planned work: None) with
    ``workers`` processes until nothing is left; each runs ``config`` under its own name.

    Turn ``config.check_providers`` off when the caller has run
    ``worker.process.check_providers`` for this run (as ``daydream run`` does); otherwise
    each worker checks before its first claim and refuses to start (exit 1) on a missing
    key."""
    started = time.monotonic()
    supervisor = _Supervisor(config, max_restarts)
    how = supervisor.start(workers)
    conn = connect(config.db_path, create=False)
    previous = signal.getsignal(signal.SIGTERM)
    previous_hup = signal.getsignal(signal.SIGHUP)
    signal.signal(signal.SIGTERM, supervisor.forward)
    signal.signal(signal.SIGHUP, lambda _signum, frame: supervisor.forward(signal.SIGTERM, frame))
    try:
        supervisor.supervise(conn, progress, interval_s, started)
    except KeyboardInterrupt:
        supervisor.interrupted = True
        supervisor.forward(signal.SIGINT, None)
        for proc in supervisor.procs.values():
            proc.wait()
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGHUP, previous_hup)
    status = cohort_status(conn, config.cohort, failures=True)
    conn.close()
    elapsed = time.monotonic() - started
    return RunSummary(
        status,
        elapsed,
        supervisor.restarts,
        supervisor.interrupted,
        how,
        stops=supervisor.stops,
        budget_usd=config.max_cost_usd,
    )


class _Supervisor:
    """The worker processes of one run: started, signalled, restarted when they die while
    work remains, stopped when idle."""

    def __init__(self, config: WorkerConfig, max_restarts: int) -> None:
        self.config = config
        self.max_restarts = max_restarts
        self.procs: dict[int, Any] = {}
        self.restarts = 0
        self.interrupted = False
        self.forwarded = False  # a stop signal was passed on
        self.idle_stopped = False
        self.stops: set[str] = set()  # why workers stopped with work left (STOP_CODES)

    def start(self, workers: int) -> str:
        """Start the workers; returns how ("fork", or "spawn" and why a fork was not safe)."""
        blocker = fork_blocker(self.config.db_path)  # once: the workers start in turn
        self.procs = {i: self._spawn(i, blocker is None) for i in range(workers)}
        if all(isinstance(proc, Forked) for proc in self.procs.values()):
            return "fork"
        return f"spawn ({blocker or 'fork() failed'})"

    def _spawn(self, index: int, fork: bool) -> Any:
        return start(replace(self.config, name=f"run{os.getpid()}-{index}"), fork=fork)

    def forward(self, signum: int, _frame: Any) -> None:
        self.forwarded = True
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signum)

    def supervise(
        self,
        conn: sqlite3.Connection,
        progress: Callable[[Status, float, float], None] | None,
        interval_s: float,
        started: float,
    ) -> None:
        """Until every worker has exited: report progress, restart the dead, stop the idle."""
        cohort = self.config.cohort
        done_at_start = 0  # for the progress rate; the status scan is skipped without progress
        if progress:
            done_at_start = cohort_status(conn, cohort).count(*TERMINAL)
        while self.procs:
            try:
                _wait_for_exit(self.procs, interval_s)
            except KeyboardInterrupt:
                self.interrupted = True
                self.forward(signal.SIGINT, None)
            # The status costs a scan of the cohort: only read it for the progress line or
            # to decide about restarting a worker that died.
            status = None
            if progress:
                status = cohort_status(conn, cohort)
                elapsed = time.monotonic() - started
                finished = status.count(*TERMINAL) - done_at_start
                progress(status, elapsed, finished / elapsed if elapsed > 0 else 0.0)
            self._reap(conn, status)

    def _reap(self, conn: sqlite3.Connection, status: Status | None) -> None:
        """Handle the workers that exited: stop the others once nothing is left, restart
        one that died (at most ``max_restarts`` times in all) while work remains."""
        for index, proc in list(self.procs.items()):
            code = proc.poll()
            if code is None:
                continue
            del self.procs[index]
            if code in STOP_CODES:  # work left that it cannot run: not a crash
                self.stops.add(STOP_CODES[code])
                continue
            stopped = self.forwarded or self.interrupted or self.idle_stopped
            if code == 0 and self.procs and not stopped:
                self.idle_stopped = _stop_idle(conn, self.config.cohort, self.procs)
            if code not in (0, -signal.SIGINT, -signal.SIGTERM, 130) and not self.interrupted:
                status = status or cohort_status(conn, self.config.cohort)
                if status.remaining and self.restarts < self.max_restarts:
                    self.restarts += 1
                    time.sleep(min(2.0, 0.1 * 2**self.restarts))
                    self.procs[index] = self._spawn(index, False)  # we hold the database open


def prepare_run(
    config: WorkerConfig,
    pool_limits: Sequence[tuple[str, int]] = (),
    *,
    rehearsal: bool = False,
) -> tuple[WorkerConfig, list[str]]:
    """What ``daydream run`` checks and sets before any worker starts; returns the config
    to run (with the cohort's ``budget_usd`` when no ``--max-cost`` was given) and lines
    for the user: for a ``rehearsal``, the problems a real run would stop on; for a real
    run (whose problems raise), notes (a local pool limited to 1...).

    The cohort must exist, every base-URL override must name a provider that a model of
    the catalog uses, and the preflight (``runner.preflight``: keys, endpoints, models,
    context) and the budget's checks (``queue.budget.budget_problems``) must pass: for a
    real run each problem is one line of a ``PreflightError``, and nothing is written.
    Then pools served by local servers get the servers' limits (``runner.local``), the
    pool limits asked for are set (each pool named must have generations), the endpoints
    the preflight reached are marked up and stopped pools resumed."""
    conn = connect(config.db_path, create=False)
    try:
        if config.cohort:
            require_cohort(conn, config.cohort)
        # A base URL for a provider no model of the catalog has is a typo (olama=...).
        known = {row[0] for row in conn.execute("SELECT DISTINCT provider FROM models")}
        unknown = sorted(set(config.base_urls) - known)
        if unknown:
            raise OptionError(
                f"no model of the catalog uses provider {unknown[0]!r} (they use:"
                f" {', '.join(sorted(known))}); check its spelling",
                option="--base-url",
            )
        config = replace(config, max_cost_usd=_budget(conn, config))
        checked = preflight(config, conn)
        problems = checked.problems
        if config.max_cost_usd is not None and config.provider_override != "offline":
            problems += budget_problems(conn, config.cohort, config.unpriced_per_mtok)
        if rehearsal:
            return config, problems
        if problems:
            raise PreflightError(problems)
        _check_pool_names(conn, pool_limits)
        notes = set_local_pool_limits(conn, config, skip={pool for pool, _ in pool_limits})
        for pool, limit in pool_limits:
            set_pool_limit(conn, pool, limit)
        resume(conn, reached=checked.reached, actor="cli:run", reason="a new run; its checks passed")
        return config, notes
    finally:
        conn.close()


def _budget(conn: sqlite3.Connection, config: WorkerConfig) -> float | None:
    """The run's cap: ``--max-cost``, else the cohort spec's ``budget_usd``."""
    if config.max_cost_usd is not None or not config.cohort:
        return config.max_cost_usd
    row = conn.execute(
        "SELECT budget_usd FROM cohorts WHERE cohort_id = ?", (config.cohort,)
    ).fetchone()
    return row[0] if row else None


def _check_pool_names(conn: sqlite3.Connection, pool_limits: Sequence[tuple[str, int]]) -> None:
    """A ``--pool-limit`` for a pool no generation is in is refused (a typo)."""
    pools = {row[0] for row in conn.execute("SELECT DISTINCT pool FROM generations")}
    pools |= {row[0] for row in conn.execute("SELECT pool FROM pools")}
    for pool, _ in pool_limits:
        if pool not in pools:
            raise OptionError(
                f"no generation is in pool {pool!r} (pools: {', '.join(sorted(pools))});"
                " check its spelling",
                option="--pool-limit",
            )


def _stop_idle(conn: Any, cohort: str | None, procs: dict) -> bool:
    """A worker left because it found nothing to run: if the cohort has nothing left at
    all, the other workers are only polling (every 0.1 s) to find that out too; a stop
    request ends them now. (If work is left, say in pools the finished worker does not
    run, the others go on.)"""
    stopped = tuple(row[0] for row in conn.execute("SELECT pool FROM pool_stops"))
    if has_pending(conn, cohort, (), stopped):
        return False
    for proc in procs.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    return True


def _wait_for_exit(procs: dict, timeout_s: float) -> None:
    """Sleep up to ``timeout_s``, returning early when a worker process exits."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if any(proc.poll() is not None for proc in procs.values()):
            return
        time.sleep(min(0.005, max(0.0, deadline - time.monotonic())))
