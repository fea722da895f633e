"""The upstream layout: the Dagster pipeline's ``1_raw`` (CSV rows plus ``.txt`` bodies),
given as the ``1_raw`` directory or the data root holding it; ``combo_mappings.csv`` may
sit in that directory or its parent.

The catalog keeps the sampling settings upstream sent on every call, which its CSVs do
not hold: each model's temperature (``UPSTREAM_TEMPERATURE``, its client's default) and
each ``llm`` template's ``max_tokens`` (``UPSTREAM_MAX_TOKENS``, its stage setting), so a
cohort planned from it asks the models what upstream asked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from daydream.catalog.build import (
    build_combo,
    build_template,
    check_id,
    check_unique,
    nonblank,
    orphans,
    validate,
)
from daydream.catalog.entries import (
    DEFAULT_LEVEL,
    UPSTREAM_MAX_TOKENS,
    UPSTREAM_SCALE,
    UPSTREAM_TEMPERATURE,
    Catalog,
    Combo,
    Concept,
    Model,
    Template,
)
from daydream.catalog.files import read_csv, read_text
from daydream.vocabulary import LEVELS, STAGES


def load_upstream(raw: Path) -> Catalog:
    warnings: list[str] = []
    concepts = _concepts(raw, warnings)
    templates = _templates(raw, warnings)
    models = _models(raw / "llm_models.csv")
    mapping = next(
        (
            d / "combo_mappings.csv"
            for d in (raw, raw.parent)
            if (d / "combo_mappings.csv").is_file()
        ),
        None,
    )
    if mapping is None:
        combos = []
        warnings.append(
            f"catalog {raw}: no combo_mappings.csv here or in {raw.parent}, so no combos "
            "(add one with columns combo_id,concept_id,description_level)"
        )
    else:
        combos = _upstream_combos(mapping, {c.concept_id for c in concepts})
    return Catalog(
        concepts=tuple(concepts),
        combos=tuple(combos),
        templates=tuple(templates),
        models=tuple(models),
        source=raw,
        layout="upstream",
        warnings=tuple(warnings),
    )


def _concepts(raw: Path, warnings: list[str]) -> list[Concept]:
    """concepts_metadata.csv with each level's description file (a concept without text,
    and a description file no row names, are added to ``warnings``)."""
    file = raw / "concepts_metadata.csv"
    dirs = [raw / "concepts" / f"descriptions-{level}" for level in LEVELS]
    concepts, seen = [], []
    for where, row in read_csv(file, ("concept_id", "name"), reject_active=True):
        cid = check_id(file, where, "concept_id", row["concept_id"])
        seen.append((cid, where))
        where = f'{where}: concept "{cid}"'
        paths = {level: d / f"{cid}.txt" for level, d in zip(LEVELS, dirs, strict=True)}
        texts = {k: read_text(p).strip() for k, p in paths.items() if p.is_file()}
        if not any(texts.values()):
            warnings.append(f"catalog {file}: {where} has no text; drafts will show only its name")
        data: dict[str, Any] = {
            "concept_id": cid,
            "name": row["name"],
            "descriptions": nonblank(texts),
        }
        concepts.append(validate(Concept, file, where, data))
    check_unique(file, "concept", seen)
    for d in dirs:
        warnings += orphans(d, ".txt", {cid for cid, _ in seen}, file.name)
    return concepts


def _templates(raw: Path, warnings: list[str]) -> list[Template]:
    """<stage>_templates.csv with their bodies, stage by stage (body files no row names
    are added to ``warnings``)."""
    templates = []
    for stage in STAGES:
        file, seen = raw / f"{stage}_templates.csv", []
        for where, row in read_csv(file, ("template_id",), reject_active=True):
            tid = check_id(file, where, "template_id", row["template_id"])
            seen.append((tid, where))
            data: dict[str, Any] = {
                "stage": stage,
                "template_id": tid,
                "name": row.get("template_name") or tid,
                "description": row.get("description", ""),
                "parser": row.get("parser") or "identity",
                "generator": (row.get("generator") or "llm").lower(),
                "scale": UPSTREAM_SCALE if stage == "evaluation" else None,
            }
            if data["generator"] == "llm":
                data["max_tokens"] = UPSTREAM_MAX_TOKENS
            body = raw / "templates" / stage / f"{tid}.txt"
            where = f'{where}: template "{tid}"'
            templates.append(build_template(file, where, body, "generator=copy", data, warnings))
        check_unique(file, "template", seen)
        warnings += orphans(raw / "templates" / stage, ".txt", {t for t, _ in seen}, file.name)
    return templates


def _models(file: Path) -> list[Model]:
    models, seen = [], []
    for where, row in read_csv(file, ("id", "model")):
        mid = check_id(file, where, "id", row["id"])
        seen.append((mid, where))
        data = {
            "model_id": mid,
            "provider": "openrouter",  # upstream sent every call to OpenRouter
            "provider_model": row["model"],
            "display_name": row.get("display_name") or mid,
            "pool": "openrouter",
            "vendor": row.get("provider") or None,
            "specialization": row.get("specialization") or None,
            "temperature": UPSTREAM_TEMPERATURE,
        }
        models.append(validate(Model, file, f'{where}: model "{mid}"', data))
    check_unique(file, "model", seen)
    return models


def _upstream_combos(file: Path, known: set[str]) -> list[Combo]:
    groups: dict[str, list[tuple[str, dict[str, str]]]] = {}
    for where, row in read_csv(file, ("combo_id", "concept_id")):
        cid = check_id(file, where, "combo_id", row["combo_id"])
        check_id(file, f'{where}: combo "{cid}"', "concept_id", row["concept_id"])
        groups.setdefault(cid, []).append((where, row))
    check_unique(file, "combo", [(cid, rows[0][0]) for cid, rows in groups.items()])
    combos = []
    for cid, rows in sorted(groups.items()):
        where, first = rows[0]
        level = first.get("description_level") or DEFAULT_LEVEL
        ids = [row["concept_id"] for _, row in rows]
        where = f'{where}: combo "{cid}"'
        combos.append(build_combo(file, where, cid, ids, level, known, "concepts_metadata.csv"))
    return combos
