"""Agreement metrics from the weighted pair table match scipy and krippendorff, and stay None (never NaN) when undefined."""

import math

import krippendorff
import numpy as np
import pytest
from scipy import stats

from evaluation.metrics import (
    DEFAULT_BANDS,
    AlignmentResult,
    Estimate,
    PairTable,
    agreement,
    agreement_from_table,
    alignment_score,
    krippendorff_alpha_interval,
    mean_with_counts,
    micro_macro,
    parse_bands,
)

SEEDS = [0, 1, 2, 3, 4]
KEYS = {"n", "mae", "pearson", "spearman", "kendall", "exact", "within1", "band"}


def _integer_pairs(seed, n=400):
    """Critic and human integer scores 1..10, correlated, with many ties."""
    rng = np.random.default_rng(seed)
    x = rng.integers(1, 11, n)
    y = np.clip(x + rng.integers(-3, 4, n), 1, 10)
    return x.astype(float), y.astype(float)


def _mean_pairs(seed, n=400):
    """Human values are means of 2 or 3 annotators: halves and thirds, like the real data."""
    rng = np.random.default_rng(seed)
    x = rng.integers(1, 11, n).astype(float)
    votes = np.clip(x + rng.integers(-3, 4, (3, n)), 1, 10).astype(float)
    votes[2, rng.random(n) < 0.4] = np.nan  # some items have only two annotators
    return x, np.nanmean(votes, axis=0)


def _all_values(result):
    return [v for e in result.values() for v in (e.value, e.low, e.high)]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("make", [_integer_pairs, _mean_pairs])
def test_it_matches_scipy_correlations_on_tied_scores(make, seed):
    x, y = make(seed)
    table = PairTable.from_pairs(x, y)
    assert len(table.counts) < len(x) / 2  # the data really is heavily tied
    assert table.pearson() == pytest.approx(stats.pearsonr(x, y).statistic, abs=1e-12)
    assert table.spearman() == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)
    assert table.kendall_tau_b() == pytest.approx(stats.kendalltau(x, y, variant="b").statistic, abs=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
def test_it_matches_direct_computation_of_the_rate_metrics(seed):
    x, y = _mean_pairs(seed)
    table = PairTable.from_pairs(x, y)
    d = np.abs(x - y)
    band = np.digitize(np.floor(np.asarray([x, y]) + 0.5), [4, 7, 9])  # default bands by hand
    assert table.n == len(x)
    assert table.mae() == pytest.approx(d.mean(), abs=1e-12)
    assert table.exact() == pytest.approx((d < 0.5).mean(), abs=1e-12)
    assert table.within1() == pytest.approx((d <= 1).mean(), abs=1e-12)
    assert table.band_agreement() == pytest.approx((band[0] == band[1]).mean(), abs=1e-12)


def test_it_matches_scipy_when_the_correlation_is_negative():
    x, y = _integer_pairs(7)
    table = PairTable.from_pairs(x, 11 - y)
    assert table.pearson() == pytest.approx(stats.pearsonr(x, 11 - y).statistic, abs=1e-12)
    assert table.kendall_tau_b() == pytest.approx(stats.kendalltau(x, 11 - y).statistic, abs=1e-12)
    assert table.kendall_tau_b() < 0


def test_it_gives_the_same_table_from_counts_as_from_pairs():
    x, y = _mean_pairs(5)
    cells, counts = np.unique(np.stack([x, y]), axis=1, return_counts=True)
    # Split every cell's count across two rows and add a zero row: duplicates merge, zeros vanish.
    half = counts // 2
    table = PairTable.from_counts(np.r_[cells[0], cells[0], 3.0], np.r_[cells[1], cells[1], 4.0],
                                  np.r_[counts - half, half, 0])
    direct = PairTable.from_pairs(x, y)
    assert table.n == direct.n == len(x)
    assert np.array_equal(table.x, direct.x) and np.array_equal(table.y, direct.y)
    assert np.array_equal(table.counts, direct.counts)
    assert agreement_from_table(table, seed=3) == agreement(x, y, seed=3)


@pytest.mark.parametrize("counts", [[1, -1], [1, 1.5], [1, np.nan], [1]])
def test_it_rejects_bad_counts(counts):
    with pytest.raises(ValueError):
        PairTable.from_counts([1, 2], [1, 2], counts)


def test_it_rejects_nan_scores_and_length_mismatch():
    with pytest.raises(ValueError, match="NaN"):
        PairTable.from_pairs([1, 2], [1, np.nan])
    with pytest.raises(ValueError, match="has 2"):
        PairTable.from_pairs([1, 2], [1, 2, 3])


@pytest.mark.parametrize("x, y", [([5, 5, 5, 5], [1, 4, 6, 9]), ([1, 4, 6, 9], [7, 7, 7, 7])])
def test_it_gives_none_for_correlations_of_constant_input(x, y):
    table = PairTable.from_pairs(x, y)
    assert table.pearson() is None and table.spearman() is None and table.kendall_tau_b() is None
    assert table.mae() == pytest.approx(np.abs(np.subtract(x, y)).mean())
    result = agreement(x, y, n_boot=200)
    assert result["pearson"] == Estimate(None)
    assert result["kendall"].display() == "undefined"
    assert not any(isinstance(v, float) and math.isnan(v) for v in _all_values(result))


def test_it_handles_no_pairs():
    table = PairTable.from_pairs([], [])
    assert table.n == 0
    assert [table.mae(), table.pearson(), table.spearman(), table.kendall_tau_b(), table.exact(),
            table.within1(), table.band_agreement()] == [None] * 7
    result = agreement([], [])
    assert set(result) == KEYS
    assert result["n"] == Estimate(0) and result["n"].display() == "0"
    assert all(result[key] == Estimate(None) for key in KEYS - {"n"})
    assert PairTable.from_counts([], [], []).n == 0


def test_it_handles_one_pair():
    result = agreement([7], [6.5], n_boot=50)
    assert result["n"].value == 1
    assert result["mae"] == Estimate(0.5, 0.5, 0.5)
    assert result["within1"].value == 1.0 and result["exact"].value == 0.0
    assert result["pearson"].value is None and result["spearman"].value is None
    assert result["kendall"].value is None


def test_it_bootstraps_an_interval_around_the_point_estimate():
    x, y = _mean_pairs(11, n=2000)
    result = agreement(x, y, n_boot=500, seed=42)
    for key in KEYS - {"n"}:
        estimate = result[key]
        assert estimate.low < estimate.value < estimate.high, key
        assert estimate.high - estimate.low < 0.1, key
    assert result["n"].low is None


def test_it_reproduces_the_bootstrap_with_the_same_seed():
    x, y = _integer_pairs(12)
    assert agreement(x, y, seed=9) == agreement(x, y, seed=9)
    assert agreement(x, y, seed=9)["pearson"] != agreement(x, y, seed=10)["pearson"]
    assert agreement(x, y, n_boot=0)["pearson"].low is None


def test_it_drops_the_interval_when_most_replicates_are_undefined():
    # One 2 among ten x values and another among ten y values: in ~59% of resamples one side is constant.
    x = [2] + [1] * 9
    y = [1, 2] + [1] * 8
    result = agreement(x, y, n_boot=1000)
    assert result["pearson"].value == pytest.approx(stats.pearsonr(x, y).statistic)
    assert result["pearson"].low is None and result["pearson"].high is None
    assert result["mae"].low is not None


def test_it_displays_estimates():
    assert Estimate(0.81234, 0.7901, 0.83349).display() == "0.812 [0.790, 0.833]"
    assert Estimate(0.81234).display(2) == "0.81"
    assert Estimate(None).display() == "undefined"
    assert Estimate(1000).display() == "1000"


def test_it_parses_bands():
    assert parse_bands("1-3,4-6,7-8,9-10") == DEFAULT_BANDS
    assert parse_bands(" 6-10 , 1 - 5 ") == ((1, 5), (6, 10))
    assert parse_bands("1-9,10") == ((1, 9), (10, 10))


@pytest.mark.parametrize("text, message", [
    ("", "bad band"), ("1-3,x-6,7-10", "bad band"), ("1-3;4-10", "bad band"),
    ("1-4,4-10", "overlaps"), ("1-3,5-10", "gap"), ("2-10", "gap"), ("1-8", "gap"),
    ("1-3,6-4,7-10", "reversed"), ("0-3,4-10", "outside"), ("1-3,4-11", "outside"),
])
def test_it_rejects_bad_bands(text, message):
    with pytest.raises(ValueError, match=message):
        parse_bands(text)


def test_it_rounds_human_means_half_up_into_bands():
    # 6.5 rounds to 7 (band 7-8), 3.5 to 4 (band 4-6), 6.333 to 6 (band 4-6).
    table = PairTable.from_pairs([7, 4, 6, 7], [6.5, 3.5, 19 / 3, 19 / 3])
    assert table.band_agreement() == 0.75
    # With bands 1-3 / 4-10: 3 vs 3.5 -> 4 disagree, 3 vs 3.333 -> 3 agree, 4 vs 3.5 -> 4 agree.
    assert PairTable.from_pairs([3, 3, 4], [3.5, 10 / 3, 3.5]).band_agreement(((1, 3), (4, 10))) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="gap"):
        table.band_agreement(((1, 5), (7, 10)))


def test_it_counts_exact_and_within1_at_the_boundaries():
    table = PairTable.from_pairs([6, 7, 6, 8, 7], [19 / 3, 6.5, 7, 20 / 3, 5.999999999999999])
    # |d| = 0.333, 0.5 (not exact), 1, 1.333, 1 + rounding error (still within 1)
    assert table.exact() == pytest.approx(1 / 5)
    assert table.within1() == pytest.approx(4 / 5)


@pytest.mark.parametrize("seed", SEEDS)
def test_it_matches_the_krippendorff_package(seed):
    rng = np.random.default_rng(seed)
    truth = rng.integers(1, 11, 300)
    ratings = np.clip(truth + rng.integers(-2, 3, (4, 300)), 1, 10).astype(float)
    ratings[rng.random(ratings.shape) < 0.35] = np.nan  # missing ratings, some units left with one or none
    ratings[:, :3] = [[5.0, np.nan, np.nan], [np.nan, np.nan, np.nan], [np.nan, 2, np.nan], [np.nan] * 3]
    ratings[0, 3:10] = ratings[0, 3:10] + 1 / 3  # fractional values as well
    expected = krippendorff.alpha(reliability_data=ratings, level_of_measurement="interval")
    assert krippendorff_alpha_interval(ratings) == pytest.approx(expected, abs=1e-10)


def test_it_gives_none_for_undefined_krippendorff_alpha():
    assert krippendorff_alpha_interval(np.full((3, 4), np.nan)) is None
    assert krippendorff_alpha_interval([[1, np.nan], [np.nan, 2]]) is None  # no unit has two ratings
    assert krippendorff_alpha_interval([[0.1, 0.1, 0.1], [0.1, 0.1, 0.1]]) is None  # no expected disagreement
    assert krippendorff_alpha_interval([[1, 2, 3], [1, 2, 3]]) == 1.0
    with pytest.raises(ValueError):
        krippendorff_alpha_interval([1, 2, 3])


def test_it_computes_krippendorff_alpha_for_many_units():
    rng = np.random.default_rng(0)
    truth = rng.integers(1, 11, 100_000)
    ratings = np.clip(truth + rng.integers(-1, 2, (3, 100_000)), 1, 10).astype(float)
    alpha = krippendorff_alpha_interval(ratings)
    assert 0.8 < alpha < 1


def test_it_scores_alignment_on_a_hand_worked_example():
    # A [8, 6]: std 1, var 1.  B [5, 5, 5]: 0.  C [9]: skipped.  Mean spread 0.5 either way -> 2.0.
    groups = ["A", "B", "C", "A", "B", "B"]
    scores = [8, 5, 9, 6, 5, 5]
    assert alignment_score(groups, scores) == alignment_score(groups, scores, spread="var")
    result = alignment_score(groups, scores)
    assert (result.value, result.groups, result.mean_spread) == (2.0, 2, 0.5)


def test_it_distinguishes_std_from_var_in_alignment():
    # P [1, 3]: mean 2, std 1, var 1.  Q [2, 6]: mean 4, std 2, var 4.
    groups = [7, 8, 7, 8]
    scores = [1, 2, 3, 6]
    std = alignment_score(groups, scores)
    var = alignment_score(groups, scores, spread="var")
    assert std.mean_spread == 1.5 and std.value == pytest.approx(2 / 3)
    assert var.mean_spread == 2.5 and var.value == pytest.approx(0.4)
    with pytest.raises(ValueError):
        alignment_score(groups, scores, spread="mad")


def test_it_reports_perfect_alignment_as_undefined_with_zero_spread():
    result = alignment_score(["a", "a", "b", "b", "b"], [0.1, 0.1, 0.7, 0.7, 0.7])
    assert (result.value, result.groups, result.mean_spread) == (None, 2, 0.0)
    nothing = AlignmentResult(None, 0, None)  # no group has two scores
    assert alignment_score(["a", "b"], [3, 4]) == alignment_score([], []) == nothing


def test_it_averages_with_counts():
    assert mean_with_counts([1, 2, None, float("nan"), 6]) == (3.0, 3)
    assert mean_with_counts(v for v in [4, 5]) == (4.5, 2)
    assert mean_with_counts([]) == (None, 0)
    assert mean_with_counts([None]) == (None, 0)


def test_it_separates_micro_and_macro_averages():
    # Task a: 10, 8, 6 (mean 8); task b: 2.  Micro = 26 / 4 = 6.5; macro = (8 + 2) / 2 = 5.
    assert micro_macro(["a", "a", "b", "a"], [10, 8, 2, 6]) == (6.5, 5.0)
    assert micro_macro(["a", "b"], [4, None]) == (4.0, 4.0)
    assert micro_macro([], []) == (None, None)


def test_it_runs_agreement_over_a_million_pairs():
    rng = np.random.default_rng(0)
    x = rng.integers(1, 11, 1_000_000).astype(float)
    y = np.clip(x + rng.integers(-2, 3, (3, 1_000_000)), 1, 10).mean(axis=0)
    result = agreement(x, y)
    assert result["n"].value == 1_000_000
    assert all(e.value is not None and e.low <= e.value <= e.high for key, e in result.items() if key != "n")


def test_it_accepts_database_style_rows():
    from decimal import Decimal

    table = PairTable.from_counts([7, 7, 3], [Decimal("6.5"), Decimal("8"), Decimal("3")], [2, 1, 1])
    assert (table.n, table.mae(), table.within1()) == (4, 0.5, 1.0)
