"""Loading a catalog directory in either layout: ``load_catalog``."""

from __future__ import annotations

from pathlib import Path

from daydream.catalog.entries import Catalog
from daydream.catalog.ours import load_daydream
from daydream.catalog.upstream import load_upstream
from daydream.errors import CatalogError


def load_catalog(path: str | Path) -> Catalog:
    """Load and validate the catalog directory ``path`` (either layout)."""
    path = Path(path)
    if not path.is_dir():
        raise CatalogError(f"catalog {path}: not a directory (give the catalog directory)")
    for raw in (path, path / "1_raw"):
        if (raw / "concepts_metadata.csv").is_file():
            return load_upstream(raw)
    if any((path / f"{name}.yaml").is_file() for name in ("concepts", "templates", "models")):
        return load_daydream(path)
    raise CatalogError(
        f"catalog {path}: no concepts_metadata.csv (upstream layout, here or in 1_raw/) "
        "nor concepts.yaml (daydream layout) (give a catalog directory)"
    )
