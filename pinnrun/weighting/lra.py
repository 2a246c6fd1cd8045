"""Learning-rate annealing (Wang, Teng & Perdikaris 2021, SISC 43(5), Algorithm 1): term weights
from the ratio of the residual term's gradient magnitude to each other term's.

Every k steps, for each term i other than the reference (the PDE residual r):

    lam_hat_i = S(grad_theta L_r) / M(grad_theta L_i)

and a moving average of lam_i. The variants are different methods, named in config and logged:

- `paper`: S = max|.|, M = mean|.|, lam_i <- (1 - a) lam_i + a lam_hat_i (the paper's eq. 40-41).
- `code`:  S = max|.|, M = mean|.|, lam_i <- a lam_i + (1 - a) lam_hat_i (the authors' public code).
- `mean`:  S = M = mean|.| (as PhysicsNeMo), moving average as `paper`.
- `l2`:    S = M = ||.||_2 (as jaxpi), moving average as `paper`.

L_i is the unweighted mean square of term i; the problem's term constants c_i apply on top.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

import torch
from torch import Tensor, nn

from pinnrun.config import ConfigError, require_choice, require_positive
from pinnrun.problems.base import Problem
from pinnrun.samplers.base import Points
from pinnrun.weighting.base import Refresh, Weighting, WeightingConfig, weighted_loss

Statistic = Callable[[Tensor], Tensor]
STATISTICS: dict[str, tuple[Statistic, Statistic]] = {
    "paper": (lambda g: g.abs().max(), lambda g: g.abs().mean()),
    "code": (lambda g: g.abs().max(), lambda g: g.abs().mean()),
    "mean": (lambda g: g.abs().mean(), lambda g: g.abs().mean()),
    "l2": (torch.linalg.vector_norm, torch.linalg.vector_norm),
}


@dataclass
class LRAConfig(WeightingConfig):
    variant: str = "paper"  # paper | code | mean | l2 (see the module docstring)
    alpha: float = 0.9  # moving-average factor: on the new estimate (paper, mean, l2) or the old value (code)
    update_every: int = 10  # k: steps between weight updates (the paper uses 10)
    reference: str = "pde"  # the residual term whose gradient sets the scale; its weight stays 1

    def validate(self, prefix: str) -> None:
        super().validate(prefix)
        require_choice(f"{prefix}.variant", self.variant, STATISTICS)
        if not 0.0 <= self.alpha <= 1.0:
            raise ConfigError(f"{prefix}.alpha={self.alpha!r}: must be in [0, 1]")
        require_positive(f"{prefix}.update_every", self.update_every)


def moving_average(variant: str, alpha: float, old: Tensor, new: Tensor) -> Tensor:
    """The variant's exponential moving average of the term weight."""
    return alpha * old + (1.0 - alpha) * new if variant == "code" else (1.0 - alpha) * old + alpha * new


class LRA(Weighting):
    """Term weights lam_i by gradient-statistics ratios, refreshed every k steps in adaptive phases."""

    Config = LRAConfig

    def __init__(self, cfg: LRAConfig, problem: Problem, model: nn.Module):
        super().__init__(cfg, problem, model)
        if cfg.reference not in problem.terms:
            raise ConfigError(f"weighting.reference={cfg.reference!r}: unknown term; {problem.name} has {', '.join(problem.terms)}")
        like = next(model.parameters())
        self.lam = {term: torch.ones((), device=like.device, dtype=like.dtype) for term in problem.terms if term != cfg.reference}
        self.refresh = Refresh(cfg.update_every)

    composes_terms = True

    def loss(self, residuals: Mapping[str, Tensor], points: Mapping[str, Points], step: int) -> tuple[Tensor, dict[str, Tensor]]:
        lam = self.term_weights({term: r.square().mean() for term, r in residuals.items()}, step)
        return weighted_loss(residuals, self.constants, term_weights=lam)

    def term_weights(self, losses: Mapping[str, Tensor], step: int) -> dict[str, Tensor]:
        if self.refresh.due(step):
            self.update(losses)
        return self.lam

    def update(self, losses: Mapping[str, Tensor]) -> None:
        """One step of Algorithm 1: estimate lam_hat_i from this step's gradients of the term losses
        L_i (the unweighted mean squares, or another scheme's term losses), then average."""
        params = [p for p in self.model.parameters() if p.requires_grad]
        scale, spread = STATISTICS[self.cfg.variant]
        reference = flat_gradient(losses[self.cfg.reference], params)
        numerator = scale(reference)
        for term in self.lam:
            gradient = flat_gradient(losses[term], params)
            estimate = numerator / spread(gradient).clamp_min(torch.finfo(gradient.dtype).tiny)
            self.lam[term] = moving_average(self.cfg.variant, self.cfg.alpha, self.lam[term], estimate)

    def after_step(self, ascent: bool) -> None:
        self.refresh.adaptive = ascent

    def metrics(self) -> dict[str, Tensor]:
        return {f"lra/{term}": lam for term, lam in self.lam.items()}

    def state_dict(self) -> dict[str, Any]:
        return {"lam": dict(self.lam), "last_refresh": self.refresh.last}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.lam = {term: lam.to(self.lam[term].device) for term, lam in state["lam"].items()}
        self.refresh.last = int(state["last_refresh"])


def flat_gradient(loss: Tensor, params: list[Tensor]) -> Tensor:
    """grad_theta of one term's loss, flattened over all parameters (the graph is kept for the step)."""
    grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    return torch.cat([torch.zeros_like(p).flatten() if g is None else g.flatten() for p, g in zip(params, grads)])
