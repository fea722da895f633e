"""The runner: start N worker processes for a cohort, show progress, stop cleanly.

``run_cohort()`` launches ``daydream worker`` processes (``workerproc.start``: forks of
this process where that is safe, which start in milliseconds, else fresh interpreters
importing this copy of daydream; never a fork of a process holding the database open),
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
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from daydream.db.connection import connect
from daydream.launch import Forked, fork_blocker
from daydream.queue.cohorts import Status, cohort_status
from daydream.queue.tasks import has_pending
from daydream.workerproc import start


@dataclass
class RunSummary:
    status: Status
    elapsed_s: float
    restarts: int
    interrupted: bool
    # How the workers started: "fork", or "spawn" and why a fork was not safe
    # (``launch.fork_blocker``); a restarted worker is always spawned.
    started: str = ""


def run_cohort(
    db_path: Path,
    cohort: str | None,
    *,
    workers: int = 2,
    concurrency: int = 32,
    worker_args: list[str] | None = None,
    progress: Callable[[Status, float, float], None] | None = None,
    interval_s: float = 0.5,
    max_restarts: int = 10,
    providers_checked: bool = False,
) -> RunSummary:
    """Run the cohort's remaining work with ``workers`` processes until nothing is left.

    ``providers_checked``: the caller has run ``worker.check_providers`` for this run (as
    ``daydream run`` does), so the workers skip it; otherwise each worker checks before
    its first claim and refuses to start (exit 1) on a missing key."""
    started = time.monotonic()
    base = ["--db", str(db_path)]
    if providers_checked:
        base.append("--providers-checked")
    base += ["--concurrency", str(concurrency)]
    if cohort:
        base += ["--cohort", cohort]
    base += worker_args or []

    def spawn(index: int, fork: bool) -> Any:
        return start([*base, "--name", f"run{os.getpid()}-{index}"], fork=fork)

    blocker = fork_blocker(db_path)  # checked once: the workers start one after another
    procs = {i: spawn(i, blocker is None) for i in range(workers)}
    if all(isinstance(proc, Forked) for proc in procs.values()):
        how = "fork"
    else:
        how = f"spawn ({blocker or 'fork() failed'})"
    restarts = 0
    interrupted = False
    conn = connect(db_path, create=False)
    done_at_start = 0  # for the progress rate; the status scan is skipped without progress
    if progress:
        done_at_start = cohort_status(conn, cohort).count("done", "failed", "blocked", "cancelled")
    previous = signal.getsignal(signal.SIGTERM)
    previous_hup = signal.getsignal(signal.SIGHUP)

    forwarded = idle_stopped = False

    def forward(signum: int, _frame: Any) -> None:
        nonlocal forwarded
        forwarded = True
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGHUP, lambda _signum, frame: forward(signal.SIGTERM, frame))
    try:
        while procs:
            try:
                _wait_for_exit(procs, interval_s)
            except KeyboardInterrupt:
                interrupted = True
                forward(signal.SIGINT, None)
            # The status costs a scan of the cohort: only read it for the progress line or
            # to decide about restarting a worker that died.
            status = None
            if progress:
                status = cohort_status(conn, cohort)
                elapsed = time.monotonic() - started
                finished = status.count("done", "failed", "blocked", "cancelled") - done_at_start
                progress(status, elapsed, finished / elapsed if elapsed > 0 else 0.0)
            for index, proc in list(procs.items()):
                code = proc.poll()
                if code is None:
                    continue
                del procs[index]
                if code == 0 and procs and not (forwarded or interrupted or idle_stopped):
                    idle_stopped = _stop_idle(conn, cohort, procs)
                if code not in (0, -signal.SIGINT, -signal.SIGTERM, 130) and not interrupted:
                    status = status or cohort_status(conn, cohort)
                    if status.remaining and restarts < max_restarts:
                        restarts += 1
                        time.sleep(min(2.0, 0.1 * 2**restarts))
                        procs[index] = spawn(index, False)  # we hold the database open
    except KeyboardInterrupt:
        interrupted = True
        forward(signal.SIGINT, None)
        for proc in procs.values():
            proc.wait()
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGHUP, previous_hup)
    status = cohort_status(conn, cohort)
    conn.close()
    return RunSummary(status, time.monotonic() - started, restarts, interrupted, how)


def _stop_idle(conn: Any, cohort: str | None, procs: dict) -> bool:
    """A worker left because it found nothing to run: if the cohort has nothing left at
    all, the other workers are only polling (every 0.1 s) to find that out too; a stop
    request ends them now. (If work is left, say in pools the finished worker does not
    run, the others go on.)"""
    if has_pending(conn, cohort, ()):
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


def format_progress(status: Status, elapsed: float, rate: float) -> str:
    parts = []
    for stage, counts in status.stages.items():
        if sum(counts.values()) == 0:
            continue
        total = sum(counts.values())
        parts.append(
            f"{stage} {counts['done']}/{total}"
            + (f" ({counts['failed']} failed)" if counts["failed"] else "")
            + (f" ({counts['running']} running)" if counts["running"] else "")
            + (f" ({counts['queued']} queued)" if counts["queued"] else "")
        )
    remaining = status.remaining
    eta = f"ETA {remaining / rate:,.0f}s" if rate > 0 and remaining else ""
    tokens = status.prompt_tokens + status.completion_tokens
    cost = f" ${status.cost:.4f}" if status.cost else ""
    return (
        f"[{elapsed:6.1f}s] " + " | ".join(parts) + f" | {rate:,.1f}/s {eta} | {tokens:,} tok{cost}"
    )
