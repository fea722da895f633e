"""Tasks: a claimed generation with everything needed to run it, the outcome of running
it, and what is left in the queue.

A task's rows (template version, model, concepts) are read when it is claimed and cached
per process by version: a forked worker clears the caches (``os.register_at_fork``), as
it may read another database than its parent.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from daydream import events as ev


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
    deferred: int = 0  # attempts that met a down endpoint or a stopped pool: not counted
    slot: bool = True  # the lease holds a pool slot (False: queued in its worker)
    # When the worker got the lease (monotonic), and how long it then waited for a slot.
    claimed_at: float = field(default_factory=time.monotonic)
    slot_wait_s: float | None = None


@dataclass
class Outcome:
    task: Task
    events: list[ev.Event]
    ok: bool
    throttled: bool = False
    deferred: bool = False  # its endpoint was down or its pool stopped: not an attempt
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


def load_task(
    conn: sqlite3.Connection, gen_id: str, token: int, attempt: int, throttles: int
) -> Task:
    g = conn.execute(
        "SELECT g.stage, g.mode, g.pool, g.template_id, g.template_version, g.model_id,"
        " g.parent_gen_id, g.combo_id, g.replicate, x.text, g.releases, g.deferrals"
        " FROM generations g"
        " LEFT JOIN generations p ON p.gen_id = g.parent_gen_id"
        " LEFT JOIN texts x ON x.hash = p.parsed_hash WHERE g.gen_id = ?",
        (gen_id,),
    ).fetchone()
    stage, mode, pool, template_id, version, model_id, parent, combo, replicate = g[:9]
    parent_text, released, deferred = g[9], g[10], g[11]
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
    model = load_model(conn, model_id) if model_id else None
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
        deferred=deferred,
    )


def load_model(conn: sqlite3.Connection, model_id: str) -> dict[str, Any]:
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


def unfinished(cohort: str | None, pools: tuple[str, ...]) -> tuple[str, list[Any]]:
    """WHERE clause (over ``generations g``) and parameters: the generations a worker of
    ``cohort`` (all: None) and ``pools`` (all: empty) could still run. A waiting one with
    an ancestor that will never complete (failed, blocked, cancelled) is not among them: it
    can never run, so no worker waits for it, whatever its own row says (a lineage is at
    most three stages deep: a parent and a grandparent)."""
    sql = (
        "(g.status IN ('ready', 'running') OR (g.status = 'waiting' AND NOT EXISTS ("
        "SELECT 1 FROM generations p LEFT JOIN generations q ON q.gen_id = p.parent_gen_id"
        " WHERE p.gen_id = g.parent_gen_id AND (p.status IN ('failed', 'blocked', 'cancelled')"
        " OR q.status IN ('failed', 'blocked', 'cancelled')))))"
    )
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
    where, params = unfinished(cohort, pools)
    sql = (
        "SELECT DISTINCT g.model_id FROM generations g"
        f" WHERE {where} AND g.mode = 'llm' AND g.model_id IS NOT NULL ORDER BY 1"
    )
    return [load_model(conn, model_id) for (model_id,) in conn.execute(sql, params)]


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


def has_pending(
    conn: sqlite3.Connection,
    cohort: str | None,
    pools: tuple[str, ...] = (),
    stopped: tuple[str, ...] = (),
) -> bool:
    """Is there anything left that a worker (of ``pools``, if given) could eventually run?

    Nothing in a ``stopped`` pool can run, nor what waits for it: with stopped pools, work
    that waits for a parent counts only while something else may still finish (a task
    outside them is ready, or a call is running)."""
    where, params = unfinished(cohort, pools)
    if not stopped:
        sql = f"SELECT 1 FROM generations g WHERE {where} LIMIT 1"
        return conn.execute(sql, params).fetchone() is not None
    outside = f"g.pool NOT IN ({', '.join('?' * len(stopped))})"
    sql = f"SELECT 1 FROM generations g WHERE {where} AND {outside} AND g.status != 'waiting'"
    if conn.execute(sql + " LIMIT 1", [*params, *stopped]).fetchone():
        return True
    anywhere, anywhere_params = unfinished(cohort, ())
    moving = (
        f"SELECT 1 FROM generations g WHERE {anywhere} AND (g.status = 'running'"
        f" OR (g.status = 'ready' AND {outside})) LIMIT 1"
    )
    if not conn.execute(moving, [*anywhere_params, *stopped]).fetchone():
        return False
    sql = f"SELECT 1 FROM generations g WHERE {where} AND {outside} LIMIT 1"
    return conn.execute(sql, [*params, *stopped]).fetchone() is not None


def has_running(conn: sqlite3.Connection, cohort: str | None) -> bool:
    """Does any worker hold a lease on a task of ``cohort`` (all: None)?"""
    where, params = unfinished(cohort, ())
    sql = f"SELECT 1 FROM generations g WHERE {where} AND g.status = 'running' LIMIT 1"
    return conn.execute(sql, params).fetchone() is not None
