"""Importing an upstream data root: ``read_legacy`` reads and checks it, ``import_legacy``
writes it as events in one transaction (see the package's docstring for what is written).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from daydream.catalog.load import load_catalog
from daydream.catalog.recording import import_catalog
from daydream.clock import Clock, utcnow
from daydream.db.transaction import transaction
from daydream.errors import CatalogError, PlanError
from daydream.legacy.record import plan_legacy, record_results
from daydream.legacy.report import LegacyReport
from daydream.legacy.resolve import resolve
from daydream.legacy.store import COHORT_ID, Unreadable, refuse_outside, scan_store
from daydream.values import quote

__all__ = ["LegacySource", "import_legacy", "read_legacy"]


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
            f'cohort id {quote(cohort)} is invalid: use letters, digits, "-", "_" or "."'
            " (starting with a letter or digit)"
        )
    for path in sorted((root / "1_raw").rglob("*")):
        try:
            refuse_outside(root, path.parent, (path.name,))
        except Unreadable:
            raise CatalogError(
                f"legacy store {root}: {path.relative_to(root)} is a link that leads out of"
                " the data root; copy the file into the store instead"
            ) from None
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
        accepted = resolve(conn, scan.gens, report, actor, clock)
        plan_legacy(conn, source.root, accepted, scan.cohorts, source.cohort, report, actor, clock)
        record_results(conn, accepted, report, actor, clock)
    return report
