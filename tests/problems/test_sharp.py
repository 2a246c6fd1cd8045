"""The sharp-transition regression: fixed uniformly spaced samples, the data term, and the
centre/outer residual ratio against a hand-computed case."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from pinnrun.cli import config_dir
from pinnrun.config import ConfigError, parse_option
from pinnrun.problems.sharp import Sharp
from pinnrun.samplers.qmc import LatinHypercubeSampler
from pinnrun.samplers.random import RandomSampler


def make_problem(**overrides) -> Sharp:
    node = OmegaConf.merge(OmegaConf.load(f"{config_dir()}/problem/sharp.yaml"), overrides)
    return parse_option("problem", node).build()


class Offset(nn.Module):
    """tanh(x / eps) plus a known error: `inside` in the centre band, `outside` elsewhere."""

    def __init__(self, problem: Sharp, inside: float, outside: float):
        super().__init__()
        self.problem, self.inside, self.outside = problem, inside, outside
        self.dummy = nn.Parameter(torch.zeros((), dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        band = torch.as_tensor(self.problem.in_band(x[:, 0].numpy()))
        error = torch.where(band, self.inside, self.outside).to(x.dtype)
        return (self.problem.exact(x) + error).unsqueeze(-1)


@pytest.mark.parametrize("sampler_cls", [RandomSampler, LatinHypercubeSampler])
def test_samples_are_the_uniform_grid_whatever_the_sampler(sampler_cls):
    problem = make_problem()
    points = sampler_cls(sampler_cls.Config(), problem, torch.Generator().manual_seed(3)).initial()["data"]
    np.testing.assert_allclose(np.sort(points.x[:, 0].numpy()), np.linspace(-1, 1, 30), atol=1e-15)
    assert len(set(points.ids.tolist())) == 30


def test_centre_outer_ratio_by_hand():
    problem = make_problem()
    metrics = problem.extra_metrics(Offset(problem, inside=0.2, outside=0.05))
    assert metrics["sharp/centre_outer_ratio"] == pytest.approx(4.0, rel=1e-12)
    assert metrics["sharp/centre_outer_ratio_grid"] == pytest.approx(4.0, rel=1e-12)
    # default band |x| <= 0.15 holds the 4 samples at +-1/29 and +-3/29
    assert problem.in_band(problem.samples).sum() == 4


def test_data_residual_and_band_follow_eps():
    problem = make_problem(eps=0.2)
    x = torch.linspace(-1, 1, 7, dtype=torch.float64)[:, None]
    np.testing.assert_allclose(problem.solution(x.numpy()), np.tanh(x[:, 0].numpy() / 0.2), atol=1e-15)
    assert problem.in_band(problem.samples).sum() == 18  # |x| <= 0.6


def test_band_without_samples_is_a_config_error():
    with pytest.raises(ConfigError, match="band"):
        make_problem(eps=0.005, band=1.0)
