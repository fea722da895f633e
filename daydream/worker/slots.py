"""A worker's pool slots in memory: the slots its leases hold, its calls in flight, and
the slots it is letting go after a limit cut.

The database is the truth (``generations.slot`` of the worker's leases); this is the
worker's running count of it, so that it never starts more calls in a pool than its
leases there hold slots. ``handing_over`` applies what an exchange is about to record (the
slots of finished calls freed, queued tasks that started in them given one) and puts
everything back if the exchange's transaction rolls back.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from daydream.queue.tasks import Outcome, Task

QUEUE_WAIT_S = 0.25  # how much work a worker's queued leases may hold (see queue_size)
QUEUE_PER_SLOT = 2  # and at most this many queued leases per slot


class Slots:
    """``held``: pool -> slots the worker's leases hold (calls in flight and results not
    yet recorded); ``running``: pool -> calls in flight; ``shed``: pool -> slots to give up
    as calls end (the worker's share of a pool's excess after its limit was cut)."""

    def __init__(self) -> None:
        self.held: dict[str, int] = {}
        self.running: dict[str, int] = {}
        self.shed: dict[str, int] = {}

    def allowed(self, pool: str) -> int:
        """Calls the worker may run in ``pool``: its slots there, less its share of any excess."""
        return self.held.get(pool, 0) - self.shed.get(pool, 0)

    def is_full(self, pool: str) -> bool:
        """Are as many calls running in ``pool`` as the worker may run there?"""
        return self.running.get(pool, 0) >= self.allowed(pool)

    def usable(self) -> int:
        """Slots the worker may use over all pools (never negative per pool)."""
        return sum(max(0, self.allowed(pool)) for pool in self.held)

    def queue_size(self, fixed: int | None, concurrency: int, call_s: float | None) -> int:
        """Queued leases a worker wants (``fixed``, ``WorkerConfig.queue``, overrides it; 0
        turns queueing off).

        Enough to refill the slots that end between two exchanges, but no more than
        ``QUEUE_WAIT_S`` of work for the slots the worker may use (held, less any to shed
        after a limit cut): a queued task waits for one of this worker's calls to end, so
        with 16 slots and calls of 3 s or more the queue is one lease (another worker with
        room is not kept waiting), while with calls of 50 ms it reaches ``QUEUE_PER_SLOT``
        leases per slot: slots refill at once however bursty the ends, also while an
        exchange waits for another worker's write (tens of milliseconds under load, in
        which 429s, coming back at once, can free every slot). ``call_s`` is how long a
        call takes (a moving average over model calls, 429s included: they free slots too;
        copies are not calls). Until a call has ended, a quarter of the concurrency."""
        if fixed is not None:
            return fixed
        if call_s is None:
            return max(1, concurrency // 4)
        slots = max(1, self.usable())
        return max(1, min(slots * QUEUE_PER_SLOT, round(slots * QUEUE_WAIT_S / call_s)))

    def gain(self, pool: str) -> None:
        """A lease of the worker now holds a slot in ``pool``."""
        self.held[pool] = self.held.get(pool, 0) + 1

    def lose(self, task: Task) -> None:
        """``task``'s lease gives up its slot (if it held one)."""
        if task.slot:
            task.slot = False
            self.held[task.pool] -= 1

    def call_started(self, pool: str) -> None:
        self.running[pool] = self.running.get(pool, 0) + 1

    def call_ended(self, pool: str) -> None:
        self.running[pool] -= 1

    @contextmanager
    def handing_over(self, outcomes: list[Outcome], taken: list[Task]) -> Iterator[None]:
        """As the exchange inside the block will record: ``outcomes`` free the slots they
        held and ``taken`` (queued tasks already calling in those slots) take one each. If
        the block raises (the transaction rolled back), all of it is undone."""
        freed = [outcome.task for outcome in outcomes if outcome.task.slot]
        for task in freed:
            self.held[task.pool] -= 1
        for task in taken:
            task.slot = True
            self.gain(task.pool)
        try:
            yield
        except BaseException:
            for task in freed:
                self.held[task.pool] += 1
            for task in taken:
                task.slot = False
                self.held[task.pool] -= 1
            raise
