"""Learning-rate annealing (Wang, Teng & Perdikaris 2021, SISC 43(5), Algorithm 1): term weights
from the ratio of the residual term's gradient magnitude to each other term's.

Every k steps, for each group g of terms other than the reference (the PDE residual r):

    lam_hat_g = S(grad_theta L_r) / M(grad_theta L_g)

and a moving average of lam_g. The variants are different methods, named in config and logged:

- `paper`: S = max|.|, M = mean|.| over all parameters, lam <- (1 - a) lam + a lam_hat (eq. 40-41).
- `paper_ema_old`: as `paper` with the average on the old value, lam <- a lam + (1 - a) lam_hat.
- `mean`:  S = M = mean|.| (as PhysicsNeMo), moving average as `paper`.
- `l2`:    S = M = ||.||_2 (as jaxpi), moving average as `paper`.
- `authors`: what the authors' code computes (GradientPathologiesPINNs,
  Helmholtz/Helmholtz2D_model_tf.py:103, 131-148, 344-347; Klein Gordon/Klein_Gordon_model_tf.py:
  103-104, 136-163, 359-368). The gradient measured is that of the group's whole contribution
  lam_g * sum_i c_i L_i, current lam inside, so lam_hat = S / (lam M) and the fixed point is
  lam = sqrt(S / M), not S / M. The statistics run over the layers' weight matrices only (no biases,
  no modified-MLP encoders: `PINNModel.layer_weights`): S the max over all of them, M the mean of the
  per-layer means of |.|. The average is on the old value (0.9).

L_i is the unweighted mean square of term i (or another scheme's term loss, when composed); the
problem's term constants c_i apply on top. `groups` puts several terms under one lam (its loss the
sum of theirs), as the code does: Helmholtz one lam on the four edges, Klein-Gordon one on the
initial value and velocity and one on both boundaries. Left as in pinnrun, not as in the code: the
code refreshes lam after its train step (on the updated parameters and the same batch); here the
refresh precedes the step, so the first refreshed lam weights step 0 rather than step 1.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping

import torch
from torch import Tensor, nn

from pinnrun.config import ConfigError, require_choice, require_positive
from pinnrun.models.base import linear_weights
from pinnrun.problems.base import Problem
from pinnrun.samplers.base import Points
from pinnrun.weighting.base import Refresh, Weighting, WeightingConfig, weighted_loss

Statistic = Callable[[list[Tensor]], Tensor]


def flat(blocks: list[Tensor]) -> Tensor:
    return torch.cat([g.flatten() for g in blocks])


def max_abs(blocks: list[Tensor]) -> Tensor:
    return flat(blocks).abs().max()


def mean_abs(blocks: list[Tensor]) -> Tensor:
    return flat(blocks).abs().mean()


def l2_norm(blocks: list[Tensor]) -> Tensor:
    return torch.linalg.vector_norm(flat(blocks))


def mean_of_layer_means(blocks: list[Tensor]) -> Tensor:
    """tf.reduce_mean(tf.stack([reduce_mean(|g_l|) for each layer l])): Helmholtz2D_model_tf.py:144-147."""
    return torch.stack([g.abs().mean() for g in blocks]).mean()


@dataclass(frozen=True)
class Variant:
    scale: Statistic  # S, on the reference term's gradient
    spread: Statistic  # M, on a group's gradient
    average_old: bool  # alpha weights the old value (else the new estimate)
    authors: bool  # layer weight matrices only, gradient of lam_g * sum c_i L_i


VARIANTS: dict[str, Variant] = {
    "paper": Variant(max_abs, mean_abs, average_old=False, authors=False),
    "paper_ema_old": Variant(max_abs, mean_abs, average_old=True, authors=False),
    "mean": Variant(mean_abs, mean_abs, average_old=False, authors=False),
    "l2": Variant(l2_norm, l2_norm, average_old=False, authors=False),
    "authors": Variant(max_abs, mean_of_layer_means, average_old=True, authors=True),
}
RENAMED = {
    "code": "weighting.variant='code' was renamed: it only moved the average onto the old value; use 'paper_ema_old' "
            "for that, or 'authors' for what the authors' code computes (lam inside the gradient, weight matrices only)",
}


@dataclass
class LRAConfig(WeightingConfig):
    variant: str = "paper"  # paper | paper_ema_old | mean | l2 | authors (see the module docstring)
    alpha: float = 0.9  # moving-average factor: on the new estimate (paper, mean, l2) or the old value (paper_ema_old, authors)
    update_every: int = 10  # k: steps between weight updates (the paper uses 10)
    reference: str = "pde"  # the residual term whose gradient sets the scale; its weight stays 1
    groups: Dict[str, List[str]] = field(default_factory=dict)  # name -> terms sharing one lam; others alone

    def validate(self, prefix: str) -> None:
        super().validate(prefix)
        if self.variant in RENAMED:
            raise ConfigError(RENAMED[self.variant])
        require_choice(f"{prefix}.variant", self.variant, VARIANTS)
        if not 0.0 <= self.alpha <= 1.0:
            raise ConfigError(f"{prefix}.alpha={self.alpha!r}: must be in [0, 1]")
        require_positive(f"{prefix}.update_every", self.update_every)


def term_groups(cfg: LRAConfig, problem: Problem) -> dict[str, list[str]]:
    """Every non-reference term in exactly one group: the configured ones, then one per remaining term."""
    terms = [term for term in problem.terms if term != cfg.reference]
    grouped: list[str] = []
    for name, members in cfg.groups.items():
        for term in members:
            if term not in terms:
                allowed = ", ".join(terms)
                raise ConfigError(f"weighting.groups.{name}: {term!r} is not a weighted term of {problem.name} ({allowed})")
            if term in grouped:
                raise ConfigError(f"weighting.groups.{name}: {term!r} is already in another group")
            grouped.append(term)
        if not members:
            raise ConfigError(f"weighting.groups.{name}: empty; list the terms that share its weight")
    groups = {name: list(members) for name, members in cfg.groups.items()}
    for term in terms:
        if term not in grouped:
            if term in groups:
                raise ConfigError(f"weighting.groups: {term!r} names a group and an ungrouped term")
            groups[term] = [term]
    return groups


class LRA(Weighting):
    """Term weights lam_g by gradient-statistics ratios, refreshed every k steps in adaptive phases."""

    Config = LRAConfig

    def __init__(self, cfg: LRAConfig, problem: Problem, model: nn.Module):
        super().__init__(cfg, problem, model)
        if cfg.reference not in problem.terms:
            raise ConfigError(f"weighting.reference={cfg.reference!r}: unknown term; {problem.name} has {', '.join(problem.terms)}")
        self.groups = term_groups(cfg, problem)
        self.variant = VARIANTS[cfg.variant]
        like = next(model.parameters())
        self.lam = {group: torch.ones((), device=like.device, dtype=like.dtype) for group in self.groups}
        self.refresh = Refresh(cfg.update_every)

    composes_terms = True

    def loss(self, residuals: Mapping[str, Tensor], points: Mapping[str, Points], step: int) -> tuple[Tensor, dict[str, Tensor]]:
        lam = self.term_weights({term: r.square().mean() for term, r in residuals.items()}, step)
        return weighted_loss(residuals, self.constants, term_weights=lam)

    def term_weights(self, losses: Mapping[str, Tensor], step: int) -> dict[str, Tensor]:
        if self.refresh.due(step):
            self.update(losses)
        return {term: self.lam[group] for group, members in self.groups.items() for term in members}

    def update(self, losses: Mapping[str, Tensor]) -> None:
        """One step of Algorithm 1: estimate lam_hat_g from this step's gradients of the group losses
        (the variant says which parameters, which statistics and whether lam is inside), then average."""
        variant, alpha = self.variant, self.cfg.alpha
        params = self.measured_parameters()
        reference = losses[self.cfg.reference] * (self.constants[self.cfg.reference] if variant.authors else 1.0)
        numerator = variant.scale(gradient_blocks(reference, params))
        for group, members in self.groups.items():
            weights = [self.constants[term] if variant.authors else 1.0 for term in members]
            group_loss = sum(c * losses[term] for c, term in zip(weights, members))
            inside = self.lam[group] if variant.authors else 1.0
            spread = variant.spread(gradient_blocks(inside * group_loss, params))
            estimate = numerator / spread.clamp_min(torch.finfo(spread.dtype).tiny)
            old = self.lam[group]
            self.lam[group] = alpha * old + (1.0 - alpha) * estimate if variant.average_old else (1.0 - alpha) * old + alpha * estimate

    def measured_parameters(self) -> list[Tensor]:
        """All trainable parameters, or (variant `authors`) the layers' weight matrices only."""
        if self.variant.authors:
            layer_weights = getattr(self.model, "layer_weights", None)
            return layer_weights() if callable(layer_weights) else linear_weights(self.model)
        return [p for p in self.model.parameters() if p.requires_grad]

    def after_step(self, ascent: bool) -> None:
        self.refresh.adaptive = ascent

    def metrics(self) -> dict[str, Tensor]:
        return {f"lra/{group}": lam for group, lam in self.lam.items()}

    def state_dict(self) -> dict[str, Any]:
        return {"lam": dict(self.lam), "last_refresh": self.refresh.last}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.lam = {group: lam.to(self.lam[group].device) for group, lam in state["lam"].items()}
        self.refresh.last = int(state["last_refresh"])


def gradient_blocks(loss: Tensor, params: list[Tensor]) -> list[Tensor]:
    """grad_theta of a loss, one block per parameter (the graph is kept for the step)."""
    grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]


def flat_gradient(loss: Tensor, params: list[Tensor]) -> Tensor:
    """grad_theta of a loss, flattened over `params`."""
    return flat(gradient_blocks(loss, params))
