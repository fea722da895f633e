"""``daydream compare``: paired comparisons of one axis's levels on matched units, or of two
cohorts on their shared essays or combinations.

A *unit* is what stays fixed while the compared axis changes: for an essay axis, the same
draft (so the same combination) with every other axis equal, judge included; for a draft
axis, the same combination with every other axis equal; for judge models, the same essay.
A unit's value at a level is the mean of its scored evaluations there (replicates pool).
A unit with a value at both levels is a *pair*, its difference is ``b - a``; a unit seen
at only one level is counted as unmatched and left out, never mixed in. A copy-mode essay
has no model, so against a level made of copies the other level's essays of the same
draft pool over their models.

Pairs that share a combination are not independent, so the interval resamples
combinations and the signed-rank test runs on one mean difference per combination
(``inference.paired_difference``). With more than two levels every pair of levels is
compared and the p-values of one rubric's family are Holm-adjusted. Scores are compared
within one rubric (evaluation template) only: rubrics have their own scales.
"""

from __future__ import annotations

import itertools
import math
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from daydream.errors import OptionError
from daydream.queue.cohorts import require_cohort
from daydream.results.inference import (
    MIN_TEST_CLUSTERS,
    holm,
    paired_difference,
    seed_for,
    significant,
)
from daydream.results.rows import evaluation_rows, is_scored
from daydream.results.scores import rounded

# axis -> (what a unit is, in words; the columns that identify it besides the rubric)
UNITS: dict[str, tuple[str, tuple[str, ...]]] = {
    "draft_template": (
        "the same combinations",
        ("combo_id", "draft_model", "essay_template", "essay_model", "evaluation_model"),
    ),
    "draft_model": (
        "the same combinations",
        ("combo_id", "draft_template", "essay_template", "essay_model", "evaluation_model"),
    ),
    "essay_template": ("the same drafts", ("draft_gen_id", "essay_model", "evaluation_model")),
    "generation_model": (
        "the same drafts",
        ("draft_gen_id", "essay_template", "evaluation_model"),
    ),
    "evaluation_model": ("the same essays", ("essay_gen_id",)),
}


# The spec's axis names (and the pivot's) for the same axes.
ALIASES = {
    "draft_llm": "draft_model",
    "essay_model": "generation_model",
    "essay_llm": "generation_model",
    "evaluation_llm": "evaluation_model",
    "judge_model": "evaluation_model",
}


SIGNIFICANCE = 0.05


COMPARISON_FIELDS = (
    "axis",
    "template",
    "a",
    "b",
    "matched_on",
    "n_pairs",
    "n_combinations",
    "unmatched_a",
    "unmatched_b",
    "mean_a",
    "mean_b",
    "mean_diff",
    "ci_low",
    "ci_high",
    "test",
    "p_value",
    "p_adjusted",
    "effect_size",
    "effect_size_kind",
    "cohens_dz",
    "verdict",
    "summary",
)


@dataclass
class Comparisons:
    """The comparisons of one ``daydream compare``, one dict per pair of levels and rubric."""

    cohorts: list[str]
    axis: str
    comparisons: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"cohorts": self.cohorts, "axis": self.axis, "comparisons": self.comparisons}


def compare_levels(
    conn: sqlite3.Connection,
    cohort_id: str,
    axis: str,
    *,
    levels: Sequence[str] = (),
    template: str | None = None,
) -> Comparisons:
    """Compare the levels of ``axis`` in ``cohort_id`` on matched units (see the module)."""
    require_cohort(conn, cohort_id)
    axis = ALIASES.get(axis, axis)
    if axis not in UNITS:
        raise OptionError(
            f'axis "{axis}" cannot be compared: use one of {", ".join(UNITS)}', option="--axis"
        )
    matched_on, key_columns = UNITS[axis]
    scored = [_with_essay_model(r) for r in evaluation_rows(conn, cohort_id) if is_scored(r)]
    present = sorted({str(r[axis]) for r in scored if r[axis] is not None})
    chosen = _levels(cohort_id, axis, present, levels)
    result = Comparisons([cohort_id], axis)
    for rubric in _templates(cohort_id, scored, template):
        units: dict[tuple, dict[str, list[float]]] = {}
        clusters: dict[tuple, str] = {}
        for r in scored:
            if r["evaluation_template"] == rubric and str(r[axis]) in chosen:
                key = tuple(r[c] for c in key_columns)
                units.setdefault(key, {}).setdefault(str(r[axis]), []).append(r["score"])
                clusters[key] = r["combo_id"]
        rows = []
        for a, b in itertools.combinations(chosen, 2):
            matched, groups = _copy_matches_any_model(units, clusters, key_columns, a, b)
            seed = seed_for(cohort_id, axis, rubric, a, b)
            rows.append(_compare(matched, groups, a, b, seed=seed))
        result.comparisons += _finish(rows, axis=axis, template=rubric, matched_on=matched_on)
    return result


def compare_cohorts(
    conn: sqlite3.Connection, cohort_a: str, cohort_b: str, *, template: str | None = None
) -> Comparisons:
    """Compare two cohorts per rubric: on the essays both scored if they share any, else on
    their shared combinations (a unit's value: the cohort's mean score there)."""
    require_cohort(conn, cohort_a)
    require_cohort(conn, cohort_b)
    if cohort_a == cohort_b:
        raise OptionError(f'compare a cohort with another one, not itself ("{cohort_a}")', option="COHORTS")
    scored = {c: [r for r in evaluation_rows(conn, c) if is_scored(r)] for c in (cohort_a, cohort_b)}
    shared = {r["essay_gen_id"] for r in scored[cohort_a]} & {
        r["essay_gen_id"] for r in scored[cohort_b]
    }
    unit, matched_on = ("essay_gen_id", "the same essays") if shared else (
        "combo_id",
        "the same combinations",
    )
    both = scored[cohort_a] + scored[cohort_b]
    result = Comparisons([cohort_a, cohort_b], "cohort")
    for rubric in _templates(f"{cohort_a} or {cohort_b}", both, template):
        units: dict[tuple, dict[str, list[float]]] = {}
        clusters: dict[tuple, str] = {}
        for cohort, rows in scored.items():
            for r in rows:
                if r["evaluation_template"] == rubric:
                    units.setdefault((r[unit],), {}).setdefault(cohort, []).append(r["score"])
                    clusters[(r[unit],)] = r["combo_id"]
        seed = seed_for(cohort_a, cohort_b, rubric)
        rows = [_compare(units, clusters, cohort_a, cohort_b, seed=seed)]
        result.comparisons += _finish(rows, axis="cohort", template=rubric, matched_on=matched_on)
    return result


# -- one pair of levels ----------------------------------------------------------------------


def _compare(
    units: dict[tuple, dict[str, list[float]]],
    clusters: dict[tuple, str],
    a: str,
    b: str,
    *,
    seed: int,
) -> dict[str, Any]:
    diffs, groups, values_a, values_b = [], [], [], []
    unmatched_a = unmatched_b = 0
    for key, by_level in units.items():
        if a in by_level and b in by_level:
            mean_a = sum(by_level[a]) / len(by_level[a])
            mean_b = sum(by_level[b]) / len(by_level[b])
            values_a.append(mean_a)
            values_b.append(mean_b)
            diffs.append(mean_b - mean_a)
            groups.append(clusters[key])
        elif a in by_level:
            unmatched_a += 1
        elif b in by_level:
            unmatched_b += 1
    paired = paired_difference(diffs, groups, seed=seed) if diffs else None
    return {
        "a": a,
        "b": b,
        "n_pairs": len(diffs),
        "n_combinations": paired.clusters if paired else 0,
        "unmatched_a": unmatched_a,
        "unmatched_b": unmatched_b,
        "mean_a": rounded(sum(values_a) / len(values_a)) if values_a else None,
        "mean_b": rounded(sum(values_b) / len(values_b)) if values_b else None,
        "mean_diff": rounded(paired.mean_diff) if paired else None,
        "ci_low": rounded(paired.ci_low) if paired else None,
        "ci_high": rounded(paired.ci_high) if paired else None,
        "test": "wilcoxon signed-rank on per-combination mean differences",
        "p_value": paired.p_value if paired else None,
        "effect_size": rounded(paired.rank_biserial) if paired else None,
        "effect_size_kind": "matched-pairs rank-biserial correlation",
        "cohens_dz": rounded(paired.cohens_dz) if paired else None,
    }


def _finish(
    rows: list[dict[str, Any]], *, axis: str, template: str, matched_on: str
) -> list[dict[str, Any]]:
    """Holm-adjust the family, then add the verdict and the sentence that says it."""
    adjusted = holm([r["p_value"] for r in rows])
    out = []
    for row, p_adjusted in zip(rows, adjusted, strict=True):
        row = {
            **row,
            "axis": axis,
            "template": template,
            "matched_on": matched_on,
            "p_value": significant(row["p_value"]),
            "p_adjusted": significant(p_adjusted),
        }
        row["verdict"] = verdict(row)
        row["summary"] = describe(row, family=len(rows))
        out.append({name: row.get(name) for name in COMPARISON_FIELDS})
    return out


def verdict(row: dict[str, Any]) -> str:
    """``b_higher``, ``a_higher``, ``no_clear_difference``, ``mixed`` (the interval and the
    test disagree), ``too_few`` (fewer than ``MIN_TEST_CLUSTERS`` combinations) or
    ``no_pairs``."""
    if not row["n_pairs"]:
        return "no_pairs"
    if row["n_combinations"] < MIN_TEST_CLUSTERS:
        return "too_few"
    significant_test = row["p_adjusted"] is not None and row["p_adjusted"] < SIGNIFICANCE
    low, high = row["ci_low"], row["ci_high"]
    excludes_zero = low is not None and high is not None and (low > 0 or high < 0)
    if significant_test and excludes_zero:
        return "b_higher" if row["mean_diff"] > 0 else "a_higher"
    if not significant_test and not excludes_zero:
        return "no_clear_difference"
    return "mixed"


def describe(row: dict[str, Any], *, family: int = 1) -> str:
    """What the numbers support, in one sentence."""
    a, b, n, k = row["a"], row["b"], row["n_pairs"], row["n_combinations"]
    d = row["mean_diff"]
    kind = row["verdict"]
    if kind == "no_pairs":
        return (
            f"{a} and {b} share none of {row['matched_on']}: nothing to compare"
            f" ({row['unmatched_a']} unit(s) of {a} and {row['unmatched_b']} of {b} unmatched)"
        )
    evidence = f"95% CI {_n(row['ci_low'])} to {_n(row['ci_high'])}, n={n} pairs in {k} combinations"
    p_name = "Holm-adjusted p" if family > 1 else "p"
    test = f"Wilcoxon {p_name}={_p(row['p_adjusted'])}, rank-biserial r={_n(row['effect_size'])}"
    if kind == "too_few":
        return (
            f"too few combinations to tell ({k}; a paired test needs at least"
            f" {MIN_TEST_CLUSTERS} to reach p < 0.05): {b} minus {a} is {d:+.2f} over {n} pairs"
        )
    if kind in ("b_higher", "a_higher"):
        direction = "higher" if d > 0 else "lower"
        return f"{b} scores {abs(d):.2f} {direction} than {a} on {row['matched_on']} ({evidence}; {test})"
    if kind == "no_clear_difference":
        return (
            f"no clear difference between {a} and {b} on {row['matched_on']}: {b} minus {a} is"
            f" {d:+.2f} ({evidence}, which includes 0; {test})"
        )
    return (
        f"inconclusive: {b} minus {a} is {d:+.2f} on {row['matched_on']} ({evidence}), but"
        f" the interval and the test disagree ({test}); collect more combinations"
    )


# -- helpers ----------------------------------------------------------------------------------


def _copy_matches_any_model(
    units: dict[tuple, dict[str, list[float]]],
    clusters: dict[tuple, str],
    key_columns: tuple[str, ...],
    a: str,
    b: str,
) -> tuple[dict[tuple, dict[str, list[float]]], dict[tuple, str]]:
    """A copy-mode essay has no model of its own: when one level is made only of copies,
    the other level's essays of the same draft (and judge) pool over their models, so
    "writing an essay" can be compared with "copying the draft"."""
    if "essay_model" not in key_columns:
        return units, clusters
    i = key_columns.index("essay_model")
    copies = [
        all(key[i] is None for key, by_level in units.items() if level in by_level)
        for level in (a, b)
    ]
    if not any(copies):
        return units, clusters
    merged: dict[tuple, dict[str, list[float]]] = {}
    groups: dict[tuple, str] = {}
    for key, by_level in units.items():
        short = key[:i] + key[i + 1 :]
        for level, scores in by_level.items():
            merged.setdefault(short, {}).setdefault(level, []).extend(scores)
        groups[short] = clusters[key]
    return merged, groups


def _with_essay_model(row: dict[str, Any]) -> dict[str, Any]:
    """The essay's own model (None for a copy essay, whose generation_model is its draft's)."""
    return {**row, "essay_model": None if row["essay_mode"] == "copy" else row["generation_model"]}


def _levels(cohort_id: str, axis: str, present: list[str], wanted: Sequence[str]) -> list[str]:
    if not wanted:
        if len(present) < 2:
            raise OptionError(
                f'cohort "{cohort_id}" has scores at {len(present)} level(s) of {axis}'
                f" ({', '.join(present) or 'none'}): nothing to compare; pick another --axis",
                option="--axis",
            )
        return present
    chosen = list(dict.fromkeys(wanted))
    missing = [level for level in chosen if level not in present]
    if missing:
        raise OptionError(
            f'{axis} "{missing[0]}" has no scores in cohort "{cohort_id}"'
            f" (levels with scores: {', '.join(present) or 'none'})",
            option="--levels",
        )
    if len(chosen) < 2:
        raise OptionError(f"give at least two levels of {axis} to compare", option="--levels")
    return chosen


def _templates(cohort: str, scored: list[dict[str, Any]], template: str | None) -> list[str]:
    present = sorted({r["evaluation_template"] for r in scored})
    if template is None:
        return present
    if template not in present:
        raise OptionError(
            f'evaluation template "{template}" has no scores in cohort {cohort}'
            f" (scored: {', '.join(present) or 'none'})",
            option="--template",
        )
    return [template]


def _n(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _p(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "n/a"
    return "<0.001" if value < 0.001 else f"{value:.3f}"
