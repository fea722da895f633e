"""Pool limits: adapted to rate limiting from what a worker saw of the calls, and a
limit cut below the slots its calls hold: each worker lets its share of the
excess go as its calls end, rounded up, and a worker holding no slot there owes nothing.

The workers read their shares inside their own processes (``leases.exchange``); here they
are read directly with a fixed clock, so the figures themselves are checked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from daydream import events as ev
from daydream.db.connection import connect
from daydream.db.log import append
from daydream.db.transaction import transaction
from daydream.errors import ConfigError
from daydream.queue.leases import claim
from daydream.queue.pools import adapt_pools, excess_shares, pool_capacity, set_pool_limit
from daydream.worker.config import WorkerConfig
from tests.scenario import FixedClock, fake_outcomes, query


def test_after_a_cut_each_worker_owes_its_share_of_the_excess_rounded_up(offline_cohort):
    db = offline_cohort(combos=4, pool="tiny")
    conn = connect(db, create=False)
    try:
        assert set_pool_limit(conn, "tiny", 4)
        tasks = claim(conn, WorkerConfig(db_path=db, name="A"), 4, clock=FixedClock())
        assert len(tasks) == 4 and all(task.slot for task in tasks)
        assert excess_shares(conn, {"tiny": 4}) == {}  # at the limit: nothing to give back
        assert set_pool_limit(conn, "tiny", 1)  # 4 slots held, 3 too many
        assert pool_capacity(conn)["tiny"] == -3
        assert excess_shares(conn, {"tiny": 4}) == {"tiny": 3}  # all of the excess
        assert excess_shares(conn, {"tiny": 2}) == {"tiny": 2}  # 3 x 2/4 = 1.5, rounded up
        assert excess_shares(conn, {"tiny": 1}) == {"tiny": 1}  # 3 x 1/4 = 0.75, rounded up
        assert excess_shares(conn, {}) == {}  # no slot in the pool: owes nothing
        assert excess_shares(conn, {"other": 2}) == {}
    finally:
        conn.close()


def limits(db: Path) -> list[tuple[Any, ...]]:
    """The pool ``p``'s limit changes after the first: (limit, reason)."""
    return query(
        db,
        "SELECT json_extract(data, '$.limit'), json_extract(data, '$.reason') FROM events"
        " WHERE type = 'pool.limit_changed' AND subject = 'pool:p' ORDER BY id",
    )[1:]


def test_calls_that_failed_otherwise_neither_count_as_429s_nor_dilute_them(offline_cohort):
    """A pool of limit 4 judges the last 10 calls answered (a success or a 429); calls that
    failed for another reason (a 500, a reply that did not parse) are no sign either way."""
    db = offline_cohort()
    conn = connect(db, create=False)
    try:
        set_pool_limit(conn, "p", 4)
        with transaction(conn):  # 6 429s in the last 10 answered calls, then 10 failures
            adapt_pools(conn, fake_outcomes("p", "444444....xxxxxxxxxx"), "t", FixedClock(), {})
    finally:
        conn.close()
    assert limits(db) == [(3, "cut: rate limited (429 on 60% of recent calls)")]


def test_a_worker_grows_a_cut_pool_back_only_after_limit_calls_of_its_own(offline_cohort):
    """Another worker cut the pool to 3 (of 4): a worker starting afresh grows it back by
    one once it has seen 3 calls without a 429, not sooner."""
    db = offline_cohort()
    conn = connect(db, create=False)
    clock, signals = FixedClock(), {}
    try:
        set_pool_limit(conn, "p", 4)
        cut = ev.PoolLimitChanged(pool="p", limit=3, ceiling=4, reason="cut: by another")
        append(conn, [cut], actor="worker:B", clock=clock)
        clock.advance(5)  # past the cooldown
        for pattern in ("..", "."):
            with transaction(conn):
                adapt_pools(conn, fake_outcomes("p", pattern), "worker:A", clock, signals)
            if pattern == "..":
                assert limits(db) == [(3, "cut: by another")]
    finally:
        conn.close()
    assert limits(db) == [(3, "cut: by another"), (4, "grow: 3 calls without 429")]


def test_a_pool_may_be_cut_again_one_second_after_its_last_change_not_sooner(offline_cohort):
    db = offline_cohort()
    conn = connect(db, create=False)
    clock, signals = FixedClock(), {}
    try:
        cut = ev.PoolLimitChanged(pool="p", limit=4, ceiling=4, reason="set by user")
        append(conn, [cut], actor="cli", clock=clock)
        clock.advance(0.999)
        with transaction(conn):  # a full window of 429s, within the second
            adapt_pools(conn, fake_outcomes("p", "4" * 10), "worker:A", clock, signals)
        assert limits(db) == []
        clock.advance(0.001)
        with transaction(conn):
            adapt_pools(conn, fake_outcomes("p", "4"), "worker:A", clock, signals)
    finally:
        conn.close()
    assert limits(db) == [(3, "cut: rate limited (429 on 100% of recent calls)")]


def test_a_pool_never_set_is_cut_from_its_default_limit_which_stays_its_ceiling(
    offline_cohort,
):
    """The offline pool's default limit is 1024 (docs/running.md); 429s on most of a full
    window (2 x 1024 calls) cut it by a quarter, and it may grow back to 1024."""
    db = offline_cohort()
    conn = connect(db, create=False)
    try:
        assert query(db, "SELECT count(*) FROM pools WHERE pool = 'offline'") == [(0,)]
        with transaction(conn):
            outcomes = fake_outcomes("offline", "4" * 2048)
            adapt_pools(conn, outcomes, "worker:A", FixedClock(), {})
    finally:
        conn.close()
    changes = query(
        db,
        "SELECT json_extract(data, '$.limit'), json_extract(data, '$.ceiling') FROM events"
        " WHERE type = 'pool.limit_changed' AND subject = 'pool:offline'",
    )
    assert changes == [(768, 1024)]


def test_only_the_last_ten_calls_count_in_a_small_pool(offline_cohort):
    """A pool of limit 4 judges its last 10 calls (2 x limit, at least 10): a 429 before them
    has fallen out, and 4 in 10 is not more than the 40% that cuts."""
    db = offline_cohort()
    conn = connect(db, create=False)
    try:
        set_pool_limit(conn, "p", 4)
        with transaction(conn):
            adapt_pools(conn, fake_outcomes("p", "4" + "4444......"), "t", FixedClock(), {})
    finally:
        conn.close()
    assert limits(db) == []


def feed(conn: Any, pattern: str, clock: FixedClock, signals: dict[str, Any]) -> None:
    with transaction(conn):
        adapt_pools(conn, fake_outcomes("p", pattern), "worker:A", clock, signals)


def test_a_pool_at_one_call_is_never_cut_and_a_pool_at_two_is_cut_to_one(offline_cohort):
    db = offline_cohort()
    conn = connect(db, create=False)
    clock, signals = FixedClock(), {}
    try:
        set_pool_limit(conn, "p", 2)
        feed(conn, "4" * 10, clock, signals)  # 2 -> 1
        clock.advance(5)
        feed(conn, "4" * 10, clock, signals)  # at 1: nothing left to cut
    finally:
        conn.close()
    assert limits(db) == [(1, "cut: rate limited (429 on 100% of recent calls)")]


def test_after_each_change_growing_takes_limit_calls_without_429_again(offline_cohort):
    """Cut from 4 to 3, the pool grows back to 4 after 3 calls without 429, not 2; set to 2
    of 4, it grows to 3 after 2 such calls and to 4 after 3 more, not 2."""
    db = offline_cohort()
    conn = connect(db, create=False)
    clock, signals = FixedClock(), {}
    try:
        set_pool_limit(conn, "p", 4)
        feed(conn, "4" * 10, clock, signals)  # cut to 3
        feed(conn, "..", clock, signals)
        assert [limit for limit, _ in limits(db)] == [3]
        feed(conn, ".", clock, signals)
        assert [limit for limit, _ in limits(db)] == [3, 4]
        cut = ev.PoolLimitChanged(pool="p", limit=2, ceiling=4, reason="cut: by another")
        append(conn, [cut], actor="worker:B", clock=clock)
        feed(conn, "..", clock, signals)
        feed(conn, "..", clock, signals)
        assert [limit for limit, _ in limits(db)] == [3, 4, 2, 3]
        feed(conn, ".", clock, signals)
    finally:
        conn.close()
    assert limits(db)[-1] == (4, "grow: 3 calls without 429")


def test_a_limit_set_by_hand_is_a_whole_number_from_1_to_100000_recorded_as_the_clis(
    offline_cohort,
):
    db = offline_cohort()
    conn = connect(db, create=False)
    try:
        for bad in (0, 100_001, 2.0, True):
            with pytest.raises(ConfigError) as info:
                set_pool_limit(conn, "p", bad)
            assert str(info.value) == (
                f"pool p: limit {bad!r} is not a whole number from 1 to 100000"
            )
        assert set_pool_limit(conn, "p", 1) and set_pool_limit(conn, "p", 100_000)
        assert not set_pool_limit(conn, "p", 100_000)  # already so: nothing recorded
    finally:
        conn.close()
    assert query(
        db,
        "SELECT json_extract(data, '$.limit'), actor FROM events"
        " WHERE type = 'pool.limit_changed' AND subject = 'pool:p' ORDER BY id",
    ) == [(1, "cli"), (100_000, "cli")]


def test_a_pool_of_ten_waits_for_twenty_answered_calls_before_a_cut(offline_cohort):
    """429s come back before successes: a pool of limit 10 judges a full window of its last
    20 calls, so the first ten 429s cut nothing; twenty do."""
    db = offline_cohort()
    conn = connect(db, create=False)
    clock, signals = FixedClock(), {}
    try:
        set_pool_limit(conn, "p", 10)
        feed(conn, "4" * 10, clock, signals)
        assert limits(db) == []
        feed(conn, "4" * 10, clock, signals)
    finally:
        conn.close()
    assert limits(db) == [(7, "cut: rate limited (429 on 100% of recent calls)")]


def test_a_pool_never_set_has_its_default_limit_as_capacity(offline_cohort):
    """The offline pool's limit is 1024 until one is set: two calls leave 1022."""
    db = offline_cohort(combos=2)
    conn = connect(db, create=False)
    try:
        tasks = claim(conn, WorkerConfig(db_path=db, name="A"), 2, clock=FixedClock())
        assert {task.pool for task in tasks} == {"offline"}
        assert pool_capacity(conn) == {"offline": 1022}
    finally:
        conn.close()
