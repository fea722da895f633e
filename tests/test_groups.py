"""The report's groups and group statistics on numpy arrays (daydream/results/groups.py)
against the plain row-by-row definitions: every grouping of the report (tables.AXES) over
rows that mix three scales, a template without a scale, scores at and around each
threshold, and None among the grouping values."""

from __future__ import annotations

import random
import statistics

import numpy as np
import pytest

from daydream.results.groups import group_stats, groups, scored_arrays
from daydream.results.scores import (
    is_high,
    is_low,
    is_top,
    mean_unit,
    rounded,
    scale_label,
)
from daydream.results.tables import AXES

SCALES = [(0.0, 10.0), (1.0, 5.0), (0.0, 9.0), (None, None)]


def _rows(n: int, seed: int = 7) -> list[dict]:
    """``n`` scored evaluations of 31 essays; an essay's lineage is the same on each of its
    evaluations, as in a cohort."""
    rng = random.Random(seed)
    essays = [
        {
            "essay_gen_id": f"e{i}",
            "combo_id": f"c{rng.randint(0, 5)}",
            "draft_template": rng.choice(["d1", "d2", None]),
            "draft_model": rng.choice(["m1", "m2"]),
            "draft_replicate": rng.choice([1, 2]),
            "essay_template": rng.choice(["t1", "t2"]),
            "generation_model": rng.choice(["m1", "m2", "m3"]),
            "essay_replicate": rng.choice([1, None]),
        }
        for i in range(31)
    ]
    rows = []
    for _ in range(n):
        low, high = rng.choice(SCALES)
        top = 10.0 if high is None else high
        score = rng.choice([float(rng.randint(0, int(top))), top, (low or 0) + 0.3 * (top - (low or 0))])
        rows.append(
            {
                "score": score,
                "scale_min": low,
                "scale_max": high,
                **rng.choice(essays),
                "evaluation_template": rng.choice(["r1", "r2"]),
                "evaluation_model": rng.choice(["j1", "j2"]),
            }
        )
    return rows


def _reference(rows: list[dict]) -> dict:
    """What the report computed row by row before the arrays."""
    scores = [r["score"] for r in rows]
    n = len(scores)
    top = sum(1 for r in rows if is_top(r))
    high = sum(1 for r in rows if is_high(r))
    low = sum(1 for r in rows if is_low(r))
    return {
        "scale": ";".join(sorted({scale_label(r["scale_min"], r["scale_max"]) for r in rows})),
        "count": n,
        "mean": rounded(statistics.fmean(scores)),
        "std": rounded(statistics.stdev(scores)) if n > 1 else None,
        "min": min(scores),
        "max": max(scores),
        "mean_unit": mean_unit(rows),
        "top_of_scale": top,
        "top_of_scale_pct": round(100 * top / n, 1),
        "high": high,
        "high_pct": round(100 * high / n, 1),
        "low": low,
        "low_pct": round(100 * low / n, 1),
    }


@pytest.mark.parametrize("n", [1, 2, 400])
def test_every_grouping_gives_the_row_by_row_groups_and_statistics(n):
    rows = _rows(n)
    arrays = scored_arrays(rows)
    for _, keys in AXES:
        expected: dict[tuple, list[int]] = {}
        for i, r in enumerate(rows):
            expected.setdefault(tuple(r[k] for k in keys), []).append(i)
        got = groups(arrays, keys)
        assert [(values, list(members)) for values, members in got] == list(expected.items())
        for values, members in got:
            assert group_stats(arrays, members) == _reference([rows[i] for i in members]), (
                keys,
                values,
            )


def test_thresholds_on_a_1_to_5_scale_and_a_group_without_a_scale():
    """On 1-5: 5 is the top, high from 4.2 (1 + 0.8 x 4), low up to 2.2 (1 + 0.3 x 4);
    units 0, 1, 0.8, 0.3. A row without a scale leaves the group without a unit mean."""
    scaled = [{"score": s, "scale_min": 1.0, "scale_max": 5.0} for s in (1.0, 5.0, 4.2, 2.2)]
    stats = group_stats(scored_arrays(scaled), np.arange(4))
    assert (stats["mean_unit"], stats["top_of_scale"], stats["high"], stats["low"]) == (
        0.525,
        1,
        2,
        2,
    )
    unscaled = scaled + [{"score": 3.0, "scale_min": None, "scale_max": None}]
    stats = group_stats(scored_arrays(unscaled), np.arange(5))
    assert stats["mean_unit"] is None and stats["scale"] == ";1-5"


def test_reliability_matrices_on_arrays_equal_the_nested_tables():
    """judge_reliability's coders x essays matrices, made by bincounts, hold the same floats
    as the per-row tables (``_matrix(_table(...))``), NaN where a coder missed an essay."""
    from daydream.results.reliability import Coders, _matrix, _table

    rng = random.Random(3)
    rows = [
        {
            "score": float(rng.randint(0, 10)) + rng.random() / 3,
            "essay_gen_id": f"e{rng.randint(0, 40):02d}",
            "evaluation_template": rng.choice(["r1", "r2"]),
            "evaluation_model": rng.choice(["j1", "j2", "j10"]),
            "evaluation_replicate": rng.choice([1, 2, 3]),
        }
        for _ in range(600)
    ]
    scored = Coders(rows)
    assert scored.values("evaluation_model") == ["j1", "j10", "j2"]
    for template in ("r1", "r2"):
        mask = scored.where("evaluation_template", template)
        picked = [r for r, keep in zip(rows, mask, strict=True) if keep]
        for coder in ("evaluation_model", "evaluation_replicate"):
            expected = _matrix(_table(picked, coder=coder))
            got = scored.matrix(mask, coder=coder)
            assert got.shape == expected.shape
            assert np.array_equal(got, expected, equal_nan=True), (template, coder)
