"""The registry: the catalog as recorded in the database, read back (``Registry.load()``)
for planning and for workers.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from typing import Any


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
                stage,
                template_id,
                version,
                parser,
                generator,
                body_hash,
                low,
                high,
                json.loads(row[8]),
                row[9],
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
