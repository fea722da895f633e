"""Judge reliability and calibration: do judges agree, with each other, with themselves and
with human raters?

- **Krippendorff's alpha** for interval data (Krippendorff 2011, "Computing Krippendorff's
  alpha-reliability"): ``1 - D_o / D_e``, observed over expected disagreement, with
  squared differences as the metric. Missing values are allowed; a unit (an essay) counts
  when at least two coders scored it. 1 is perfect agreement, 0 is chance, below 0 is
  systematic disagreement. Krippendorff's reading: >= 0.800 reliable, >= 0.667 tentative
  conclusions only, below that unreliable.
- **Intraclass correlation** (Shrout & Fleiss 1979) from the ANOVA mean squares of the
  essays x coders table, over essays every coder scored: ICC(2,1) (two-way random,
  absolute agreement of one coder) between judge models, which are distinct coders;
  ICC(1,1) (one-way random) between replicates of one judge, which are interchangeable.
- **Calibration** against humans: per judge, Spearman's rho and Kendall's tau-b
  (``scipy.stats``) between the judge's score of an essay and the human mean, the mean bias
  (judge minus human mean), and alpha of the judge together with the human raters beside
  alpha of the humans alone (the ceiling a judge can reach).

A coder's value for an essay is its mean over its evaluation replicates (between judges)
or one replicate's score (between replicates). Only one rubric at a time: two rubrics
scoring an essay differently is not disagreement.

The two coefficients are computed here (the few lines of each published formula, with
numpy) because the packages that ship them are GPL-licensed; tests check both against
the published examples and against the ``krippendorff`` package.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from daydream.results.inference import significant
from daydream.results.rows import is_scored
from daydream.results.scores import rounded

RELIABILITY_COLUMNS = (
    "evaluation_template",
    "scope",
    "evaluation_model",
    "coders",
    "essays",
    "scores",
    "alpha",
    "alpha_reading",
    "icc",
    "icc_form",
    "icc_essays",
)


CALIBRATION_COLUMNS = (
    "evaluation_template",
    "evaluation_model",
    "essays",
    "raters",
    "human_ratings",
    "spearman",
    "spearman_p",
    "kendall",
    "kendall_p",
    "mean_bias",
    "alpha_with_humans",
    "human_alpha",
)


ALL_JUDGES = "(all judges)"


def alpha_interval(matrix: Any) -> float | None:
    """Krippendorff's alpha, interval metric, of a coders x units table (NaN = missing).

    None when no unit has two values or the pairable values do not vary (no expected
    disagreement to compare with).
    """
    data = np.asarray(matrix, dtype=float)
    present = ~np.isnan(data)
    per_unit = present.sum(axis=0)
    keep = per_unit >= 2
    if not keep.any():
        return None
    values, present, m = data[:, keep], present[:, keep], per_unit[keep]
    filled = np.where(present, values, 0.0)
    total, squares = filled.sum(axis=0), (filled**2).sum(axis=0)
    # Sum over ordered pairs (i != j) of one unit of (v_i - v_j)^2 = 2 (m sum v^2 - (sum v)^2).
    observed = (2 * (m * squares - total**2) / (m - 1)).sum()
    n = m.sum()
    expected = 2 * (n * squares.sum() - total.sum() ** 2) / (n - 1)
    if expected <= 1e-12 * max(1.0, n * squares.sum()):
        return None
    return float(1 - observed / expected)


def icc(table: Any, form: str) -> float | None:
    """The intraclass correlation ``form`` ("ICC(1,1)", "ICC(2,1)" or "ICC(3,1)") of a
    complete units x coders table (Shrout & Fleiss 1979); None below two units or coders,
    or when the table does not vary."""
    data = np.asarray(table, dtype=float)
    if data.ndim != 2 or data.shape[0] < 2 or data.shape[1] < 2:
        return None
    n, k = data.shape
    grand = data.mean()
    rows = k * ((data.mean(axis=1) - grand) ** 2).sum() / (n - 1)
    cols = n * ((data.mean(axis=0) - grand) ** 2).sum() / (k - 1)
    within = ((data - data.mean(axis=1, keepdims=True)) ** 2).sum() / (n * (k - 1))
    error = (
        ((data - grand) ** 2).sum() - (n - 1) * rows - (k - 1) * cols
    ) / ((n - 1) * (k - 1))
    if form == "ICC(1,1)":
        denominator = rows + (k - 1) * within
        numerator = rows - within
    elif form == "ICC(2,1)":
        denominator = rows + (k - 1) * error + k * (cols - error) / n
        numerator = rows - error
    elif form == "ICC(3,1)":
        denominator = rows + (k - 1) * error
        numerator = rows - error
    else:
        raise ValueError(f"unknown ICC form {form!r}")
    return float(numerator / denominator) if abs(denominator) > 1e-12 else None


def alpha_reading(alpha: float | None) -> str:
    """Krippendorff's guideline for a value of alpha."""
    if alpha is None:
        return "too few scores"
    if alpha >= 0.8:
        return "reliable"
    if alpha >= 0.667:
        return "tentative"
    return "unreliable"


def judge_reliability(
    evaluations: Sequence[dict[str, Any]], scored: Coders | None = None
) -> list[dict[str, Any]]:
    """Per rubric, agreement between judge models; per rubric and judge model, between its
    evaluation replicates (only where some essay has two of them). ``scored``: the scored
    evaluations as ``Coders`` already (a report has their columns coded)."""
    if scored is None:
        scored = Coders([r for r in evaluations if is_scored(r)])
    rows = []
    for template in scored.values("evaluation_template"):
        mine = scored.where("evaluation_template", template)
        models = scored.values("evaluation_model", mine)
        if len(models) > 1:  # one model cannot disagree
            judges = scored.matrix(mine, coder="evaluation_model")
            rows.append(_reliability_row(template, "judge models", None, judges, "ICC(2,1)"))
        for model in models:
            one = mine & scored.where("evaluation_model", model)
            replicas = scored.matrix(one, coder="evaluation_replicate")
            if ((~np.isnan(replicas)).sum(axis=0) >= 2).any():
                rows.append(_reliability_row(template, "replicates", model, replicas, "ICC(1,1)"))
    return rows


class Coders:
    """Scored evaluations as arrays: each column coded in its values' sorted order (the
    order ``_matrix`` gives coders and units), so a subset's coders x essays matrix of
    mean scores is two bincounts. A sum of a cell adds its scores in the rows' order, as
    ``_table`` does, so the means are the same floats. ``score`` and ``coded`` columns
    (codes, sorted values: values that no row has may be among them) can come ready."""

    def __init__(
        self,
        rows: Sequence[dict[str, Any]],
        score: np.ndarray | None = None,
        coded: dict[str, tuple[np.ndarray, list[Any]]] | None = None,
    ) -> None:
        self.rows = rows
        if score is None:
            score = np.fromiter((r["score"] for r in rows), dtype=float, count=len(rows))
        self.score = score
        self._coded: dict[str, tuple[np.ndarray, list[Any]]] = dict(coded or {})

    def _codes(self, column: str) -> tuple[np.ndarray, list[Any]]:
        if column not in self._coded:
            values = [r[column] for r in self.rows]
            ordered = sorted(set(values), key=str if column != "essay_gen_id" else None)
            index = {value: i for i, value in enumerate(ordered)}
            codes = np.fromiter((index[v] for v in values), dtype=np.int64, count=len(values))
            self._coded[column] = (codes, ordered)
        return self._coded[column]

    def values(self, column: str, mask: np.ndarray | None = None) -> list[Any]:
        """The column's values (of the rows in ``mask``), sorted."""
        codes, ordered = self._codes(column)
        present = np.unique(codes if mask is None else codes[mask])
        return [ordered[i] for i in present]

    def where(self, column: str, value: Any) -> np.ndarray:
        codes, ordered = self._codes(column)
        return codes == ordered.index(value)

    def matrix(self, mask: np.ndarray, *, coder: str, unit: str = "essay_gen_id") -> np.ndarray:
        """``_matrix(_table(rows in mask, coder=coder, unit=unit))``."""
        coders, units = self._codes(coder)[0][mask], self._codes(unit)[0][mask]
        coder_levels, coder_at = np.unique(coders, return_inverse=True)
        unit_levels, unit_at = np.unique(units, return_inverse=True)
        cells = coder_at.reshape(-1) * len(unit_levels) + unit_at.reshape(-1)
        size = len(coder_levels) * len(unit_levels)
        sums = np.bincount(cells, weights=self.score[mask], minlength=size)
        counts = np.bincount(cells, minlength=size)
        with np.errstate(invalid="ignore", divide="ignore"):
            means = np.where(counts > 0, sums / counts, np.nan)
        return means.reshape(len(coder_levels), len(unit_levels))


def judge_calibration(
    evaluations: Sequence[dict[str, Any]], ratings: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Per rubric with human ratings: each judge model against the human mean of the essays
    both scored, and one row for all judges together with the humans."""
    scored = [r for r in evaluations if is_scored(r)] if ratings else []
    rows = []
    for template in sorted({r["evaluation_template"] for r in ratings}):
        humans = _table(
            [r for r in ratings if r["evaluation_template"] == template],
            coder="rater",
            unit="essay_gen_id",
        )
        judges = _table(
            [r for r in scored if r["evaluation_template"] == template], coder="evaluation_model"
        )
        human_alpha = rounded(alpha_interval(_matrix(humans)))
        raters = len({c for by_coder in humans.values() for c in by_coder})
        models = sorted({m for by_coder in judges.values() for m in by_coder})
        for model in models:
            judge = {u: {model: c[model]} for u, c in judges.items() if model in c}
            rows.append(_calibration_row(template, model, judge, humans, raters, human_alpha))
        if len(models) > 1:
            rows.append(
                _calibration_row(template, ALL_JUDGES, judges, humans, raters, human_alpha)
            )
    return rows


def correlations(x: Iterable[float], y: Iterable[float]) -> dict[str, float | None]:
    """Spearman's rho and Kendall's tau-b with their two-sided p-values (scipy.stats);
    None below three pairs or when either side does not vary."""
    from scipy.stats import kendalltau, spearmanr

    a, b = np.asarray(list(x), dtype=float), np.asarray(list(y), dtype=float)
    empty: dict[str, float | None] = dict.fromkeys(("spearman", "spearman_p", "kendall", "kendall_p"))
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return empty
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rho = spearmanr(a, b)
        tau = kendalltau(a, b)
    return {
        "spearman": _finite(rho.statistic),
        "spearman_p": _finite(rho.pvalue),
        "kendall": _finite(tau.statistic),
        "kendall_p": _finite(tau.pvalue),
    }


# -- shaping -----------------------------------------------------------------------------


def _table(
    rows: list[dict[str, Any]], *, coder: str, unit: str = "essay_gen_id"
) -> dict[str, dict[Any, float]]:
    """unit -> coder -> the mean of the coder's scores of the unit."""
    values: dict[str, dict[Any, list[float]]] = {}
    for r in rows:
        values.setdefault(r[unit], {}).setdefault(r[coder], []).append(r["score"])
    return {u: {c: sum(v) / len(v) for c, v in by.items()} for u, by in values.items()}


def _matrix(table: dict[str, dict[Any, float]]) -> np.ndarray:
    """coders x units, NaN where a coder did not score a unit."""
    coders = sorted({c for by_coder in table.values() for c in by_coder}, key=str)
    units = sorted(table)
    out = np.full((len(coders), len(units)), np.nan)
    for j, u in enumerate(units):
        for i, c in enumerate(coders):
            if c in table[u]:
                out[i, j] = table[u][c]
    return out


def _reliability_row(
    template: str, scope: str, model: str | None, matrix: np.ndarray, form: str
) -> dict[str, Any]:
    """One row of judge_reliability from its coders x essays matrix of mean scores."""
    complete = matrix[:, ~np.isnan(matrix).any(axis=0)]
    alpha = alpha_interval(matrix)
    pairable = (~np.isnan(matrix)).sum(axis=0) >= 2
    return {
        "evaluation_template": template,
        "scope": scope,
        "evaluation_model": model,
        "coders": matrix.shape[0],
        "essays": int(pairable.sum()),
        "scores": int((~np.isnan(matrix[:, pairable])).sum()),
        "alpha": rounded(alpha),
        "alpha_reading": alpha_reading(alpha),
        "icc": rounded(icc(complete.T, form)),
        "icc_form": form,
        "icc_essays": complete.shape[1],
    }


def _calibration_row(
    template: str,
    model: str,
    judge: dict[str, dict[Any, float]],
    humans: dict[str, dict[Any, float]],
    raters: int,
    human_alpha: float | None,
) -> dict[str, Any]:
    essays = sorted(u for u in judge if u in humans)
    judged = [sum(judge[u].values()) / len(judge[u]) for u in essays]
    human_mean = [sum(humans[u].values()) / len(humans[u]) for u in essays]
    both = {u: {**{("judge", c): v for c, v in judge[u].items()}, **humans[u]} for u in essays}
    bias = [j - h for j, h in zip(judged, human_mean, strict=True)]
    return {
        "evaluation_template": template,
        "evaluation_model": model,
        "essays": len(essays),
        "raters": raters,
        "human_ratings": sum(len(humans[u]) for u in essays),
        **{
            k: significant(v) if k.endswith("_p") else rounded(v)
            for k, v in correlations(judged, human_mean).items()
        },
        "mean_bias": rounded(sum(bias) / len(bias)) if bias else None,
        "alpha_with_humans": rounded(alpha_interval(_matrix(both))) if both else None,
        "human_alpha": human_alpha,
    }


def _finite(value: Any) -> float | None:
    number = float(value)
    return number if math.isfinite(number) else None
