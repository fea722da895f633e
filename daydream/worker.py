"""The worker: claim ready tasks by lease, run one stage each, record the result.

One worker is one process running an asyncio loop: ``Executor`` runs one claimed task
(render -> model call or copy -> validate -> parse) and returns the events to record;
``Worker`` is the loop around it: one transaction records what finished and claims what
fits (``leases.exchange``), up to ``concurrency`` stages run at once, heartbeats extend the
leases. The database side (claims, fencing tokens, pool limits) is ``daydream/leases.py``.

Invariants:

- A result is recorded only if the task still carries its attempt's fencing token (a
  worker whose lease expired, and whose task was claimed by someone else, writes nothing).
- Pool limits hold across processes and adapt to rate limiting (see ``leases``). A worker
  runs at most as many calls in a pool as its leases there hold slots; its queued leases
  start in the slots of its finished calls (``Worker`` below).
- Rate-limited calls (429) are requeued with ``not_before`` (honouring Retry-After) and do
  not count as attempts; other retryable failures are attempts with exponential backoff;
  after ``max_attempts`` the generation fails with its last error and blocks its children.
  An expired lease (the worker died or stalled) counts as an attempt: a task whose worker
  dies every time fails after ``max_attempts`` instead of crash-looping.
- SIGTERM/SIGINT: stop claiming, give in-flight calls ``grace`` seconds, then release the
  rest (``lease.released``), so nothing waits for a lease to expire after a clean stop. A
  released lease is not counted as an attempt. A second signal skips the grace period.
- All database work happens on one dedicated thread; the event loop only awaits it.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
import sqlite3
import time
import traceback
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from daydream import crashpoints
from daydream import events as ev
from daydream.clock import Clock, isoformat, utcnow
from daydream.crashpoints import crash_point
from daydream.db.connection import connect
from daydream.db.texts import text_hash
from daydream.errors import ConfigError, DaydreamError, ParseError, ProviderError, TemplateError
from daydream.parsers import parse_output, validate_output
from daydream.prompts import concept_contents, render_prompt, stage_variables
from daydream.providers import (
    CompletionRequest,
    OfflineProvider,
    backoff_delay,
    make_provider,
    resolve_provider_config,
)
from daydream.queue.leases import exchange, heartbeat, release
from daydream.queue.tasks import Outcome, Task, has_pending, remaining_models

DEFAULT_LEASE_S = 120.0
DEFAULT_MAX_ATTEMPTS = 3
MAX_THROTTLES = 100
DEFAULT_MIN_LINES = {"draft": 3}
IDLE_FIRST_S = 0.02  # first sleep of a worker that found nothing to claim (doubling)
IDLE_POLL_S = 0.1  # longest sleep of an idle worker between looks at the queue
CALLS_CHECK_S = 0.5  # how often a worker checks that its calls in flight still hold their leases
QUEUE_WAIT_S = 0.25  # how much work a worker's queued leases may hold (see Worker.queue_size)
QUEUE_PER_SLOT = 2  # and at most this many queued leases per slot


@dataclass
class WorkerConfig:
    db_path: Path
    name: str = ""
    concurrency: int = 32
    pools: tuple[str, ...] = ()
    cohort: str | None = None
    lease_s: float = DEFAULT_LEASE_S
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    exit_when_idle: bool = True
    grace_s: float = 10.0
    provider_override: str | None = None  # "offline" for rehearsals
    offline_latency_s: float = 0.0
    base_urls: dict[str, str] = field(default_factory=dict)
    timeout_s: float | None = None  # whole-call deadline per model call; None = provider's
    batch: int = 0  # tasks per claim; 0 = concurrency
    queue: int | None = None  # queued leases to start as calls end; None = adaptive
    seed: int | None = None

    def __post_init__(self) -> None:
        if not self.name:
            self.name = f"{socket.gethostname()}:{os.getpid()}"


# -- executing ----------------------------------------------------------------------------


class Executor:
    """Runs one claimed task: prompt -> raw -> parsed, returning the events to record."""

    def __init__(
        self, config: WorkerConfig, *, clock: Clock = utcnow, rng: random.Random | None = None
    ):
        self.config = config
        self.clock = clock
        self.rng = rng or random.Random(config.seed)
        self._providers: dict[tuple[str, str | None, str | None], Any] = {}

    def provider(self, model: dict[str, Any]) -> Any:
        """The provider for a model, one per (provider, base URL, key variable) per worker."""
        name = self.config.provider_override or model.get("provider", "offline")
        settings = model.get("settings", {})
        base_url = self.config.base_urls.get(name) or settings.get("base_url")
        key_env = settings.get("api_key_env")
        key = (name, base_url, key_env)
        found = self._providers.get(key)
        if found is None:
            if name == "offline":
                found = OfflineProvider(latency_s=self.config.offline_latency_s)
            else:
                providers = None
                if key_env:  # the catalog's providers.yaml names the key variable
                    resolved = resolve_provider_config(name, base_url=base_url)
                    providers = {name: replace(resolved, api_key_env=key_env)}
                found = make_provider(name, base_url=base_url, providers=providers)
            self._providers[key] = found
        return found

    async def aclose(self) -> None:
        for provider in self._providers.values():
            await provider.aclose()

    async def run(self, task: Task) -> Outcome:
        try:
            return await self._run(task)
        except ConfigError as exc:  # the model's provider cannot be set up (a missing key)
            return self._failed(task, state="provider_error", error=str(exc), retryable=False)
        except Exception as exc:  # the worker's outermost catch: record, never crash
            detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            return self._failed(
                task,
                state="error",
                error=f"unexpected {type(exc).__name__}: {detail}"[:2000],
                retryable=False,
                error_class=type(exc).__name__,
            )

    async def _run(self, task: Task) -> Outcome:

        if task.template.get("missing"):
            return self._failed(
                task,
                state="template_error",
                error=f"template {task.stage}/{task.template_id} (version {task.template['version']})"
                " is not in the catalog: import the catalog that defines it, then retry",
                retryable=False,
            )
        # prompt
        if task.mode == "copy":
            if task.parent_text is None:
                return self._failed(
                    task, state="error", error="copy-mode essay has no parent text", retryable=False
                )
            prompt = task.parent_text
        else:
            try:
                prompt = render_prompt(
                    f"{task.stage}/{task.template_id}",
                    task.template["body"] or "",
                    self._variables(task, stage_variables),
                )
            except TemplateError as exc:
                return self._failed(task, state="template_error", error=str(exc), retryable=False)
        # raw
        events: list[ev.Event] = []
        if task.mode == "copy":
            raw = task.parent_text or ""
            responded: dict[str, Any] = dict(mode="copy", finish_reason="copy")
        else:
            model = task.model or {}
            settings = {**model.get("settings", {}), **task.template.get("settings", {})}
            params = {
                k: settings[k]
                for k in ("temperature", "max_tokens", "seed")
                if settings.get(k) is not None
            }
            extra = {
                **model.get("settings", {}).get("extra", {}),
                **task.template.get("settings", {}).get("extra", {}),
            }
            if extra:
                params["extra"] = extra
            provider_name = self.config.provider_override or model.get("provider", "offline")
            provider = self.provider(model)
            request = CompletionRequest(
                model=model.get("provider_model", ""),
                prompt=prompt,
                temperature=params.get("temperature"),
                max_tokens=params.get("max_tokens"),
                seed=params.get("seed"),
                extra=extra,
                timeout=self.config.timeout_s,
            )
            crash_point("before_call")
            try:
                completion = await provider.complete(request)
            except ProviderError as exc:
                return self._provider_failed(task, exc)
            crash_point("after_response")
            raw = completion.text
            cost = completion.cost
            if (
                cost is None
                and model.get("price_input") is not None
                and model.get("price_output") is not None
            ):
                cost = (completion.prompt_tokens or 0) * model["price_input"] + (
                    completion.completion_tokens or 0
                ) * model["price_output"]
            responded = dict(
                mode="llm",
                provider=provider_name,
                model_id=model.get("model_id"),
                resolved_model=completion.resolved_model,
                finish_reason=completion.finish_reason,
                prompt_tokens=completion.prompt_tokens,
                completion_tokens=completion.completion_tokens,
                latency_s=round(completion.latency_s, 4)
                if completion.latency_s is not None
                else None,
                cost=cost,
                params=params,
                offline=bool(getattr(completion, "offline", False)),
            )
        prompt_hash, raw_hash = _hash(prompt), _hash(raw)
        texts = {prompt_hash: prompt, raw_hash: raw}
        events.append(
            ev.GenerationResponded(
                gen_id=task.gen_id,
                token=task.token,
                prompt_hash=prompt_hash,
                raw_hash=raw_hash,
                **responded,
            )
        )
        # parsed
        settings = task.template.get("settings", {})
        min_lines = settings.get("min_lines", DEFAULT_MIN_LINES.get(task.stage))
        try:
            if task.mode != "copy":
                validate_output(
                    raw, finish_reason=responded.get("finish_reason"), min_lines=min_lines
                )
            parsed = parse_output(task.template["parser"], raw, scale=task.template.get("scale"))
        except ParseError as exc:
            outcome = self._failed(task, state=exc.state, error=str(exc), retryable=False)
            outcome.events[:0] = events
            outcome.texts = texts
            return outcome
        parsed_hash = _hash(parsed.text)
        texts[parsed_hash] = parsed.text
        events.append(
            ev.GenerationCompleted(
                gen_id=task.gen_id,
                token=task.token,
                parsed_hash=parsed_hash,
                score=parsed.score,
                written_scale=parsed.scale_max,
            )
        )
        return Outcome(task, events, ok=True, texts=texts)

    def _variables(self, task: Task, stage_variables: Callable[..., dict]) -> dict[str, Any]:
        concepts = None
        if task.concepts:
            level, items = task.concepts
            concepts = concept_contents(items, level)
        extras = {
            "gen_id": task.gen_id,
            "combo_id": task.combo_id,
            "template_id": task.template_id,
            "model_id": (task.model or {}).get("model_id"),
            "replicate": task.replicate,
        }
        return stage_variables(
            task.stage, concepts=concepts, parent_text=task.parent_text, extras=extras
        )

    def _provider_failed(self, task: Task, exc: ProviderError) -> Outcome:
        now = self.clock()
        if exc.status == 429 and task.throttles < MAX_THROTTLES:
            # The server said when to come back: honour exactly that (plus jitter). Without
            # Retry-After, back off exponentially over consecutive throttles.
            step = 1 if exc.retry_after is not None else task.throttles + 1
            delay = backoff_delay(
                step, retry_after=exc.retry_after, rng=self.rng, base=0.25, cap=30.0
            )
            event = ev.AttemptThrottled(
                gen_id=task.gen_id,
                token=task.token,
                error=str(exc)[:500],
                retry_after=exc.retry_after,
                retry_at=isoformat(now + timedelta(seconds=delay)),
            )
            return Outcome(task, [event], ok=False, throttled=True, retry_delay=delay, ended_at=now)
        return self._failed(
            task,
            state=exc.state,
            error=str(exc)[:2000],
            retryable=exc.retryable,
            http_status=exc.status,
            retry_after=exc.retry_after,
        )

    def _failed(
        self,
        task: Task,
        *,
        state: str,
        error: str,
        retryable: bool,
        http_status: int | None = None,
        retry_after: float | None = None,
        error_class: str | None = None,
    ) -> Outcome:
        counted = task.attempt - task.throttles - task.released
        final = not retryable or counted >= self.config.max_attempts
        retry_at, delay, now = None, None, self.clock()
        if not final:
            delay = backoff_delay(counted, retry_after=retry_after, rng=self.rng)
            retry_at = isoformat(now + timedelta(seconds=delay))
        if final and retryable:
            error = f"{error} (gave up after {counted} attempt(s))"
        event = ev.AttemptFailed(
            gen_id=task.gen_id,
            token=task.token,
            state=state,
            error=error,
            retryable=retryable,
            final=final,
            retry_at=retry_at,
            http_status=http_status,
            error_class=error_class,
        )
        return Outcome(task, [event], ok=False, retry_delay=delay, ended_at=now)


def _hash(text: str) -> str:
    return text_hash(text)


# -- the loop -----------------------------------------------------------------------------


@dataclass
class WorkerStats:
    claimed: int = 0
    recorded: int = 0
    stale: int = 0
    released: int = 0
    ok: int = 0
    failed: int = 0
    throttled: int = 0


class Worker:
    """The loop around claim -> run -> record, with heartbeats and clean shutdown.

    Slots: the worker runs at most as many calls in a pool as its leases there hold pool
    slots (``_slots``, mirroring ``tasks.slot``). It also keeps a few queued leases per pool
    (``_queue``): when a call ends, a queued task starts at once in its slot, without waiting
    for the result to be recorded; the next exchange records the result and moves the slot
    to the new task in one transaction (``slots.taken``), so the pool's count in the
    database never falls below the calls really in flight.
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
        self._db = ThreadPoolExecutor(max_workers=1, thread_name_prefix="daydream-db")
        self._conn: sqlite3.Connection | None = None
        self._stopping = False
        self._stop_now = False
        self._inflight: dict[str, tuple[Task, asyncio.Task]] = {}
        self._queue: dict[str, deque[Task]] = {}  # pool -> queued leases (no slot yet)
        self._slots: dict[str, int] = {}  # pool -> slots our leases hold (calls + unrecorded)
        self._running: dict[str, int] = {}  # pool -> calls in flight
        self._done: list[Outcome] = []
        self._signals: dict[str, Any] = {}
        self._wake: asyncio.Event | None = None
        self._checked = 0.0  # when the last exchange ran (monotonic)
        self._calls_checked = 0.0  # when the leases of calls in flight were last checked
        self._due: list[float] = []  # when our backed-off tasks may run again (monotonic)
        self._write_failures = 0  # consecutive failed writes (full disk, I/O errors)
        self._shed: dict[str, int] = {}  # pool -> slots to let go as calls end (limit cut)
        self._executor: Executor | None = None
        self._started: dict[str, float] = {}  # gen_id -> when its call started (monotonic)
        self._call_s: float | None = None  # how long a call takes (moving average)

    async def _db_call(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._db, lambda: function(self._connection(), *args, **kwargs)
        )

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = connect(self.config.db_path, create=False)
        return self._conn

    def request_stop(self, *_: Any) -> None:
        if self._stopping:
            self._stop_now = True
        self._stopping = True
        if self._wake is not None:
            self._wake.set()

    @property
    def queue_size(self) -> int:
        """Queued leases wanted per worker (``WorkerConfig.queue`` overrides it; 0 turns
        queueing off).

        Enough to refill the slots that end between two exchanges, but no more than
        ``QUEUE_WAIT_S`` of work for the slots the worker may use (held, less any to shed
        after a limit cut): a queued task waits for one of this worker's calls to end, so
        with 16 slots and calls of 3 s or more the queue is one lease (another worker with
        room is not kept waiting), while with calls of 50 ms it reaches ``QUEUE_PER_SLOT``
        leases per slot: slots refill at once however bursty the ends, also while an
        exchange waits for another worker's write (tens of milliseconds under load, in
        which 429s, coming back at once, can free every slot). The call length is a moving
        average over model calls (429s included: they free slots too; copies are not
        calls). Until a call has ended, a quarter of the concurrency."""
        if self.config.queue is not None:
            return self.config.queue
        if self._call_s is None:
            return max(1, self.config.concurrency // 4)
        slots = max(1, sum(max(0, self._allowed(pool)) for pool in self._slots))
        return max(1, min(slots * QUEUE_PER_SLOT, round(slots * QUEUE_WAIT_S / self._call_s)))

    async def run(self) -> WorkerStats:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, self.request_stop)
            except (NotImplementedError, RuntimeError):  # pragma: no cover - not main thread
                pass
        self._wake = asyncio.Event()
        self._executor = Executor(self.config, clock=self.clock)
        idle_sleep = IDLE_FIRST_S
        last_beat = time.monotonic()
        try:
            while not self._stopping:
                # One transaction records what finished and claims what fits.
                claimed = await self._exchange()
                if time.monotonic() - last_beat > self.config.lease_s / 3:
                    await self._heartbeat()
                    last_beat = time.monotonic()
                if self._inflight:
                    idle_sleep = 0.005
                    await self._wait_some(0.05)
                elif not claimed:
                    if self._queued():
                        await asyncio.sleep(idle_sleep)  # waiting for a slot in a full pool
                        idle_sleep = min(idle_sleep * 2, 0.2)
                        continue
                    if self.config.exit_when_idle and not await self._pending():
                        break
                    # Back off while others hold the work, but wake for our own backoffs
                    # (a rate-limited task is due again after its Retry-After), and at once
                    # on a stop (`daydream run` stops idle workers when nothing is left).
                    await self._idle(min(idle_sleep, self._until_due()))
                    idle_sleep = min(idle_sleep * 2, IDLE_POLL_S)
            await self._shutdown()
        finally:
            await self._executor.aclose()
            await self._db_call(lambda conn: conn.close())
            self._conn = None
            self._db.shutdown(wait=True)
        return self.stats

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

    def _queued(self) -> list[Task]:
        return [task for queue in self._queue.values() for task in queue]

    def _start(self, task: Task) -> None:
        assert self._executor is not None
        job = asyncio.ensure_future(self._executor.run(task))
        job.add_done_callback(self._finished)
        self._inflight[task.gen_id] = (task, job)
        self._started[task.gen_id] = time.monotonic()
        self._running[task.pool] = self._running.get(task.pool, 0) + 1

    def _allowed(self, pool: str) -> int:
        """Calls we may run in ``pool``: our slots there, less our share of any excess."""
        return self._slots.get(pool, 0) - self._shed.get(pool, 0)

    def _fill(self, pool: str) -> None:
        """Start queued tasks of ``pool`` while our slots there outnumber our calls."""
        queue = self._queue.get(pool)
        allowed = self._allowed(pool)
        while queue and self._running.get(pool, 0) < allowed:
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
            self._running[task.pool] -= 1
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

    async def _exchange(self) -> bool:
        """Record what finished, pass slots to queued tasks that took them, claim; returns
        whether anything new could start."""
        outcomes, self._done = self._done, []
        for outcome in outcomes:
            if outcome.task.slot:  # its slot is freed (or passed on) by this exchange
                self._slots[outcome.task.pool] -= 1
        taken = [task for task, _ in self._inflight.values() if not task.slot]
        for task in taken:
            task.slot = True
            self._slots[task.pool] = self._slots.get(task.pool, 0) + 1
        room = 0 if self._stopping else self.config.concurrency - len(self._inflight)
        batch = self.config.batch or self.config.concurrency
        want = min(room, batch)
        # Queued tasks that could use a new slot (their pool's slots are all busy here) are
        # offered for promotion; they stay queued meanwhile, so a call ending during the
        # exchange can still hand its slot to one (a task promoted after that holds one
        # slot more than it uses until the next exchange: safe, and brief).
        promote: list[Task] = []
        for pool, queue in self._queue.items():
            if want > len(promote) and self._running.get(pool, 0) >= self._allowed(pool):
                promote.extend(list(queue)[: want - len(promote)])
        queued = len(self._queued())
        extra = 0 if self._stopping else max(0, self.queue_size - queued)
        # Now and then, check that the calls in flight still hold their leases (a cancelled
        # cohort frees their slots at once; a lease can expire under a suspended machine).
        running: list[Task] = []
        if self._inflight and time.monotonic() - self._calls_checked >= CALLS_CHECK_S:
            running = [task for task, _ in self._inflight.values()]
            self._calls_checked = time.monotonic()
        if not outcomes and not taken and want <= 0 and extra <= 0 and not running:
            # Nothing to write; still look at the queued leases now and then, so that a
            # cancelled one is dropped before a slot frees for it.
            if not self._queued() or time.monotonic() - self._checked < 0.25:
                return False
        self._checked = time.monotonic()
        try:
            result = await self._db_call(
                exchange,
                outcomes,
                self.config,
                want,
                clock=self.clock,
                signals=self._signals,
                taken=taken,
                queue=extra,
                held=dict(self._slots),
                promote=promote,
                queued=self._queued(),
                shedding=dict(self._shed),
                running=running,
            )
        except sqlite3.OperationalError as exc:
            # The transaction rolled back: nothing was written. Undo the snapshot, keep the
            # results in memory and write them later (a full disk, an I/O error).
            for outcome in outcomes:
                if outcome.task.slot:
                    self._slots[outcome.task.pool] += 1
            for task in taken:
                task.slot = False
                self._slots[task.pool] -= 1
            self._done[:0] = outcomes
            await self._write_failed(exc)
            return False
        self._write_failures = 0
        if outcomes:
            crash_point("after_commit")
        if result.tasks:
            crash_point("after_claim")
        self._count(outcomes, result.recorded, result.stale)
        self._shed = result.shed
        wall, monotonic = self.clock(), time.monotonic()
        for outcome in outcomes:
            ready = outcome.ready_at(wall)
            if ready is not None:
                self._due.append(monotonic + (ready - wall).total_seconds())
        if result.lost:  # e.g. the cohort was cancelled: drop or stop these
            self._abandon(result.lost)
        if result.untaken:  # no slot for them after all (a lease of ours had expired)
            await self._unslot(result.untaken)
        started = False
        promoted = {id(task) for task in promote}
        for task in result.tasks:
            if id(task) in promoted:
                self._slots[task.pool] = self._slots.get(task.pool, 0) + 1
                queue = self._queue[task.pool]
                if any(t is task for t in queue):  # not started in a handed-on slot meanwhile
                    self._queue[task.pool] = deque(t for t in queue if t is not task)
                    self._start(task)
                    started = True
            elif task.slot:
                self._reclaimed(task)
                self.stats.claimed += 1
                self._slots[task.pool] = self._slots.get(task.pool, 0) + 1
                self._start(task)
                started = True
            else:
                self._reclaimed(task)
                self.stats.claimed += 1
                self._queue.setdefault(task.pool, deque()).append(task)
        for pool in list(self._queue):
            self._fill(pool)
        await self._release_stranded()
        return started or bool(result.tasks)

    def _reclaimed(self, task: Task) -> None:
        """A task claimed again while this worker still runs or queues it under an older
        lease (the lease expired and was taken back, e.g. after the machine slept): that
        call's result could only be discarded, so it stops and the new lease runs it."""
        entry = self._inflight.get(task.gen_id)
        if entry is not None and entry[1].done():  # ended; its callback has not run yet
            old = self._inflight.pop(task.gen_id)[0]  # its result is recorded as stale
            self._started.pop(task.gen_id, None)
            self._running[old.pool] -= 1
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
            if task.gen_id in gen_ids and task.slot:
                task.slot = False
                self._slots[task.pool] -= 1
        stopped = [t for t in map(self._stop_call, gen_ids) if t is not None]
        if stopped:
            self.log(
                f"worker {self.config.name}: {len(stopped)} call(s) stopped: the slot they"
                " took was no longer ours (a lease had expired)"
            )
            await self._give_back(stopped, "no pool slot for it")

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

    async def _release_stranded(self) -> None:
        """Give back queued leases in pools where we may run no call (our slots there are
        gone, or all to be shed after a limit cut) and no promotion got them one: other
        workers hand their slots to their own queued tasks, so these could wait for the
        rest of the run."""
        stranded = [
            task
            for pool, queue in self._queue.items()
            if queue and self._allowed(pool) <= 0
            for task in queue
        ]
        if not stranded:
            return
        for task in stranded:
            self._queue[task.pool].clear()
        await self._give_back(stranded, "no pool slot left in this worker")

    def _count(self, outcomes: list[Outcome], recorded: int, stale: int) -> None:
        self.stats.recorded += recorded
        self.stats.stale += stale
        for outcome in outcomes:
            if outcome.ok:
                self.stats.ok += 1
            elif outcome.throttled:
                self.stats.throttled += 1
            else:
                self.stats.failed += 1
        if stale:
            self.log(
                f"{stale} result(s) discarded: the lease was no longer held (the task was"
                " cancelled, or taken over by another worker after the lease expired)"
            )

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

    def _stop_call(self, gen_id: str) -> Task | None:
        """Cancel a call still in flight and stop counting it (and its slot, if it holds
        one). A call that has ended already is left to ``_finished``: its result goes
        through the next exchange, which discards it if the lease is gone."""
        entry = self._inflight.get(gen_id)
        if entry is None or entry[1].done():
            return None
        task, job = self._inflight.pop(gen_id)
        self._started.pop(gen_id, None)
        self._running[task.pool] -= 1
        if task.slot:
            self._slots[task.pool] -= 1
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

    async def _pending(self) -> bool:
        """Is anything left to run? (Yes while the database cannot be read.)"""
        try:
            return bool(await self._db_call(has_pending, self.config.cohort, self.config.pools))
        except sqlite3.OperationalError as exc:
            self.log(f"worker {self.config.name}: reading the queue failed ({exc})")
            return True

    async def _give_back(self, tasks: list[Task], reason: str) -> None:
        """Release leases (lease.released); if the database is not writable, they expire."""
        if not tasks:
            return
        try:
            self.stats.released += await self._db_call(
                release, tasks, reason, actor=f"worker:{self.config.name}"
            )
        except sqlite3.OperationalError as exc:
            self.log(f"worker {self.config.name}: leases not released ({exc}); they expire")


def check_providers(config: WorkerConfig) -> None:
    """Build the provider of every model that the unfinished calls in ``config``'s scope
    will use, as a worker would: a missing API key, an unknown provider or a bad base URL
    is one ``ConfigError`` before any call, not a failed generation per task."""
    conn = connect(config.db_path, create=False)
    try:
        models = remaining_models(conn, config.cohort, config.pools)
    finally:
        conn.close()
    executor = Executor(config)
    for model in models:
        executor.provider(model)  # builds and checks; the HTTP clients are made on first use


def run_worker(
    config: WorkerConfig, *, log: Callable[[str], None] | None = None, check: bool = True
) -> WorkerStats:
    """Run one worker until idle (or stopped by a signal); first ``check_providers``
    unless ``check`` is off (``daydream run`` checks once for all its workers)."""
    if not Path(config.db_path).exists():
        raise DaydreamError(f"database {config.db_path} does not exist (plan a cohort first)")
    crashpoints.check()
    if check:
        check_providers(config)
    return asyncio.run(Worker(config, log=log).run())
