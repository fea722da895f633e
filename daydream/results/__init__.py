"""Results: what a cohort's scores say, for people.

- ``rows``: a cohort's evaluations and essays with their lineage;
- ``scores``: scores on their scale (high, low, top of scale) and group statistics;
- ``inference``: 95% intervals that resample combinations, paired tests, Holm;
- ``reliability``: Krippendorff's alpha, intraclass correlations, calibration to humans;
- ``comparison``: ``daydream compare`` (levels of an axis, or two cohorts, on matched units);
- ``labels``: the raters' sheet and their ratings recorded as events;
- ``tables`` and ``reports``: the report's tables, built and written as CSV, JSON or HTML;
- ``html``, ``html_inference``, ``markup``: the self-contained HTML report page;
- ``curation``: ranking essays, exporting them, planning a new cohort from a pick;
- ``text``: every human-readable formatting of results the command line prints;
- ``frames``: the tables as pandas DataFrames for notebooks, re-exported here::

      import daydream.results as dr
      dr.pivot("daydream.db", "demo")

Importing this package stays light: ``frames`` (and pandas) load on first use of a frame.
"""

from __future__ import annotations

import importlib
from typing import Any

# Not named after a submodule (importing one sets the package attribute of its name).
__all__ = [
    "compare",
    "evaluations",
    "final_results",
    "judge_calibration",
    "judge_reliability",
    "pivot",
]


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'daydream.results' has no attribute {name!r}")
    value = getattr(importlib.import_module(".frames", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
