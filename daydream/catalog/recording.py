"""Recording a catalog in the database: ``import_catalog()`` turns a loaded catalog
directory into ``*.defined`` events, one per entry whose content version is not already
current, so re-importing unchanged files writes nothing and an edited template becomes a
new version (old versions stay, generations keep pointing at the version they used).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from typing import Any

from daydream import events as ev
from daydream.catalog.entries import Combo, Concept, Model, Template
from daydream.db.log import append
from daydream.db.texts import put_text
from daydream.db.transaction import transaction

ENTRY_KINDS = ("concepts", "combos", "templates", "models")


@dataclass
class ImportReport:
    source: str
    layout: str
    added: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ENTRY_KINDS, 0))
    changed: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ENTRY_KINDS, 0))
    unchanged: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ENTRY_KINDS, 0))
    warnings: list[str] = field(default_factory=list)

    @property
    def events(self) -> int:
        return sum(self.added.values()) + sum(self.changed.values())


def import_catalog(conn: sqlite3.Connection, catalog: Any, *, actor: str = "cli") -> ImportReport:
    """Record every new or changed catalog entry as an event, atomically."""
    source = str(catalog.source)
    report = ImportReport(source=source, layout=catalog.layout, warnings=list(catalog.warnings))
    with transaction(conn):
        current = _current_versions(conn)
        events: list[ev.Event] = []
        for concept in catalog.concepts:
            if _is_new(report, current, "concepts", concept.concept_id, concept.version):
                events.append(_concept_defined(conn, concept, source))
        for combo in catalog.combos:
            if _is_new(report, current, "combos", combo.combo_id, combo.version):
                events.append(_combo_defined(combo, source))
        for template in catalog.templates:
            key = (template.stage, template.template_id)
            if _is_new(report, current, "templates", key, template.version):
                events.append(_template_defined(conn, template, source))
        key_envs = {
            p.name: p.api_key_env for p in getattr(catalog, "providers", ()) if p.api_key_env
        }
        for model in catalog.models:
            if _is_new(report, current, "models", model.model_id, model.version):
                events.append(model_defined(model, source, key_envs=key_envs))
        append(conn, events, actor=actor)
    return report


def model_defined(
    model: Model, source: str, *, key_envs: dict[str, str] | None = None
) -> ev.ModelDefined:
    """The ``model.defined`` event of a catalog model (``key_envs``: provider name -> the
    environment variable holding its API key)."""
    settings = _settings(model, ("temperature", "max_tokens", "seed", "extra", "base_url"))
    if key_envs and model.provider in key_envs:
        settings["api_key_env"] = key_envs[model.provider]  # a variable NAME, never a key
    return ev.ModelDefined(
        model_id=model.model_id,
        version=model.version,
        provider=model.provider,
        provider_model=model.provider_model,
        display_name=model.display_name,
        pool=model.pool,
        price_input=model.price_input,
        price_output=model.price_output,
        settings=settings,
        source=source,
    )


def _current_versions(conn: sqlite3.Connection) -> dict[str, dict[Any, str]]:
    """Per entry kind, the current version of each entry the database has."""
    return {
        "concepts": dict(conn.execute("SELECT concept_id, version FROM concepts")),
        "combos": dict(conn.execute("SELECT combo_id, version FROM combos")),
        "templates": {
            (stage, tid): version
            for stage, tid, version in conn.execute(
                "SELECT stage, template_id, version FROM templates"
            )
        },
        "models": dict(conn.execute("SELECT model_id, version FROM models")),
    }


def _is_new(
    report: ImportReport, current: dict[str, dict[Any, str]], kind: str, key: Any, version: str
) -> bool:
    """Whether this version of an entry is not current yet (counted in the report either way)."""
    old = current[kind].get(key)
    if old == version:
        report.unchanged[kind] += 1
        return False
    (report.changed if old else report.added)[kind] += 1
    return True


def _concept_defined(conn: sqlite3.Connection, concept: Concept, source: str) -> ev.ConceptDefined:
    return ev.ConceptDefined(
        concept_id=concept.concept_id,
        version=concept.version,
        name=concept.name,
        descriptions={
            level: put_text(conn, text) for level, text in sorted(concept.descriptions.items())
        },
        source=source,
    )


def _combo_defined(combo: Combo, source: str) -> ev.ComboDefined:
    return ev.ComboDefined(
        combo_id=combo.combo_id,
        version=combo.version,
        concept_ids=list(combo.concept_ids),
        level=combo.level,
        source=source,
    )


def _template_defined(
    conn: sqlite3.Connection, template: Template, source: str
) -> ev.TemplateDefined:
    scale = template.scale
    return ev.TemplateDefined(
        stage=template.stage,
        template_id=template.template_id,
        version=template.version,
        name=template.name,
        description=template.description,
        body_hash=put_text(conn, template.body) if template.body is not None else None,
        parser=template.parser,
        generator=template.generator,
        scale_min=scale[0] if scale else None,
        scale_max=scale[1] if scale else None,
        settings=_settings(template, ("temperature", "max_tokens", "min_lines", "seed", "extra")),
        source=source,
    )


def _settings(entry: Any, names: tuple[str, ...]) -> dict[str, Any]:
    out = {}
    for name in names:
        value = getattr(entry, name, None)
        if value not in (None, {}, ()):
            out[name] = dict(value) if isinstance(value, dict) else value
    return out
