"""GP-extended SA-PINN: the GP regression itself, and weights carried across a resample."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from pinnrun.config import ConfigError, parse_node
from pinnrun.problems.burgers import Burgers
from pinnrun.samplers.base import Points, SamplerConfig
from pinnrun.weighting.sapinn_gp import GPConfig, SelfAdaptiveGP, gp_posterior_mean


def field(x: torch.Tensor) -> torch.Tensor:
    """A weight field shaped like a Burgers shock: a ridge at x = 0 for t > 0.3, plus a floor."""
    return 1.0 + 10.0 * torch.exp(-((x[:, 0] / 0.15) ** 2)) * torch.sigmoid((x[:, 1] - 0.3) / 0.05)


def uniform_points(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 2, generator=g, dtype=torch.float64) * torch.tensor([2.0, 1.0]) - torch.tensor([1.0, 0.0])


def test_reproduces_known_weights_at_fit_points() -> None:
    x = uniform_points(200, 0)
    y = field(x)
    predicted = gp_posterior_mean(x, y, x, GPConfig(length_scale=0.25, noise=1e-6, fit_points=200))
    assert torch.allclose(predicted, y, rtol=1e-3)


def test_smooth_between_fit_points() -> None:
    """On a 1-D line the prediction between neighbouring fit points stays between their values
    (up to a small overshoot) and tracks the smooth field."""
    x = torch.stack([torch.linspace(-1, 1, 41), torch.full((41,), 0.8)], dim=1).double()
    between = (x[1:] + x[:-1]) / 2
    cfg = GPConfig(length_scale=0.3, noise=1e-4, fit_points=41)
    predicted = gp_posterior_mean(x, field(x), between, cfg)
    low = torch.minimum(field(x[1:]), field(x[:-1]))
    high = torch.maximum(field(x[1:]), field(x[:-1]))
    span = float(field(x).max() - field(x).min())
    assert bool(((predicted >= low - 0.02 * span) & (predicted <= high + 0.02 * span)).all())
    assert float((predicted - field(between)).abs().max()) < 0.05 * span


def scheme(**cfg) -> SelfAdaptiveGP:
    problem = Burgers(parse_node("problem", Burgers.Config, {}))
    torch.manual_seed(0)
    options = {"terms": ["pde"], "default_init": {"kind": "uniform", "scale": 1.0}, **cfg}
    return SelfAdaptiveGP(parse_node("weighting", SelfAdaptiveGP.Config, options), problem, nn.Linear(2, 1).double())


def test_resample_keeps_the_weight_field_shape() -> None:
    """Trained-looking weights (the field plus the U(0,1) initialisation noise) on 2000 points are
    carried to 2000 fresh points; on a fixed probe set the new field correlates with the old."""
    sa = scheme()
    old = uniform_points(2000, 1)
    sa.on_points({"pde": Points(old, torch.arange(2000))})
    with torch.no_grad():
        table = sa.tables["pde"]
        table.values.copy_(torch.sqrt(field(old)[table.index(torch.arange(2000))]) + table.values)
    new = uniform_points(2000, 2)
    sa.on_points({"pde": Points(new, torch.arange(2000, 4000))})
    assert sa.gp_seconds > 0
    probe = uniform_points(500, 3)
    truth = field(probe)
    carried = gp_posterior_mean(new, sa.point_weights()["pde"], probe, GPConfig(length_scale=0.25, noise=0.05, fit_points=2000))
    correlation = np.corrcoef(carried.numpy(), truth.numpy())[0, 1]
    assert correlation > 0.9
    assert bool((sa.tables["pde"].values >= 0).all())
    assert set(sa.tables["pde"].ids.tolist()) == set(range(2000, 4000))


def test_sets_the_sampler_cadence_or_refuses_a_conflicting_one() -> None:
    cfg = parse_node("weighting", SelfAdaptiveGP.Config, {})
    sampler = SamplerConfig()
    SelfAdaptiveGP.reconcile_sampler(cfg, sampler)
    assert sampler.resample_every == 100
    with pytest.raises(ConfigError, match="sampler.resample_every=50 and weighting.resample_every=100 disagree"):
        SelfAdaptiveGP.reconcile_sampler(cfg, SamplerConfig(resample_every=50))
