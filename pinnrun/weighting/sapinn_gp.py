"""SA-PINN with resampling (McClenny & Braga-Neto 2023, section 5): every k steps the sampler
redraws the collocation points, and each new point of a self-adaptive term gets the weight that
Gaussian-process regression from point coordinates to the current trained lam predicts there; one
GP per redrawn term, then training continues by ascent.

The paper says "standard GP regression" with fixed, untuned hyperparameters and no further detail.
Our choices (config, see conf/weighting/sapinn_gp.yaml):
- kernel: RBF with unit signal variance on standardised inputs and standardised targets (per
  coordinate and target mean/std of the fit set), so one length scale fits any domain box;
- length scale and noise fixed (not fitted): a marginal-likelihood fit every 100 steps would cost
  more than the step budget allows and the paper did not tune them;
- the posterior mean, not a sample: a joint sample at 10k points needs a 10k x 10k covariance,
  and independent marginal samples would add point noise to the weight field;
- the fit set: a random subset of at most M current points (exact GP cost is O(M^3));
- predictions clamped to lam >= 0.
The posterior is a small exact Cholesky solve in torch on the run's device (no host round trip);
`scripts/benchmark_weighting.py` times it against scikit-learn's GaussianProcessRegressor.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Mapping

import torch
from torch import Tensor, nn

from pinnrun.config import ConfigError, require_positive
from pinnrun.problems.base import Problem
from pinnrun.samplers.base import Points, SamplerConfig
from pinnrun.weighting.base import weight_summaries
from pinnrun.weighting.sapinn import SAConfig, SelfAdaptive


@dataclass
class GPConfig:
    length_scale: float = 0.25  # RBF length scale on standardised inputs
    noise: float = 0.05  # observation-noise variance relative to the (unit) signal variance
    fit_points: int = 1000  # M: at most this many current points, drawn at random, fit each GP

    def validate(self, prefix: str) -> None:
        require_positive(f"{prefix}.length_scale", self.length_scale)
        require_positive(f"{prefix}.noise", self.noise)
        require_positive(f"{prefix}.fit_points", self.fit_points)


@dataclass
class SAGPConfig(SAConfig):
    resample_every: int = 100  # k: the sampler's cadence when its own is 0 (paper: 100)
    gp: GPConfig = field(default_factory=GPConfig)

    def validate(self, prefix: str) -> None:
        super().validate(prefix)
        require_positive(f"{prefix}.resample_every", self.resample_every)
        self.gp.validate(f"{prefix}.gp")


def standardise(values: Tensor, reference: Tensor) -> Tensor:
    """Columns of `values` in units of `reference`'s mean and standard deviation."""
    std = reference.std(dim=0, unbiased=False).clamp_min(torch.finfo(reference.dtype).eps)
    return (values - reference.mean(dim=0)) / std


def rbf(a: Tensor, b: Tensor, length_scale: float) -> Tensor:
    """k(a, b) = exp(-|a - b|^2 / (2 l^2)), unit variance."""
    return torch.exp(-0.5 * torch.cdist(a, b).square() / length_scale**2)


def gp_posterior_mean(x_fit: Tensor, y_fit: Tensor, x_new: Tensor, cfg: GPConfig) -> Tensor:
    """Exact GP posterior mean at x_new given noisy observations y_fit at x_fit (Rasmussen &
    Williams 2006, Alg. 2.1), on standardised inputs and targets."""
    a, b = standardise(x_fit, x_fit), standardise(x_new, x_fit)
    y_mean, y_std = y_fit.mean(), y_fit.std(unbiased=False).clamp_min(torch.finfo(y_fit.dtype).eps)
    gram = rbf(a, a, cfg.length_scale) + cfg.noise * torch.eye(len(a), dtype=a.dtype, device=a.device)
    factor = torch.linalg.cholesky(gram)
    alpha = torch.cholesky_solve(((y_fit - y_mean) / y_std).unsqueeze(-1), factor)
    return y_mean + y_std * (rbf(b, a, cfg.length_scale) @ alpha).squeeze(-1)


class SelfAdaptiveGP(SelfAdaptive):
    """SA-PINN whose weights follow resampled points through GP regression."""

    Config = SAGPConfig

    def __init__(self, cfg: SAGPConfig, problem: Problem, model: nn.Module):
        super().__init__(cfg, problem, model)
        self.gp_seconds = 0.0

    @classmethod
    def reconcile_sampler(cls, cfg: SAGPConfig, sampler: SamplerConfig) -> None:
        """The scheme's cadence drives a sampler that has none; two different cadences are an error."""
        if sampler.resample_every == 0:
            sampler.resample_every = cfg.resample_every
        elif sampler.resample_every != cfg.resample_every:
            raise ConfigError(
                f"sampler.resample_every={sampler.resample_every} and weighting.resample_every={cfg.resample_every} "
                "disagree; set one of them (weighting=sapinn_gp sets the sampler's cadence when it has none)"
            )

    def initial_weights(self, term: str, points: Points) -> Tensor:
        """The term's initialisation at the start; afterwards the GP prediction from the trained lam."""
        if term not in self.tables:
            return super().initial_weights(term, points)
        started = time.perf_counter()
        old = self.points[term]
        lam = self.lam(term, old.ids).detach()
        subset = torch.randperm(len(old), generator=self.generator)[: self.cfg.gp.fit_points].to(lam.device)
        predicted = gp_posterior_mean(old.x[subset], lam[subset], points.x, self.cfg.gp).clamp_min(0.0)
        if predicted.is_cuda:
            torch.cuda.synchronize(predicted.device)
        self.gp_seconds += time.perf_counter() - started
        return predicted

    def metrics(self) -> dict[str, Tensor]:
        like = next(iter(self.tables.values())).values
        return {**weight_summaries(self.point_weights()), "time/gp_s": torch.tensor(self.gp_seconds, device=like.device)}

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "gp_seconds": self.gp_seconds}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(dict(state))
        self.gp_seconds = float(state["gp_seconds"])
