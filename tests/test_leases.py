"""The lease functions driven directly with a fixed clock: what the event log records.

The worker tests run these through real processes; mutation testing (docs/testing.md)
showed that some of what they write was checked by no test in the test process: the times
the events carry and the record of a task given up after its last lease expired.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from daydream import events as ev
from daydream.clock import isoformat
from daydream.db.connection import connect
from daydream.queue.budget import Budget
from daydream.queue.leases import Exchange, claim, exchange, heartbeat, record, release
from daydream.queue.pools import set_pool_limit
from daydream.queue.tasks import Task
from daydream.worker.config import WorkerConfig
from tests.scenario import (
    T0,
    FixedClock,
    cohort,
    events_of,
    execute,
    fake_outcomes,
    offline_model,
    scalar,
)


def test_every_event_of_a_lease_carries_the_time_of_the_clock_it_was_given(offline_cohort):
    """Claim, heartbeat, record, slot hand-over, reap and release stamp their events with the
    injected clock, never the wall clock: a run simulated in fixed time has one timeline
    (STYLE 15), and reports read durations from these times."""
    db = offline_cohort(combos=3, pool="tiny")
    clock = FixedClock()
    a = WorkerConfig(db_path=db, name="A", lease_s=30)
    b = WorkerConfig(db_path=db, name="B", lease_s=30)
    conn = connect(db, create=False)
    try:
        assert set_pool_limit(conn, "tiny", 1)
        first, queued = claim(conn, a, 1, clock=clock, queue=1)  # T0
        clock.advance(10)
        assert heartbeat(conn, a, [first, queued], clock=clock) == set()  # to T0+40
        clock.advance(10)
        (outcome,) = execute(a, [first], clock)
        result = exchange(conn, a, Exchange(outcomes=[outcome], taken=[queued]), clock=clock)
        assert (result.recorded, result.untaken) == (1, set())  # T0+20
        clock.advance(25)
        taken = claim(conn, b, 10, clock=clock)  # T0+45: reaps the queued task's lease
        assert taken
        clock.advance(5)
        assert release(conn, taken, "stopping", actor="worker:B", clock=clock)  # T0+50
    finally:
        conn.close()
    at = {e["type"]: e["recorded_at"] for e in events_of(db) if e["type"] in TIMED}
    seconds = {"leases.extended": 10, "generation.completed": 20, "slots.taken": 20}
    assert at == {
        **{kind: isoformat(T0 + timedelta(seconds=s)) for kind, s in seconds.items()},
        "lease.expired": isoformat(T0 + timedelta(seconds=45)),
        "lease.released": isoformat(T0 + timedelta(seconds=50)),
    }
    starts = {e["recorded_at"] for e in events_of(db, types=["attempt.started"])}
    assert starts == {isoformat(T0), isoformat(T0 + timedelta(seconds=45))}


TIMED = (
    "leases.extended", "generation.completed", "slots.taken", "lease.expired", "lease.released"
)


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


def test_an_exchange_that_only_claims_records_nothing(offline_cohort):
    """The worker counts its results from ``recorded`` and ``stale``: an exchange with no
    outcome to record says (0, 0), whatever it claims."""
    db = offline_cohort()
    a = WorkerConfig(db_path=db, name="A")
    conn = connect(db, create=False)
    try:
        result = exchange(conn, a, Exchange(want=10), clock=FixedClock())
    finally:
        conn.close()
    assert (result.recorded, result.stale, len(result.tasks)) == (0, 0, 2)


def test_a_pool_stop_learnt_in_an_exchange_is_recorded_once_and_claims_skip_it(tmp_path):
    """A worker that finds a pool's key rejected says so in its next exchange: the stop is
    recorded (once, however many workers report it) and that exchange's claim already
    leaves the pool's tasks alone, while other pools go on."""
    models = [offline_model("m1", pool="tiny"), offline_model("m2")]
    db = cohort(tmp_path, models, combos=1, axes={"draft_llm": ["m1", "m2"]})
    a = WorkerConfig(db_path=db, name="A")
    stop = ev.PoolStopped(pool="tiny", provider="offline", model_id="m1", message="key rejected")
    conn = connect(db, create=False)
    try:
        first = exchange(conn, a, Exchange(want=10, health=[stop]), clock=FixedClock())
        again = exchange(conn, a, Exchange(want=10, health=[stop]), clock=FixedClock())
    finally:
        conn.close()
    assert first.stopped == again.stopped == {"tiny": "key rejected"}
    assert [t.pool for t in first.tasks] and "tiny" not in {t.pool for t in first.tasks}
    (stopped,) = events_of(db, types=["pool.stopped"])
    assert (stopped["actor"], stopped["recorded_at"]) == ("worker:A", isoformat(T0))


def test_an_exchange_claims_the_one_task_or_the_one_queued_lease_asked_for(offline_cohort):
    db = offline_cohort(combos=3, pool="tiny")
    a = WorkerConfig(db_path=db, name="A")
    conn = connect(db, create=False)
    try:
        assert set_pool_limit(conn, "tiny", 1)
        (running,) = exchange(conn, a, Exchange(want=1), clock=FixedClock()).tasks
        queued = exchange(conn, a, Exchange(queue=1, held={"tiny": 1}), clock=FixedClock())
    finally:
        conn.close()
    assert running.slot and [t.slot for t in queued.tasks] == [False]


def test_a_worker_queues_no_lease_in_a_pool_whose_slots_it_is_shedding(offline_cohort):
    """After a limit cut a worker lets its share of the pool's slots go as its calls end:
    it must not queue tasks behind the slots it is giving up, only behind those it keeps."""
    db = offline_cohort(combos=4, pool="tiny")
    a = WorkerConfig(db_path=db, name="A")
    conn = connect(db, create=False)
    try:
        assert set_pool_limit(conn, "tiny", 2)
        exchange(conn, a, Exchange(want=2), clock=FixedClock())

        def queue(shedding: dict[str, int]) -> int:
            request = Exchange(queue=1, held={"tiny": 2}, shedding=shedding)
            return len(exchange(conn, a, request, clock=FixedClock()).tasks)

        assert queue({"tiny": 2}) == 0  # sheds both: nothing to start behind
        assert queue({"tiny": 1}) == 1  # keeps one slot to queue behind
        assert queue({}) == 1
    finally:
        conn.close()


def test_an_exchange_names_the_checked_leases_that_no_longer_hold(offline_cohort):
    """A queued or running task whose lease was reaped and taken by another worker is
    ``lost``: its worker drops it; the ones still held are not."""
    db = offline_cohort(combos=2)
    clock = FixedClock()
    a = WorkerConfig(db_path=db, name="A", lease_s=30)
    b = WorkerConfig(db_path=db, name="B", lease_s=30)
    conn = connect(db, create=False)
    try:
        kept, gone = claim(conn, a, 2, clock=clock)
        clock.advance(20)
        assert heartbeat(conn, a, [kept], clock=clock) == set()
        clock.advance(20)
        assert [t.gen_id for t in claim(conn, b, 1, clock=clock)] == [gone.gen_id]
        request = Exchange(queued=[gone], running=[kept])
        assert exchange(conn, a, request, clock=clock).lost == {gone.gen_id}
    finally:
        conn.close()


def test_an_exchange_under_a_budget_claims_only_what_the_cap_leaves_room_for(offline_cohort):
    """Each claimed call reserves the most it can cost: with room for one, one is claimed
    (the other waits, the budget says it was limited) and its reservation is stored."""
    db = offline_cohort(combos=2)
    a = WorkerConfig(db_path=db, name="A")
    budget = Budget(cap_usd=1.5, cohort="k", bound=lambda task: 1.0)
    conn = connect(db, create=False)
    try:
        result = exchange(conn, a, Exchange(want=2, budget=budget), clock=FixedClock())
    finally:
        conn.close()
    (task,) = result.tasks
    assert budget.limited
    (started,) = events_of(db, types=["attempt.started"])
    assert (started["gen_id"], started["reserved_usd"]) == (task.gen_id, 1.0)


def test_a_finished_call_hands_its_slot_on_in_a_pool_with_no_limit_set(offline_cohort):
    """Most pools keep the default limit (no ``pools`` row): a queued task still takes the
    slot of the call that finished before it."""
    db = offline_cohort(combos=2)
    clock = FixedClock()
    a = WorkerConfig(db_path=db, name="A")
    conn = connect(db, create=False)
    try:
        first, queued = claim(conn, a, 1, clock=clock, queue=1, held={"offline": 1})
        (outcome,) = execute(a, [first], clock)
        result = exchange(conn, a, Exchange(outcomes=[outcome], taken=[queued]), clock=clock)
    finally:
        conn.close()
    assert (result.recorded, result.untaken) == (1, set())
    (taken,) = events_of(db, types=["slots.taken"])
    assert taken["leases"] == [[queued.gen_id, queued.token]]


def test_after_a_limit_cut_every_freed_slot_still_goes_to_a_task_already_calling(
    offline_cohort,
):
    """A queued task given a freed slot is already calling: after a cut the pool may go over
    its new limit rather than interrupt it (the shed shares bring it down). Two calls end,
    two queued tasks take their two slots, though the limit is now one."""
    db = offline_cohort(combos=4, pool="tiny")
    clock = FixedClock()
    a = WorkerConfig(db_path=db, name="A")
    conn = connect(db, create=False)
    try:
        assert set_pool_limit(conn, "tiny", 2)
        first, second, q1, q2 = claim(conn, a, 2, clock=clock, queue=2)
        assert set_pool_limit(conn, "tiny", 1)
        outcomes = execute(a, [first, second], clock)
        request = Exchange(outcomes=outcomes, taken=[q1, q2])
        assert exchange(conn, a, request, clock=clock).untaken == set()
    finally:
        conn.close()
    (taken,) = events_of(db, types=["slots.taken"])
    assert taken["leases"] == [[q1.gen_id, q1.token], [q2.gen_id, q2.token]]


def test_queued_tasks_get_room_by_their_own_pools_default_limit(tmp_path):
    """The offline pool's default limit is 1024, not the general 16: seventeen queued
    tasks asking for room there all get it, even with none of its slots held."""
    db = cohort(tmp_path, [offline_model("m1")], combos=9, axes={"draft_replicate": [1, 2]})
    clock = FixedClock()
    a = WorkerConfig(db_path=db, name="A")
    conn = connect(db, create=False)
    try:
        first, *queued = claim(conn, a, 1, clock=clock, queue=17, held={"offline": 1})
        (outcome,) = execute(a, [first], clock)
        result = exchange(conn, a, Exchange(outcomes=[outcome], taken=queued), clock=clock)
    finally:
        conn.close()
    assert len(queued) == 17 and result.untaken == set()


def test_queued_tasks_take_the_room_left_in_their_pool_and_no_more(offline_cohort):
    """With no call ending, queued tasks take slots only while their pool has room: limit
    3 and one call running leave room for two of three."""
    db = offline_cohort(combos=4, pool="tiny")
    clock = FixedClock()
    a = WorkerConfig(db_path=db, name="A")
    conn = connect(db, create=False)
    try:
        assert set_pool_limit(conn, "tiny", 3)
        _, q1, q2, q3 = claim(conn, a, 1, clock=clock, queue=3)
        assert exchange(conn, a, Exchange(taken=[q1, q2, q3]), clock=clock).untaken == {q3.gen_id}
    finally:
        conn.close()
    (taken,) = events_of(db, types=["slots.taken"])
    assert taken["leases"] == [[q1.gen_id, q1.token], [q2.gen_id, q2.token]]


def test_a_task_refused_a_slot_in_a_full_pool_does_not_hold_up_another_pool(tmp_path):
    models = [offline_model("m1", pool="tiny"), offline_model("m2")]
    db = cohort(tmp_path, models, combos=2, axes={"draft_llm": ["m1", "m2"]})
    clock = FixedClock()
    a = WorkerConfig(db_path=db, name="A")
    conn = connect(db, create=False)
    try:
        assert set_pool_limit(conn, "tiny", 1)
        tasks = claim(conn, a, 2, clock=clock, queue=2)
        queued = sorted((t for t in tasks if not t.slot), key=lambda t: t.pool != "tiny")
        assert [t.pool for t in queued] == ["tiny", "offline"]
        result = exchange(conn, a, Exchange(taken=queued), clock=clock)
    finally:
        conn.close()
    assert result.untaken == {queued[0].gen_id}
    (taken,) = events_of(db, types=["slots.taken"])
    assert taken["leases"] == [[queued[1].gen_id, queued[1].token]]


def test_a_claim_queues_behind_its_full_pool_and_still_fills_its_free_slots(tmp_path):
    """One claim both queues and takes slots: its queued leases in a pool it holds, full,
    do not count against the slots it asked for in another pool, nor stop the claim
    before it has them; and it queues exactly as many as asked."""
    models = [offline_model("m1", pool="tiny"), offline_model("m2")]
    db = cohort(tmp_path, models, combos=4, axes={"draft_llm": ["m1", "m2"]})
    clock = FixedClock()
    conn = connect(db, create=False)
    try:
        assert set_pool_limit(conn, "tiny", 1)
        only_tiny = WorkerConfig(db_path=db, name="A", pools=("tiny",))
        (running,) = claim(conn, only_tiny, 1, clock=clock)  # the tiny pool is now full
        ready = conn.execute(
            "SELECT pool FROM generations WHERE status = 'ready' ORDER BY stage, rowid LIMIT 5"
        ).fetchall()
        # the candidates alternate between the pools, so the queue is full before the
        # last slot is taken
        assert [pool for (pool,) in ready] == ["offline", "tiny", "offline", "tiny", "offline"]
        a = WorkerConfig(db_path=db, name="A")
        tasks = claim(conn, a, 3, clock=clock, queue=2, held={"tiny": 1})
    finally:
        conn.close()
    assert running.pool == "tiny" and running.slot
    assert sorted((t.pool, t.slot) for t in tasks) == [
        ("offline", True),
        ("offline", True),
        ("offline", True),
        ("tiny", False),
        ("tiny", False),
    ]
    started = events_of(db, types=["attempt.started"])[1:]
    assert sorted((e["gen_id"], e["queued"]) for e in started) == sorted(
        (t.gen_id, not t.slot) for t in tasks
    )


def test_a_result_after_its_lease_was_reaped_records_nothing(offline_cohort):
    """Fencing: a worker that stalled past its lease (reaped, not yet claimed again) comes
    back with a result; it is stale, and the task stays ready for the next claim."""
    db = offline_cohort(combos=1)
    clock = FixedClock()
    a = WorkerConfig(db_path=db, name="A", lease_s=30)
    b = WorkerConfig(db_path=db, name="B", lease_s=30)
    conn = connect(db, create=False)
    try:
        (task,) = claim(conn, a, 1, clock=clock)
        clock.advance(31)
        assert claim(conn, b, 0, clock=clock) == []  # reaps A's lease, claims nothing
        (outcome,) = execute(a, [task], clock)
        result = exchange(conn, a, Exchange(outcomes=[outcome]), clock=clock)
    finally:
        conn.close()
    assert (result.recorded, result.stale) == (0, 1)
    assert scalar(db, "SELECT status FROM generations WHERE gen_id = ?", [task.gen_id]) == "ready"
    assert not events_of(db, types=["generation.completed"])


def test_a_pool_limit_cut_while_recording_is_recorded_by_the_worker(offline_cohort):
    """The rate-limit adaptation runs with each recording: ten 429s in a row cut the pool,
    and the event says which worker cut it, and when."""
    db = offline_cohort()
    clock = FixedClock()
    a = WorkerConfig(db_path=db, name="A")
    conn = connect(db, create=False)
    try:
        assert set_pool_limit(conn, "p", 4)
        assert record(conn, fake_outcomes("p", "4" * 10), a, clock=clock) == (0, 10)
    finally:
        conn.close()
    (cut,) = events_of(db, types=["pool.limit_changed"])[1:]
    assert (cut["limit"], cut["actor"], cut["recorded_at"]) == (3, "worker:A", isoformat(T0))


def test_a_heartbeat_over_more_leases_than_one_query_takes_keeps_them_all(tmp_path):
    """Leases are read 500 ids per query (SQLite's variable limit): a worker holding 1,010
    leases extends every one, none reported lost."""
    axes = {"draft_replicate": list(range(1, 102))}
    db = cohort(tmp_path, [offline_model("m1")], combos=10, axes=axes)
    clock = FixedClock()
    a = WorkerConfig(db_path=db, name="A", lease_s=30)
    conn = connect(db, create=False)
    try:
        tasks = claim(conn, a, 1010, clock=clock)
        assert len(tasks) == 1010
        assert heartbeat(conn, a, tasks, clock=clock) == set()
    finally:
        conn.close()
    (extended,) = events_of(db, types=["leases.extended"])
    assert len(extended["leases"]) == 1010


def test_queued_leases_are_promoted_by_their_own_pools_default_limit(tmp_path):
    """With none of its slots held, the offline pool (default limit 1024) gives slots to
    all seventeen queued leases a worker asks to promote, not the general default's 16."""
    axes = {"draft_replicate": [1, 2]}
    db = cohort(tmp_path, [offline_model("m1")], combos=9, axes=axes)
    clock = FixedClock()
    a = WorkerConfig(db_path=db, name="A")
    conn = connect(db, create=False)
    try:
        first, *queued = claim(conn, a, 1, clock=clock, queue=17, held={"offline": 1})
        assert record(conn, execute(a, [first], clock), a, clock=clock) == (1, 0)
        result = exchange(conn, a, Exchange(want=17, promote=queued), clock=clock)
    finally:
        conn.close()
    assert len(queued) == 17 and result.tasks[:17] == queued
    assert all(task.slot for task in queued)


def test_a_claim_promotes_no_more_queued_leases_than_it_asks_for(offline_cohort):
    db = offline_cohort(combos=3)
    clock = FixedClock()
    a = WorkerConfig(db_path=db, name="A")
    conn = connect(db, create=False)
    try:
        first, q1, q2 = claim(conn, a, 1, clock=clock, queue=2, held={"offline": 1})
        result = exchange(conn, a, Exchange(want=1, promote=[q1, q2]), clock=clock)
    finally:
        conn.close()
    assert result.tasks == [q1] and (q1.slot, q2.slot) == (True, False)


def test_promotions_stop_when_the_pool_is_full(offline_cohort):
    """Limit 3 with one call running leaves room for two of three queued leases; the slots
    they take are recorded at the claim's time."""
    db = offline_cohort(combos=4, pool="tiny")
    clock = FixedClock()
    a = WorkerConfig(db_path=db, name="A")
    conn = connect(db, create=False)
    try:
        assert set_pool_limit(conn, "tiny", 3)
        _, q1, q2, q3 = claim(conn, a, 1, clock=clock, queue=3)
        clock.advance(5)
        result = exchange(conn, a, Exchange(want=3, promote=[q1, q2, q3]), clock=clock)
    finally:
        conn.close()
    assert result.tasks == [q1, q2]
    (taken,) = events_of(db, types=["slots.taken"])
    assert taken["leases"] == [[q1.gen_id, q1.token], [q2.gen_id, q2.token]]
    assert taken["recorded_at"] == isoformat(T0 + timedelta(seconds=5))


def test_a_full_pools_backlog_does_not_hide_other_pools_tasks_from_a_claim(offline_cohort):
    """A claim reads a window of candidates, upstream stages first: the drafts waiting on
    a full pool must not fill it, or the ready essay behind them (another pool) would
    never be claimed, with or without queued leases asked for."""
    db = offline_cohort(combos=10, pool="tiny")
    clock = FixedClock()
    a = WorkerConfig(db_path=db, name="A")
    b = WorkerConfig(db_path=db, name="B")
    conn = connect(db, create=False)
    try:
        assert set_pool_limit(conn, "tiny", 2)
        first, _ = claim(conn, a, 2, clock=clock)
        assert record(conn, execute(a, [first], clock), a, clock=clock) == (1, 0)
        assert set_pool_limit(conn, "tiny", 1)  # full: one call running, eight drafts wait
        (essay,) = claim(conn, b, 1, clock=clock, queue=1)
        assert (essay.stage, essay.pool) == ("essay", "copy")
        clock.advance(1)
        assert claim(conn, b, 1, clock=clock) == []  # the essay taken, the drafts wait
    finally:
        conn.close()


def test_claims_honour_several_pools_and_models_to_keep_to_or_leave_alone(tmp_path):
    """A worker kept to two pools claims only theirs; two models whose endpoints are down
    and two full pools are each left alone, and the third pool's drafts are claimed."""
    models = [offline_model(m, pool=f"p{m[1]}") for m in ("m1", "m2", "m3")]
    db = cohort(tmp_path, models, combos=2, axes={"draft_llm": ["m1", "m2", "m3"]})
    clock = FixedClock()
    conn = connect(db, create=False)

    def claimed(name: str, pools: tuple[str, ...] = (), **options: Any) -> list[Task]:
        config = WorkerConfig(db_path=db, name=name, pools=pools)
        return claim(conn, config, 10, clock=clock, **options)

    try:
        kept = claimed("kept", ("p1", "p2"))
        assert sorted(t.pool for t in kept) == ["p1", "p1", "p2", "p2"]
        release(conn, kept, "test", actor="test")
        down = claimed("down", skip=(("m1", "m2"), ()))
        assert sorted(t.pool for t in down) == ["p3", "p3"]
        release(conn, down, "test", actor="test")
        for pool in ("p1", "p2"):
            assert set_pool_limit(conn, pool, 1)
        assert sorted(t.pool for t in claimed("one each", ("p1", "p2"))) == ["p1", "p2"]
        assert sorted(t.pool for t in claimed("full")) == ["p3", "p3"]  # p1, p2 are full
    finally:
        conn.close()


def test_a_claim_on_its_own_marks_the_leases_it_promoted_as_holding_slots(offline_cohort):
    """Outside an exchange, ``claim`` itself marks a promoted task's slot once its
    transaction has committed: the worker then starts its call as a slot holder."""
    db = offline_cohort(combos=2)
    clock = FixedClock()
    a = WorkerConfig(db_path=db, name="A")
    conn = connect(db, create=False)
    try:
        _, queued = claim(conn, a, 1, clock=clock, queue=1, held={"offline": 1})
        assert claim(conn, a, 1, clock=clock, promote=[queued]) == [queued]
    finally:
        conn.close()
    assert queued.slot is True
