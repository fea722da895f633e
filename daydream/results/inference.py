"""Inference on scores: confidence intervals that respect the design, and paired tests.

The same combination repeats across the cells of a cohort (every essay template, model and
judge sees the same concepts), so scores that share a combination are not independent
draws. Every interval here is therefore a **cluster bootstrap**: resample the clusters
(combinations, or essays where the combination is fixed) with replacement, recompute the
statistic, and take the 2.5th and 97.5th percentiles of the resampled values (the
percentile interval). The statistic is the pooled mean ``sum(values) / count(values)`` of
the resampled clusters, so a cluster with more scores weighs more, as in the point estimate.

Invariants:

- Deterministic: every interval draws from ``numpy.random.default_rng(seed)`` with a seed
  derived from what the interval is about (``seed_for``), so a report is a function of the
  database alone and adding a group never moves another group's interval.
- Bounded: ``RESAMPLES`` resamples, drawn in chunks of at most ``_CHUNK`` indices, so a
  group of 100,000 clusters costs memory in megabytes, not gigabytes.
- No interval from fewer than ``MIN_CLUSTERS`` clusters (one cluster has no spread to
  resample); the interval of identical clusters is the single value.
- Paired tests (``paired_difference``) run on the per-cluster mean differences: Wilcoxon's
  signed-rank test (``scipy.stats.wilcoxon``), the matched-pairs rank-biserial correlation
  as its effect size (Kerby 2014) and Cohen's d_z; ``holm`` adjusts a family of p-values.
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np

CONFIDENCE = 0.95


RESAMPLES = 2000


MIN_CLUSTERS = 2


# Below this many clusters a percentile bootstrap interval is known to be too narrow: the
# text output flags it.
FEW_CLUSTERS = 20


# The fewest clusters a two-sided Wilcoxon test needs to reach p < 0.05 at all: with n
# clusters all pointing one way its exact p-value is 2 / 2**n (n = 5: 0.0625).
MIN_TEST_CLUSTERS = 6


_CHUNK = 2_000_000  # indices drawn at once (16 MB of int64)


@dataclass(frozen=True)
class Interval:
    """A mean and its percentile bootstrap interval; ``clusters`` were resampled."""

    mean: float
    low: float | None
    high: float | None
    n: int
    clusters: int


@dataclass(frozen=True)
class PairedDifference:
    """Matched differences (b minus a) summarised: their mean and its cluster-bootstrap
    interval, Wilcoxon's signed-rank p-value and effect sizes over the per-cluster means."""

    n_pairs: int
    clusters: int
    mean_diff: float
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    rank_biserial: float | None
    cohens_dz: float | None


def seed_for(*parts: object) -> int:
    """A stable 63-bit seed from what an interval is about (never Python's salted hash)."""
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


def cluster_interval(
    values: Sequence[float],
    clusters: Sequence[Hashable],
    *,
    seed: int,
    resamples: int = RESAMPLES,
    confidence: float = CONFIDENCE,
) -> Interval:
    """The mean of ``values`` and its interval, resampling the ``clusters`` they belong to."""
    [interval] = cluster_intervals(
        [values], clusters, seed=seed, resamples=resamples, confidence=confidence
    )
    return interval


def cluster_intervals(
    columns: Sequence[Sequence[float]],
    clusters: Sequence[Hashable] | np.ndarray,
    *,
    seed: int,
    resamples: int = RESAMPLES,
    confidence: float = CONFIDENCE,
) -> list[Interval]:
    """``cluster_interval`` of several value columns over the same clusters (labels, or
    integer codes as ``cluster_codes`` gives), drawing the resampled clusters once for all."""
    codes = clusters if isinstance(clusters, np.ndarray) else cluster_codes(clusters)
    counts = np.bincount(codes).astype(float)
    sums = [np.bincount(codes, weights=np.asarray(v, dtype=float)) for v in columns]
    bounds = bootstrap_ratios(sums, counts, seed=seed, resamples=resamples, confidence=confidence)
    return _intervals(sums, counts, bounds)


def cluster_intervals_of_groups(
    groups: Sequence[tuple[Sequence[np.ndarray], np.ndarray, int]],
    *,
    resamples: int = RESAMPLES,
    confidence: float = CONFIDENCE,
) -> list[list[Interval]]:
    """``cluster_intervals`` of many groups, each (value columns, integer cluster codes as
    ``cluster_codes`` gives, seed): each group draws from its own seed as alone, and groups
    with as many clusters resample together (a report has thousands of small ones)."""
    totals = []
    for columns, codes, _ in groups:
        counts = np.bincount(codes).astype(float)
        totals.append(([np.bincount(codes, weights=v) for v in columns], counts))
    bounds = _bootstrap_groups(
        [(sums, counts, seed) for (sums, counts), (_, _, seed) in zip(totals, groups, strict=True)],
        resamples,
        confidence,
    )
    return [
        _intervals(sums, counts, group_bounds)
        for (sums, counts), group_bounds in zip(totals, bounds, strict=True)
    ]


def _intervals(
    sums: Sequence[np.ndarray], counts: np.ndarray, bounds: list[tuple[float | None, float | None]]
) -> list[Interval]:
    n = int(counts.sum())
    return [
        Interval(float(s.sum() / n), low, high, n, len(counts))
        for s, (low, high) in zip(sums, bounds, strict=True)
    ]


def _bootstrap_groups(
    groups: Sequence[tuple[Sequence[np.ndarray], np.ndarray, int]],
    resamples: int,
    confidence: float,
) -> list[list[tuple[float | None, float | None]]]:
    """``bootstrap_ratios`` of each (sums, counts, seed). Groups whose draws fit in one
    chunk and have as many clusters (and sums) are stacked: each one's draws come from its
    own generator as in ``bootstrap_ratios``, then one gather, one row sum (the same
    pairwise sums, row by row) and one percentile call serve them all."""
    out: list[list[tuple[float | None, float | None]]] = [[] for _ in groups]
    alike: dict[tuple[int, int], list[int]] = {}
    for i, (sums, counts, seed) in enumerate(groups):
        n = len(counts)
        if MIN_CLUSTERS <= n and _CHUNK // n >= resamples:
            alike.setdefault((n, len(sums)), []).append(i)
        else:
            out[i] = bootstrap_ratios(
                sums, counts, seed=seed, resamples=resamples, confidence=confidence
            )
    tail = (1 - confidence) / 2 * 100
    for (n, _), members in alike.items():
        step = max(1, _CHUNK // (n * resamples))
        for start in range(0, len(members), step):
            batch = [groups[i] for i in members[start : start + step]]
            picks = np.stack(
                [np.random.default_rng(seed).integers(0, n, (resamples, n)) for _, _, seed in batch]
            )
            drawn = _drawn(np.stack([counts for _, counts, _ in batch]), picks)
            picks += (np.arange(len(batch)) * n)[:, None, None]
            for column in zip(*(sums for sums, _, _ in batch), strict=True):
                estimates = np.concatenate(column)[picks].sum(axis=2) / drawn
                lows, highs = np.percentile(estimates, [tail, 100 - tail], axis=1).tolist()
                for j, i in enumerate(members[start : start + step]):
                    sums, counts = column[j], groups[i][1]
                    if np.all(sums * counts[0] == sums[0] * counts):  # one mean: no spread
                        value = float(sums[0] / counts[0])
                        out[i].append((value, value))
                    else:
                        out[i].append((lows[j], highs[j]))
    return out


def cluster_totals(
    values: Sequence[float], clusters: Sequence[Hashable]
) -> tuple[np.ndarray, np.ndarray]:
    """Per cluster (in order of first appearance): the sum and the count of its values."""
    codes = cluster_codes(clusters)
    return np.bincount(codes, weights=np.asarray(values, dtype=float)), np.bincount(codes).astype(
        float
    )


def cluster_codes(clusters: Sequence[Hashable] | np.ndarray) -> np.ndarray:
    """Each value's cluster as 0, 1, 2... in order of first appearance."""
    if isinstance(clusters, np.ndarray):  # integer labels: numpy does it without a loop
        _, first, inverse = np.unique(clusters, return_index=True, return_inverse=True)
        rank = np.empty(len(first), dtype=np.int64)
        rank[np.argsort(first)] = np.arange(len(first))
        return rank[inverse.reshape(-1)]
    index: dict[Hashable, int] = {}
    return np.fromiter(
        (index.setdefault(c, len(index)) for c in clusters), dtype=np.int64, count=len(clusters)
    )


def bootstrap_ratio(
    sums: np.ndarray,
    counts: np.ndarray,
    *,
    seed: int,
    resamples: int = RESAMPLES,
    confidence: float = CONFIDENCE,
) -> tuple[float | None, float | None]:
    """Percentile interval of ``sum(sums) / sum(counts)`` over clusters resampled with
    replacement; (None, None) below ``MIN_CLUSTERS`` clusters.

    Draws exactly as ``scipy.stats.bootstrap(..., paired=True, method="percentile")`` does
    (one ``integers(0, n, (resamples, n))`` matrix), in row chunks to bound memory.
    """
    [bounds] = bootstrap_ratios([sums], counts, seed=seed, resamples=resamples, confidence=confidence)
    return bounds


def bootstrap_ratios(
    sums: Sequence[np.ndarray],
    counts: np.ndarray,
    *,
    seed: int,
    resamples: int = RESAMPLES,
    confidence: float = CONFIDENCE,
) -> list[tuple[float | None, float | None]]:
    """``bootstrap_ratio`` of several sums over the same clusters, on the same draws."""
    n = len(counts)
    if n < MIN_CLUSTERS:
        return [(None, None)] * len(sums)
    rng = np.random.default_rng(seed)
    rows = max(1, _CHUNK // n)
    estimates = np.empty((len(sums), resamples))
    for start in range(0, resamples, rows):
        stop = min(resamples, start + rows)
        picks = rng.integers(0, n, (stop - start, n))
        drawn = _drawn(counts.reshape(1, -1), picks)
        for i, column in enumerate(sums):
            estimates[i, start:stop] = column[picks].sum(axis=1) / drawn
    tail = (1 - confidence) / 2 * 100
    out: list[tuple[float | None, float | None]] = []
    for column, row in zip(sums, estimates, strict=True):
        if np.all(column * counts[0] == column[0] * counts):  # every cluster has one mean
            value = float(column[0] / counts[0])
            out.append((value, value))
        else:
            low, high = np.percentile(row, [tail, 100 - tail])
            out.append((float(low), float(high)))
    return out


def _drawn(counts: np.ndarray, picks: np.ndarray) -> np.ndarray:
    """Per resample, the total count of the drawn clusters, ``counts[picks].sum(axis=-1)``:
    ``counts`` holds a group's cluster counts per row, ``picks`` one group's draws
    (resamples x clusters) or each group's (groups x resamples x clusters). Where each
    group's clusters all count the same whole number, every such sum is exact in any
    order: that number times the clusters drawn, without reading the draws."""
    groups = picks if picks.ndim == 3 else picks[None]
    first, clusters = counts[:, :1], counts.shape[1]
    if (
        np.all(counts == first)
        and np.all(first == np.round(first))
        and np.abs(first).max() * clusters < 2**53
    ):
        totals = np.broadcast_to(first * clusters, groups.shape[:2])
    else:
        at = groups + (np.arange(len(counts)) * clusters)[:, None, None]
        totals = counts.reshape(-1)[at].sum(axis=2)
    return totals if picks.ndim == 3 else totals[0]


def paired_difference(
    diffs: Sequence[float], clusters: Sequence[Hashable], *, seed: int
) -> PairedDifference:
    """Summarise matched differences (b minus a), each in a cluster (its combination).

    The mean and its interval are over the pairs, resampling clusters; the test and the
    effect sizes use one value per cluster (the mean of its differences), since pairs that
    share a combination are not independent.
    """
    sums, counts = cluster_totals(diffs, clusters)
    mean = float(sums.sum() / counts.sum()) if len(sums) else math.nan
    low, high = bootstrap_ratio(sums, counts, seed=seed)
    per_cluster = sums / counts if len(sums) else np.array([])
    return PairedDifference(
        n_pairs=len(diffs),
        clusters=len(sums),
        mean_diff=mean,
        ci_low=low,
        ci_high=high,
        p_value=signed_rank_p(per_cluster),
        rank_biserial=rank_biserial(per_cluster),
        cohens_dz=cohens_dz(per_cluster),
    )


def signed_rank_p(diffs: np.ndarray) -> float | None:
    """Two-sided p-value of Wilcoxon's signed-rank test (zeros dropped, scipy's default
    method: exact for small samples without ties, else the normal approximation); 1.0 when
    every difference is zero, None without a difference."""
    from scipy.stats import wilcoxon

    if len(diffs) == 0:
        return None
    if not np.any(diffs):
        return 1.0
    return float(wilcoxon(diffs).pvalue)


def rank_biserial(diffs: np.ndarray) -> float | None:
    """The matched-pairs rank-biserial correlation (Kerby 2014): (T+ - T-) / (T+ + T-) over
    the ranks of the absolute non-zero differences; from -1 (all b < a) to 1 (all b > a)."""
    from scipy.stats import rankdata

    nonzero = diffs[diffs != 0]
    if len(nonzero) == 0:
        return None if len(diffs) == 0 else 0.0
    ranks = rankdata(np.abs(nonzero))
    plus, minus = ranks[nonzero > 0].sum(), ranks[nonzero < 0].sum()
    return float((plus - minus) / (plus + minus))


def cohens_dz(diffs: np.ndarray) -> float | None:
    """Mean difference over the standard deviation of the differences (n - 1); None below
    two differences or when they do not vary."""
    if len(diffs) < 2:
        return None
    spread = float(np.std(diffs, ddof=1))
    return float(np.mean(diffs)) / spread if spread > 0 else None


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjustment of a family of p-values (None stays None and does not
    count in the family): sort ascending, multiply the i-th smallest by (m - i), keep the
    running maximum, cap at 1."""
    present = sorted((p, i) for i, p in enumerate(p_values) if p is not None)
    m = len(present)
    adjusted: list[float | None] = [None] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(present):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted


def t_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float] | None:
    """Student's t interval of the mean of independent values (None below two values)."""
    n = len(values)
    if n < 2:
        return None
    mean = math.fsum(values) / n
    spread = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    return t_bounds(mean, spread, n, confidence)


def t_bounds(
    mean: float, spread: float, n: int, confidence: float = CONFIDENCE
) -> tuple[float, float]:
    """Student's t interval of a mean of ``n`` (two or more) values whose sample standard
    deviation is ``spread``."""
    half = _t_quantile(0.5 + confidence / 2, n - 1) * spread / math.sqrt(n)
    return mean - half, mean + half


@functools.lru_cache(maxsize=256)
def _t_quantile(q: float, df: int) -> float:
    # scipy.stats.t.ppf is this function; scipy.special imports in a fraction of the time
    # of scipy.stats (seconds on a loaded machine), and a report needs nothing else of it.
    from scipy.special import stdtrit

    return float(stdtrit(df, q))


def significant(value: float | None, digits: int = 3) -> float | None:
    """A p-value to ``digits`` significant digits (rounding to decimals would make 1e-5 0)."""
    return None if value is None else float(f"{value:.{digits}g}")
