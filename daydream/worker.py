"""The worker: claim ready tasks by lease, run one stage each, record the result.

One worker is one process running an asyncio loop: a batch of tasks is claimed in one short
``BEGIN IMMEDIATE`` transaction, up to ``concurrency`` stages run at once (render -> model
call or copy -> validate -> parse), and results are recorded in small group commits.

Invariants:

- A claim appends ``attempt.started``; the event id is the attempt's fencing token. A
  result is recorded only if the task still carries that token (a worker whose lease
  expired, and whose task was claimed by someone else, writes nothing).
- Pool limits hold across processes: a claim counts running tasks of each pool inside the
  claim transaction. 429s cut a pool's limit (at most once per second), successes grow it
  back towards its ceiling; each change is a ``pool.limit_changed`` event.
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
import json
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
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from . import events as ev
from .errors import DaydreamError, ParseError, ProviderError, TemplateError
from .parsers import parse_output, validate_output
from .prompts import concept_contents, render_prompt, stage_variables
from .providers import (
    CompletionRequest,
    OfflineProvider,
    backoff_delay,
    make_provider,
    resolve_provider_config,
)
from .store import (
    Clock,
    append,
    connect,
    isoformat,
    put_hashed_texts,
    text_hash,
    transaction,
    utcnow,
)

DEFAULT_LEASE_S = 120.0
DEFAULT_MAX_ATTEMPTS = 3
MAX_THROTTLES = 100
DEFAULT_POOL_LIMITS = {"offline": 1024, "copy": 1024}
DEFAULT_POOL_LIMIT = 16
DEFAULT_MIN_LINES = {"draft": 3}
CUT_COOLDOWN_S = 1.0
CUT_SHARE = 0.4  # cut a pool when more than this share of its recent calls got 429


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
    seed: int | None = None

    def __post_init__(self) -> None:
        if not self.name:
            self.name = f"{socket.gethostname()}:{os.getpid()}"


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


@dataclass
class Outcome:
    task: Task
    events: list[ev.Event]
    ok: bool
    throttled: bool = False
    texts: dict[str, str] = field(default_factory=dict)  # hash -> text, stored with the events


# -- claiming -----------------------------------------------------------------------------


def claim(
    conn: sqlite3.Connection,
    config: WorkerConfig,
    limit: int,
    *,
    clock: Clock = utcnow,
) -> list[Task]:
    """Claim up to ``limit`` ready tasks in one transaction (reaping expired leases first)."""
    now = clock()
    now_s = isoformat(now)
    expires = isoformat(now + timedelta(seconds=config.lease_s))
    actor = f"worker:{config.name}"
    with transaction(conn):
        expired = conn.execute(
            "SELECT gen_id, lease_token, lease_owner, attempts - throttles - releases FROM tasks"
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
        capacity = _pool_capacity(conn)
        full = sorted(pool for pool, room in capacity.items() if room <= 0)
        sql = (
            "SELECT t.gen_id, t.pool, t.attempts, t.throttles FROM tasks t"
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
        sql += " ORDER BY t.rowid LIMIT ?"
        params.append(limit * 4)
        chosen: list[tuple[str, str, int, int]] = []
        for gen_id, pool, attempts, throttles in conn.execute(sql, params):
            room = capacity[pool] if pool in capacity else _default_limit(pool)
            if room <= 0:
                continue
            capacity[pool] = room - 1
            chosen.append((gen_id, pool, attempts, throttles))
            if len(chosen) >= limit:
                break
        if not chosen:
            return []
        started = [
            ev.AttemptStarted(
                gen_id=gen_id, attempt=attempts + 1, worker=config.name, lease_expires_at=expires
            )
            for gen_id, _, attempts, _ in chosen
        ]
        tokens = append(conn, started, actor=actor, clock=lambda: now)
    return [
        _load_task(conn, gen_id, token, attempts + 1, throttles)
        for (gen_id, _, attempts, throttles), token in zip(chosen, tokens, strict=True)
    ]


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


def _default_limit(pool: str) -> int:
    return DEFAULT_POOL_LIMITS.get(pool, DEFAULT_POOL_LIMIT)


def _pool_capacity(conn: sqlite3.Connection) -> dict[str, int]:
    limits = {pool: limit for pool, limit in conn.execute('SELECT pool, "limit" FROM pools')}
    running = dict(
        conn.execute("SELECT pool, count(*) FROM tasks WHERE status = 'running' GROUP BY pool")
    )
    pools = set(limits) | set(running)
    return {p: limits.get(p, _default_limit(p)) - running.get(p, 0) for p in pools}


_TEMPLATE_CACHE: dict[str, dict[str, Any]] = {}
_MODEL_CACHE: dict[tuple[str, str], dict[str, Any]] = {}
_CONCEPT_CACHE: dict[str, list[Any]] = {}


@dataclass(frozen=True)
class _Concept:
    concept_id: str
    name: str
    descriptions: dict[str, str]


def _load_task(
    conn: sqlite3.Connection, gen_id: str, token: int, attempt: int, throttles: int
) -> Task:
    g = conn.execute(
        "SELECT g.stage, g.mode, t.pool, g.template_id, g.template_version, g.model_id,"
        " g.parent_gen_id, g.combo_id, g.replicate, x.text, t.releases"
        " FROM generations g JOIN tasks t ON t.gen_id = g.gen_id"
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
        if row is None:  # e.g. a legacy generation whose template was never imported
            return _missing_template(version)
        template = {
            "parser": row[0],
            "generator": row[1],
            "scale": (row[2], row[3]) if row[3] is not None else None,
            "settings": json.loads(row[4]),
            "body": row[5],
            "version": version,
        }
        _TEMPLATE_CACHE[version] = template
    model = None
    if model_id:
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


# -- executing ----------------------------------------------------------------------------


class Executor:
    """Runs one claimed task: prompt -> raw -> parsed, returning the events to record."""

    def __init__(
        self, config: WorkerConfig, *, clock: Clock = utcnow, rng: random.Random | None = None
    ):
        self.config = config
        self.clock = clock
        self.rng = rng or random.Random(config.seed)
        self._providers: dict[str, Any] = {}

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
            responded = dict(mode="copy", finish_reason="copy")
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
            try:
                completion = await provider.complete(request)
            except ProviderError as exc:
                return self._provider_failed(task, exc)
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
                gen_id=task.gen_id, token=task.token, prompt_hash=prompt_hash, raw_hash=raw_hash,
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
            return Outcome(task, [event], ok=False, throttled=True)
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
        retry_at = None
        if not final:
            delay = backoff_delay(counted, retry_after=retry_after, rng=self.rng)
            retry_at = isoformat(self.clock() + timedelta(seconds=delay))
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
        return Outcome(task, [event], ok=False)


def _hash(text: str) -> str:
    return text_hash(text)


# -- recording ----------------------------------------------------------------------------


def record(
    conn: sqlite3.Connection,
    outcomes: list[Outcome],
    config: WorkerConfig,
    *,
    clock: Clock = utcnow,
    signals: dict[str, Any] | None = None,
) -> tuple[int, int]:
    """Record outcomes in one transaction; a stale token writes nothing for its task.

    Returns (recorded, stale).
    """
    actor = f"worker:{config.name}"
    recorded = stale = 0
    with transaction(conn):
        held = _held_tokens(conn, [o.task.gen_id for o in outcomes])
        texts: dict[str, str] = {}
        events: list[ev.Event] = []
        for outcome in outcomes:
            task = outcome.task
            if held.get(task.gen_id) != task.token:
                stale += 1
                continue
            texts.update(outcome.texts)
            events.extend(outcome.events)
            recorded += 1
        put_hashed_texts(conn, texts.items())
        append(conn, events, actor=actor, clock=clock)
        _adapt_pools(conn, outcomes, actor, clock, signals if signals is not None else {})
    return recorded, stale


def _held_tokens(conn: sqlite3.Connection, gen_ids: list[str]) -> dict[str, int]:
    """gen_id -> the token of its current lease, for the running tasks among ``gen_ids``."""
    held: dict[str, int] = {}
    for start in range(0, len(gen_ids), 500):
        part = gen_ids[start : start + 500]
        marks = ", ".join("?" for _ in part)
        held.update(
            conn.execute(
                f"SELECT gen_id, lease_token FROM tasks WHERE status = 'running' AND gen_id IN ({marks})",
                part,
            )
        )
    return held


def exchange(
    conn: sqlite3.Connection,
    outcomes: list[Outcome],
    config: WorkerConfig,
    limit: int,
    *,
    clock: Clock = utcnow,
    signals: dict[str, Any] | None = None,
) -> tuple[int, int, list[Task]]:
    """Record finished outcomes and claim up to ``limit`` new tasks in ONE transaction.

    Returns (recorded, stale, claimed tasks).
    """
    with transaction(conn):
        recorded, stale = record(conn, outcomes, config, clock=clock, signals=signals) if outcomes else (0, 0)
        tasks = claim(conn, config, limit, clock=clock) if limit > 0 else []
    return recorded, stale, tasks


class _PoolSignal:
    """What one worker saw of a pool's recent calls: a window of rate-limited or not."""

    __slots__ = ("window", "successes")

    def __init__(self) -> None:
        self.window: deque[bool] = deque()
        self.successes = 0

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
            row if row else (_default_limit(pool), _default_limit(pool), None)
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
    return lost


def has_pending(conn: sqlite3.Connection, cohort: str | None) -> bool:
    """Is there anything left that a worker could eventually run?"""
    sql = "SELECT 1 FROM tasks WHERE status IN ('ready', 'running', 'waiting')"
    params: list[Any] = []
    if cohort:
        sql += (
            " AND EXISTS (SELECT 1 FROM cohort_members m"
            " WHERE m.cohort_id = ? AND m.gen_id = tasks.gen_id)"
        )
        params.append(cohort)
    return conn.execute(sql + " LIMIT 1", params).fetchone() is not None


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
    """The loop around claim -> run -> record, with heartbeats and clean shutdown."""

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
        self._done: list[Outcome] = []
        self._signals: dict[str, Any] = {}

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

    async def run(self) -> WorkerStats:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, self.request_stop)
            except (NotImplementedError, RuntimeError):  # pragma: no cover - not main thread
                pass
        executor = Executor(self.config, clock=self.clock)
        batch = self.config.batch or self.config.concurrency
        idle_sleep = 0.02
        last_beat = time.monotonic()
        try:
            while not self._stopping:
                # One transaction records what finished and claims what fits.
                room = self.config.concurrency - len(self._inflight)
                want = min(room, batch)
                claimed = await self._exchange(want)
                for task in claimed:
                    self.stats.claimed += 1
                    job = asyncio.ensure_future(executor.run(task))
                    job.add_done_callback(self._finished)
                    self._inflight[task.gen_id] = (task, job)
                if time.monotonic() - last_beat > self.config.lease_s / 3:
                    await self._heartbeat()
                    last_beat = time.monotonic()
                if self._inflight:
                    idle_sleep = 0.005
                    await self._wait_some(0.05)
                elif not claimed:
                    if self.config.exit_when_idle and not await self._db_call(
                        has_pending, self.config.cohort
                    ):
                        break
                    await asyncio.sleep(idle_sleep)
                    idle_sleep = min(idle_sleep * 2, 0.5)
            await self._shutdown()
        finally:
            await executor.aclose()
            await self._db_call(lambda conn: conn.close())
            self._conn = None
            self._db.shutdown(wait=True)
        return self.stats

    def _finished(self, job: asyncio.Task) -> None:
        if job.cancelled():
            return
        outcome = job.result()
        self._inflight.pop(outcome.task.gen_id, None)
        self._done.append(outcome)

    async def _wait_some(self, timeout: float) -> None:
        """Wait until a job finishes (at most ``timeout``), then briefly for more to batch."""
        jobs = [job for _, job in self._inflight.values()]
        if not jobs:
            return
        done, pending = await asyncio.wait(jobs, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if done and pending and len(self._done) < len(jobs) // 2:
            await asyncio.wait(pending, timeout=0.002)

    async def _exchange(self, want: int) -> list[Task]:
        outcomes, self._done = self._done, []
        if not outcomes and want <= 0:
            return []
        recorded, stale, claimed = await self._db_call(
            exchange, outcomes, self.config, want, clock=self.clock, signals=self._signals
        )
        self._count(outcomes, recorded, stale)
        return claimed

    async def _flush(self) -> None:
        if not self._done:
            return
        outcomes, self._done = self._done, []
        recorded, stale = await self._db_call(record, outcomes, self.config, clock=self.clock, signals=self._signals)
        self._count(outcomes, recorded, stale)

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
        tasks = [task for task, _ in self._inflight.values()]
        lost = await self._db_call(heartbeat, self.config, tasks, clock=self.clock)
        for gen_id in lost:
            entry = self._inflight.pop(gen_id, None)
            if entry:
                entry[1].cancel()
                self.log(f"lease on {gen_id} lost; abandoning it")

    async def _shutdown(self) -> None:
        deadline = time.monotonic() + (0 if self._stop_now else self.config.grace_s)
        last_beat = time.monotonic()
        while self._inflight and time.monotonic() < deadline and not self._stop_now:
            await self._wait_some(0.1)
            await self._flush()
            if time.monotonic() - last_beat > self.config.lease_s / 3:  # not every 0.1 s
                await self._heartbeat()
                last_beat = time.monotonic()
        await self._flush()
        leftover = [task for task, _ in self._inflight.values()]
        for _, job in self._inflight.values():
            job.cancel()
        self._inflight.clear()
        if leftover:
            self.stats.released += await self._db_call(
                release, leftover, "worker stopped", actor=f"worker:{self.config.name}"
            )


def run_worker(config: WorkerConfig, *, log: Callable[[str], None] | None = None) -> WorkerStats:
    """Run one worker until idle (or stopped by a signal)."""
    if not Path(config.db_path).exists():
        raise DaydreamError(f"database {config.db_path} does not exist (plan a cohort first)")
    return asyncio.run(Worker(config, log=log).run())
