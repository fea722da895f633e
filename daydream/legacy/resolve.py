"""Deciding what to import: each stored generation is accepted (with its combination,
template version, pool and result) or skipped with its reason, and so are its
descendants.
"""

from __future__ import annotations

import math
import sqlite3
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from daydream import events as ev
from daydream.catalog.entries import UPSTREAM_SCALE, UPSTREAM_TEMPERATURE, Model
from daydream.catalog.recording import model_defined
from daydream.clock import Clock
from daydream.db.log import append
from daydream.db.texts import put_text
from daydream.legacy.report import LegacyReport
from daydream.legacy.store import (
    Skip,
    StoredGen,
    Unreadable,
    read_json,
    read_text,
)
from daydream.values import COUNT_MAX, quote
from daydream.vocabulary import COPY_POOL, PARENT_STAGE

PLACEHOLDER_PROVIDER = "openrouter"  # upstream sent every call, known model or not, there


@dataclass
class Result:
    prompt_hash: str
    raw_hash: str
    raw_meta: dict[str, Any]
    parsed_hash: str | None = None
    score: float | None = None
    failure: tuple[str, str] | None = None  # (state, error)


@dataclass
class Accepted:
    gen: StoredGen
    combo_id: str | None
    template_version: str | None
    pool: str
    provider: str | None
    result: Result | None

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


class Skipped(Exception):
    """A generation cannot be imported (orphan, unknown combo...); the message is why."""


def resolve(
    conn: sqlite3.Connection, gens: list[StoredGen], report: LegacyReport, actor: str, clock: Clock
) -> dict[str, Accepted]:
    """Check parents, combos, templates and models; read and store the texts."""
    combos = {r[0] for r in conn.execute("SELECT combo_id FROM combos")}
    templates = {
        (s, t): v for s, t, v in conn.execute("SELECT stage, template_id, version FROM templates")
    }
    models = {
        m: (pool, provider)
        for m, pool, provider in conn.execute("SELECT model_id, pool, provider FROM models")
    }
    accepted: dict[str, Accepted] = {}
    # Generations the store scan skipped already: their children say "was skipped".
    skipped = {s.path.split("/")[2] for s in report.skipped if s.path.count("/") == 2}
    placeholders: list[ev.ModelDefined] = []
    unversioned: dict[tuple[str, str], int] = {}
    for gen in gens:
        if conn.execute("SELECT 1 FROM generations WHERE gen_id = ?", (gen.gen_id,)).fetchone():
            report.already[gen.stage] += 1
            continue
        try:
            combo = _parent_combo(conn, gen, accepted, skipped) if gen.parent else gen.combo_id
            if gen.stage == "draft" and combo not in combos:
                raise Skipped(
                    f'combo "{combo}" is not in the catalog (add its rows to combo_mappings.csv)'
                )
            has_raw = (gen.directory / "raw.txt").is_file()
            version = templates.get((gen.stage, gen.template_id))
            if version is None and not has_raw:
                raise Skipped(
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
        except (Skipped, Unreadable) as exc:
            report.skipped.append(Skip(gen.path, str(exc)))
            skipped.add(gen.gen_id)
            continue
        if version is None:
            key = (gen.stage, gen.template_id)
            unversioned[key] = unversioned.get(key, 0) + 1
        accepted[gen.gen_id] = Accepted(gen, combo, version, pool, provider, result)
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
    conn: sqlite3.Connection, gen: StoredGen, accepted: dict[str, Accepted], skipped: set[str]
) -> str | None:
    """The parent's combo (essays and evaluations carry their draft's); skips orphans."""
    stage = PARENT_STAGE[gen.stage]
    parent = gen.parent
    if parent in skipped:
        raise Skipped(f"parent {stage} {parent} was skipped")
    if parent in accepted:
        found: tuple[str, str | None] = (accepted[parent].gen.stage, accepted[parent].combo_id)
    else:
        row = conn.execute(
            "SELECT stage, combo_id FROM generations WHERE gen_id = ?", (parent,)
        ).fetchone()
        if row is None:
            raise Skipped(
                f"parent {stage} {parent} is missing (no gens/{stage}/{parent}, and not in the"
                " database)"
            )
        found = (row[0], row[1])
    if found[0] != stage:
        raise Skipped(f"parent {parent} is in stage {found[0]}, expected {stage}")
    return found[1]


def _placeholder(model_id: str, source: str) -> ev.ModelDefined:
    try:
        model = Model(
            model_id=model_id,
            provider=PLACEHOLDER_PROVIDER,
            provider_model=model_id,
            display_name=model_id,
            pool=PLACEHOLDER_PROVIDER,
            temperature=UPSTREAM_TEMPERATURE,  # what upstream's client sent every model
        )
    except ValidationError:
        raise Skipped(
            f'llm_model_id "{model_id}" is not a valid model id (letters, digits, ".", "_", "-")'
        ) from None
    return model_defined(model, f"{source}: named by gens metadata, not in llm_models.csv")


def _read_result(conn: sqlite3.Connection, gen: StoredGen, report: LegacyReport) -> Result:
    directory = gen.directory
    parsed_file = directory / "parsed.txt"
    parsed = read_text(parsed_file) if parsed_file.is_file() else None
    score = _score(conn, gen, parsed) if parsed is not None else None
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
    result = Result(put_text(conn, prompt), put_text(conn, raw), raw_meta)
    if parsed is None:
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
    if gen.stage == "evaluation" and score is None:
        lines = parsed.strip().splitlines()
        last = lines[-1].strip() if lines else ""
        result.failure = (
            "parse_failed",
            f"imported from upstream: parsed.txt has no score on its last line ({quote(last)})",
        )
        return result
    result.score = score
    result.parsed_hash = put_text(conn, parsed)
    return result


def _score(conn: sqlite3.Connection, gen: StoredGen, parsed: str) -> float | None:
    """An evaluation's score: the last line of its parsed.txt (None when it is no number);
    a score outside the template's scale (upstream's 0-10 for a template the catalog lacks)
    is skipped, as the score parser refuses it."""
    if gen.stage != "evaluation":
        return None
    lines = parsed.strip().splitlines()
    try:
        score = float(lines[-1].strip()) if lines else math.nan
    except ValueError:
        return None
    if not math.isfinite(score):
        return None
    row = conn.execute(
        "SELECT scale_min, scale_max FROM templates WHERE stage = 'evaluation'"
        " AND template_id = ?",
        (gen.template_id,),
    ).fetchone()
    low, high = (row[0], row[1]) if row and row[0] is not None else UPSTREAM_SCALE
    if not low <= score <= high:
        raise Skipped(
            f"parsed.txt: score {quote(score)} is outside the scale {low:g}-{high:g} of"
            f' template "{gen.template_id}"'
        )
    return score


def as_integer(value: Any) -> int | None:
    """A count from raw_metadata.json, or None (not a number, or not a plausible count)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if not math.isfinite(value) or not 0 <= value <= COUNT_MAX:
        return None
    return int(value)


def as_number(value: Any) -> float | None:
    """A duration or amount from raw_metadata.json, or None (not finite, negative or huge)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if not math.isfinite(value) or not 0 <= value <= COUNT_MAX:
        return None
    return float(value)
