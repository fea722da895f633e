"""Leases: the queue's database side (claim, record, heartbeat, release).

A claim appends ``attempt.started`` for each task it takes, in one short ``BEGIN
IMMEDIATE`` transaction; the event's id is the attempt's fencing token. A result is
recorded only while the task still carries that token, so a worker whose lease expired and
whose task was taken over writes nothing. Expired leases are reaped by whichever worker
claims next. A queued lease holds no pool slot until ``take_slots`` gives it the slot of
a finished call of its worker, in the transaction that records that call's result, so a
pool's count never falls below the calls in flight (``pools``). Everything here is a
plain function of a connection, the claiming worker and a clock, so tests drive it
directly with a fixed clock.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta
from typing import Any

from daydream import events as ev
from daydream.clock import Clock, isoformat, utcnow
from daydream.crashpoints import crash_point, fail_point
from daydream.db.log import append
from daydream.db.transaction import transaction
from daydream.queue.budget import Budget
from daydream.queue.health import read_health, record_health
from daydream.queue.pools import adapt_pools, default_pool_limit, excess_shares, pool_capacity
from daydream.queue.protocol import Claimant, Exchange, Exchanged
from daydream.queue.storing import store_outcomes
from daydream.queue.tasks import Outcome, Task, load_task

__all__ = ["Claimant", "Exchange", "Exchanged", "claim", "exchange", "heartbeat", "record"]


def claim(
    conn: sqlite3.Connection,
    config: Claimant,
    limit: int,
    *,
    clock: Clock = utcnow,
    queue: int = 0,
    held: dict[str, int] | None = None,
    promote: list[Task] | None = None,
    skip: tuple[tuple[str, ...], tuple[str, ...]] = ((), ()),
    budget: Budget | None = None,
) -> list[Task]:
    """Claim up to ``limit`` ready tasks in one transaction (reaping expired leases first).

    Each claimed task takes a slot of its pool. With ``queue``, up to that many more are
    claimed as queued leases (``Task.slot`` False): they hold no slot, and are taken only in
    pools where the worker will hold slots (``held``: its slots per pool before this claim),
    to start the moment one of its calls ends there. ``promote``: queued leases of this
    worker to give slots to, where the pool has room, before any new task; each promoted
    task comes back first in the result (the same Task object), its ``slot`` set True once
    the transaction has committed (by ``exchange`` when the claim runs inside it).
    ``skip``: (models, pools) whose tasks are not to be claimed (their endpoints are down,
    they are stopped). ``budget``: new tasks are claimed only while the budget's cap holds
    (``Budget.admit``), each reserving the most its call can cost.
    """
    now = clock()
    expires = isoformat(now + timedelta(seconds=config.lease_s))
    actor = f"worker:{config.name}"
    with transaction(conn):
        _reap_expired(conn, config, now)
        capacity = pool_capacity(conn)
        promoted = _promote(conn, config, promote or [], capacity, limit, now) if limit > 0 else []
        holding = {pool for pool, n in (held or {}).items() if n > 0}
        holding.update(task.pool for task in promoted)
        chosen = _choose(
            conn, config, limit - len(promoted), queue, capacity, holding, now, skip
        )
        tasks = [load_task(conn, g, 0, attempts + 1, throttles) for g, _, attempts, throttles, _ in chosen]
        for task, row in zip(tasks, chosen, strict=True):
            task.slot = row[4]
        reserved: list[float | None] = [None] * len(tasks)
        if budget is not None:
            reserved = list(budget.admit(conn, tasks))
            tasks = tasks[: len(reserved)]
        started = [
            ev.AttemptStarted(
                gen_id=task.gen_id,
                attempt=task.attempt,
                worker=config.name,
                lease_expires_at=expires,
                queued=not task.slot,
                reserved_usd=cost,
            )
            for task, cost in zip(tasks, reserved, strict=True)
        ]
        tokens = append(conn, started, actor=actor, clock=lambda: now) if started else []
    for task, token in zip(tasks, tokens, strict=True):
        task.token = token
    return _promoted(conn, promoted) + tasks


def _reap_expired(conn: sqlite3.Connection, config: Claimant, now: datetime) -> None:
    """Expired leases make their tasks claimable again (or fail them: ``_reap``)."""
    expired = conn.execute(
        "SELECT gen_id, lease_token, lease_owner, attempts - throttles - releases - deferrals"
        " FROM generations"
        " WHERE status = 'running' AND lease_expires_at < ? LIMIT 1000",
        (isoformat(now),),
    ).fetchall()
    if expired:
        append(
            conn,
            [_reap(g, t, o or "?", counted, config) for g, t, o, counted in expired],
            actor=f"worker:{config.name}",
            clock=lambda: now,
        )
        crash_point("reap")


def _promote(
    conn: sqlite3.Connection,
    config: Claimant,
    promote: list[Task],
    capacity: dict[str, int],
    limit: int,
    now: datetime,
) -> list[Task]:
    """The queued leases of ``promote`` that still hold and whose pool has room, given
    slots (at most ``limit``); ``capacity`` loses the slots they take."""
    if not promote:
        return []
    promoted: list[Task] = []
    still_held = _held_tokens(conn, [task.gen_id for task in promote])
    for task in promote:
        room = capacity[task.pool] if task.pool in capacity else default_pool_limit(task.pool)
        if room > 0 and still_held.get(task.gen_id) == task.token and len(promoted) < limit:
            capacity[task.pool] = room - 1
            promoted.append(task)
    take_slots(conn, config, promoted, clock=lambda: now)
    return promoted


def _choose(
    conn: sqlite3.Connection,
    config: Claimant,
    limit: int,
    queue: int,
    capacity: dict[str, int],
    holding: set[str],
    now: datetime,
    skip: tuple[tuple[str, ...], tuple[str, ...]] = ((), ()),
) -> list[tuple[str, str, int, int, bool]]:
    """Ready tasks to claim: up to ``limit`` into free slots (``capacity`` loses them) and
    up to ``queue`` queued in pools the worker holds slots in (``holding`` grows with the
    pools it claims into); (gen_id, pool, attempts, throttles, slot) each. None of the
    models or pools in ``skip``."""
    skip_models, skip_pools = skip
    full = sorted(
        {pool for pool, room in capacity.items() if room <= 0 and not (queue and pool in holding)}
        | set(skip_pools)
    )
    sql = (
        "SELECT t.gen_id, t.pool, t.attempts, t.throttles FROM generations t"
        " WHERE t.status = 'ready' AND (t.not_before IS NULL OR t.not_before <= ?)"
    )
    params: list[Any] = [isoformat(now)]
    if config.pools:
        sql += f" AND t.pool IN ({', '.join('?' for _ in config.pools)})"
        params.extend(config.pools)
    if full:
        sql += f" AND t.pool NOT IN ({', '.join('?' for _ in full)})"
        params.extend(full)
    if skip_models:  # a copy has no model: NULL NOT IN (...) would drop it
        marks = ", ".join("?" for _ in skip_models)
        sql += f" AND (t.model_id IS NULL OR t.model_id NOT IN ({marks}))"
        params.extend(skip_models)
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
    return chosen


def _promoted(conn: sqlite3.Connection, promoted: list[Task]) -> list[Task]:
    """Mark promoted tasks as holding slots, once their transaction has committed (inside
    ``exchange``, which marks them itself after its own commit)."""
    if not conn.in_transaction:
        for task in promoted:
            task.slot = True
    return promoted


def take_slots(
    conn: sqlite3.Connection, config: Claimant, tasks: list[Task], *, clock: Clock = utcnow
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


def _reap(gen_id: str, token: int, owner: str, counted: int, config: Claimant) -> ev.Event:
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


def record(
    conn: sqlite3.Connection,
    outcomes: list[Outcome],
    config: Claimant,
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
    with transaction(conn):
        now = clock()
        ids = [o.task.gen_id for o in outcomes]
        if leases is None:
            leases = _running_leases(conn, ids)
        held = {gen_id: token for gen_id, (token, _) in leases.items()}
        kept = [o for o in outcomes if held.get(o.task.gen_id) == o.task.token]
        recorded, stale = len(kept), len(outcomes) - len(kept)
        # An outcome the database refuses is stored as its failure; the rest as usual.
        store_outcomes(conn, kept, now=now, actor=actor)
        adapt_pools(conn, outcomes, actor, clock, signals if signals is not None else {})
    return recorded, stale


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


def exchange(
    conn: sqlite3.Connection,
    config: Claimant,
    request: Exchange,
    *,
    clock: Clock = utcnow,
    signals: dict[str, Any] | None = None,
) -> Exchanged:
    """Record finished outcomes, hand their slots on, and claim, in ONE transaction.

    The slots of the recorded outcomes pass to ``request.taken`` (queued tasks already
    calling in them), so a pool's count never drops below the calls really in flight.
    ``lost`` in the result names the checked tasks (queued, taken, running) whose leases no
    longer hold (a cancelled cohort, an expired lease): the worker drops or stops them.
    ``signals``: the worker's view of each pool's recent calls (``pools.adapt_pools``).
    ``request.health`` is recorded before the claim, which skips stopped pools and
    ``request.skip_models``; the result says which endpoints are down and pools stopped.
    """
    outcomes = request.outcomes
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
        untaken = _hand_over(conn, config, request.taken, freed, clock)
        if request.health:
            record_health(conn, request.health, actor=f"worker:{config.name}", clock=clock)
        down, stopped = read_health(conn)
        # Queue only where the worker may still start calls (not where it sheds them all).
        usable = {p: n - request.shedding.get(p, 0) for p, n in request.held.items()}
        tasks = (
            claim(
                conn,
                config,
                request.want,
                clock=clock,
                queue=request.queue,
                held=usable,
                promote=request.promote,
                skip=(request.skip_models, (*request.skip_pools, *stopped)),
                budget=request.budget,
            )
            if request.want > 0 or request.queue > 0
            else []
        )
        lost = set()
        check = [*request.queued, *request.taken, *request.running]
        if check:
            tokens = _held_tokens(conn, [task.gen_id for task in check])
            lost = {task.gen_id for task in check if tokens.get(task.gen_id) != task.token}
        shed = excess_shares(conn, request.held) if request.held else {}
        if outcomes:
            fail_point("before_commit")
            crash_point("before_commit")
    for task in request.promote:  # only now that the transaction has committed
        if any(t is task for t in tasks):
            task.slot = True
    if signals is not None:
        signals.update(pending)
    return Exchanged(recorded, stale, tasks, lost, shed, untaken - lost, down, stopped)


def _hand_over(
    conn: sqlite3.Connection,
    config: Claimant,
    taken: list[Task],
    freed: dict[str, int],
    clock: Clock,
) -> set[str]:
    """Give ``taken`` tasks the slots the recording freed (``freed``: pool -> slots), or
    room in their pool; returns the gen ids of those refused a slot.

    A hand-over needs a slot to hand over: a recorded outcome's that held one, or room in
    the pool (an outcome whose lease had expired and been reaped frees nothing). ``room`` is
    counted after the recording, so it already includes the freed slots: every hand-over
    uses up room too (it may go below zero after a limit cut, when a freed slot is handed
    on regardless: the shed shares bring the pool down).
    """
    room = pool_capacity(conn) if taken else {}
    accepted, untaken = [], set()
    for task in taken:
        left = room.get(task.pool, default_pool_limit(task.pool))
        if freed.get(task.pool, 0) > 0:
            freed[task.pool] -= 1
        elif left <= 0:
            untaken.add(task.gen_id)
            continue
        room[task.pool] = left - 1
        accepted.append(task)
    take_slots(conn, config, accepted, clock=clock)
    return untaken


def _slots_freed(outcomes: list[Outcome], leases: dict[str, tuple[int, int]]) -> dict[str, int]:
    """pool -> slots that recording ``outcomes`` frees (outcomes whose lease, still held,
    holds a slot); ``leases`` as ``_running_leases``."""
    freed: dict[str, int] = {}
    for outcome in outcomes:
        token, slot = leases.get(outcome.task.gen_id, (None, 0))
        if token == outcome.task.token and slot:
            freed[outcome.task.pool] = freed.get(outcome.task.pool, 0) + 1
    return freed


def release(
    conn: sqlite3.Connection, tasks: list[Task], reason: str, *, actor: str, clock: Clock = utcnow
) -> int:
    """Give leases back (clean shutdown); only leases still held are released."""
    with transaction(conn):
        held = _held_tokens(conn, [task.gen_id for task in tasks])
        events = [
            ev.LeaseReleased(gen_id=task.gen_id, token=task.token, reason=reason)
            for task in tasks
            if held.get(task.gen_id) == task.token
        ]
        append(conn, events, actor=actor, clock=clock)
    return len(events)


def heartbeat(
    conn: sqlite3.Connection, config: Claimant, tasks: list[Task], *, clock: Clock = utcnow
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
