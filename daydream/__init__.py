"""daydream: structured LLM idea-generation experiments on an append-only SQLite event log.

The public API mirrors the CLI: open a database, import a catalog, compile and plan a
cohort spec, run workers, report. Names are imported on first use, so a worker process
(or ``daydream --help``) does not pay for modules it never touches.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

from daydream.errors import (  # noqa: E402
    CatalogError,
    ConfigError,
    DaydreamError,
    ParseError,
    PlanError,
    ProviderError,
    SpecError,
    StoreError,
    TemplateError,
)

_LAZY = {
    "append": "db.log",
    "check": "db.check",
    "connect": "db.connection",
    "read_events": "db.log",
    "transaction": "db.transaction",
    "rebuild": "db.projections.replay",
    "import_catalog": "catalog.recording",
    "load_catalog": "catalog.load",
    "load_spec": "spec",
    "compile_rows": "spec",
    "plan_cohort": "plan.write",
    "run_cohort": "runner.run",
    "run_worker": "worker.process",
    "WorkerConfig": "worker.config",
    "cohort_status": "queue.cohorts",
    "retry": "queue.cohorts",
    "cancel": "queue.cohorts",
    "build_report": "results.reports",
    "write_report": "results.reports",
    "import_legacy": "legacy.importer",
    "compare_levels": "results.comparison",
    "compare_cohorts": "results.comparison",
    "reparse": "worker.reparse",
    "export_sheet": "results.labels",
    "import_ratings": "results.labels",
}

__all__ = [
    "__version__",
    "CatalogError",
    "ConfigError",
    "DaydreamError",
    "ParseError",
    "PlanError",
    "ProviderError",
    "SpecError",
    "StoreError",
    "TemplateError",
    *sorted(_LAZY),
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'daydream' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
