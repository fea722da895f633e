"""A cohort's scored evaluations as numpy arrays, their groups by lineage columns, and the
statistics of each group (``score_stats``'s columns) computed on the arrays.

The report groups every scored evaluation 13 ways (``tables.AXES``); row by row in Python
that was most of a report's time (a million generations: 800,000 evaluations x 13
groupings). Here each column is coded once, a grouping is a sort of integer codes, and a
group's statistics are array reductions. The numbers are ``scores.score_stats``'s: means
by ``math.fsum`` as ``statistics.fmean`` takes them, the same thresholds with the same
tolerance (tests/test_reports.py compares the two on every group of a cohort).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from daydream.results.rows import column_of
from daydream.results.scores import (
    EPS,
    HIGH_FRACTION,
    LOW_FRACTION,
    rounded,
    scale_label,
)


@dataclass
class Scored:
    """Per scored evaluation (in the rows' order): score, score on 0-1 (NaN without a
    scale), top / high / low flags, the code of its scale's label; the rows themselves
    for the grouping columns (coded on first use)."""

    rows: Sequence[dict[str, Any]]
    score: np.ndarray
    unit: np.ndarray
    top: np.ndarray
    high: np.ndarray
    low: np.ndarray
    label: np.ndarray
    labels: list[str]
    _codes: dict[str, tuple[np.ndarray, list[Any]]] = field(default_factory=dict)

    def codes(self, column: str) -> tuple[np.ndarray, list[Any]]:
        """Each row's ``column`` value as a code 0, 1, 2... (first appearance), and the
        value of each code. A column of the essay's lineage is coded over the essays (one
        row each, in order of first appearance) and spread to their rows: the same codes,
        from a tenth of the lookups."""
        if column not in self._codes:
            if column in ESSAY_LEVEL:
                essays, _ = self.codes("essay_gen_id")
                _, first = np.unique(essays, return_index=True)  # by code: first appearance
                codes, values = coded(column_of(self.rows, column, first.tolist()))
                self._codes[column] = (codes[essays], values)
            else:
                self._codes[column] = coded([r[column] for r in self.rows])
        return self._codes[column]


# Lineage columns that one essay's rows share (its own and its draft's); not combo_id,
# which an evaluation supplies when neither its essay nor its draft has one.
ESSAY_LEVEL = frozenset(
    {"draft_template", "draft_model", "draft_replicate", "essay_template", "generation_model",
     "essay_replicate", "essay_mode", "draft_gen_id"}
)  # fmt: skip


def coded(values: Sequence[Any]) -> tuple[np.ndarray, list[Any]]:
    """Each value as a code 0, 1, 2... in order of first appearance, and the codes' values."""
    index: dict[Any, int] = {}
    codes = np.fromiter(
        (index.setdefault(v, len(index)) for v in values), dtype=np.int64, count=len(values)
    )
    return codes, list(index)


def scored_arrays(rows: Sequence[dict[str, Any]]) -> Scored:
    """The arrays of ``rows`` (scored evaluation rows: a score, scale_min, scale_max)."""
    return from_columns(
        rows,
        score=np.fromiter((r["score"] for r in rows), dtype=float, count=len(rows)),
        scale=coded([(r["scale_min"], r["scale_max"]) for r in rows]),
    )


def from_columns(
    rows: Sequence[dict[str, Any]],
    *,
    score: np.ndarray,
    scale: tuple[np.ndarray, list[tuple[Any, Any]]],
    codes: dict[str, tuple[np.ndarray, list[Any]]] | None = None,
) -> Scored:
    """``scored_arrays`` of ``rows`` from columns already read: the scores, each row's
    scale as a code of its (scale_min, scale_max) pair, and grouping columns already coded
    (any integer codes: recoded here in order of first appearance, as ``codes`` gives)."""
    at, pairs = scale
    bounds = scale_bounds(pairs)
    low, high = bounds[at, 0], bounds[at, 1]
    label_index: dict[str, int] = {}
    labels = [label_index.setdefault(scale_label(a, b), len(label_index)) for a, b in pairs]
    with np.errstate(invalid="ignore"):
        span = np.where(high > low, high - low, np.nan)  # NaN: no scale, or an empty one
        return Scored(
            rows=rows,
            score=score,
            unit=(score - low) / span,
            top=~np.isnan(high) & (score >= high - EPS),
            high=~np.isnan(span) & (score >= low + HIGH_FRACTION * span - EPS),
            low=~np.isnan(span) & (score <= low + LOW_FRACTION * span + EPS),
            label=np.array(labels, dtype=np.int64)[at],
            labels=list(label_index),
            _codes={c: _first_appearance(*coded) for c, coded in (codes or {}).items()},
        )


def scale_bounds(pairs: list[tuple[Any, Any]]) -> np.ndarray:
    """(scale_min, scale_max) pairs as an array of two columns, NaN for None."""
    return np.array([[_or_nan(a), _or_nan(b)] for a, b in pairs], dtype=float).reshape(-1, 2)


def _first_appearance(codes: np.ndarray, values: list[Any]) -> tuple[np.ndarray, list[Any]]:
    """Integer codes renumbered 0, 1, 2... in order of first appearance, with their values."""
    present, first, inverse = np.unique(codes, return_index=True, return_inverse=True)
    order = np.argsort(first)
    rank = np.empty(len(first), dtype=np.int64)
    rank[order] = np.arange(len(first))
    return rank[inverse.reshape(-1)], [values[i] for i in present[order].tolist()]


def groups(scored: Scored, keys: Sequence[str]) -> list[tuple[tuple, np.ndarray]]:
    """The groups of rows with equal ``keys`` values: (values, row indices in order), in
    order of first appearance of their values."""
    n = len(scored.rows)
    if not keys:
        return [((), np.arange(n))] if n else []
    combined = np.zeros(n, dtype=np.int64)
    decoded = []
    for key in keys:
        codes, values = scored.codes(key)
        combined = combined * len(values) + codes
        decoded.append(values)
    unique, first, inverse = np.unique(combined, return_index=True, return_inverse=True)
    order = np.argsort(inverse.reshape(-1), kind="stable")
    ends = np.cumsum(np.bincount(inverse.reshape(-1), minlength=len(unique)))
    out = []
    for g in np.argsort(first, kind="stable"):
        rows = order[ends[g - 1] if g else 0 : ends[g]]
        code, values = int(unique[g]), []
        for options in reversed(decoded):
            code, at = divmod(code, len(options))
            values.append(options[at])
        out.append((tuple(reversed(values)), rows))
    return out


def group_stats(scored: Scored, rows: np.ndarray) -> dict[str, Any]:
    """``scores.score_stats`` of the rows at ``rows`` (at least one)."""
    scores = scored.score[rows]
    units = scored.unit[rows]
    n = len(rows)
    mean = math.fsum(scores.tolist()) / n  # Python floats: the same values, read faster
    top, high, low = (int(flag[rows].sum()) for flag in (scored.top, scored.high, scored.low))
    return {
        "scale": ";".join(sorted(scored.labels[c] for c in np.unique(scored.label[rows]))),
        "count": n,
        "mean": rounded(mean),
        "std": rounded(math.sqrt(math.fsum(((scores - mean) ** 2).tolist()) / (n - 1)))
        if n > 1
        else None,
        "min": float(scores.min()),
        "max": float(scores.max()),
        "mean_unit": None if np.isnan(units).any() else rounded(math.fsum(units.tolist()) / n),
        "top_of_scale": top,
        "top_of_scale_pct": round(100 * top / n, 1),
        "high": high,
        "high_pct": round(100 * high / n, 1),
        "low": low,
        "low_pct": round(100 * low / n, 1),
    }


def _or_nan(value: float | None) -> float:
    return math.nan if value is None else value
