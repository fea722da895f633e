"""Scores on their scale: high, low and top-of-scale, the 0-1 unit mean, the summary
statistics of a group of scores, and the judge-agreement classes.

A score is on its evaluation template's declared scale ``[scale_min, scale_max]`` (span =
max - min). *high*: ``score >= scale_min + 0.8 * span``; *low*: ``score <= scale_min + 0.3
* span``; *top of scale*: ``score == scale_max``. ``std`` is the sample standard deviation
(n - 1), empty below two values.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from typing import Any

HIGH_FRACTION = 0.8


LOW_FRACTION = 0.3


UPSTREAM_SPAN = 9.0  # upstream's 0-9 scale, which its agreement thresholds were set on


STABILITY_CLASSES = (
    "high_agreement",
    "moderate_agreement",
    "low_agreement",
    "poor_agreement",
    "insufficient_data",
)


_STABILITY_STEPS = ((1, "high_agreement"), (2, "moderate_agreement"), (3, "low_agreement"))


EPS = 1e-9


STAT_COLUMNS = (
    "scale",
    "count",
    "mean",
    "std",
    "min",
    "max",
    "mean_unit",
    "top_of_scale",
    "top_of_scale_pct",
    "high",
    "high_pct",
    "low",
    "low_pct",
)


def stability(
    value_range: float | None, judges: int, scale_min: float | None, scale_max: float | None
) -> str:
    """Class of a judge spread: upstream's 1/2/3 steps on 0-9, scaled to the template."""
    if judges < 2 or value_range is None:
        return "insufficient_data"
    span = scale_span(scale_min, scale_max) or UPSTREAM_SPAN
    for step, name in _STABILITY_STEPS:
        if value_range * UPSTREAM_SPAN <= step * span + EPS:
            return name
    return "poor_agreement"


def scale_span(low: float | None, high: float | None) -> float | None:
    return high - low if low is not None and high is not None and high > low else None


def is_top(row: dict[str, Any]) -> bool:
    return row["scale_max"] is not None and row["score"] >= row["scale_max"] - EPS


def is_high(row: dict[str, Any]) -> bool:
    span = scale_span(row["scale_min"], row["scale_max"])
    return span is not None and row["score"] >= row["scale_min"] + HIGH_FRACTION * span - EPS


def is_low(row: dict[str, Any]) -> bool:
    span = scale_span(row["scale_min"], row["scale_max"])
    return span is not None and row["score"] <= row["scale_min"] + LOW_FRACTION * span + EPS


def mean_unit(rows: list[dict[str, Any]]) -> float | None:
    units = []
    for r in rows:
        span = scale_span(r["scale_min"], r["scale_max"])
        if span is None:
            return None
        units.append((r["score"] - r["scale_min"]) / span)
    return rounded(statistics.fmean(units)) if units else None


def scale_label(low: float | None, high: float | None) -> str:
    return f"{low:g}-{high:g}" if low is not None and high is not None else ""


def rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def sort_key(values: Iterable[Any]) -> tuple:
    return tuple((v is None, "" if v is None else str(v)) for v in values)


def unscored_reason(essay_state: str | None, evaluations: list[dict[str, Any]]) -> str:
    """Why an essay has no score from ``evaluations`` (none of them scored): ``the essay
    failed (parse_failed)``, or ``its evaluations: 2 failed (parse_failed), 1 ready``
    (the ``unscored_essays`` view says the same)."""
    if essay_state not in (None, "ok"):
        return f"the essay did not complete ({essay_state})"
    counts: dict[str, int] = {}
    for r in evaluations:
        what = (
            "done without a score"
            if r["status"] == "done"
            else r["status"] + (f" ({r['state']})" if r["state"] else "")
        )
        counts[what] = counts.get(what, 0) + 1
    ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return "its evaluations: " + ", ".join(f"{n} {what}" for what, n in ordered)
