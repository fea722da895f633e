"""Appliers of the catalog, plans and cohort operations: concepts, combinations,
templates, models, cohorts, planned generations and their memberships, retries, cancels
and pool limits.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from typing import Any

from daydream import events as ev
from daydream.db.projections.cells import join_score_cells
from daydream.db.projections.counts import count_members
from daydream.db.projections.lineage import select_in, unblock_descendants
from daydream.db.projections.tally import add_member_calls, tally_of


def _concept_defined(conn, event_id, e: ev.ConceptDefined, at):
    conn.execute(
        "INSERT INTO concepts (concept_id, name, version, source) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (concept_id) DO UPDATE SET name = excluded.name,"
        " version = excluded.version, source = excluded.source",
        (e.concept_id, e.name, e.version, e.source),
    )
    conn.execute("DELETE FROM concept_descriptions WHERE concept_id = ?", (e.concept_id,))
    conn.executemany(
        "INSERT INTO concept_descriptions (concept_id, level, text_hash) VALUES (?, ?, ?)",
        [(e.concept_id, level, digest) for level, digest in e.descriptions.items()],
    )


def _combo_defined(conn, event_id, e: ev.ComboDefined, at):
    conn.execute(
        "INSERT INTO combos (combo_id, level, size, version, source) VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT (combo_id) DO UPDATE SET level = excluded.level, size = excluded.size,"
        " version = excluded.version, source = excluded.source",
        (e.combo_id, e.level, len(e.concept_ids), e.version, e.source),
    )
    conn.execute("DELETE FROM combo_concepts WHERE combo_id = ?", (e.combo_id,))
    conn.executemany(
        "INSERT INTO combo_concepts (combo_id, position, concept_id) VALUES (?, ?, ?)",
        [(e.combo_id, i, concept) for i, concept in enumerate(e.concept_ids, 1)],
    )


def _template_defined(conn, event_id, e: ev.TemplateDefined, at):
    conn.execute(
        "INSERT OR IGNORE INTO template_versions (version, stage, template_id, name,"
        " description, body_hash, parser, generator, scale_min, scale_max, settings, source,"
        " defined_event) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            e.version,
            e.stage,
            e.template_id,
            e.name,
            e.description,
            e.body_hash,
            e.parser,
            e.generator,
            e.scale_min,
            e.scale_max,
            json.dumps(e.settings, sort_keys=True),
            e.source,
            event_id,
        ),
    )
    conn.execute(
        "INSERT OR REPLACE INTO templates (stage, template_id, version, name, parser,"
        " generator, scale_min, scale_max) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            e.stage,
            e.template_id,
            e.version,
            e.name,
            e.parser,
            e.generator,
            e.scale_min,
            e.scale_max,
        ),
    )


def _model_defined(conn, event_id, e: ev.ModelDefined, at):
    conn.execute(
        "INSERT OR REPLACE INTO models (model_id, version, provider, provider_model,"
        " display_name, pool, price_input, price_output, settings, source)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            e.model_id,
            e.version,
            e.provider,
            e.provider_model,
            e.display_name,
            e.pool,
            e.price_input,
            e.price_output,
            json.dumps(e.settings, sort_keys=True),
            e.source,
        ),
    )


def _cohort_planned(conn, event_id, e: ev.CohortPlanned, at):
    conn.execute(
        "INSERT INTO cohorts (cohort_id, spec_path, spec_hash, drafts, essays, evaluations,"
        " planned_at, budget_usd) VALUES (?, ?, ?, 0, 0, 0, ?, ?)"
        " ON CONFLICT (cohort_id) DO UPDATE SET spec_path = excluded.spec_path,"
        " spec_hash = excluded.spec_hash, replanned_at = excluded.planned_at,"
        " cancelled_at = NULL, budget_usd = excluded.budget_usd",
        (e.cohort_id, e.spec_path, e.spec_hash, at, e.budget_usd),
    )


# The status a generation starts in, from its parent's (in UPDATE generations ... SET).
# A child task's status from its parent's: ready once the parent is done, blocked when the
# parent failed, is blocked or was cancelled, else (or without a parent row) waiting. One
# mapping: planning applies it in Python (_first_status), a retry in SQL (_PARENT_STATUS).
_CHILD_STATUS = {"done": "ready", "failed": "blocked", "blocked": "blocked", "cancelled": "blocked"}


_PARENT_STATUS = (
    "COALESCE((SELECT CASE p.status "
    + " ".join(f"WHEN '{parent}' THEN '{child}'" for parent, child in _CHILD_STATUS.items())
    + " ELSE 'waiting' END FROM generations p WHERE p.gen_id = generations.parent_gen_id),"
    " 'waiting')"
)


def _generations_planned(conn, event_id, e: ev.GenerationsPlanned, at):
    # Memberships change only in a settled tally (tally.py): what earlier events of the
    # batch changed is counted in the cohorts of that time, then the members that join
    # are counted as they stand.
    tally_of(conn).settle(conn)
    rows = e.generations
    status = _first_status(conn, rows)
    # A new generation whose parent did not complete starts blocked, with the reason. It
    # has no children yet except new ones, which start blocked too (from its status): no
    # walk down the lineage, which a first plan could not afford (its parent index is
    # built after the inserts, plan._indexes_built_after).
    conn.executemany(
        "INSERT INTO generations (gen_id, stage, parent_gen_id, combo_id, template_id,"
        " template_version, model_id, replicate, mode, signature, pool, status, planned_at,"
        " blocked_reason, state, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (*row[:11], status[row[0]], at, *_blocked(row, status[row[0]]))
            for row in rows
        ],
    )
    # The cohort's per-stage counts grow by the memberships actually added (a re-plan that
    # names an existing member again adds nothing), so they hold without recounting.
    joined: dict[str, list[str]] = {"draft": [], "essay": [], "evaluation": []}
    for row in rows:
        joined[row[1]].append(row[0])
    existing: list[str] = []
    if e.members:
        already = {
            gen_id
            for (gen_id,) in select_in(
                conn,
                "SELECT gen_id FROM cohort_members WHERE cohort_id = ? AND gen_id IN",
                e.members,
                (e.cohort_id,),
            )
        }
        for gen_id, stage in select_in(
            conn, "SELECT gen_id, stage FROM generations WHERE gen_id IN", e.members
        ):
            if gen_id not in already:
                joined[stage].append(gen_id)
                existing.append(gen_id)
    added = {
        stage: conn.executemany(
            "INSERT OR IGNORE INTO cohort_members (cohort_id, gen_id, stage) VALUES (?, ?, ?)",
            [(e.cohort_id, gen_id, stage) for gen_id in gen_ids],
        ).rowcount
        for stage, gen_ids in joined.items()
    }
    if any(added.values()):
        conn.execute(
            "UPDATE cohorts SET drafts = drafts + ?, essays = essays + ?,"
            " evaluations = evaluations + ? WHERE cohort_id = ?",
            (added["draft"], added["essay"], added["evaluation"], e.cohort_id),
        )
    count_members(conn, e.cohort_id, rows, status, existing)
    add_member_calls(conn, e.cohort_id, existing)
    if joined["evaluation"]:
        join_score_cells(conn, e.cohort_id, joined["evaluation"], planned=rows)


def _blocked(row: list[Any], status: str) -> tuple[str | None, str | None, str | None]:
    """(blocked_reason, state, error) of a new generation starting in ``status``."""
    if status != "blocked":
        return (None, None, None)
    reason = f"parent {row[2]} did not complete"
    return (reason, "blocked", reason)


def _first_status(conn: sqlite3.Connection, rows: list[list[Any]]) -> dict[str, str]:
    """gen_id -> the status its task starts in: ready without a parent, else from the parent.

    Computed once per batch rather than by a subquery per row and a second pass over the
    new generations (planning inserts millions): a parent planned earlier in the batch
    gives its computed status, any other parent its stored status (waiting if none),
    exactly what inserting the rows one by one would read.
    """
    batch = {row[0] for row in rows}
    outside = list({row[2] for row in rows if row[2] is not None and row[2] not in batch})
    stored = dict(
        select_in(conn, "SELECT gen_id, status FROM generations WHERE gen_id IN", outside)
    )
    status: dict[str, str] = {}
    child = _CHILD_STATUS.get
    for row in rows:
        parent = row[2]
        if parent is None:
            status[row[0]] = "ready"
        else:
            found = status[parent] if parent in status else stored.get(parent)
            status[row[0]] = child(found or "", "waiting")
    return status


def _generations_retried(conn, event_id, e: ev.GenerationsRetried, at):
    tally_of(conn).touch(conn, e.gen_ids)
    for gen_id in e.gen_ids:
        conn.execute(
            "UPDATE generations SET status = CASE WHEN parent_gen_id IS NULL THEN 'ready' ELSE"
            f" {_PARENT_STATUS} END, attempts = 0, not_before = NULL, last_error = NULL,"
            " blocked_reason = NULL, lease_owner = NULL, lease_token = NULL,"
            " lease_expires_at = NULL, throttles = 0, releases = 0, deferrals = 0, state = NULL,"
            " error = NULL,"
            " finished_at = NULL WHERE gen_id = ?",
            (gen_id,),
        )
        unblock_descendants(conn, gen_id)  # they wait for it again


def _cohort_cancelled(conn, event_id, e: ev.CohortCancelled, at):
    conn.execute("UPDATE cohorts SET cancelled_at = ? WHERE cohort_id = ?", (at, e.cohort_id))
    if not e.gen_ids:
        return
    tally_of(conn).touch(conn, e.gen_ids)
    select_in(
        conn,
        "UPDATE generations SET status = 'cancelled', lease_owner = NULL, lease_token = NULL,"
        " lease_expires_at = NULL, state = 'cancelled', finished_at = ?"
        " WHERE status NOT IN ('done', 'failed') AND gen_id IN",
        e.gen_ids,
        (at,),
    )


def _pool_limit_changed(conn, event_id, e: ev.PoolLimitChanged, at):
    conn.execute(
        'INSERT OR REPLACE INTO pools (pool, "limit", ceiling, reason, changed_at)'
        " VALUES (?, ?, ?, ?, ?)",
        (e.pool, e.limit, e.ceiling, e.reason, at),
    )


APPLIERS: dict[str, Callable[..., None]] = {
    ev.ConceptDefined.type: _concept_defined,
    ev.ComboDefined.type: _combo_defined,
    ev.TemplateDefined.type: _template_defined,
    ev.ModelDefined.type: _model_defined,
    ev.CohortPlanned.type: _cohort_planned,
    ev.GenerationsPlanned.type: _generations_planned,
    ev.GenerationsRetried.type: _generations_retried,
    ev.CohortCancelled.type: _cohort_cancelled,
    ev.PoolLimitChanged.type: _pool_limit_changed,
}
