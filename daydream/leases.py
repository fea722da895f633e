"""Leases: the queue's database side (claim, record, heartbeat, release, pool limits).

A claim appends ``attempt.started`` for each task it takes, in one short ``BEGIN
IMMEDIATE`` transaction; the event's id is the attempt's fencing token. A result is
recorded only while the task still carries that token, so a worker whose lease expired and
whose task was taken over writes nothing. Expired leases are reaped by whichever worker
claims next. Pool limits hold across processes because a claim counts the slots held in
each pool (``generations.slot``) inside the claim transaction. A queued lease holds no slot
until ``take_slots`` gives it the slot of a finished call of its worker, in the
transaction that records that call's result, so the count never falls below the calls in
flight; ``_adapt_pools`` adapts the limits to rate limiting (see docs/running.md). Everything here is a plain function of a connection, a worker
configuration and a clock, so tests drive it directly with a fixed clock.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from daydream import events as ev
from daydream.clock import Clock, isoformat, utcnow
from daydream.crashpoints import crash_point, fail_point
from daydream.db.log import append
from daydream.db.texts import put_hashed_texts
from daydream.db.transaction import transaction

if TYPE_CHECKING:
    from daydream.worker import WorkerConfig


DEFAULT_POOL_LIMITS = {"offline": 1024, "copy": 1024}
DEFAULT_POOL_LIMIT = 16
CUT_COOLDOWN_S = 1.0
CUT_SHARE = 0.4  # cut a pool when more than this share of its recent calls got 429


@dataclass
class Task:
    """A claimed task with everything needed to run it."""

    gen_id: str
    token: int
    attempt: int
    throttles: int
    stage: str
    mode: str
    pool: str
    template_id: str
    template: dict[str, Any]
    model: dict[str, Any] | None
    parent_gen_id: str | None
    parent_text: str | None
    combo_id: str | None
    concepts: list[Any]
    replicate: int
    released: int = 0  # attempts given back by a clean shutdown: not counted, like throttles
    slot: bool = True  # the lease holds a pool slot (False: queued in its worker)


@dataclass
class Outcome:
    task: Task
    events: list[ev.Event]
    ok: bool
    throttled: bool = False
    texts: dict[str, str] = field(default_factory=dict)  # hash -> text, stored with the events
    # Backoff before the task may run again, counted from ``ended_at`` (when the attempt
    # ended: a Retry-After counts from the reply) but never before the outcome is recorded:
    # record() sets retry_at (results can wait in memory, e.g. while a write fails).
    retry_delay: float | None = None
    ended_at: datetime | None = None

    def ready_at(self, recorded: datetime) -> datetime | None:
        """When the task may run again, for an outcome recorded at ``recorded``."""
        if self.retry_delay is None:
            return None
        return max(recorded, (self.ended_at or recorded) + timedelta(seconds=self.retry_delay))


def claim(
    conn: sqlite3.Connection,
    config: WorkerConfig,
    limit: int,
    *,
    clock: Clock = utcnow,
    queue: int = 0,
    held: dict[str, int] | None = None,
    promote: list[Task] | None = None,
) -> list[Task]:
    """Claim up to ``limit`` ready tasks in one transaction (reaping expired leases first).

    Each claimed task takes a slot of its pool. With ``queue``, up to that many more are
    claimed as queued leases (``Task.slot`` False): they hold no slot, and are taken only in
    pools where the worker will hold slots (``held``: its slots per pool before this claim),
    to start the moment one of its calls ends there. ``promote``: queued leases of this
    worker to give slots to, where the pool has room, before any new task; each promoted
    task comes back first in the result (the same Task object), its ``slot`` set True once
    the transaction has committed (by ``exchange`` when the claim runs inside it).
    """
    now = clock()
    now_s = isoformat(now)
    expires = isoformat(now + timedelta(seconds=config.lease_s))
    actor = f"worker:{config.name}"
    with transaction(conn):
        expired = conn.execute(
            "SELECT gen_id, lease_token, lease_owner, attempts - throttles - releases"
            " FROM generations"
            " WHERE status = 'running' AND lease_expires_at < ? LIMIT 1000",
            (now_s,),
        ).fetchall()
        if expired:
            append(
                conn,
                [_reap(g, t, o or "?", counted, config) for g, t, o, counted in expired],
                actor=actor,
                clock=lambda: now,
            )
            crash_point("reap")
        capacity = _pool_capacity(conn)
        promoted: list[Task] = []
        if promote and limit > 0:
            still_held = _held_tokens(conn, [task.gen_id for task in promote])
            for task in promote:
                room = capacity[task.pool] if task.pool in capacity else default_pool_limit(task.pool)
                if room > 0 and still_held.get(task.gen_id) == task.token and len(promoted) < limit:
                    capacity[task.pool] = room - 1
                    promoted.append(task)
            take_slots(conn, config, promoted, clock=lambda: now)
        limit -= len(promoted)
        holding = {pool for pool, n in (held or {}).items() if n > 0}
        holding.update(task.pool for task in promoted)
        full = sorted(
            pool for pool, room in capacity.items() if room <= 0 and not (queue and pool in holding)
        )
        sql = (
            "SELECT t.gen_id, t.pool, t.attempts, t.throttles FROM generations t"
            " WHERE t.status = 'ready' AND (t.not_before IS NULL OR t.not_before <= ?)"
        )
        params: list[Any] = [now_s]
        if config.pools:
            sql += f" AND t.pool IN ({', '.join('?' for _ in config.pools)})"
            params.extend(config.pools)
        if full:
            sql += f" AND t.pool NOT IN ({', '.join('?' for _ in full)})"
            params.extend(full)
        if config.cohort:
            sql += (
                # EXISTS probes the membership key per candidate; IN (SELECT ...) would build
                # the whole cohort's id list on every claim.
                " AND EXISTS (SELECT 1 FROM cohort_members m"
                " WHERE m.cohort_id = ? AND m.gen_id = t.gen_id)"
            )
            params.append(config.cohort)
        # Upstream stages first (stage names sort in pipeline order: draft < essay <
        # evaluation), oldest first within a stage: the work that unlocks more work, and
        # the longest waits before the run can end (a rate-limited draft still has an
        # essay and its evaluations to go), start earliest. Served by generations_queue.
        sql += " ORDER BY t.stage, t.rowid LIMIT ?"
        params.append((max(limit, 0) + queue) * 4)
        chosen: list[tuple[str, str, int, int, bool]] = []
        queued = 0
        for gen_id, pool, attempts, throttles in conn.execute(sql, params):
            room = capacity[pool] if pool in capacity else default_pool_limit(pool)
            if room > 0 and len(chosen) - queued < limit:
                capacity[pool] = room - 1
                holding.add(pool)
                chosen.append((gen_id, pool, attempts, throttles, True))
            elif queued < queue and pool in holding:
                queued += 1
                chosen.append((gen_id, pool, attempts, throttles, False))
            if len(chosen) - queued >= limit and queued >= queue:
                break
        started = [
            ev.AttemptStarted(
                gen_id=gen_id,
                attempt=attempts + 1,
                worker=config.name,
                lease_expires_at=expires,
                queued=not slot,
            )
            for gen_id, _, attempts, _, slot in chosen
        ]
        tokens = append(conn, started, actor=actor, clock=lambda: now) if started else []
    tasks = [
        _load_task(conn, gen_id, token, attempts + 1, throttles)
        for (gen_id, _, attempts, throttles, _), token in zip(chosen, tokens, strict=True)
    ]
    for task, row in zip(tasks, chosen, strict=True):
        task.slot = row[4]
    return _promoted(conn, promoted) + tasks


def _promoted(conn: sqlite3.Connection, promoted: list[Task]) -> list[Task]:
    """Mark promoted tasks as holding slots, once their transaction has committed (inside
    ``exchange``, which marks them itself after its own commit)."""
    if not conn.in_transaction:
        for task in promoted:
            task.slot = True
    return promoted


def take_slots(
    conn: sqlite3.Connection, config: WorkerConfig, tasks: list[Task], *, clock: Clock = utcnow
) -> list[Task]:
    """Give queued leases pool slots (``slots.taken``); returns those whose lease still holds.

    Called for tasks already running in slots of this worker's finished calls (recorded in
    the same transaction), and by ``claim`` for promotions it has checked against capacity.
    """
    if not tasks:
        return []
    tokens = _held_tokens(conn, [task.gen_id for task in tasks])
    taken = [task for task in tasks if tokens.get(task.gen_id) == task.token]
    if taken:
        append(
            conn,
            [ev.SlotsTaken(worker=config.name, leases=[[t.gen_id, t.token] for t in taken])],
            actor=f"worker:{config.name}",
            clock=clock,
        )
    return taken


def _reap(gen_id: str, token: int, owner: str, counted: int, config: WorkerConfig) -> ev.Event:
    """An expired lease makes its task claimable again, unless that was its last attempt:
    a task whose worker dies (or stalls) every time is a poison pill, and fails."""
    if counted < config.max_attempts:
        return ev.LeaseExpired(gen_id=gen_id, token=token, worker=owner)
    return ev.AttemptFailed(
        gen_id=gen_id,
        token=token,
        state="error",
        error=(
            f"the lease of worker {owner} expired on attempt {counted} of"
            f" {config.max_attempts}: the worker died or stalled while running it, every"
            " time (see the workers' logs); gave up"
        ),
        retryable=True,
        final=True,
    )


def default_pool_limit(pool: str) -> int:
    """A pool's limit until one is set: 16, or 1024 for the offline and copy pools."""
    return DEFAULT_POOL_LIMITS.get(pool, DEFAULT_POOL_LIMIT)


def _pool_slots(conn: sqlite3.Connection) -> dict[str, tuple[int, int]]:
    """pool -> (limit, slots held), for every pool with a set limit or a slot held."""
    limits = {pool: limit for pool, limit in conn.execute('SELECT pool, "limit" FROM pools')}
    held = dict(
        conn.execute(
            "SELECT pool, count(*) FROM generations WHERE status = 'running' AND slot = 1"
            " GROUP BY pool"
        )
    )
    return {p: (limits.get(p, default_pool_limit(p)), held.get(p, 0)) for p in set(limits) | set(held)}


def _pool_capacity(conn: sqlite3.Connection) -> dict[str, int]:
    """pool -> free slots (negative when a cut left the pool over its limit)."""
    return {pool: limit - held for pool, (limit, held) in _pool_slots(conn).items()}


_TEMPLATE_CACHE: dict[str, dict[str, Any]] = {}
_MODEL_CACHE: dict[tuple[str, str], dict[str, Any]] = {}
_CONCEPT_CACHE: dict[str, list[Any]] = {}


def _clear_caches() -> None:
    """A forked worker (``launch.Forked``) reads its own database: none of the rows this
    process cached from whichever database it read before (combos are cached by id)."""
    _TEMPLATE_CACHE.clear()
    _MODEL_CACHE.clear()
    _CONCEPT_CACHE.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_clear_caches)


@dataclass(frozen=True)
class _Concept:
    concept_id: str
    name: str
    descriptions: dict[str, str]


def _load_task(
    conn: sqlite3.Connection, gen_id: str, token: int, attempt: int, throttles: int
) -> Task:
    g = conn.execute(
        "SELECT g.stage, g.mode, g.pool, g.template_id, g.template_version, g.model_id,"
        " g.parent_gen_id, g.combo_id, g.replicate, x.text, g.releases"
        " FROM generations g"
        " LEFT JOIN generations p ON p.gen_id = g.parent_gen_id"
        " LEFT JOIN texts x ON x.hash = p.parsed_hash WHERE g.gen_id = ?",
        (gen_id,),
    ).fetchone()
    stage, mode, pool, template_id, version, model_id, parent, combo, replicate = g[:9]
    parent_text, released = g[9], g[10]
    template = _TEMPLATE_CACHE.get(version) if version else _missing_template(version)
    if template is None:
        row = conn.execute(
            "SELECT v.parser, v.generator, v.scale_min, v.scale_max, v.settings, x.text"
            " FROM template_versions v LEFT JOIN texts x ON x.hash = v.body_hash"
            " WHERE v.version = ?",
            (version,),
        ).fetchone()
        if row is None:  # a template version the catalog no longer has
            template = _missing_template(version)
        else:
            template = {
                "parser": row[0],
                "generator": row[1],
                "scale": (row[2], row[3]) if row[3] is not None else None,
                "settings": json.loads(row[4]),
                "body": row[5],
                "version": version,
            }
            _TEMPLATE_CACHE[version] = template
    model = _model(conn, model_id) if model_id else None
    concepts: list[Any] = []
    if combo and (stage == "draft" or (stage == "essay" and parent is None)):
        concepts = _combo_concepts(conn, combo)
    return Task(
        gen_id=gen_id,
        token=token,
        attempt=attempt,
        throttles=throttles,
        stage=stage,
        mode=mode,
        pool=pool,
        template_id=template_id,
        template=template,
        model=model,
        parent_gen_id=parent,
        parent_text=parent_text,
        combo_id=combo,
        concepts=concepts,
        replicate=replicate,
        released=released,
    )


def _model(conn: sqlite3.Connection, model_id: str) -> dict[str, Any]:
    """A catalog model as a worker calls it (cached per model version)."""
    row = conn.execute(
        "SELECT version, provider, provider_model, price_input, price_output, settings"
        " FROM models WHERE model_id = ?",
        (model_id,),
    ).fetchone()
    key = (model_id, row[0])
    model = _MODEL_CACHE.get(key)
    if model is None:
        model = {
            "model_id": model_id,
            "provider": row[1],
            "provider_model": row[2],
            "price_input": row[3],
            "price_output": row[4],
            "settings": json.loads(row[5]),
        }
        _MODEL_CACHE[key] = model
    return model


def _unfinished(cohort: str | None, pools: tuple[str, ...]) -> tuple[str, list[Any]]:
    """WHERE clause (over ``generations g``) and parameters: the generations a worker of
    ``cohort`` (all: None) and ``pools`` (all: empty) could still run."""
    sql = "g.status IN ('ready', 'running', 'waiting')"
    params: list[Any] = []
    if pools:
        sql += f" AND g.pool IN ({', '.join('?' * len(pools))})"
        params.extend(pools)
    if cohort:
        sql += (
            " AND EXISTS (SELECT 1 FROM cohort_members m"
            " WHERE m.cohort_id = ? AND m.gen_id = g.gen_id)"
        )
        params.append(cohort)
    return sql, params


def remaining_models(
    conn: sqlite3.Connection, cohort: str | None, pools: tuple[str, ...] = ()
) -> list[dict[str, Any]]:
    """The models that the cohort's unfinished model calls (all cohorts': None; only in
    ``pools``, if given) will use."""
    where, params = _unfinished(cohort, pools)
    sql = (
        "SELECT DISTINCT g.model_id FROM generations g"
        f" WHERE {where} AND g.mode = 'llm' AND g.model_id IS NOT NULL ORDER BY 1"
    )
    return [_model(conn, model_id) for (model_id,) in conn.execute(sql, params)]


def _missing_template(version: str | None) -> dict[str, Any]:
    return {
        "parser": "identity",
        "generator": "llm",
        "scale": None,
        "settings": {},
        "body": None,
        "version": version,
        "missing": True,
    }


def _combo_concepts(conn: sqlite3.Connection, combo_id: str) -> list[Any]:
    cached = _CONCEPT_CACHE.get(combo_id)
    if cached is not None:
        return cached
    level = conn.execute("SELECT level FROM combos WHERE combo_id = ?", (combo_id,)).fetchone()[0]
    concepts = []
    for concept_id, name in conn.execute(
        "SELECT c.concept_id, c.name FROM combo_concepts cc JOIN concepts c USING (concept_id)"
        " WHERE cc.combo_id = ? ORDER BY cc.position",
        (combo_id,),
    ):
        descriptions = dict(
            conn.execute(
                "SELECT d.level, x.text FROM concept_descriptions d JOIN texts x"
                " ON x.hash = d.text_hash WHERE d.concept_id = ?",
                (concept_id,),
            )
        )
        concepts.append(_Concept(concept_id, name, descriptions))
    result = [level, concepts]
    _CONCEPT_CACHE[combo_id] = result
    return result


def record(
    conn: sqlite3.Connection,
    outcomes: list[Outcome],
    config: WorkerConfig,
    *,
    clock: Clock = utcnow,
    signals: dict[str, Any] | None = None,
    leases: dict[str, tuple[int, int]] | None = None,
) -> tuple[int, int]:
    """Record outcomes in one transaction; a stale token writes nothing for its task.

    ``leases``: the tasks' running leases (``_running_leases``) when the caller has just
    read them in the same transaction. Returns (recorded, stale).
    """
    actor = f"worker:{config.name}"
    recorded = stale = 0
    with transaction(conn):
        now = clock()
        ids = [o.task.gen_id for o in outcomes]
        if leases is None:
            leases = _running_leases(conn, ids)
        held = {gen_id: token for gen_id, (token, _) in leases.items()}
        texts: dict[str, str] = {}
        events: list[ev.Event] = []
        for outcome in outcomes:
            task = outcome.task
            if held.get(task.gen_id) != task.token:
                stale += 1
                continue
            texts.update(outcome.texts)
            events.extend(_retry_from(now, outcome))
            recorded += 1
        put_hashed_texts(conn, texts.items())
        append(conn, events, actor=actor, clock=lambda: now)
        _adapt_pools(conn, outcomes, actor, clock, signals if signals is not None else {})
    return recorded, stale


def _retry_from(now: datetime, outcome: Outcome) -> list[ev.Event]:
    """The outcome's events, with retry_at set for a recording at ``now``."""
    ready = outcome.ready_at(now)
    if ready is None:
        return outcome.events
    retry_at = isoformat(ready)
    return [
        e.model_copy(update={"retry_at": retry_at})
        if isinstance(e, (ev.AttemptFailed, ev.AttemptThrottled))
        else e
        for e in outcome.events
    ]


def _running_leases(conn: sqlite3.Connection, gen_ids: list[str]) -> dict[str, tuple[int, int]]:
    """gen_id -> (token, slot) of its current lease, for the running tasks among ``gen_ids``."""
    leases: dict[str, tuple[int, int]] = {}
    for start in range(0, len(gen_ids), 500):
        part = gen_ids[start : start + 500]
        marks = ", ".join("?" for _ in part)
        for gen_id, token, slot in conn.execute(
            "SELECT gen_id, lease_token, slot FROM generations"
            f" WHERE status = 'running' AND gen_id IN ({marks})",
            part,
        ):
            leases[gen_id] = (token, slot)
    return leases


def _held_tokens(conn: sqlite3.Connection, gen_ids: list[str]) -> dict[str, int]:
    """gen_id -> the token of its current lease, for the running tasks among ``gen_ids``."""
    return {gen_id: token for gen_id, (token, _) in _running_leases(conn, gen_ids).items()}


@dataclass
class Exchanged:
    recorded: int
    stale: int
    tasks: list[Task]  # promoted queued tasks first (the same objects), then new claims
    lost: set[str] = field(default_factory=set)  # queued/taken leases no longer held
    # pool -> slots this worker should give up as its calls end: the pool holds more slots
    # than its limit (the limit was cut); this worker's share of the excess.
    shed: dict[str, int] = field(default_factory=dict)
    # taken tasks refused a slot (none was freed for them and the pool had no room): the
    # worker stops their calls and gives their leases back.
    untaken: set[str] = field(default_factory=set)


def exchange(
    conn: sqlite3.Connection,
    outcomes: list[Outcome],
    config: WorkerConfig,
    limit: int,
    *,
    clock: Clock = utcnow,
    signals: dict[str, Any] | None = None,
    taken: list[Task] | None = None,
    queue: int = 0,
    held: dict[str, int] | None = None,
    promote: list[Task] | None = None,
    queued: list[Task] | None = None,
    shedding: dict[str, int] | None = None,
    running: list[Task] | None = None,
) -> Exchanged:
    """Record finished outcomes, hand their slots on, and claim, in ONE transaction.

    ``taken``: queued tasks that started calls in the slots of finished ones (the slots
    pass from the outcomes to them here, so the pool's count never drops below the calls
    really in flight). ``queue``, ``held``, ``promote``: as ``claim``; ``shedding``: the
    slots per pool the worker is letting go (no new queued leases where that is all of
    them). ``queued``: the
    worker's other queued leases; ``running``: calls in flight to check as well (now and
    then). ``lost`` in the result names those tasks and the taken ones whose leases no
    longer hold (a cancelled cohort, an expired lease): the worker drops or stops them.
    """
    # The rate-limit signals move only with a committed record: a rolled-back write keeps
    # its outcomes for the next one, which must not count them twice.
    pending = {pool: signal_.copy() for pool, signal_ in (signals or {}).items()}
    with transaction(conn):
        leases = _running_leases(conn, [o.task.gen_id for o in outcomes])
        freed = _slots_freed(outcomes, leases)
        recorded, stale = (
            record(conn, outcomes, config, clock=clock, signals=pending, leases=leases)
            if outcomes
            else (0, 0)
        )
        # A hand-over needs a slot to hand over: a recorded outcome's that held one, or room
        # in the pool (an outcome whose lease had expired and been reaped frees nothing).
        # ``room`` is counted after the recording, so it already includes the freed slots:
        # every hand-over uses up room too (it may go below zero after a limit cut, when a
        # freed slot is handed on regardless: the shed shares bring the pool down).
        room = _pool_capacity(conn) if taken else {}
        accepted, untaken = [], set()
        for task in taken or []:
            left = room.get(task.pool, default_pool_limit(task.pool))
            if freed.get(task.pool, 0) > 0:
                freed[task.pool] -= 1
            elif left <= 0:
                untaken.add(task.gen_id)
                continue
            room[task.pool] = left - 1
            accepted.append(task)
        take_slots(conn, config, accepted, clock=clock)
        # Queue only where the worker may still start calls (not where it sheds them all).
        usable = {p: n - (shedding or {}).get(p, 0) for p, n in (held or {}).items()}
        tasks = (
            claim(conn, config, limit, clock=clock, queue=queue, held=usable, promote=promote)
            if limit > 0 or queue > 0
            else []
        )
        lost = set()
        check = [*(queued or []), *(taken or []), *(running or [])]
        if check:
            tokens = _held_tokens(conn, [task.gen_id for task in check])
            lost = {task.gen_id for task in check if tokens.get(task.gen_id) != task.token}
        shed = _excess_shares(conn, held) if held else {}
        if outcomes:
            fail_point("before_commit")
            crash_point("before_commit")
    for task in promote or []:  # only now that the transaction has committed
        if any(t is task for t in tasks):
            task.slot = True
    if signals is not None:
        signals.update(pending)
    return Exchanged(recorded, stale, tasks, lost, shed, untaken - lost)


def _slots_freed(outcomes: list[Outcome], leases: dict[str, tuple[int, int]]) -> dict[str, int]:
    """pool -> slots that recording ``outcomes`` frees (outcomes whose lease, still held,
    holds a slot); ``leases`` as ``_running_leases``."""
    freed: dict[str, int] = {}
    for outcome in outcomes:
        token, slot = leases.get(outcome.task.gen_id, (None, 0))
        if token == outcome.task.token and slot:
            freed[outcome.task.pool] = freed.get(outcome.task.pool, 0) + 1
    return freed


def _excess_shares(conn: sqlite3.Connection, held: dict[str, int]) -> dict[str, int]:
    """Pools holding more slots than their limit -> this worker's share of the excess.

    Slots passed from a finished call to a queued task ignore the limit (the task is
    already calling), so after a cut a pool can be over it; each worker then lets its
    share of the excess go as its calls end (rounded up), and the pool comes down to the
    limit without any call being interrupted. ``held``: the worker's slots per pool.
    """
    shares: dict[str, int] = {}
    for pool, (limit, total) in _pool_slots(conn).items():
        mine = min(held.get(pool, 0), total)
        if total > limit and mine > 0:
            shares[pool] = -(-(total - limit) * mine // total)  # ceil(excess * mine / total)
    return shares


class _PoolSignal:
    """What one worker saw of a pool's recent calls: a window of rate-limited or not."""

    __slots__ = ("window", "successes")

    def __init__(self) -> None:
        self.window: deque[bool] = deque()
        self.successes = 0

    def copy(self) -> _PoolSignal:
        twin = _PoolSignal()
        twin.window, twin.successes = deque(self.window), self.successes
        return twin

    def add(self, limited: bool, size: int) -> None:
        self.window.append(limited)
        while len(self.window) > size:
            self.window.popleft()

    @property
    def limited_share(self) -> float:
        return sum(self.window) / len(self.window) if self.window else 0.0


def _adapt_pools(conn, outcomes, actor, clock, signals: dict[str, Any]) -> None:
    """Adapt pool limits to rate limiting (AIMD), recording every change as an event.

    Cut by a quarter (at most once per second per pool) when more than ``CUT_SHARE`` of the
    pool's recent calls (a full window of the last ``2 x limit``) were answered
    429: a provider rejecting a
    share of calls that does not grow with concurrency is paced by Retry-After alone (the
    429s come back fast and their tasks wait), while a pool over its provider's limit sees
    most calls rejected and is cut. Grow by one per ``limit`` successes, up to the ceiling.
    """
    calls = [o for o in outcomes if o.task.mode == "llm" and (o.ok or o.throttled)]
    if not calls:
        return
    changes = []
    now = clock()
    for pool in {o.task.pool for o in calls}:
        row = conn.execute(
            'SELECT "limit", ceiling, changed_at FROM pools WHERE pool = ?', (pool,)
        ).fetchone()
        limit, ceiling, changed_at = (
            row if row else (default_pool_limit(pool), default_pool_limit(pool), None)
        )
        signal_ = signals.setdefault(pool, _PoolSignal())
        for o in calls:
            if o.task.pool == pool:
                signal_.add(o.throttled, max(10, 2 * limit))
                signal_.successes += o.ok
        recent = (
            changed_at is not None
            and (now - _parse_time(changed_at)).total_seconds() < CUT_COOLDOWN_S
        )
        enough = len(signal_.window) >= max(10, 2 * limit)  # a full window: 429s come back first
        if enough and signal_.limited_share > CUT_SHARE and not recent and limit > 1:
            share = signal_.limited_share
            signal_.window.clear()
            signal_.successes = 0
            changes.append(
                ev.PoolLimitChanged(
                    pool=pool,
                    limit=max(1, int(limit * 0.75)),
                    ceiling=ceiling,
                    reason=f"cut: rate limited (429 on {share:.0%} of recent calls)",
                )
            )
        elif signal_.successes >= limit and limit < ceiling and not any(signal_.window):
            signal_.successes = 0
            changes.append(
                ev.PoolLimitChanged(
                    pool=pool,
                    limit=limit + 1,
                    ceiling=ceiling,
                    reason=f"grow: {limit} calls without 429",
                )
            )
    if changes:
        append(conn, changes, actor=actor, clock=clock)


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def set_pool_limit(conn: sqlite3.Connection, pool: str, limit: int, *, actor: str = "cli") -> bool:
    """Set a pool's concurrency limit and ceiling; returns False when already set so."""
    with transaction(conn):
        row = conn.execute('SELECT "limit", ceiling FROM pools WHERE pool = ?', (pool,)).fetchone()
        if row and row[1] == limit:
            return False
        append(
            conn,
            [ev.PoolLimitChanged(pool=pool, limit=limit, ceiling=limit, reason="set by user")],
            actor=actor,
        )
    return True


def release(conn: sqlite3.Connection, tasks: list[Task], reason: str, *, actor: str) -> int:
    """Give leases back (clean shutdown); only leases still held are released."""
    with transaction(conn):
        held = _held_tokens(conn, [task.gen_id for task in tasks])
        events = [
            ev.LeaseReleased(gen_id=task.gen_id, token=task.token, reason=reason)
            for task in tasks
            if held.get(task.gen_id) == task.token
        ]
        append(conn, events, actor=actor)
    return len(events)


def heartbeat(
    conn: sqlite3.Connection, config: WorkerConfig, tasks: list[Task], *, clock: Clock = utcnow
) -> set[str]:
    """Extend our leases; returns the gen ids whose lease we no longer hold."""
    if not tasks:
        return set()
    now = clock()
    with transaction(conn):
        tokens = _held_tokens(conn, [task.gen_id for task in tasks])
        held = [[t.gen_id, t.token] for t in tasks if tokens.get(t.gen_id) == t.token]
        lost = {t.gen_id for t in tasks if tokens.get(t.gen_id) != t.token}
        if held:
            append(
                conn,
                [
                    ev.LeasesExtended(
                        worker=config.name,
                        leases=held,
                        lease_expires_at=isoformat(now + timedelta(seconds=config.lease_s)),
                    )
                ],
                actor=f"worker:{config.name}",
                clock=clock,
            )
        fail_point("heartbeat")
        crash_point("heartbeat")
    return lost


def has_pending(
    conn: sqlite3.Connection, cohort: str | None, pools: tuple[str, ...] = ()
) -> bool:
    """Is there anything left that a worker (of ``pools``, if given) could eventually run?"""
    where, params = _unfinished(cohort, pools)
    sql = f"SELECT 1 FROM generations g WHERE {where} LIMIT 1"
    return conn.execute(sql, params).fetchone() is not None
