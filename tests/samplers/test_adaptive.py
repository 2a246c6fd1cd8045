"""RAD / RAR-D / RAR-G on a 1-D segment with a known residual: RAD's points follow the density
|r|^k / mean|r|^k + c, RAR adds where the residual is large, ids stay unique and stable."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from pinnrun.problems.base import AnalyticProblem, Box, ProblemConfig, Term
from pinnrun.samplers.adaptive import (DensityConfig, RADSampler, RARDConfig, RARDSampler, RARGConfig, RARGSampler,
                                       residual_density)

PEAK, WIDTH = 0.7, 0.01


class Segment(AnalyticProblem):
    """u = 0 on [0, 1]: only its region matters to a sampler."""

    name = "segment"
    input_names = ("x",)
    Config = ProblemConfig

    def domain(self) -> Box:
        return ((0.0, 1.0),)

    def build_terms(self) -> dict[str, Term]:
        return {"pde": Term((self.bounds,), lambda f: f.u), "bc": Term((((0.0, 0.0),), ((1.0, 1.0),)), lambda f: f.u)}

    def solution(self, inputs: np.ndarray) -> np.ndarray:
        return np.zeros(len(inputs))


def segment(n: int) -> Segment:
    return Segment(ProblemConfig(n={"pde": n, "bc": 2}, eval_grid=[11]))


def linear(term: str, x: torch.Tensor) -> torch.Tensor:
    return x[:, 0]


def peaked(term: str, x: torch.Tensor) -> torch.Tensor:
    return torch.exp(-(((x[:, 0] - PEAK) / WIDTH) ** 2))


@pytest.mark.parametrize(
    "k, c, cdf",
    [
        (1.0, 0.0, lambda x: x**2),  # p = 2x
        (1.0, 1.0, lambda x: (x**2 + x) / 2),  # p = (2x + 1) / 2
        (2.0, 0.0, lambda x: x**3),  # p = 3x^2
    ],
)
def test_rad_points_follow_the_residual_density(k: float, c: float, cdf) -> None:
    """With r(x) = x the RAD density is p(x) = x^k / mean(x^k) + c, normalised. A one-sample
    Kolmogorov-Smirnov test of n = 2000 points against its CDF: at significance 0.001 the critical
    value is 1.95 / sqrt(n) = 0.044 (the pool of 400k candidates is 200x the draw, so drawing
    without replacement shifts the distribution far less than that). The same points must reject
    the uniform law (the test can fail)."""
    n = 2000
    sampler = RADSampler(DensityConfig(resample_every=1, pool=400_000, k=k, c=c), segment(n), torch.Generator().manual_seed(0))
    sampler.initial()
    x = sampler.update(1, linear)["pde"].x[:, 0].numpy()
    critical = 1.95 / math.sqrt(n)
    assert stats.kstest(x, cdf).statistic < critical
    assert stats.kstest(x, "uniform").statistic > critical


def test_residual_density_formula_and_fallbacks() -> None:
    r = torch.tensor([1.0, -3.0, 0.0, 4.0])
    expected = torch.tensor([1.0, 3.0, 0.0, 4.0]) / 2.0 + 0.5  # |r| / mean|r| + c with mean 2, c = 0.5
    torch.testing.assert_close(residual_density(r, 1.0, 0.5), expected.double() / expected.sum())
    torch.testing.assert_close(residual_density(torch.zeros(4), 1.0, 0.0), torch.full((4,), 0.25, dtype=torch.float64))
    with pytest.raises(FloatingPointError):
        residual_density(torch.tensor([1.0, math.nan]), 1.0, 1.0)


def test_rad_replaces_all_points_with_new_ids_only_every_k_steps() -> None:
    sampler = RADSampler(DensityConfig(resample_every=10, pool=50_000), segment(200), torch.Generator().manual_seed(1))
    first = dict(sampler.initial())
    assert sampler.update(5, peaked) is None
    changed = sampler.update(10, peaked)
    assert set(changed) == {"pde"} and len(changed["pde"]) == 200
    old = set(torch.cat([p.ids for p in first.values()]).tolist())
    new = changed["pde"].ids.tolist()
    assert len(set(new)) == 200 and not old & set(new)
    assert torch.equal(sampler.points["bc"].ids, first["bc"].ids)
    near = (changed["pde"].x[:, 0] - PEAK).abs() < 3 * WIDTH
    assert near.double().mean() > 0.4  # half the density mass sits in the peak (c = 1), 6% of the segment


@pytest.mark.parametrize("kind", ["rar_d", "rar_g"])
def test_rar_adds_where_the_residual_is_large_and_keeps_old_points(kind: str) -> None:
    """RAR-G adds the 20 largest-|r| of 20k uniform candidates: all within a few candidate spacings
    of the peak. RAR-D with c = 0 draws from |r| itself: all but a negligible mass lie within
    3 widths of the peak (erfc(3) ~ 2e-5)."""
    if kind == "rar_d":
        sampler = RARDSampler(RARDConfig(resample_every=1, pool=20_000, c=0.0, add=20), segment(100), torch.Generator().manual_seed(2))
    else:
        sampler = RARGSampler(RARGConfig(resample_every=1, pool=20_000, add=20), segment(100), torch.Generator().manual_seed(2))
    first = sampler.initial()["pde"]
    grown = sampler.update(1, peaked)["pde"]
    assert len(grown) == 120
    assert torch.equal(grown.ids[:100], first.ids) and torch.equal(grown.x[:100], first.x)
    assert len(grown.ids.unique()) == 120 and grown.ids[100:].min() > first.ids.max()
    added = grown.x[100:, 0]
    assert ((added - PEAK).abs() < (0.005 if kind == "rar_g" else 3 * WIDTH)).all()


def test_rar_stops_at_the_cap() -> None:
    sampler = RARGSampler(RARGConfig(resample_every=1, pool=1000, add=30, max_growth=1.5), segment(100), torch.Generator().manual_seed(3))
    sampler.initial()
    sizes = []
    for step in range(1, 5):
        changed = sampler.update(step, peaked)
        sizes.append(len(sampler.points["pde"]))
        if step > 2:
            assert changed is None
    assert sizes == [130, 150, 150, 150]
    assert sampler.metrics() == {"points/pde": 150.0, "points/bc": 2.0}
