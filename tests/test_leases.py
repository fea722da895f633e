"""The lease functions driven directly with a fixed clock: what the event log records.

The worker tests run these through real processes; mutation testing (docs/testing.md)
showed that some of what they write was checked by no test in the test process: the times
the events carry and the record of a task given up after its last lease expired.
"""

from __future__ import annotations

from datetime import timedelta

from daydream.clock import isoformat
from daydream.db.connection import connect
from daydream.queue.leases import claim, heartbeat, record, release
from daydream.worker.config import WorkerConfig
from tests.scenario import T0, FixedClock, events_of, execute, scalar


def test_every_event_of_a_lease_carries_the_time_of_the_clock_it_was_given(offline_cohort):
    """Claim, heartbeat, reap, record and release stamp their events with the injected
    clock, never the wall clock: a run replayed or simulated in fixed time has one
    timeline (STYLE 15), and reports read durations from these times."""
    db = offline_cohort()
    clock = FixedClock()
    a = WorkerConfig(db_path=db, name="A", lease_s=30)
    b = WorkerConfig(db_path=db, name="B", lease_s=30)
    conn = connect(db, create=False)
    try:
        first, second = claim(conn, a, 10, clock=clock)  # T0
        clock.advance(10)
        assert heartbeat(conn, a, [first], clock=clock) == set()  # T0+10
        clock.advance(25)
        (reclaimed,) = claim(conn, b, 10, clock=clock)  # T0+35: reaps the second lease
        (outcome,) = execute(a, [first], clock)
        assert record(conn, [outcome], a, clock=clock) == (1, 0)  # T0+35
        assert release(conn, [reclaimed], "shutdown", actor="worker:B") == 1
    finally:
        conn.close()
    at = {
        e["type"]: e["recorded_at"]
        for e in events_of(db)
        if e["type"] in ("leases.extended", "lease.expired", "generation.completed")
    }
    assert at == {
        "leases.extended": isoformat(T0 + timedelta(seconds=10)),
        "lease.expired": isoformat(T0 + timedelta(seconds=35)),
        "generation.completed": isoformat(T0 + timedelta(seconds=35)),
    }
    starts = [e["recorded_at"] for e in events_of(db, types=["attempt.started"])]
    assert starts == [isoformat(T0)] * 2 + [isoformat(T0 + timedelta(seconds=35))]


def test_a_task_whose_lease_expires_on_its_last_attempt_fails_as_retryable(offline_cohort):
    """A worker that dies on every attempt makes its task a poison pill: the reap after the
    last attempt fails it for good, saying why, and marks the failure retryable (the task
    itself may be fine: ``daydream retry`` may run it again once the workers are)."""
    db = offline_cohort(combos=1)
    clock = FixedClock()
    a = WorkerConfig(db_path=db, name="A", lease_s=30, max_attempts=1)
    conn = connect(db, create=False)
    try:
        (task,) = claim(conn, a, 10, clock=clock)
        clock.advance(31)
        assert claim(conn, a, 10, clock=clock) == []  # reaped and failed: nothing to claim
    finally:
        conn.close()
    (failed,) = events_of(db, types=["attempt.failed"])
    assert {k: failed[k] for k in ("gen_id", "token", "state", "retryable", "final")} == {
        "gen_id": task.gen_id,
        "token": task.token,
        "state": "error",
        "retryable": True,
        "final": True,
    }
    assert failed["error"] == (
        "the lease of worker A expired on attempt 1 of 1: the worker died or stalled while"
        " running it, every time (see the workers' logs); gave up"
    )
    assert scalar(db, "SELECT status FROM generations WHERE gen_id = ?", [task.gen_id]) == "failed"
