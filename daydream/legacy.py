"""Legacy import: an upstream (Dagster) data root recorded as events, keeping its ids.

The upstream store is a directory tree: ``1_raw/`` (the catalog),
``gens/<stage>/<gen_id>/`` (``metadata.json``, ``prompt.txt``, ``raw.txt``,
``raw_metadata.json``, ``parsed.txt``, ``parsed_metadata.json``) and
``cohorts/<id>/membership.csv``; ``legacy_store`` reads it. ``import_legacy()`` writes the
events that planning and the workers would have written for it:

- the catalog, exactly as ``daydream catalog import DATA_ROOT/1_raw`` would;
- ``model.defined`` for each model id the metadata names but the catalog lacks (provider
  openrouter, provider model = the id: what upstream sent for an unknown id), because a
  generation must reference a model;
- ``cohort.planned`` per upstream cohort, plus one cohort (``legacy`` by default) for the
  imported generations no ``membership.csv`` lists; ``generations.planned`` batches create
  every generation once, parents first, in its first cohort, and link it to the others;
- per generation with a ``raw.txt``: ``attempt.started`` (its id is the token), then
  ``generation.responded`` (prompt and raw texts) and either ``generation.completed``
  (parsed text; an evaluation's score is the float of parsed.txt's last line, as upstream
  read it) or, without ``parsed.txt``, a final ``attempt.failed`` (state ``truncated``
  when raw_metadata says so, else ``parse_failed``). A generation without ``raw.txt`` stays
  planned: running its cohort runs it.

Invariants:

- Ids are upstream's, unchanged. The signature is upstream's canonical string
  (``signature_from_metadata``): for llm essays it lacks the model (the upstream bug that
  ``ids`` fixes with v2 signatures), so new plans reuse imported drafts, copy essays and
  evaluations of those, but not llm essays (name those with an ``essay_id`` column).
- All or nothing: everything is written in one ``BEGIN IMMEDIATE`` transaction; the data
  root is only read.
- Idempotent: a generation id already in the database is left alone (reported as already
  imported); an unchanged store imports to zero events.
- Deterministic: stages in the order draft, essay, evaluation, generation ids sorted.
- Whatever cannot be imported is skipped with its reason, and so are its descendants.
"""

from __future__ import annotations

import math
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from daydream import events as ev
from daydream.catalog.entries import Model
from daydream.catalog.load import load_catalog
from daydream.catalog.recording import ImportReport, import_catalog
from daydream.clock import Clock, isoformat, utcnow
from daydream.db.log import append
from daydream.db.texts import put_text
from daydream.db.transaction import transaction
from daydream.errors import CatalogError, PlanError
from daydream.legacy_store import (
    COHORT_ID,
    Skip,
    StoredCohort,
    StoredGen,
    Unreadable,
    read_json,
    read_text,
    scan_store,
)
from daydream.vocabulary import COPY_POOL, PARENT_STAGE, STAGES

__all__ = ["LegacyReport", "Skip", "import_legacy"]

OUTCOMES = ("done", "failed", "planned")
PLACEHOLDER_PROVIDER = "openrouter"  # upstream sent every call, known model or not, there
WORKER = "legacy-import"
BATCH = 5000
_SPEC_PREFIX = "legacy:"  # cohorts created by this import; their spec_path starts with it


@dataclass
class LegacyReport:
    source: str
    catalog: ImportReport | None = None
    imported: dict[str, dict[str, int]] = field(
        default_factory=lambda: {s: dict.fromkeys(OUTCOMES, 0) for s in STAGES}
    )
    already: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STAGES, 0))
    skipped: list[Skip] = field(default_factory=list)
    cohorts: list[str] = field(default_factory=list)
    linked: dict[str, int] = field(default_factory=dict)  # cohort -> generations linked
    models_added: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    events: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "catalog": vars(self.catalog) if self.catalog else None,
            "imported": self.imported,
            "already_imported": self.already,
            "skipped": [{"path": s.path, "reason": s.reason} for s in self.skipped],
            "cohorts_created": self.cohorts,
            "members_linked": self.linked,
            "models_added": self.models_added,
            "warnings": self.warnings,
            "events_written": self.events,
        }


@dataclass
class LegacySource:
    """An upstream data root, read and checked: its catalog and its stored generations."""

    root: Path
    cohort: str
    catalog: Any
    scan: Any


def read_legacy(root: str | Path, *, cohort: str = "legacy") -> LegacySource:
    """Read the upstream data root ``root`` (holding ``1_raw/``, ``gens/``, ``cohorts/``)
    without touching a database: every error in it is raised here."""
    root = Path(root)
    if not (root / "1_raw").is_dir():
        raise CatalogError(
            f"legacy store {root}: no 1_raw/ directory (give the upstream data root, the"
            " directory holding 1_raw/, gens/ and cohorts/)"
        )
    if not COHORT_ID.fullmatch(cohort):
        raise PlanError(
            f'cohort id "{cohort}" is invalid: use letters, digits, "-", "_" or "."'
            " (starting with a letter or digit)"
        )
    return LegacySource(root, cohort, load_catalog(root / "1_raw"), scan_store(root))


def import_legacy(
    conn: sqlite3.Connection,
    root: str | Path | LegacySource,
    *,
    cohort: str = "legacy",
    actor: str = "cli:import-legacy",
    clock: Clock = utcnow,
) -> LegacyReport:
    """Import an upstream data root (a path, or what ``read_legacy`` read from one)."""
    source = root if isinstance(root, LegacySource) else read_legacy(root, cohort=cohort)
    report = LegacyReport(source=str(source.root))
    scan = source.scan
    report.skipped += scan.skipped
    report.warnings += scan.warnings
    with transaction(conn):
        report.catalog = import_catalog(conn, source.catalog, actor=actor)
        report.events += report.catalog.events
        accepted = _resolve(conn, scan.gens, report, actor, clock)
        _plan(conn, source.root, accepted, scan.cohorts, source.cohort, report, actor, clock)
        _record_results(conn, accepted, report, actor, clock)
    return report


# -- deciding what to import ------------------------------------------------------------------


@dataclass
class _Result:
    prompt_hash: str
    raw_hash: str
    raw_meta: dict[str, Any]
    parsed_hash: str | None = None
    score: float | None = None
    failure: tuple[str, str] | None = None  # (state, error)


@dataclass
class _Accepted:
    gen: StoredGen
    combo_id: str | None
    template_version: str | None
    pool: str
    provider: str | None
    result: _Result | None

    def row(self) -> list[Any]:
        g = self.gen
        return [
            g.gen_id,
            g.stage,
            g.parent,
            self.combo_id,
            g.template_id,
            self.template_version,
            g.model_id,
            g.replicate,
            g.mode,
            g.signature,
            self.pool,
        ]


class _Skipped(Exception):
    """A generation cannot be imported (orphan, unknown combo...); the message is why."""


def _resolve(
    conn: sqlite3.Connection, gens: list[StoredGen], report: LegacyReport, actor: str, clock: Clock
) -> dict[str, _Accepted]:
    """Check parents, combos, templates and models; read and store the texts."""
    combos = {r[0] for r in conn.execute("SELECT combo_id FROM combos")}
    templates = {
        (s, t): v for s, t, v in conn.execute("SELECT stage, template_id, version FROM templates")
    }
    models = {
        m: (pool, provider)
        for m, pool, provider in conn.execute("SELECT model_id, pool, provider FROM models")
    }
    accepted: dict[str, _Accepted] = {}
    skipped: set[str] = set()
    placeholders: list[ev.ModelDefined] = []
    unversioned: dict[tuple[str, str], int] = {}
    for gen in gens:
        if conn.execute("SELECT 1 FROM generations WHERE gen_id = ?", (gen.gen_id,)).fetchone():
            report.already[gen.stage] += 1
            continue
        try:
            combo = _parent_combo(conn, gen, accepted, skipped) if gen.parent else gen.combo_id
            if gen.stage == "draft" and combo not in combos:
                raise _Skipped(
                    f'combo "{combo}" is not in the catalog (add its rows to combo_mappings.csv)'
                )
            has_raw = (gen.directory / "raw.txt").is_file()
            version = templates.get((gen.stage, gen.template_id))
            if version is None and not has_raw:
                raise _Skipped(
                    f'{gen.stage} template "{gen.template_id}" is not in the catalog, so this'
                    " unrun generation could never run"
                )
            result = _read_result(conn, gen, report) if has_raw else None
            if gen.model_id is None:
                pool, provider = COPY_POOL, None
            elif gen.model_id in models:
                pool, provider = models[gen.model_id]
            else:
                placeholders.append(_placeholder(gen.model_id, report.source))
                models[gen.model_id] = pool, provider = PLACEHOLDER_PROVIDER, PLACEHOLDER_PROVIDER
                report.models_added.append(gen.model_id)
        except (_Skipped, Unreadable) as exc:
            report.skipped.append(Skip(gen.path, str(exc)))
            skipped.add(gen.gen_id)
            continue
        if version is None:
            key = (gen.stage, gen.template_id)
            unversioned[key] = unversioned.get(key, 0) + 1
        accepted[gen.gen_id] = _Accepted(gen, combo, version, pool, provider, result)
    for (stage, template_id), count in sorted(unversioned.items()):
        report.warnings.append(
            f'{stage} template "{template_id}" is not in the catalog: {count} imported'
            " generation(s) record no template version"
        )
    if placeholders:
        append(conn, placeholders, actor=actor, clock=clock)
        report.events += len(placeholders)
    return accepted


def _parent_combo(
    conn: sqlite3.Connection, gen: StoredGen, accepted: dict[str, _Accepted], skipped: set[str]
) -> str | None:
    """The parent's combo (essays and evaluations carry their draft's); skips orphans."""
    stage = PARENT_STAGE[gen.stage]
    parent = gen.parent
    if parent in skipped:
        raise _Skipped(f"parent {stage} {parent} was skipped")
    if parent in accepted:
        found: tuple[str, str | None] = (accepted[parent].gen.stage, accepted[parent].combo_id)
    else:
        row = conn.execute(
            "SELECT stage, combo_id FROM generations WHERE gen_id = ?", (parent,)
        ).fetchone()
        if row is None:
            raise _Skipped(
                f"parent {stage} {parent} is missing (no gens/{stage}/{parent}, and not in the"
                " database)"
            )
        found = (row[0], row[1])
    if found[0] != stage:
        raise _Skipped(f"parent {parent} is in stage {found[0]}, expected {stage}")
    return found[1]


def _placeholder(model_id: str, source: str) -> ev.ModelDefined:
    try:
        model = Model(
            model_id=model_id,
            provider=PLACEHOLDER_PROVIDER,
            provider_model=model_id,
            display_name=model_id,
            pool=PLACEHOLDER_PROVIDER,
        )
    except ValidationError:
        raise _Skipped(
            f'llm_model_id "{model_id}" is not a valid model id (letters, digits, ".", "_", "-")'
        ) from None
    return ev.ModelDefined(
        model_id=model.model_id,
        version=model.version,
        provider=model.provider,
        provider_model=model.provider_model,
        display_name=model.display_name,
        pool=model.pool,
        source=f"{source}: named by gens metadata, not in llm_models.csv",
    )


def _read_result(conn: sqlite3.Connection, gen: StoredGen, report: LegacyReport) -> _Result:
    directory = gen.directory
    raw = read_text(directory / "raw.txt")
    if (directory / "prompt.txt").is_file():
        prompt = read_text(directory / "prompt.txt")
    elif gen.mode == "copy":
        prompt = raw  # upstream's copy raw is its prompt, verbatim
    else:
        prompt = ""
        report.warnings.append(f"{gen.path}: no prompt.txt; recorded an empty prompt")
    raw_meta: dict[str, Any] = {}
    if (directory / "raw_metadata.json").is_file():
        try:
            loaded = read_json(directory / "raw_metadata.json")
            raw_meta = loaded if isinstance(loaded, dict) else {}
        except Unreadable as exc:
            report.warnings.append(f"{gen.path}: {exc}; imported without it")
    result = _Result(put_text(conn, prompt), put_text(conn, raw), raw_meta)
    parsed_file = directory / "parsed.txt"
    if not parsed_file.is_file():
        if raw_meta.get("truncated"):
            result.failure = (
                "truncated",
                "imported from upstream: raw.txt was truncated, so upstream wrote no parsed.txt",
            )
        else:
            result.failure = (
                "parse_failed",
                "imported from upstream: raw.txt has no parsed.txt (upstream's parse or"
                " min-lines check failed, or never ran)",
            )
        return result
    parsed = read_text(parsed_file)
    if gen.stage == "evaluation":
        lines = parsed.strip().splitlines()
        last = lines[-1].strip() if lines else ""
        try:
            score = float(last)
        except ValueError:
            score = math.nan
        if not math.isfinite(score):
            result.failure = (
                "parse_failed",
                f'imported from upstream: parsed.txt has no score on its last line ("{last[:80]}")',
            )
            return result
        result.score = score
    result.parsed_hash = put_text(conn, parsed)
    return result


# -- writing ----------------------------------------------------------------------------------


@dataclass
class _Cohort:
    cohort_id: str
    spec_path: str  # "legacy:" + an absolute path: marks cohorts this import created
    spec_text: str
    members: list[str]


def _plan(
    conn: sqlite3.Connection,
    root: Path,
    accepted: dict[str, _Accepted],
    upstream: list[StoredCohort],
    legacy_id: str,
    report: LegacyReport,
    actor: str,
    clock: Clock,
) -> None:
    """Cohorts, then the new generations (stage by stage, in their first cohort), then links."""
    usable: list[_Cohort] = []
    for stored in upstream:
        row = conn.execute(
            "SELECT spec_path FROM cohorts WHERE cohort_id = ?", (stored.cohort_id,)
        ).fetchone()
        if row and not row[0].startswith(_SPEC_PREFIX):
            report.skipped.append(
                Skip(
                    f"cohorts/{stored.cohort_id}",
                    f"a cohort with this id was already planned here (from {row[0]}), so its"
                    f' members were not linked (new generations went to cohort "{legacy_id}")',
                )
            )
            continue
        spec_path = _SPEC_PREFIX + str(stored.source.resolve())
        usable.append(_Cohort(stored.cohort_id, spec_path, stored.spec_text, stored.members))
    home: dict[str, str] = {}
    for cohort in usable:
        for gen_id in cohort.members:
            home.setdefault(gen_id, cohort.cohort_id)
    leftovers = [g for g in accepted if g not in home]
    if leftovers:
        legacy_spec = _SPEC_PREFIX + str((root / "gens").resolve())
        row = conn.execute(
            "SELECT spec_path FROM cohorts WHERE cohort_id = ?", (legacy_id,)
        ).fetchone()
        if row and not row[0].startswith(_SPEC_PREFIX):
            raise PlanError(
                f'cohort "{legacy_id}" already exists (planned from {row[0]}); import the'
                " generations no membership.csv lists into another one with --cohort ID"
            )
        legacy_text = f"upstream generations under {root / 'gens'} that no membership.csv lists\n"
        usable.append(_Cohort(legacy_id, legacy_spec, legacy_text, leftovers))
        for gen_id in leftovers:
            home[gen_id] = legacy_id

    stage_of = {g: a.gen.stage for g, a in accepted.items()}
    events: list[ev.Event] = []
    links: dict[str, list[str]] = {}
    for cohort in usable:
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
    batches: dict[tuple[str, str], list[list[Any]]] = {}
    for gen_id, item in accepted.items():
        batches.setdefault((item.gen.stage, home[gen_id]), []).append(item.row())
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
    if events:
        append(conn, events, actor=actor, clock=clock)
        report.events += len(events)


def _record_results(
    conn: sqlite3.Connection,
    accepted: dict[str, _Accepted],
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
        max_tokens = _integer(usage.get("max_tokens"))
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
                completion_tokens=_integer(usage.get("completion_tokens")),
                latency_s=_number(meta.get("duration_s")),
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


def _integer(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return int(value) if math.isfinite(value) else None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None
