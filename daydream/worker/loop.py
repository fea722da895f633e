"""The worker loop: ``while not stopping: run_once()``, with heartbeats, idle backoff,
signals and a clean shutdown around it.

``Worker.run_once()`` is one step: one transaction records the calls that ended and
claims what fits (``queue.leases.exchange``), the claimed tasks start (``Executor``, up to
``concurrency`` at once), and the step waits briefly for calls to end. Tests drive it
directly with a fixed clock (``async with Worker(config, clock=...) as worker``). The
invariants it keeps are the package's (``daydream/worker/__init__.py``).
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from daydream.clock import Clock, utcnow
from daydream.crashpoints import crash_point
from daydream.db.connection import connect
from daydream.queue.leases import Exchange, exchange, heartbeat, release
from daydream.queue.tasks import Outcome, Task
from daydream.worker.config import WorkerConfig
from daydream.worker.execute import Executor
from daydream.worker.health import Health
from daydream.worker.signals import stop_signals
from daydream.worker.slots import Slots
from daydream.worker.stats import WorkerStats
from daydream.worker.waiting import Waiting

IDLE_FIRST_S = 0.02  # first sleep of a worker that found nothing to claim (doubling)
IDLE_POLL_S = 0.1  # longest sleep of an idle worker between looks at the queue
BUSY_IDLE_S = 0.005  # first sleep of a worker that was busy until now
CALLS_CHECK_S = 0.5  # how often a worker checks that its calls in flight still hold their leases


class Worker:
    """The loop around claim -> run -> record, with heartbeats and clean shutdown.

    ``slots`` counts the pool slots its leases hold and its calls in flight (``Slots``).
    It also keeps a few queued leases per pool (``_queue``): when a call ends, a queued
    task starts at once in its slot, without waiting for the result to be recorded.
    """

    def __init__(
        self,
        config: WorkerConfig,
        *,
        clock: Clock = utcnow,
        log: Callable[[str], None] | None = None,
    ):
        self.config = config
        self.clock = clock
        self.log = log or (lambda message: None)
        self.stats = WorkerStats()
        self.slots = Slots()
        self.health = Health(outage_limit_s=config.outage_limit_s, clock=clock, log=self.log)
        self.waiting = Waiting(self)
        self._db = ThreadPoolExecutor(max_workers=1, thread_name_prefix="daydream-db")
        self._conn: sqlite3.Connection | None = None
        self._stopping = False
        self._stop_now = False
        self._inflight: dict[str, tuple[Task, asyncio.Task]] = {}
        self._queue: dict[str, deque[Task]] = {}  # pool -> queued leases (no slot yet)
        self._done: list[Outcome] = []
        self._signals: dict[str, Any] = {}
        self._wake: asyncio.Event | None = None
        self._checked = 0.0  # when the last exchange ran (monotonic)
        self._calls_checked = 0.0  # when the leases of calls in flight were last checked
        self._last_beat = 0.0  # when the leases were last extended (monotonic)
        self._due: list[float] = []  # when our backed-off tasks may run again (monotonic)
        self._write_failures = 0  # consecutive failed writes (full disk, I/O errors)
        self._executor: Executor | None = None
        self._started: dict[str, float] = {}  # gen_id -> when its call started (monotonic)
        self._call_s: float | None = None  # how long a call takes (moving average)

    # -- the loop ---------------------------------------------------------------------

    async def run(self) -> WorkerStats:
        """Run until idle (unless ``exit_when_idle`` is off) or stopped by a signal."""
        with stop_signals(asyncio.get_running_loop(), self.request_stop):
            async with self:
                idle_sleep = IDLE_FIRST_S
                while not self._stopping:
                    busy = await self.run_once()
                    await self._heartbeat_if_due()
                    self.health.start_probes()
                    if busy:
                        idle_sleep = BUSY_IDLE_S
                    elif self._queued():
                        await asyncio.sleep(idle_sleep)  # waiting for a slot in a full pool
                        idle_sleep = min(idle_sleep * 2, 0.2)
                    elif self.config.exit_when_idle and await self.waiting.ended():
                        break
                    else:
                        # Back off while others hold the work, but wake for our own backoffs
                        # (a rate-limited task is due again after its Retry-After), for probes of
                        # down endpoints, and at once on a stop (`daydream run` stops idle
                        # workers when nothing is left).
                        due = min(self._until_due(), self.health.until_probe())
                        await self._idle(min(idle_sleep, due))
                        idle_sleep = min(idle_sleep * 2, IDLE_POLL_S)
        return self.stats

    async def run_once(self) -> bool:
        """One step: record what finished and claim what fits in one transaction, start the
        claimed calls, and with calls in flight wait (at most 50 ms) for some to end.
        Returns whether the worker has work in hand (calls in flight, or tasks claimed)."""
        claimed = await self._exchange()
        if self._inflight:
            await self._wait_some(0.05)
            return True
        return claimed

    async def __aenter__(self) -> Worker:
        self._wake = asyncio.Event()
        self._executor = Executor(self.config, clock=self.clock, health=self.health)
        self.waiting.start(self._executor, wake=self._wake.set)
        self._last_beat = time.monotonic()
        return self

    async def __aexit__(self, exc_type: Any, *_: Any) -> None:
        try:
            if exc_type is None:
                await self._shutdown()
        finally:
            assert self._executor is not None
            await self._executor.aclose()
            await self._db_call(lambda conn: conn.close())
            self._conn = None
            self._db.shutdown(wait=True)

    def request_stop(self, *_: Any) -> None:
        if self._stopping:
            self._stop_now = True
        self._stopping = True
        if self._wake is not None:
            self._wake.set()

    @property
    def queue_size(self) -> int:
        """Queued leases wanted now (``Slots.queue_size``)."""
        return self.slots.queue_size(self.config.queue, self.config.concurrency, self._call_s)

    # -- the database -----------------------------------------------------------------

    async def _db_call(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._db, lambda: function(self._connection(), *args, **kwargs)
        )

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = connect(self.config.db_path, create=False)
        return self._conn

    async def _exchange(self) -> bool:
        """Record what finished, pass slots to queued tasks that took them, claim; returns
        whether anything new could start."""
        outcomes, self._done = self._done, []
        taken = [task for task, _ in self._inflight.values() if not task.slot]
        try:
            with self.slots.handing_over(outcomes, taken):
                request = self._request(outcomes, taken)
                if not (
                    outcomes or taken or request.want > 0 or request.queue > 0 or request.health
                ):
                    # Nothing to write; still look at the queued leases now and then, so
                    # that a cancelled one is dropped before a slot frees for it.
                    if not request.running and (
                        not request.queued or time.monotonic() - self._checked < 0.25
                    ):
                        return False
                self._checked = time.monotonic()
                result = await self._db_call(
                    exchange, self.config, request, clock=self.clock, signals=self._signals
                )
        except sqlite3.OperationalError as exc:
            # The transaction rolled back: nothing was written (the slots are as they were).
            # Keep the results in memory and write them later (a full disk, an I/O error).
            self._done[:0] = outcomes
            self.health.put_back(request.health)
            await self._write_failed(exc)
            return False
        self._write_failures = 0
        if outcomes:
            crash_point("after_commit")
        if result.tasks:
            crash_point("after_claim")
        self._count(outcomes, result.recorded, result.stale)
        self.slots.shed = result.shed
        self.health.update(result.down, result.stopped)
        wall, monotonic = self.clock(), time.monotonic()
        for outcome in outcomes:
            ready = outcome.ready_at(wall)
            if ready is not None:
                self._due.append(monotonic + (ready - wall).total_seconds())
        if result.lost:  # e.g. the cohort was cancelled: drop or stop these
            self._abandon(result.lost)
        if result.untaken:  # no slot for them after all (a lease of ours had expired)
            await self._unslot(result.untaken)
        started = self._take(result.tasks, request.promote)
        for pool in list(self._queue):
            self._fill(pool)
        await self._release_stranded()
        await self.waiting.release_blocked()
        return started or bool(result.tasks)

    def _request(self, outcomes: list[Outcome], taken: list[Task]) -> Exchange:
        """What the next exchange records and asks for (``queue.leases.Exchange``), with
        the slots as they are once it has handed them over."""
        room = 0 if self._stopping else self.config.concurrency - len(self._inflight)
        want = min(room, self.config.batch or self.config.concurrency)
        # Queued tasks that could use a new slot (their pool's slots are all busy here) are
        # offered for promotion; they stay queued meanwhile, so a call ending during the
        # exchange can still hand its slot to one (a task promoted after that holds one
        # slot more than it uses until the next exchange: safe, and brief).
        promote: list[Task] = []
        for pool, queue in self._queue.items():
            if want > len(promote) and self.slots.is_full(pool):
                promote.extend(list(queue)[: want - len(promote)])
        queued = self._queued()
        # Now and then, check that the calls in flight still hold their leases (a cancelled
        # cohort frees their slots at once; a lease can expire under a suspended machine).
        running: list[Task] = []
        if self._inflight and time.monotonic() - self._calls_checked >= CALLS_CHECK_S:
            running = [task for task, _ in self._inflight.values()]
            self._calls_checked = time.monotonic()
        return Exchange(
            outcomes=outcomes,
            taken=taken,
            want=want,
            queue=0 if self._stopping else max(0, self.queue_size - len(queued)),
            held=dict(self.slots.held),
            shedding=dict(self.slots.shed),
            promote=promote,
            queued=queued,
            running=running,
            health=self.health.take_events(),
            skip_models=self.health.skip_models(),
            budget=self.waiting.budget,
        )

    def _take(self, tasks: list[Task], promote: list[Task]) -> bool:
        """Start or queue what an exchange claimed; returns whether a call started."""
        started = False
        promoted = {id(task) for task in promote}
        for task in tasks:
            if id(task) in promoted:
                self.slots.gain(task.pool)
                queue = self._queue[task.pool]
                if any(t is task for t in queue):  # not started in a handed-on slot meanwhile
                    self._queue[task.pool] = deque(t for t in queue if t is not task)
                    self._start(task)
                    started = True
            elif task.slot:
                self._reclaimed(task)
                self.stats.claimed += 1
                self.slots.gain(task.pool)
                self._start(task)
                started = True
            else:
                self._reclaimed(task)
                self.stats.claimed += 1
                self._queue.setdefault(task.pool, deque()).append(task)
        return started

    async def _heartbeat_if_due(self) -> None:
        if time.monotonic() - self._last_beat > self.config.lease_s / 3:
            await self._heartbeat()
            self._last_beat = time.monotonic()

    async def _heartbeat(self) -> None:
        # Results waiting to be written (a write failing for a while) keep their leases too.
        tasks = [task for task, _ in self._inflight.values()] + self._queued()
        tasks += [outcome.task for outcome in self._done]
        try:
            lost = await self._db_call(heartbeat, self.config, tasks, clock=self.clock)
        except sqlite3.OperationalError as exc:
            self.log(f"worker {self.config.name}: heartbeat not written ({exc}); next one soon")
            return
        self._abandon(lost)

    async def _write_failed(self, exc: sqlite3.OperationalError) -> None:
        """Log a failed database write and back off before the next one (0.5 s, doubling
        to 30 s or a quarter of the lease). Calls in flight go on; their results wait in
        memory."""
        self._write_failures += 1
        # Never so long that the leases (of these results too) go without a heartbeat.
        delay = min(30.0, self.config.lease_s / 4, 0.5 * 2 ** (self._write_failures - 1))
        if self._stopping:  # try again soon: the results should be written within the grace
            delay = min(delay, 0.5)
        self.log(
            f"worker {self.config.name}: writing to the database failed ({exc});"
            f" {len(self._done)} result(s) kept in memory, trying again in {delay:g}s"
        )
        # A stop cuts a long wait to half a second; a second stop ends it.
        end = time.monotonic() + delay
        while not self._stop_now and time.monotonic() < end:
            if self._stopping:
                end = min(end, time.monotonic() + 0.5)
            await asyncio.sleep(min(0.05, max(0.0, end - time.monotonic())))

    async def _give_back(self, tasks: list[Task], reason: str) -> None:
        """Release leases (lease.released); if the database is not writable, they expire."""
        if not tasks:
            return
        try:
            self.stats.released += await self._db_call(
                release, tasks, reason, actor=f"worker:{self.config.name}", clock=self.clock
            )
        except sqlite3.OperationalError as exc:
            self.log(f"worker {self.config.name}: leases not released ({exc}); they expire")

    def _count(self, outcomes: list[Outcome], recorded: int, stale: int) -> None:
        if note := self.stats.add(outcomes, recorded, stale):
            self.log(note)

    # -- calls ------------------------------------------------------------------------

    def _queued(self) -> list[Task]:
        return [task for queue in self._queue.values() for task in queue]

    def _start(self, task: Task) -> None:
        assert self._executor is not None
        job = asyncio.ensure_future(self._executor.run(task))
        job.add_done_callback(self._finished)
        self._inflight[task.gen_id] = (task, job)
        self._started[task.gen_id] = time.monotonic()
        self.slots.call_started(task.pool)

    def _fill(self, pool: str) -> None:
        """Start queued tasks of ``pool`` while our slots there outnumber our calls."""
        queue = self._queue.get(pool)
        while queue and not self.slots.is_full(pool):
            if self._stopping:
                return
            self._start(queue.popleft())

    def _finished(self, job: asyncio.Task) -> None:
        if job.cancelled():
            return
        outcome = job.result()
        task = outcome.task
        entry = self._inflight.get(task.gen_id)
        if entry is not None and entry[1] is job:  # not a newer lease's call on the same task
            del self._inflight[task.gen_id]
            self.slots.call_ended(task.pool)
            took = time.monotonic() - self._started.pop(task.gen_id)
            if task.mode == "llm":  # a copy is instant and takes no model slot
                average = self._call_s
                self._call_s = took if average is None else average + 0.1 * (took - average)
        self._done.append(outcome)
        self._fill(task.pool)
        if self._wake is not None:
            self._wake.set()

    async def _wait_some(self, timeout: float) -> None:
        """Wait until a call ends (at most ``timeout``), then briefly for more to batch."""
        assert self._wake is not None
        if not self._done:
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), min(timeout, self._until_due()))
            except asyncio.TimeoutError:
                return
        if len(self._done) < max(1, len(self._inflight) // 8):
            await asyncio.sleep(0.002)

    def _until_due(self) -> float:
        """Seconds until the next of our own retried tasks may be claimed (or inf)."""
        now = time.monotonic()
        self._due = [due for due in self._due if due > now - 1.0]
        ahead = [due - now for due in self._due if due > now]
        # Due times come from the same clock as retry_at: a millisecond or two covers the
        # monotonic clock drifting from the wall clock (NTP slews at most 0.5 ms per second).
        return min(ahead) + 0.002 if ahead else float("inf")

    async def _idle(self, seconds: float) -> None:
        """Sleep while no call is in flight, waking early on a stop request."""
        assert self._wake is not None
        self._wake.clear()
        if self._stopping:
            return
        try:
            await asyncio.wait_for(self._wake.wait(), seconds)
        except asyncio.TimeoutError:
            pass

    def _reclaimed(self, task: Task) -> None:
        """A task claimed again while this worker still runs or queues it under an older
        lease (the lease expired and was taken back, e.g. after the machine slept): that
        call's result could only be discarded, so it stops and the new lease runs it."""
        entry = self._inflight.get(task.gen_id)
        if entry is not None and entry[1].done():  # ended; its callback has not run yet
            old = self._inflight.pop(task.gen_id)[0]  # its result is recorded as stale
            self._started.pop(task.gen_id, None)
            self.slots.call_ended(old.pool)
        elif self._stop_call(task.gen_id):
            self.log(f"lease on {task.gen_id} expired while its call ran; running it again")
        for pool, queue in self._queue.items():
            if any(t.gen_id == task.gen_id for t in queue):
                self._queue[pool] = deque(t for t in queue if t.gen_id != task.gen_id)

    async def _unslot(self, gen_ids: set[str]) -> None:
        """Tasks that started in a handed-on slot the database did not grant: stop their
        calls and give their leases back (a result already in is recorded as usual)."""
        held = [task for task, _ in self._inflight.values()] + [o.task for o in self._done]
        for task in held:
            if task.gen_id in gen_ids:
                self.slots.lose(task)
        stopped = [t for t in map(self._stop_call, gen_ids) if t is not None]
        if stopped:
            self.log(
                f"worker {self.config.name}: {len(stopped)} call(s) stopped: the slot they"
                " took was no longer ours (a lease had expired)"
            )
            await self._give_back(stopped, "no pool slot for it")

    async def _release_stranded(self) -> None:
        """Give back queued leases in pools where we may run no call (our slots there are
        gone, or all to be shed after a limit cut) and no promotion got them one: other
        workers hand their slots to their own queued tasks, so these could wait for the
        rest of the run."""
        stranded = [
            task
            for pool, queue in self._queue.items()
            if queue and self.slots.allowed(pool) <= 0
            for task in queue
        ]
        if not stranded:
            return
        for task in stranded:
            self._queue[task.pool].clear()
        await self._give_back(stranded, "no pool slot left in this worker")

    def _stop_call(self, gen_id: str) -> Task | None:
        """Cancel a call still in flight and stop counting it (and its slot, if it holds
        one). A call that has ended already is left to ``_finished``: its result goes
        through the next exchange, which discards it if the lease is gone."""
        entry = self._inflight.get(gen_id)
        if entry is None or entry[1].done():
            return None
        task, job = self._inflight.pop(gen_id)
        self._started.pop(gen_id, None)
        self.slots.call_ended(task.pool)
        if task.slot:
            self.slots.held[task.pool] -= 1
        job.cancel()
        return task

    def _abandon(self, lost: set[str]) -> None:
        """Stop the calls and drop the queued tasks whose leases we no longer hold."""
        for gen_id in lost:
            if self._stop_call(gen_id):
                self.log(f"lease on {gen_id} lost; abandoning it")
        for pool, queue in self._queue.items():
            self._queue[pool] = deque(task for task in queue if task.gen_id not in lost)

    async def _shutdown(self) -> None:
        # Queued tasks have not started: give them back at once.
        queued = self._queued()
        self._queue.clear()
        await self._give_back(queued, "worker stopped")
        deadline = time.monotonic() + (0 if self._stop_now else self.config.grace_s)
        last_beat = time.monotonic()
        while self._inflight and time.monotonic() < deadline and not self._stop_now:
            await self._wait_some(0.1)
            await self._exchange()  # records; claims nothing once stopping
            if time.monotonic() - last_beat > self.config.lease_s / 3:  # not every 0.1 s
                await self._heartbeat()
                last_beat = time.monotonic()
        leftover = [task for task, _ in self._inflight.values()]
        for _, job in self._inflight.values():
            job.cancel()
        self._inflight.clear()
        self._started.clear()
        await asyncio.sleep(0)  # callbacks of calls that ended before the cancel run now
        for _ in range(4):  # record them (a recorded lease is not released below)
            if not self._done:
                break
            await self._exchange()
        if self._done:
            self.log(
                f"worker {self.config.name}: {len(self._done)} result(s) could not be written"
                " (the database is not writable); their leases expire and they run again"
            )
        await self._give_back(leftover, "worker stopped")
