"""Every statistic against a published value on fixed data: Krippendorff's own worked
example, Shrout & Fleiss's table, Wikipedia's worked Wilcoxon and Spearman examples,
Holm's procedure by hand, and scipy's bootstrap on the same draws."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from daydream.results.inference import (
    bootstrap_ratio,
    cluster_interval,
    cluster_intervals,
    cluster_intervals_of_groups,
    cohens_dz,
    holm,
    paired_difference,
    rank_biserial,
    seed_for,
    signed_rank_p,
    t_interval,
)
from daydream.results.reliability import alpha_interval, alpha_reading, correlations, icc
from tests.scored import scipy_interval

NAN = math.nan

# Krippendorff (2011), "Computing Krippendorff's alpha-reliability", section C: four
# observers, twelve units, missing values. Published: interval alpha = 0.849.
KRIPPENDORFF_2011 = [
    [1, 2, 3, 3, 2, 1, 4, 1, 2, NAN, NAN, NAN],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, NAN, 3],
    [NAN, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, NAN],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, NAN],
]

# Shrout & Fleiss (1979), Table 2: six targets rated by four judges. Published (Table 4):
# ICC(1,1) = .17, ICC(2,1) = .29, ICC(3,1) = .71.
SHROUT_FLEISS = [[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]]

# Wikipedia, "Wilcoxon signed-rank test", worked example: ten pairs, one tie at zero;
# T+ = 27, T- = 18 over nine non-zero differences.
WILCOXON_PAIRS = [
    (125, 110), (115, 122), (130, 125), (140, 120), (140, 140),
    (115, 124), (140, 123), (125, 137), (140, 135), (135, 145),
]


def test_krippendorffs_alpha_matches_the_published_worked_example():
    assert round(alpha_interval(KRIPPENDORFF_2011), 3) == 0.849


def test_krippendorffs_alpha_matches_the_krippendorff_package_on_random_data():
    krippendorff = pytest.importorskip("krippendorff")
    rng = np.random.default_rng(7)
    for _ in range(5):
        data = rng.integers(0, 11, size=(4, 30)).astype(float)
        data[rng.random(data.shape) < 0.25] = np.nan
        expected = krippendorff.alpha(reliability_data=data, level_of_measurement="interval")
        assert alpha_interval(data) == pytest.approx(expected, abs=1e-9)


def test_alpha_is_one_for_perfect_agreement_and_none_without_variation():
    assert alpha_interval([[1, 2, 3, 4], [1, 2, 3, 4]]) == pytest.approx(1.0)
    assert alpha_interval([[5, 5, 5], [5, 5, 5]]) is None
    assert alpha_interval([[1, NAN], [NAN, 2]]) is None  # no unit with two values
    assert [alpha_reading(a) for a in (0.85, 0.7, 0.2, None)] == [
        "reliable",
        "tentative",
        "unreliable",
        "too few scores",
    ]


def test_intraclass_correlations_match_shrout_and_fleiss():
    assert round(icc(SHROUT_FLEISS, "ICC(1,1)"), 2) == 0.17
    assert round(icc(SHROUT_FLEISS, "ICC(2,1)"), 2) == 0.29
    assert round(icc(SHROUT_FLEISS, "ICC(3,1)"), 2) == 0.71
    assert icc([[1, 2]], "ICC(2,1)") is None  # one unit: no between-unit variance


def test_wilcoxon_p_value_and_rank_biserial_on_the_worked_example():
    diffs = np.array([a - b for a, b in WILCOXON_PAIRS], dtype=float)
    # T+ = 27, T- = 18: r = (27 - 18) / 45.
    assert rank_biserial(diffs) == pytest.approx(0.2)
    assert signed_rank_p(diffs) == pytest.approx(stats.wilcoxon(diffs).pvalue)
    assert stats.wilcoxon(diffs).statistic == 18


def test_all_differences_one_way_give_the_exact_signed_rank_p_value():
    # Exact null distribution: P(T- = 0) = 1 / 2**n, two-sided 2 / 2**n.
    assert signed_rank_p(np.ones(8)) == pytest.approx(2 / 2**8)
    assert rank_biserial(-np.ones(8)) == -1.0
    assert signed_rank_p(np.zeros(4)) == 1.0
    assert rank_biserial(np.zeros(4)) == 0.0


def test_cohens_dz_is_the_mean_over_the_standard_deviation_of_differences():
    assert cohens_dz(np.array([1.0, 2.0, 3.0])) == pytest.approx(2.0)  # mean 2, sd 1
    assert cohens_dz(np.array([1.0, 1.0])) is None


def test_holm_adjustment_by_hand():
    # Sorted 0.01..0.05 times 5, 4, 3, 2, 1 = .05 .08 .09 .08 .05, then the running maximum.
    assert holm([0.01, 0.02, 0.03, 0.04, 0.05]) == pytest.approx([0.05, 0.08, 0.09, 0.09, 0.09])
    assert holm([0.04, None, 0.01]) == [pytest.approx(0.04), None, pytest.approx(0.02)]
    assert holm([0.6, 0.9]) == [1.0, 1.0]


def test_spearman_and_kendall_match_published_examples():
    # Wikipedia, "Spearman's rank correlation coefficient": IQ against hours of TV,
    # rho = -29/165.
    iq = [106, 100, 86, 101, 99, 103, 97, 113, 112, 110]
    tv = [7, 27, 2, 50, 28, 29, 20, 12, 6, 17]
    assert correlations(iq, tv)["spearman"] == pytest.approx(-29 / 165)
    # Two discordant pairs of ten: tau = (8 - 2) / 10.
    assert correlations([1, 2, 3, 4, 5], [1, 3, 2, 5, 4])["kendall"] == pytest.approx(0.6)
    assert correlations([1, 2], [2, 1])["spearman"] is None  # fewer than three pairs


def test_cluster_bootstrap_equals_scipys_bootstrap_on_the_same_draws():
    rng = np.random.default_rng(3)
    sums, counts = rng.normal(size=25) * 4, rng.integers(1, 4, size=25).astype(float)
    low, high = bootstrap_ratio(sums, counts, seed=11, resamples=3000)
    expected = scipy_interval(sums, counts, seed=11, resamples=3000)
    assert (low, high) == pytest.approx((expected.low, expected.high), abs=1e-12)


def test_cluster_interval_resamples_combinations_not_scores():
    # Two combinations, each with 50 identical scores: the interval spans the two cluster
    # means (what resampling two units can give), not the narrow band 100 independent
    # scores would give.
    values = [2.0] * 50 + [4.0] * 50
    clusters = ["c1"] * 50 + ["c2"] * 50
    interval = cluster_interval(values, clusters, seed=seed_for("x"))
    assert (interval.mean, interval.n, interval.clusters) == (3.0, 100, 2)
    assert (interval.low, interval.high) == (2.0, 4.0)
    one = cluster_interval([1.0, 2.0], ["c1", "c1"], seed=1)
    assert (one.low, one.high) == (None, None)
    same = cluster_interval([1.0, 3.0, 2.0, 2.0], ["a", "a", "b", "b"], seed=1)
    assert (same.low, same.high) == (2.0, 2.0)


def test_intervals_of_many_groups_are_each_groups_own_to_the_bit():
    # The report resamples thousands of groups together: each must still get exactly the
    # interval it gets alone (its own seed's draws), whatever its size (one chunk of draws
    # or several) and whether it has one or two value columns.
    rng = np.random.default_rng(8)
    groups = []
    for g, n in enumerate([1, 2, 3, 8, 9, 20, 20, 20, 129, 1500, 20]):
        codes = np.repeat(np.arange(n), rng.integers(1, 4, n))
        columns = [rng.integers(0, 10, len(codes)) / 2, rng.normal(size=len(codes))][: 1 + g % 2]
        groups.append((columns, codes, seed_for("group", g)))
    groups.append(([np.full(6, 2.0)], np.array([0, 0, 1, 1, 2, 2]), 5))  # one mean
    together = cluster_intervals_of_groups(groups)
    alone = [cluster_intervals(columns, codes, seed=seed) for columns, codes, seed in groups]
    assert together == alone
    assert together[-1][0].low == together[-1][0].high == 2.0


def test_paired_difference_of_exactly_one_point_everywhere():
    result = paired_difference([1.0] * 12, [f"c{i // 2}" for i in range(12)], seed=5)
    assert (result.n_pairs, result.clusters, result.mean_diff) == (12, 6, 1.0)
    assert (result.ci_low, result.ci_high) == (1.0, 1.0)
    assert result.p_value == pytest.approx(2 / 2**6)
    assert (result.rank_biserial, result.cohens_dz) == (1.0, None)


def test_t_interval_matches_the_textbook_formula():
    low, high = t_interval([1.0, 2.0, 3.0, 4.0])
    half = stats.t.ppf(0.975, 3) * np.std([1, 2, 3, 4], ddof=1) / 2
    assert (low, high) == pytest.approx((2.5 - half, 2.5 + half))
    assert t_interval([1.0]) is None
