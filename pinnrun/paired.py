"""Seed-paired statistics of one option against a baseline: the numbers behind a verdict.

Runs of two options at the same seed (and otherwise the same config) start from the same network
and the same points, so their errors are compared in pairs, on the log scale where errors live:
d_i = ln(option_i / baseline_i). From the d_i:

- the geometric-mean ratio exp(mean d) with a 95 % t-interval (scipy.stats.ttest_1samp), and a
  BCa bootstrap interval (scipy.stats.bootstrap) as a check on the t-interval's normality;
- the exact Wilcoxon signed-rank p-value (scipy.stats.wilcoxon), distribution-free, and its
  Holm-adjusted value across the options compared against the same baseline (Holm 1979);
- wins: pairs where the option's metric is lower (every pinnrun metric compared is an error or a cost);
- seeds_needed: paired seeds for 80 % power at alpha 0.05 to detect a given ratio at the observed
  spread of d. The paired t-test's power comes from the noncentral t distribution; the Wilcoxon
  test the verdict rests on needs n_t / ARE seeds, with ARE = 3/pi its asymptotic relative
  efficiency under normal data (Lehmann 1975; G*Power's "A.R.E." method), and at least the n at
  which the exact test can reach alpha at all (6 pairs for a two-sided 0.05: 5 pairs give p >= 0.0625).
  With several options it is computed at alpha / m, the threshold Holm applies to the smallest p.
- the verdict: `better` or `worse` when the Holm-adjusted Wilcoxon p is below alpha, else
  `no detectable difference (about N seeds would tell)`.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Hashable, Mapping, Optional, Sequence, TypeVar

import numpy as np
from scipy import stats

ALPHA = 0.05
POWER = 0.8
CONFIDENCE = 0.95
WILCOXON_ARE = 3 / math.pi
BOOTSTRAP_RESAMPLES = 9999
MAX_SEEDS = 100_000
K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True)
class PairedResult:
    """The paired comparison of one option with its baseline; NaN where fewer than 2 pairs allow no estimate."""

    n_pairs: int
    ratio: float
    ci_low: float
    ci_high: float
    boot_low: float
    boot_high: float
    p_value: float
    wins: int
    seeds_needed: float  # a whole number, inf when the ratio to detect is 1, NaN without a spread

    @property
    def bootstrap_disagrees(self) -> bool:
        """The bootstrap interval and the t-interval disagree on whether the ratio 1 is plausible."""
        return intervals_disagree(self.ci_low, self.ci_high, self.boot_low, self.boot_high)


def intervals_disagree(ci_low: float, ci_high: float, boot_low: float, boot_high: float) -> bool:
    """Whether a bootstrap interval (when there is one) and the t-interval disagree about the ratio 1."""
    if not (math.isfinite(boot_low) and math.isfinite(boot_high)):
        return False
    return (ci_low <= 1 <= ci_high) != (boot_low <= 1 <= boot_high)


def log_ratios(baseline: Sequence[float], option: Sequence[float]) -> np.ndarray:
    """d_i = ln(option_i / baseline_i) of paired positive metrics."""
    base, opt = np.asarray(baseline, dtype=float), np.asarray(option, dtype=float)
    if base.shape != opt.shape:
        raise ValueError(f"paired samples differ in length: {base.shape} vs {opt.shape}")
    if (base <= 0).any() or (opt <= 0).any():
        raise ValueError("paired ratios need positive metrics")
    return np.log(opt / base)


def compare_pairs(baseline: Sequence[float], option: Sequence[float], effect: Optional[float] = None,
                  comparisons: int = 1) -> PairedResult:
    """The paired statistics of `option` against `baseline` (same seed at the same index).

    `effect` is the ratio seeds_needed is computed for (default: the observed ratio);
    `comparisons` the number of options compared with the same baseline (Holm's m)."""
    d = log_ratios(baseline, option)
    n = len(d)
    if n < 2:
        ratio = float(np.exp(d[0])) if n else math.nan
        return PairedResult(n, ratio, math.nan, math.nan, math.nan, math.nan, math.nan, int((d < 0).sum()), math.nan)
    mean, sd = float(d.mean()), float(d.std(ddof=1))
    low, high = t_interval(d)
    boot_low, boot_high = bootstrap_interval(d)
    target = math.log(effect) if effect is not None else mean
    return PairedResult(n, math.exp(mean), math.exp(low), math.exp(high), math.exp(boot_low), math.exp(boot_high),
                        wilcoxon_p(d), int((d < 0).sum()), seeds_needed(target, sd, ALPHA / max(comparisons, 1)))


def compare_options(pairs: Mapping[K, tuple[Sequence[float], Sequence[float]]],
                    effect: Optional[float] = None) -> dict[K, tuple[PairedResult, float]]:
    """Several options against one baseline, each with its own (baseline, option) pairs: every
    option's result and its Holm-adjusted p, m being the options with at least 2 pairs."""
    m = sum(len(base) >= 2 for base, _ in pairs.values())
    results = {key: compare_pairs(base, option, effect, m) for key, (base, option) in pairs.items()}
    adjusted = holm([result.p_value for result in results.values()])
    return {key: (result, float(p)) for (key, result), p in zip(results.items(), adjusted)}


def t_interval(d: np.ndarray) -> tuple[float, float]:
    """The 95 % t-interval of the mean log ratio (the mean itself when every d is equal)."""
    if np.ptp(d) == 0:
        return float(d[0]), float(d[0])
    interval = stats.ttest_1samp(d, 0.0).confidence_interval(CONFIDENCE)
    return float(interval.low), float(interval.high)


def bootstrap_interval(d: np.ndarray) -> tuple[float, float]:
    """A BCa bootstrap 95 % interval of the mean log ratio (NaN with under 3 pairs or no spread,
    where resampling has nothing to say)."""
    if len(d) < 3 or np.ptp(d) == 0:
        return math.nan, math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # BCa warns (and returns NaN) on degenerate resamples
        result = stats.bootstrap((d,), np.mean, confidence_level=CONFIDENCE, n_resamples=BOOTSTRAP_RESAMPLES,
                                 method="BCa", rng=np.random.default_rng(0))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def wilcoxon_p(d: np.ndarray) -> float:
    """Two-sided exact Wilcoxon signed-rank p-value of the log ratios (1 when every pair ties)."""
    if not np.any(d):
        return 1.0
    return float(stats.wilcoxon(d, method="exact").pvalue)


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjustment (Holm 1979, Scand. J. Statist. 6:65): the k-th smallest of m
    p-values becomes max over j <= k of min(1, (m - j + 1) p_(j)). NaNs stay NaN and do not count in m.
    Written out because scipy.stats offers only false-discovery-rate adjustments."""
    p = np.asarray(p_values, dtype=float)
    adjusted = np.full_like(p, np.nan)
    valid = np.flatnonzero(np.isfinite(p))
    order = valid[np.argsort(p[valid], kind="stable")]
    m = len(order)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[index]))
        adjusted[index] = running
    return adjusted


def t_test_seeds(log_effect: float, sd: float, alpha: float, power: float = POWER) -> int:
    """Fewest pairs at which a two-sided paired t-test at `alpha` detects a mean log ratio
    `log_effect` with spread `sd` with the given power (noncentral t)."""
    if sd == 0:
        return 2
    start = 2
    while start <= MAX_SEEDS:  # blocks of growing size: most answers lie in the first
        n = np.arange(start, min(4 * start + 1000, MAX_SEEDS + 1))
        df, shift = n - 1, abs(log_effect) / sd * np.sqrt(n)
        critical = stats.t.ppf(1 - alpha / 2, df)
        reached = stats.nct.sf(critical, df, shift) + stats.nct.cdf(-critical, df, shift) >= power
        if reached.any():
            return int(n[reached.argmax()])
        start = int(n[-1]) + 1
    return MAX_SEEDS


def seeds_needed(log_effect: float, sd: float, alpha: float = ALPHA, power: float = POWER) -> float:
    """Paired seeds for the exact Wilcoxon test at `alpha` to detect the ratio exp(log_effect) with
    the given power: the t-test's count over the ARE 3/pi, and no fewer than the exact test's
    smallest sample that can reach alpha. inf when the ratio to detect is 1."""
    if not math.isfinite(sd):
        return math.nan
    if log_effect == 0:
        return math.inf
    smallest = math.ceil(math.log2(2 / alpha))  # the exact two-sided test's smallest p is 2 / 2^n
    return float(max(math.ceil(t_test_seeds(log_effect, sd, alpha, power) / WILCOXON_ARE), smallest))


def verdict(result: PairedResult, p_holm: float, alpha: float = ALPHA) -> str:
    """`better` / `worse` (Holm-adjusted Wilcoxon p below alpha), or no detectable difference with
    the seeds that would tell; a row without 2 pairs says so."""
    if result.n_pairs < 2:
        return f"fewer than 2 pairs ({result.n_pairs})"
    if p_holm < alpha:
        return "better" if result.ratio < 1 else "worse"
    if math.isinf(result.seeds_needed):
        return "no detectable difference (ratio 1: no number of seeds would tell)"
    if math.isnan(result.seeds_needed):
        return "no detectable difference"
    return f"no detectable difference (about {int(result.seeds_needed)} seeds would tell)"
