"""The report's tables with one row per essay (the essay pivot) or per essay and rubric
(judge agreement), computed on arrays of the cohort's evaluations.

Row by row in Python these were a fifth of a large report's time (100,000 essays, 800,000
evaluations). Here each evaluation's essay, rubric and judge model is an integer code, the
scored evaluations are sorted once by essay and judge, and every group is a contiguous
slice. The numbers are the row-by-row definitions' to the last bit:

- every sum of scores is ``math.fsum`` of the group (exact, so the order of a group's
  values does not matter), a mean is that sum over the count (``statistics.fmean``);
- a standard deviation is the fsum of the squared deviations from that mean over n - 1,
  squared with Python's ``**`` (the C library's ``pow``, which is not always numpy's
  ``x * x`` in the last bit), as the row-by-row code did;
- minima and maxima are order-free; every value is a Python float before it is rounded.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from daydream.results.groups import Scored, coded, from_columns, scale_bounds
from daydream.results.inference import t_bounds
from daydream.results.reliability import Coders
from daydream.results.rows import LINEAGE, Records
from daydream.results.scores import rounded, scale_label, scale_span, stability, unscored_reason
from daydream.results.tables import AGREEMENT_COLUMNS, UNSCORED_COLUMNS, Table


class Judged:
    """Per evaluation (in the rows' order): its essay's place in ``essays``, its rubric
    and judge model as codes in their names' sorted order, whether it is scored, its
    score (0 when not) and its scale (NaN when none, and as a code of its (min, max)).
    The rows are read once (one tuple per row), then only the arrays."""

    def __init__(self, essays: Sequence[dict[str, Any]], rows: Sequence[dict[str, Any]]) -> None:
        place = {e["essay_gen_id"]: i for i, e in enumerate(essays)}
        n = len(rows)
        self.rows = rows
        self.essays = len(essays)
        self.essay_ids = list(place)
        if isinstance(rows, Records):
            read = rows.read(*_READ)
        else:
            read = list(map(operator.itemgetter(*_READ), rows))
        columns = list(zip(*read, strict=True)) or [()] * len(_READ)
        essay, template, model, combo, state, score, low, high, replicate = columns
        self.replicate = replicate
        self.essay = np.fromiter(map(place.__getitem__, essay), np.int64, count=n)
        self.template, self.templates = _sorted_codes(template)
        self.model, self.models = _sorted_codes(model)
        self.combo = coded(combo)
        scores = [v if s == "ok" else None for v, s in zip(score, state, strict=True)]
        self.scored = np.fromiter((v is not None for v in scores), bool, count=n)
        self.score = np.fromiter((0.0 if v is None else v for v in scores), float, count=n)
        self.scale = coded(list(zip(low, high, strict=True)))
        bounds = scale_bounds(self.scale[1])
        self.low, self.high = bounds[self.scale[0], 0], bounds[self.scale[0], 1]

    def scored_arrays(self) -> Scored:
        """``groups.scored_arrays`` of the scored rows, from these arrays."""
        at = np.flatnonzero(self.scored)
        return from_columns(
            _taken(self.rows, at),
            score=self.score[at],
            scale=(self.scale[0][at], self.scale[1]),
            codes={
                "essay_gen_id": (self.essay[at], self.essay_ids),
                "evaluation_template": (self.template[at], self.templates),
                "evaluation_model": (self.model[at], self.models),
                "combo_id": (self.combo[0][at], self.combo[1]),
            },
        )

    def coders(self) -> Coders:
        """The scored evaluations as ``reliability.Coders``, coded from these arrays
        (essay ids sorted; names sorted as ``Coders`` sorts them: by ``str``)."""
        at = np.flatnonzero(self.scored)
        rows = _taken(self.rows, at)
        ids = self.essay_ids
        order = sorted(range(len(ids)), key=ids.__getitem__)
        rank = np.empty(len(ids), dtype=np.int64)
        rank[order] = np.arange(len(ids))
        coded = {"essay_gen_id": (rank[self.essay[at]], [ids[i] for i in order])}
        for column, codes, names in (
            ("evaluation_template", self.template, self.templates),
            ("evaluation_model", self.model, self.models),
        ):
            if all(isinstance(name, str) for name in names):  # sorted as by str
                coded[column] = (codes[at], names)
        coded["evaluation_replicate"] = _sorted_codes([self.replicate[i] for i in at], key=str)
        return Coders(rows, self.score[at], coded)

    def judges(self) -> list[tuple[Any, Any]]:
        """The (template, model) pairs that evaluated, sorted."""
        keys = np.unique(self.template * len(self.models) + self.model).tolist()
        return [
            (self.templates[k // len(self.models)], self.models[k % len(self.models)]) for k in keys
        ]


def essay_pivot(essays: list[dict[str, Any]], judged: Judged) -> Table:
    """Per essay (in ``essays``' order): each judge's mean, min, max and count of its
    scored evaluations, then the mean, std, count, judges, mean on 0-1 and t interval of
    all of them."""
    judge_key = judged.template * len(judged.models) + judged.model
    keys = np.unique(judge_key)  # the judges, sorted as (template, model) pairs
    judges = len(keys)
    at = np.flatnonzero(judged.scored)
    at = at[np.lexsort((judge_key[at], judged.essay[at]))]
    essay = judged.essay[at]
    groups = essay * judges + np.searchsorted(keys, judge_key[at])
    scores = judged.score[at]
    per_judge = _judge_columns(scores, groups, judged.essays, judges)
    totals = _Groups(essay, judged.essays)
    span = judged.high[at] - judged.low[at]
    with np.errstate(invalid="ignore", divide="ignore"):
        units = ((scores - judged.low[at]) / span).tolist()
    no_scale = totals.how_many(~(span > 0))
    counted = totals.how_many(np.diff(groups, prepend=-1) != 0)  # a judge's first row
    values, nonempty = scores.tolist(), totals.nonempty.tolist()
    columns = [*LINEAGE, "essay_state"]
    for name in ("__".join(judge) for judge in judged.judges()):
        columns += [name, f"{name}_min", f"{name}_max", f"{name}_n"]
    columns += ["mean", "std", "n", "judges", "mean_unit", "ci_low", "ci_high"]
    rows = []
    stats = iter(zip(totals.slices(), no_scale, counted, strict=True))
    for i, essay_row in enumerate(essays):
        summary: tuple = (None, None, 0, 0, None, None, None)
        if nonempty[i]:
            (start, stop), unscaled, judged_by = next(stats)
            summary = _essay_summary(values[start:stop], units[start:stop], unscaled > 0)
            summary = (*summary[:3], judged_by, *summary[3:])
        rows.append((*essay_row.values(), *per_judge[i], *summary))
    return Table("essay_pivot", columns, Records(columns, rows))


def _judge_columns(
    scores: np.ndarray, groups: np.ndarray, essays: int, judges: int
) -> list[list[Any]]:
    """Per essay: each judge's rounded mean, min, max and count (None, None, None, 0
    without a scored evaluation of that judge)."""
    by = _Groups(groups, essays * judges)
    values = scores.tolist()
    means = [rounded(math.fsum(values[a:b]) / (b - a)) for a, b in by.slices()]
    lows = np.minimum.reduceat(scores, by.starts).tolist() if len(scores) else []
    highs = np.maximum.reduceat(scores, by.starts).tolist() if len(scores) else []
    cells: list[Any] = [None, None, None, 0] * (essays * judges)
    for g, mean, low, high, n in zip(
        by.present.tolist(), means, lows, highs, by.counts.tolist(), strict=True
    ):
        cells[4 * g : 4 * g + 4] = (mean, low, high, n)
    width = 4 * judges
    return [cells[i * width : (i + 1) * width] for i in range(essays)]


def _essay_summary(values: list[float], units: list[float], unscaled: bool) -> tuple:
    """An essay's mean, std, n, mean on 0-1 and t interval (``t_interval``) of its scored
    evaluations' ``values`` (at least one)."""
    n = len(values)
    mean = math.fsum(values) / n
    mean_unit = None if unscaled else rounded(math.fsum(units) / n)
    if n < 2:
        return (rounded(mean), None, n, mean_unit, None, None)
    spread = _std(values, mean)
    low, high = t_bounds(mean, spread, n)
    return (rounded(mean), rounded(spread), n, mean_unit, rounded(low), rounded(high))


def judge_agreement(essays: list[dict[str, Any]], judged: Judged) -> Table:
    """Per essay and evaluation template: the judge models' mean scores and their spread
    (the scale is the template's on the pair's first evaluation)."""
    templates, models = len(judged.templates), len(judged.models)
    pair = judged.essay * templates + judged.template
    pairs, first = np.unique(pair, return_index=True)  # essays' order, then the templates'
    at = np.flatnonzero(judged.scored)
    at = at[np.lexsort((judged.model[at], pair[at]))]
    per_model = _Groups(pair[at] * models + judged.model[at], None)
    scores = judged.score[at].tolist()
    model_means = [math.fsum(scores[a:b]) / (b - a) for a, b in per_model.slices()]
    owner = np.searchsorted(pairs, per_model.present // models)  # each model mean's pair
    bounds = np.searchsorted(owner, np.arange(len(pairs) + 1)).tolist()
    names = [judged.models[m] for m in (per_model.present % models).tolist()]
    lineage = [[e[c] for c in AGREEMENT_COLUMNS[:7]] for e in essays]
    low, high = judged.low[first].tolist(), judged.high[first].tolist()
    rows = []
    for i, (p, a, b) in enumerate(zip(pairs.tolist(), bounds, bounds[1:], strict=False)):
        values = model_means[a:b]
        scale = (_or_none(low[i]), _or_none(high[i]))
        cells = (
            *lineage[p // templates],
            judged.templates[p % templates],
            scale_label(*scale),
            len(values),
            ", ".join(names[a:b]),
            *_spread(values, *scale),
        )
        rows.append(cells)
    return Table("judge_agreement", list(AGREEMENT_COLUMNS), Records(AGREEMENT_COLUMNS, rows))


def unscored_essays(essays: list[dict[str, Any]], judged: Judged) -> Table:
    """Per essay and evaluation template with evaluations and no scored one: why (sorted
    by essay id and template)."""
    templates = len(judged.templates)
    pair = judged.essay * templates + judged.template
    order = np.argsort(pair, kind="stable")  # a pair's evaluations stay in their order
    by = _Groups(pair[order], None)
    found = []
    for (start, stop), p, scored in zip(
        by.slices(), by.present.tolist(), by.how_many(judged.scored[order]), strict=True
    ):
        if not scored:
            essay, template = essays[p // templates], judged.templates[p % templates]
            group = [judged.rows[i] for i in order[start:stop].tolist()]
            found.append(((essay["essay_gen_id"], template), essay, group))
    rows = []
    for (essay_id, template), lineage, group in sorted(found, key=operator.itemgetter(0)):
        rows.append(
            {
                **{c: lineage.get(c) for c in UNSCORED_COLUMNS[:9]},
                "essay_gen_id": essay_id,
                "evaluation_template": template,
                "evaluations": len(group),
                "reason": unscored_reason(lineage.get("essay_state"), group),
            }
        )
    return Table("unscored_essays", list(UNSCORED_COLUMNS), rows)


def _spread(values: list[float], low: float | None, high: float | None) -> tuple:
    """mean, std, min, max, range, range_pct and stability of judge models' means."""
    if not values:
        return (None,) * 6 + (stability(None, 0, low, high),)
    mean = math.fsum(values) / len(values)
    smallest, largest = min(values), max(values)
    spread = largest - smallest
    several = len(values) > 1
    span = scale_span(low, high)
    return (
        rounded(mean),
        rounded(_std(values, mean)) if several else None,
        rounded(smallest),
        rounded(largest),
        rounded(spread) if several else None,
        round(100 * spread / span, 1) if span and several else None,
        stability(spread, len(values), low, high),
    )


def _std(values: list[float], mean: float) -> float:
    """The sample standard deviation (n - 1) of two or more values whose mean is ``mean``,
    by ``math.fsum`` (``statistics.stdev`` to within rounding, a hundred times faster)."""
    return math.sqrt(math.fsum([(v - mean) ** 2 for v in values]) / (len(values) - 1))


# What Judged reads of each evaluation row, in order.
_READ = (
    "essay_gen_id", "evaluation_template", "evaluation_model", "combo_id", "state", "score",
    "scale_min", "scale_max", "evaluation_replicate",
)  # fmt: skip


def _taken(rows: Sequence[dict[str, Any]], at: np.ndarray) -> Sequence[dict[str, Any]]:
    """The rows at positions ``at`` (as ``Records`` when they are)."""
    if isinstance(rows, Records):
        return rows.taken(at.tolist())
    return [rows[i] for i in at.tolist()]


class _Groups:
    """The groups of a sorted array of group numbers: each present group's number, first
    position and size."""

    def __init__(self, sorted_groups: np.ndarray, size: int | None) -> None:
        new = np.flatnonzero(np.diff(sorted_groups, prepend=-1) != 0)
        self.present = sorted_groups[new]
        self.starts = new
        self.counts = np.diff(np.append(new, len(sorted_groups)))
        self.size = len(sorted_groups)
        if size is not None:
            self.nonempty = np.zeros(size, dtype=bool)
            self.nonempty[self.present] = True

    def how_many(self, flags: np.ndarray) -> list[int]:
        """Per present group, how many of its rows' ``flags`` are true."""
        return np.add.reduceat(flags.astype(np.int64), self.starts).tolist() if self.size else []

    def slices(self) -> list[tuple[int, int]]:
        """Each present group's (start, stop) positions."""
        starts = self.starts.tolist()
        return list(zip(starts, [*starts[1:], self.size], strict=False))  # none: no stop


def _sorted_codes(
    values: Sequence[Any], key: Callable[[Any], Any] | None = None
) -> tuple[np.ndarray, list[Any]]:
    """Each value's place among the distinct values sorted (by ``key``), and those values."""
    codes, found = coded(values)
    order = sorted(range(len(found)), key=lambda i: found[i] if key is None else key(found[i]))
    rank = np.empty(len(found), dtype=np.int64)
    rank[order] = np.arange(len(found))
    return rank[codes], [found[i] for i in order]


def _or_none(value: float) -> float | None:
    return None if math.isnan(value) else value
