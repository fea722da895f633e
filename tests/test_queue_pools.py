"""A pool's limit cut below the slots its calls hold: each worker lets its share of the
excess go as its calls end, rounded up, and a worker holding no slot there owes nothing.

The workers read their shares inside their own processes (``leases.exchange``); here they
are read directly with a fixed clock, so the figures themselves are checked.
"""

from __future__ import annotations

from daydream.db.connection import connect
from daydream.queue.leases import claim
from daydream.queue.pools import excess_shares, pool_capacity, set_pool_limit
from daydream.worker.config import WorkerConfig
from tests.scenario import FixedClock


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
