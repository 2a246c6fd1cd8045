"""Term-level gradient-norm weighting, as jaxpi ships it (Wang, Wang, Bhartari & Perdikaris 2023,
"An expert's guide to training physics-informed neural networks", arXiv 2308.08468, eq. 3.4-3.5):

    w_i_hat = (sum_j ||grad_theta L_j||) / ||grad_theta L_i||,    w_i <- a w_i + (1 - a) w_i_hat

every k steps (their defaults: a = 0.9 on the old value, k = 1000; weights start at 1), so that
every term's weighted gradient has the same L2 norm, the mean of the raw norms. L_i is the term's
mean square (or, under `causal`, the causal PDE loss).

How it differs from pinnrun's other gradient-based schemes:
- `lra` keeps the reference (PDE) term at weight 1 and balances the others against the *max* (paper,
  code) or mean or L2 of the reference's gradient; here every term gets a weight, from L2 norms, and
  the weights sum the norms rather than take one term's as the scale.
- `gradnorm` weights *points*, not terms: w_j ~ 1 / ||grad r_j^2|| = 1 / (2 |r_j| ||grad r_j||), which
  down-weights the high-residual points (a shock); this one leaves the points of a term alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import torch
from torch import Tensor, nn

from pinnrun.config import ConfigError, require_positive
from pinnrun.problems.base import Problem
from pinnrun.samplers.base import Points
from pinnrun.weighting.base import Refresh, Weighting, WeightingConfig, weighted_loss
from pinnrun.weighting.lra import flat_gradient


@dataclass
class TermBalanceConfig(WeightingConfig):
    momentum: float = 0.9  # moving average on the old value: w <- momentum * w + (1 - momentum) * w_hat
    update_every: int = 1000  # k: steps between refreshes (adaptive phases only)

    def validate(self, prefix: str) -> None:
        super().validate(prefix)
        if not 0.0 <= self.momentum < 1.0:
            raise ConfigError(f"{prefix}.momentum={self.momentum!r}: must be in [0, 1)")
        require_positive(f"{prefix}.update_every", self.update_every)


def balanced_weights(statistics: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """w_i = sum_j S_j / S_i: weights that make every term's S_i w_i equal to the sum of the S_j
    (terms whose statistic is 0, e.g. satisfied exactly, keep a finite weight)."""
    total = sum(statistics.values())
    return {term: total / s.clamp_min(torch.finfo(s.dtype).tiny) for term, s in statistics.items()}


class TermBalance(Weighting):
    """Term weights w_i = sum_j S_j / S_i of a per-term statistic S_i, refreshed every k steps of
    adaptive phases and smoothed by a moving average: the shared core of gradnorm_terms and ntk."""

    Config = TermBalanceConfig
    prefix = "w_term"  # metric namespace of the weights

    def __init__(self, cfg: TermBalanceConfig, problem: Problem, model: nn.Module):
        super().__init__(cfg, problem, model)
        like = next(model.parameters())
        self.w = {term: torch.ones((), device=like.device, dtype=like.dtype) for term in problem.terms}
        self.refresh = Refresh(cfg.update_every)

    def smooth(self, statistics: Mapping[str, Tensor]) -> None:
        """Move the weights towards the balanced ones (detached: weights are not trained)."""
        for term, fresh in balanced_weights(statistics).items():
            self.w[term] = (self.cfg.momentum * self.w[term] + (1.0 - self.cfg.momentum) * fresh).detach()

    def after_step(self, ascent: bool) -> None:
        self.refresh.adaptive = ascent

    def metrics(self) -> dict[str, Tensor]:
        return {f"{self.prefix}/{term}": w for term, w in self.w.items()}

    def state_dict(self) -> dict[str, Any]:
        return {"w": dict(self.w), "last_refresh": self.refresh.last}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.w = {term: w.to(self.w[term].device) for term, w in state["w"].items()}
        self.refresh.last = int(state["last_refresh"])


class GradNormTerms(TermBalance):
    """jaxpi's grad-norm: S_i = ||grad_theta L_i||_2 (module docstring)."""

    composes_terms = True
    prefix = "gradnorm_terms"

    def loss(self, residuals: Mapping[str, Tensor], points: Mapping[str, Points], step: int) -> tuple[Tensor, dict[str, Tensor]]:
        w = self.term_weights({term: r.square().mean() for term, r in residuals.items()}, step)
        return weighted_loss(residuals, self.constants, term_weights=w)

    def term_weights(self, losses: Mapping[str, Tensor], step: int) -> dict[str, Tensor]:
        if self.refresh.due(step):
            params = [p for p in self.model.parameters() if p.requires_grad]
            self.smooth({term: torch.linalg.vector_norm(flat_gradient(loss, params)).detach()
                         for term, loss in losses.items()})
        return self.w
