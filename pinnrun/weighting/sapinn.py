"""Self-adaptive PINN weights (McClenny & Braga-Neto 2023, J. Comput. Phys. 474, 111722).

Each point j of a self-adaptive term i carries a trainable lam_ij >= 0 and the loss is

    L(theta, lam) = sum_i c_i mean_j m(lam_ij) r_ij^2                         (paper eq. 3-4)

with a mask m that is non-negative, differentiable and strictly increasing. theta descends and lam
ascends (a min-max saddle point problem, eq. 5): after each optimizer step of an adaptive (Adam)
phase, lam takes one step of its own Adam with `maximize=True` and its own learning rate, using
the gradient of the same loss evaluation. lam is frozen in L-BFGS phases. Weights live in a
`PointTable` keyed by point id, so they follow their points under any reordering.

Adam's epsilon decides what the weight map shows. The gradient of a weight is g = 2 c lam r^2 / N
(mask lam^2) and Adam's step is lr * m / (sqrt(v) + eps) (bias-corrected moments). With eps far below
the gradients (torch's 1e-8) every weight with a steady gradient climbs by about lr per step, large
residual or not. With eps above most gradients the step is about (lr / eps) g: plain gradient
ascent, the paper's update lam <- lam + eta grad_lam L, whose growth is proportional to
the residual squared, capped at lr per step where g exceeds eps. Only the second regime makes the
weights single out the hard points (Burgers at the paper's budget, docs/results.md).

`eps_mode: keras` adds eps to the uncorrected sqrt(v) as the authors' Keras Adam does (SA-PINNs,
Burgers/burgers.py:127-128: epsilon 1e-7, an effective 3.2e-6 at the first step): see pinnrun.optim.adam.

Masks: `polynomial` m = c lam^q (paper: q = 2), `logistic` m = c / (1 + exp(-lam)) (bounded by c).
Initialisation per term: `uniform` lam ~ scale * U(0, 1) (paper: scale 1 for Burgers, 100 for the
Allen-Cahn IC), `constant` lam = scale.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional

import torch
from torch import Tensor, nn

from pinnrun.config import ConfigError, require_choice, require_positive
from pinnrun.optim.adam import EPS_MODES, set_epsilon
from pinnrun.problems.base import Problem
from pinnrun.samplers.base import Points, SamplerConfig
from pinnrun.weighting.base import PointTable, Weighting, WeightingConfig, require_terms, weighted_loss

MASKS = ("polynomial", "logistic")
INITS = ("uniform", "constant")


@dataclass
class InitConfig:
    kind: str = "uniform"  # uniform: scale * U(0, 1) | constant: scale
    scale: float = 1.0

    def validate(self, prefix: str) -> None:
        require_choice(f"{prefix}.kind", self.kind, INITS)
        if self.scale < 0:
            raise ConfigError(f"{prefix}.scale={self.scale!r}: must be >= 0")


@dataclass
class SAConfig(WeightingConfig):
    terms: Optional[List[str]] = None  # self-adaptive terms; null: every term of the problem
    mask: str = "polynomial"  # polynomial: c * lam^q | logistic: c / (1 + exp(-lam))
    c: float = 1.0
    q: float = 2.0
    lr: float = 5e-3  # the weights' own Adam learning rate (paper: 5e-3)
    betas: List[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8  # Adam's epsilon: below the gradients 2 lam r^2 / N, sign-like steps of lr; above them, gradient ascent with step lr / eps
    eps_mode: str = "torch"  # torch | keras: eps on the uncorrected sqrt(v), as the authors' Keras Adam (pinnrun.optim.adam)
    init: Dict[str, InitConfig] = field(default_factory=dict)  # per term; others use default_init
    default_init: InitConfig = field(default_factory=InitConfig)

    def validate(self, prefix: str) -> None:
        super().validate(prefix)
        require_choice(f"{prefix}.mask", self.mask, MASKS)
        require_positive(f"{prefix}.c", self.c)
        require_positive(f"{prefix}.q", self.q)
        require_positive(f"{prefix}.lr", self.lr)
        require_positive(f"{prefix}.eps", self.eps)
        require_choice(f"{prefix}.eps_mode", self.eps_mode, EPS_MODES)
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ConfigError(f"{prefix}.betas={list(self.betas)}: must be two numbers in [0, 1)")
        self.default_init.validate(f"{prefix}.default_init")
        for term, init in self.init.items():
            init.validate(f"{prefix}.init.{term}")


def ascent_steps(optimizer: torch.optim.Adam, lam: Tensor) -> int:
    """Steps the weights' Adam has taken (its bias-correction clock)."""
    step = optimizer.state.get(lam, {}).get("step", 0)
    return int(step)


def mask(cfg: SAConfig, lam: Tensor) -> Tensor:
    """m(lam): the per-point weight that multiplies r^2."""
    if cfg.mask == "polynomial":
        return cfg.c * lam.pow(cfg.q)
    return cfg.c * torch.sigmoid(lam)


class SelfAdaptive(Weighting):
    """SA-PINN: per-point trainable weights, ascended by their own Adam in adaptive phases."""

    Config = SAConfig

    def __init__(self, cfg: SAConfig, problem: Problem, model: nn.Module):
        super().__init__(cfg, problem, model)
        self.terms = require_terms("weighting.terms", cfg.terms, problem)
        for term in cfg.init:
            if term not in self.terms:
                raise ConfigError(f"weighting.init.{term}: not a self-adaptive term (terms: {', '.join(self.terms)})")
        self.generator = torch.Generator().manual_seed(torch.initial_seed())
        self.tables: dict[str, PointTable] = {}
        self.optimizers: dict[str, torch.optim.Adam] = {}
        self.points: dict[str, Points] = {}

    @classmethod
    def reconcile_sampler(cls, cfg: SAConfig, sampler: SamplerConfig) -> None:
        """Plain SA weights belong to fixed points: refuse a sampler that redraws a self-adaptive term."""
        redrawn = [t for t in sampler.resample_terms if cfg.terms is None or t in cfg.terms]
        if sampler.resample_every > 0 and redrawn:
            raise ConfigError(
                f"sampler.resample_every={sampler.resample_every}: weighting=sapinn keeps one weight per fixed point, "
                f"but the sampler redraws self-adaptive term(s) {', '.join(redrawn)}; use weighting=sapinn_gp "
                "(weights carried to new points by GP regression) or sampler.resample_every=0"
            )

    def initial_weights(self, term: str, points: Points) -> Tensor:
        """lam for points a term has not seen: the term's initialisation."""
        init = self.cfg.init.get(term, self.cfg.default_init)
        if init.kind == "constant":
            return torch.full((len(points),), init.scale, dtype=points.x.dtype, device=points.x.device)
        draw = torch.rand(len(points), generator=self.generator, dtype=torch.float64)
        return (init.scale * draw).to(points.x.device, points.x.dtype)

    def on_points(self, changed: Mapping[str, Points]) -> None:
        for term, points in changed.items():
            if term not in self.terms:
                continue
            fresh = self.initial_weights(term, points)
            table = self.tables[term].rekey(points.ids, fresh) if term in self.tables else PointTable(points.ids, fresh)
            self.install(term, table)
            self.points[term] = points

    def install(self, term: str, table: PointTable) -> None:
        """Make a term's weights trainable, with a fresh ascent optimizer (new points have no history)."""
        table.values = nn.Parameter(table.values.detach().clone())
        self.tables[term] = table
        self.optimizers[term] = torch.optim.Adam([table.values], lr=self.cfg.lr, betas=tuple(self.cfg.betas), eps=self.cfg.eps,
                                                maximize=True)

    def lam(self, term: str, ids: Tensor) -> Tensor:
        """The trainable lam of the given points (a gather by id that keeps the graph to lam)."""
        return self.tables[term].lookup(ids)

    def loss(self, residuals: Mapping[str, Tensor], points: Mapping[str, Points], step: int) -> tuple[Tensor, dict[str, Tensor]]:
        weights = {term: mask(self.cfg, self.lam(term, points[term].ids)) for term in self.terms}
        return weighted_loss(residuals, self.constants, point_weights=weights)

    def after_step(self, ascent: bool) -> None:
        """One ascent step on lam (adaptive phases); lam stays frozen otherwise."""
        for term, optimizer in self.optimizers.items():
            lam = self.tables[term].values
            if ascent and lam.grad is not None:
                set_epsilon(optimizer, self.cfg.eps, self.cfg.eps_mode, ascent_steps(optimizer, lam) + 1)
                optimizer.step()
                with torch.no_grad():
                    lam.clamp_(min=0.0)
            optimizer.zero_grad(set_to_none=True)
            lam.requires_grad_(ascent)

    def point_weights(self) -> dict[str, Tensor]:
        return {term: mask(self.cfg, self.lam(term, points.ids)).detach() for term, points in self.points.items()}

    def state_dict(self) -> dict[str, Any]:
        return {
            "tables": {t: {"ids": tb.ids, "lam": tb.values.detach()} for t, tb in self.tables.items()},
            "optimizers": {t: opt.state_dict() for t, opt in self.optimizers.items()},
            "points": {t: {"x": p.x, "ids": p.ids} for t, p in self.points.items()},
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Weights, their optimizers and points back on the model's device (checkpoints load on CPU)."""
        device = next(self.model.parameters()).device
        for term, saved in state["tables"].items():
            self.install(term, PointTable(saved["ids"].to(device), saved["lam"].to(device)))
            self.optimizers[term].load_state_dict(state["optimizers"][term])
        self.points = {t: Points(p["x"].to(device), p["ids"].to(device)) for t, p in state["points"].items()}
        self.generator.set_state(state["generator"])
