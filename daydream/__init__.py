"""daydream: structured LLM idea-generation experiments on an append-only SQLite event log.

The public API mirrors the CLI: open a database, import a catalog, compile and plan a
cohort spec, run workers, report.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .errors import (  # noqa: E402
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
from .legacy import import_legacy  # noqa: E402
from .plan import plan_cohort  # noqa: E402
from .projections import rebuild  # noqa: E402
from .registry import import_catalog  # noqa: E402
from .store import append, check, connect, read_events, transaction  # noqa: E402

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
    "append",
    "check",
    "connect",
    "import_catalog",
    "import_legacy",
    "plan_cohort",
    "read_events",
    "rebuild",
    "transaction",
]
