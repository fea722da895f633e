"""Writing what was accepted: cohorts and ``generations.planned`` batches (parents first),
then each generation's result as the events a worker would have written.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from daydream import events as ev
from daydream.clock import Clock, isoformat
from daydream.db.log import append
from daydream.db.texts import put_text
from daydream.errors import PlanError
from daydream.legacy.report import LegacyReport
from daydream.legacy.resolve import Accepted, as_integer, as_number
from daydream.legacy.store import (
    Skip,
    StoredCohort,
)
from daydream.vocabulary import STAGES

WORKER = "legacy-import"
BATCH = 5000
SPEC_PREFIX = "legacy:"  # cohorts created by this import; their spec_path starts with it


@dataclass
class LegacyCohort:
    cohort_id: str
    spec_path: str  # "legacy:" + an absolute path: marks cohorts this import created
    spec_text: str
    members: list[str]


def plan_legacy(
    conn: sqlite3.Connection,
    root: Path,
    accepted: dict[str, Accepted],
    upstream: list[StoredCohort],
    legacy_id: str,
    report: LegacyReport,
    actor: str,
    clock: Clock,
) -> None:
    """Cohorts, then the new generations (stage by stage, in their first cohort), then links."""
    usable = _usable_cohorts(conn, upstream, legacy_id, report)
    home: dict[str, str] = {}
    for cohort in usable:
        for gen_id in cohort.members:
            home.setdefault(gen_id, cohort.cohort_id)
    leftovers = [g for g in accepted if g not in home]
    if leftovers:
        usable.append(_legacy_cohort(conn, root, legacy_id, leftovers))
        for gen_id in leftovers:
            home[gen_id] = legacy_id
    events, links = _cohorts_planned(conn, accepted, usable, home, report)
    events += _generation_batches(accepted, usable, home, links)
    if events:
        append(conn, events, actor=actor, clock=clock)
        report.events += len(events)


def _usable_cohorts(
    conn: sqlite3.Connection, upstream: list[StoredCohort], legacy_id: str, report: LegacyReport
) -> list[LegacyCohort]:
    """The upstream cohorts this import may fill (each one that was planned here from a
    spec is skipped, with the reason)."""
    usable: list[LegacyCohort] = []
    for stored in upstream:
        planned_from = _planned_from_spec(conn, stored.cohort_id)
        if planned_from is not None:
            report.skipped.append(
                Skip(
                    f"cohorts/{stored.cohort_id}",
                    f"a cohort with this id was already planned here (from {planned_from}), so"
                    f' its members were not linked (new generations went to cohort "{legacy_id}")',
                )
            )
            continue
        spec_path = SPEC_PREFIX + str(stored.source.resolve())
        usable.append(LegacyCohort(stored.cohort_id, spec_path, stored.spec_text, stored.members))
    return usable


def _legacy_cohort(
    conn: sqlite3.Connection, root: Path, legacy_id: str, leftovers: list[str]
) -> LegacyCohort:
    """The cohort of the generations no membership.csv lists."""
    legacy_spec = SPEC_PREFIX + str((root / "gens").resolve())
    planned_from = _planned_from_spec(conn, legacy_id)
    if planned_from is not None:
        raise PlanError(
            f'cohort "{legacy_id}" already exists (planned from {planned_from}); import the'
            " generations no membership.csv lists into another one with --cohort ID"
        )
    legacy_text = f"upstream generations under {root / 'gens'} that no membership.csv lists\n"
    return LegacyCohort(legacy_id, legacy_spec, legacy_text, leftovers)


def _planned_from_spec(conn: sqlite3.Connection, cohort_id: str) -> str | None:
    """The spec path of a cohort planned here from a spec (not by this import), if any."""
    row = conn.execute("SELECT spec_path FROM cohorts WHERE cohort_id = ?", (cohort_id,)).fetchone()
    if row and not row[0].startswith(SPEC_PREFIX):
        return row[0]
    return None


def _cohorts_planned(
    conn: sqlite3.Connection,
    accepted: dict[str, Accepted],
    usable: list[LegacyCohort],
    home: dict[str, str],
    report: LegacyReport,
) -> tuple[list[ev.Event], dict[str, list[str]]]:
    """A ``cohort.planned`` event per cohort that has members and is new here, and per
    cohort the members that join it by a link."""
    stage_of = {g: a.gen.stage for g, a in accepted.items()}
    events: list[ev.Event] = []
    links: dict[str, list[str]] = {}
    for cohort in usable:
        members = _unlinked_members(conn, cohort, stage_of)
        missing = len(cohort.members) - sum(1 for g in cohort.members if g in stage_of)
        if missing:
            report.warnings.append(
                f"cohorts/{cohort.cohort_id}/membership.csv: {missing} listed generation(s) not"
                " imported (skipped above, or without a gens/ directory)"
            )
        if not members:
            continue
        # Generations created in this cohort join it by being planned; the others are linked.
        links[cohort.cohort_id] = [
            g for g in members if g not in accepted or home[g] != cohort.cohort_id
        ]
        report.linked[cohort.cohort_id] = len(members)
        if conn.execute(
            "SELECT 1 FROM cohorts WHERE cohort_id = ?", (cohort.cohort_id,)
        ).fetchone():
            continue
        events.append(
            ev.CohortPlanned(
                cohort_id=cohort.cohort_id,
                spec_path=cohort.spec_path,
                spec_hash=put_text(conn, cohort.spec_text),
            )
        )
        report.cohorts.append(cohort.cohort_id)
    return events, links


def _unlinked_members(
    conn: sqlite3.Connection, cohort: LegacyCohort, stage_of: dict[str, str]
) -> list[str]:
    """The cohort's members that exist (imported now or before; ``stage_of`` learns the
    latter) and are not in it yet."""
    linked = {
        r[0]
        for r in conn.execute(
            "SELECT gen_id FROM cohort_members WHERE cohort_id = ?", (cohort.cohort_id,)
        )
    }
    members = []
    for gen_id in cohort.members:
        if gen_id not in stage_of:
            row = conn.execute(
                "SELECT stage FROM generations WHERE gen_id = ?", (gen_id,)
            ).fetchone()
            if row is None:
                continue
            stage_of[gen_id] = row[0]
        if gen_id not in linked:
            members.append(gen_id)
    return members


def _generation_batches(
    accepted: dict[str, Accepted],
    usable: list[LegacyCohort],
    home: dict[str, str],
    links: dict[str, list[str]],
) -> list[ev.Event]:
    """``generations.planned`` events: the new generations stage by stage (parents first),
    each in its first cohort, then the links."""
    batches: dict[tuple[str, str], list[list[Any]]] = {}
    for gen_id, item in accepted.items():
        batches.setdefault((item.gen.stage, home[gen_id]), []).append(item.row())
    events: list[ev.Event] = []
    for stage in STAGES:
        for cohort in usable:
            rows = batches.get((stage, cohort.cohort_id), [])
            for start in range(0, len(rows), BATCH):
                events.append(
                    ev.GenerationsPlanned(
                        cohort_id=cohort.cohort_id, generations=rows[start : start + BATCH]
                    )
                )
    for cohort_id, members in links.items():
        for start in range(0, len(members), BATCH):
            events.append(
                ev.GenerationsPlanned(
                    cohort_id=cohort_id, generations=[], members=members[start : start + BATCH]
                )
            )
    return events


def record_results(
    conn: sqlite3.Connection,
    accepted: dict[str, Accepted],
    report: LegacyReport,
    actor: str,
    clock: Clock,
) -> None:
    """One attempt per generation that ran upstream: started, responded, completed/failed."""
    for gen_id, item in accepted.items():
        gen, result = item.gen, item.result
        if result is None:
            report.imported[gen.stage]["planned"] += 1
            continue
        started = ev.AttemptStarted(
            gen_id=gen_id, attempt=1, worker=WORKER, lease_expires_at=isoformat(clock())
        )
        (token,) = append(conn, [started], actor=actor, clock=clock)
        meta = result.raw_meta
        usage = meta.get("usage")
        if not isinstance(usage, dict):
            usage = {}
        max_tokens = as_integer(usage.get("max_tokens"))
        events: list[ev.Event] = [
            ev.GenerationResponded(
                gen_id=gen_id,
                token=token,
                mode=gen.mode,  # type: ignore[arg-type]
                prompt_hash=result.prompt_hash,
                raw_hash=result.raw_hash,
                provider=item.provider,
                model_id=gen.model_id,
                finish_reason=meta.get("finish_reason")
                if isinstance(meta.get("finish_reason"), str)
                else None,
                completion_tokens=as_integer(usage.get("completion_tokens")),
                latency_s=as_number(meta.get("duration_s")),
                params={"max_tokens": max_tokens} if max_tokens is not None else {},
            )
        ]
        if result.failure:
            state, error = result.failure
            events.append(
                ev.AttemptFailed(
                    gen_id=gen_id,
                    token=token,
                    state=state,
                    error=error,
                    retryable=False,
                    final=True,
                )
            )
            report.imported[gen.stage]["failed"] += 1
        else:
            events.append(
                ev.GenerationCompleted(
                    gen_id=gen_id,
                    token=token,
                    parsed_hash=result.parsed_hash,  # type: ignore[arg-type]
                    score=result.score,
                )
            )
            report.imported[gen.stage]["done"] += 1
        append(conn, events, actor=actor, clock=clock)
        report.events += 1 + len(events)
