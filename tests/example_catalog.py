"""The example catalog in ``specs/catalog``, which the CLI, plan, replay and report tests
plan from: where it is, what it holds (and so the lists an error message names), a spec
of drafts on it, and how a test writes a spec file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from daydream.catalog.load import load_catalog

EXAMPLE = Path(__file__).resolve().parents[1] / "specs" / "catalog"
CATALOG = load_catalog(EXAMPLE)
SIZES = {
    "concepts": len(CATALOG.concepts),
    "combos": len(CATALOG.combos),
    "templates": len(CATALOG.templates),
    "models": len(CATALOG.models),
}
CATALOG_EVENTS = sum(SIZES.values())  # events written by importing the example catalog
MODELS = ", ".join(sorted(m.model_id for m in CATALOG.models))
DRAFT_TEMPLATES = ", ".join(sorted(t.template_id for t in CATALOG.templates if t.stage == "draft"))
IMPORT_HINT = "import it with: daydream catalog import DIR"

DRAFTS = {
    "axes": {
        "combo_id": ["fungal-market", "memory-codes", "drifting-tides"],
        "draft_template": ["rolling-idea"],
        "draft_llm": ["offline-small"],
        "draft_replicate": [1, 2],
    }
}


def write_spec(directory: Path, name: str, spec: dict[str, Any]) -> Path:
    """Write ``spec`` (``axes``, maybe ``rules``) to ``directory/name.yaml``."""
    path = directory / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return path
