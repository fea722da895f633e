"""The registry: the catalog as recorded in the database.

``import_catalog()`` turns a loaded catalog directory (``catalog.load_catalog``) into
``*.defined`` events, one per entry whose content version is not already current, so
re-importing unchanged files writes nothing and an edited template becomes a new version
(old versions stay, generations keep pointing at the version they used).

``Registry.load()`` reads the current catalog back for planning and for workers.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from typing import Any

from daydream.db.log import append
from daydream.db.texts import put_text
from daydream.db.transaction import transaction

from . import events as ev

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
        current = {
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
        events: list[ev.Event] = []

        def note(kind: str, key: Any, version: str) -> bool:
            old = current[kind].get(key)
            if old == version:
                report.unchanged[kind] += 1
                return False
            (report.changed if old else report.added)[kind] += 1
            return True

        for concept in catalog.concepts:
            if note("concepts", concept.concept_id, concept.version):
                events.append(
                    ev.ConceptDefined(
                        concept_id=concept.concept_id,
                        version=concept.version,
                        name=concept.name,
                        descriptions={
                            level: put_text(conn, text)
                            for level, text in sorted(concept.descriptions.items())
                        },
                        source=source,
                    )
                )
        for combo in catalog.combos:
            if note("combos", combo.combo_id, combo.version):
                events.append(
                    ev.ComboDefined(
                        combo_id=combo.combo_id,
                        version=combo.version,
                        concept_ids=list(combo.concept_ids),
                        level=combo.level,
                        source=source,
                    )
                )
        for template in catalog.templates:
            if note("templates", (template.stage, template.template_id), template.version):
                scale = template.scale
                events.append(
                    ev.TemplateDefined(
                        stage=template.stage,
                        template_id=template.template_id,
                        version=template.version,
                        name=template.name,
                        description=template.description,
                        body_hash=put_text(conn, template.body)
                        if template.body is not None
                        else None,
                        parser=template.parser,
                        generator=template.generator,
                        scale_min=scale[0] if scale else None,
                        scale_max=scale[1] if scale else None,
                        settings=_settings(
                            template, ("temperature", "max_tokens", "min_lines", "seed", "extra")
                        ),
                        source=source,
                    )
                )
        key_envs = {
            p.name: p.api_key_env for p in getattr(catalog, "providers", ()) if p.api_key_env
        }
        for model in catalog.models:
            settings = _settings(model, ("temperature", "max_tokens", "seed", "extra", "base_url"))
            if model.provider in key_envs:
                settings["api_key_env"] = key_envs[model.provider]  # a variable NAME, never a key
            if note("models", model.model_id, model.version):
                events.append(
                    ev.ModelDefined(
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
                )
        append(conn, events, actor=actor)
    return report


def _settings(entry: Any, names: tuple[str, ...]) -> dict[str, Any]:
    out = {}
    for name in names:
        value = getattr(entry, name, None)
        if value not in (None, {}, ()):
            out[name] = dict(value) if isinstance(value, dict) else value
    return out


@dataclass(frozen=True)
class TemplateRow:
    stage: str
    template_id: str
    version: str
    parser: str
    generator: str
    body_hash: str | None
    scale_min: float | None
    scale_max: float | None
    settings: dict[str, Any]
    body: str | None = None


@dataclass(frozen=True)
class ModelRow:
    model_id: str
    provider: str
    provider_model: str
    pool: str
    price_input: float | None
    price_output: float | None
    settings: dict[str, Any]


@dataclass
class Registry:
    """The current catalog, read from the projections."""

    templates: dict[tuple[str, str], TemplateRow]
    models: dict[str, ModelRow]
    combos: dict[str, tuple[str, tuple[str, ...]]]  # combo_id -> (level, concept ids)
    concepts: dict[str, str]  # concept_id -> name
    # (template version, has_parent) -> problem text or None, filled by planning checks
    variable_checks: dict[tuple[str, bool], str | None] = field(default_factory=dict)

    @classmethod
    def load(cls, conn: sqlite3.Connection) -> Registry:
        templates = {}
        for row in conn.execute(
            "SELECT t.stage, t.template_id, t.version, t.parser, t.generator, v.body_hash,"
            " t.scale_min, t.scale_max, v.settings, x.text FROM templates t"
            " JOIN template_versions v ON v.version = t.version"
            " LEFT JOIN texts x ON x.hash = v.body_hash"
        ):
            stage, template_id, version, parser, generator, body_hash, low, high = row[:8]
            templates[(stage, template_id)] = TemplateRow(
                stage, template_id, version, parser, generator, body_hash, low, high,
                json.loads(row[8]), row[9],
            )
        models = {
            row[0]: ModelRow(row[0], row[1], row[2], row[3], row[4], row[5], json.loads(row[6]))
            for row in conn.execute(
                "SELECT model_id, provider, provider_model, pool, price_input, price_output,"
                " settings FROM models"
            )
        }
        members: dict[str, list[str]] = {}
        for combo_id, concept_id in conn.execute(
            "SELECT combo_id, concept_id FROM combo_concepts ORDER BY combo_id, position"
        ):
            members.setdefault(combo_id, []).append(concept_id)
        combos = {
            combo_id: (level, tuple(members.get(combo_id, ())))
            for combo_id, level in conn.execute("SELECT combo_id, level FROM combos")
        }
        concepts = dict(conn.execute("SELECT concept_id, name FROM concepts"))
        return cls(templates=templates, models=models, combos=combos, concepts=concepts)

    def template_ids(self, stage: str) -> list[str]:
        return sorted(tid for (s, tid) in self.templates if s == stage)
