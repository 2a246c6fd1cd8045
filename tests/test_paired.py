"""Seed-paired statistics against hand computations (and published power tables)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pinnrun import paired

D = [-0.3, -0.1, -0.4, 0.2, -0.5]
"""Log ratios of five pairs: distinct magnitudes, so the exact signed-rank test is easy by hand."""
BASE = [1e-3, 4e-4, 2e-3, 7e-4, 5e-4]
OPTION = [b * math.exp(d) for b, d in zip(BASE, D)]


def test_ratio_interval_and_wins_by_hand() -> None:
    result = paired.compare_pairs(BASE, OPTION)
    # mean d = -1.1 / 5 = -0.22; squared deviations 0.0064 + 0.0144 + 0.0324 + 0.1764 + 0.0784 = 0.308
    sd = math.sqrt(0.308 / 4)
    half = 2.7764451051977987 * sd / math.sqrt(5)  # t(0.975, 4) from the table
    assert result.n_pairs == 5 and result.wins == 4
    assert result.ratio == pytest.approx(math.exp(-0.22), rel=1e-12)
    assert result.ci_low == pytest.approx(math.exp(-0.22 - half), rel=1e-9)
    assert result.ci_high == pytest.approx(math.exp(-0.22 + half), rel=1e-9)
    assert (result.ci_low, result.ci_high) == pytest.approx((0.5686, 1.1326), abs=1e-4)


def test_exact_wilcoxon_by_counting_sign_patterns() -> None:
    # ranks of |d|: 0.1 -> 1, 0.2 -> 2, 0.3 -> 3, 0.4 -> 4, 0.5 -> 5; W+ = 2 (the one positive d).
    # Of the 2^5 equally likely sign patterns, {}, {1}, {2} give W+ <= 2: p = 2 * 3 / 32.
    assert paired.compare_pairs(BASE, OPTION).p_value == pytest.approx(2 * 3 / 32)
    all_lower = paired.compare_pairs(BASE, [b / 2 for b in BASE])
    assert all_lower.p_value == pytest.approx(2 / 32) and all_lower.wins == 5
    assert paired.wilcoxon_p(np.zeros(4)) == 1.0


def test_holm_step_down_by_hand() -> None:
    # sorted 0.01 -> 3 * 0.01 = 0.03; 0.03 -> 2 * 0.03 = 0.06; 0.04 -> max(0.06, 1 * 0.04) = 0.06
    assert paired.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert paired.holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])
    adjusted = paired.holm([0.02, math.nan])
    assert adjusted[0] == pytest.approx(0.02) and math.isnan(adjusted[1])


@pytest.mark.parametrize(("dz", "n"), [(0.5, 34), (0.8, 15), (1.0, 10)])
def test_paired_t_sample_size_matches_power_tables(dz: float, n: int) -> None:
    """One-sample / paired t, two-sided alpha 0.05, power 0.8 (Cohen 1988; G*Power gives the same n)."""
    assert paired.t_test_seeds(dz, 1.0, 0.05) == n


def test_seeds_needed_for_the_signed_rank_test() -> None:
    assert paired.seeds_needed(0.5, 1.0) == math.ceil(34 / (3 / math.pi))  # 36: the t-test's n over the ARE
    assert paired.seeds_needed(5.0, 1.0) == 6  # a huge effect still needs the 6 pairs an exact p < 0.05 takes
    assert paired.seeds_needed(5.0, 1.0, alpha=0.05 / 3) == 7  # Holm over 3 options: 2 / 2^7 < 0.0167
    assert paired.seeds_needed(0.0, 1.0) == math.inf
    result = paired.compare_pairs(BASE, OPTION, effect=1.4)
    assert result.seeds_needed == paired.seeds_needed(math.log(1.4), math.sqrt(0.308 / 4))


def test_verdicts() -> None:
    result = paired.compare_pairs(BASE, OPTION)
    assert paired.verdict(result, 0.01) == "better"
    worse = paired.compare_pairs(OPTION, BASE)
    assert worse.ratio == pytest.approx(1 / result.ratio) and paired.verdict(worse, 0.01) == "worse"
    assert paired.verdict(result, result.p_value) == f"no detectable difference (about {int(result.seeds_needed)} seeds would tell)"
    single = paired.compare_pairs(BASE[:1], OPTION[:1])
    assert single.n_pairs == 1 and math.isnan(single.ci_low) and paired.verdict(single, math.nan) == "fewer than 2 pairs (1)"


def test_bootstrap_check_flags_an_interval_that_disagrees() -> None:
    result = paired.compare_pairs(BASE, OPTION)
    assert result.boot_low < result.ratio < result.boot_high
    assert result.bootstrap_disagrees == ((result.ci_low <= 1 <= result.ci_high) != (result.boot_low <= 1 <= result.boot_high))
    constructed = paired.PairedResult(5, 0.8, 0.6, 1.1, 0.65, 0.95, 0.2, 4, 20.0)
    assert constructed.bootstrap_disagrees
    assert not paired.compare_pairs(BASE[:2], OPTION[:2]).bootstrap_disagrees  # too few pairs to resample


def test_bad_pairs_are_refused() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        paired.compare_pairs([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="positive"):
        paired.compare_pairs([1.0, 0.0], [1.0, 1.0])
