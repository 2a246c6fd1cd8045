"""Residual-based attention (Anagnostopoulos, Toscano, Stergiopulos & Karniadakis 2024, Comput.
Methods Appl. Mech. Eng. 421, 116805, eq. 10-11): per-point multipliers that accumulate each
point's normalised residual, without gradients,

    lam_j <- gamma lam_j + eta |r_j| / max_k |r_k|,      L_i = mean_j (lam_j r_j)^2,

updated at every step of an adaptive phase from that step's residuals before the loss is formed
(as the authors' code, github.com/soanagno/rba-pinns, `loss_func`). lam starts at 0 and tends to
eta / (1 - gamma) |r_j| / max|r| (10 at the defaults gamma 0.999, eta 0.01): bounded, highest where
the residual stays high. The weight on r_j^2 is lam_j^2. By default only the PDE term carries
multipliers, as in the authors' examples. Differences from the code, chosen for pinnrun: the
multipliers are frozen in L-BFGS phases (the code keeps updating them in every L-BFGS closure
evaluation, which changes the objective under the line search), and they are keyed by point id.

New points (a resampling sampler) start at the fixed point for their first residual,
eta / (1 - gamma) |r_j| / max|r|, rather than at 0: a point drawn late would otherwise sit far below
its neighbours for the ~1 / (1 - gamma) = 1000 steps the average takes to build up.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List, Mapping, Optional

import torch
from torch import Tensor, nn

from pinnrun.config import ConfigError, require_positive
from pinnrun.problems.base import Problem
from pinnrun.samplers.base import Points
from pinnrun.weighting.base import PointTable, Weighting, WeightingConfig, require_terms, weighted_loss


@dataclass
class RBAConfig(WeightingConfig):
    terms: Optional[List[str]] = field(default_factory=lambda: ["pde"])  # terms with multipliers; null: every term
    gamma: float = 0.999  # memory of the running multiplier
    eta: float = 0.01  # the normalised residual's learning rate

    def validate(self, prefix: str) -> None:
        super().validate(prefix)
        if not 0.0 <= self.gamma < 1.0:
            raise ConfigError(f"{prefix}.gamma={self.gamma!r}: must be in [0, 1)")
        require_positive(f"{prefix}.eta", self.eta)


def normalised_residual(r: Tensor) -> Tensor:
    """|r_j| / max_k |r_k| (0 where every residual is 0), detached."""
    magnitude = r.detach().abs()
    return magnitude / magnitude.max().clamp_min(torch.finfo(magnitude.dtype).tiny)


class RBA(Weighting):
    """Residual-based attention: a running, gradient-free multiplier per point."""

    Config = RBAConfig

    def __init__(self, cfg: RBAConfig, problem: Problem, model: nn.Module):
        super().__init__(cfg, problem, model)
        self.terms = require_terms("weighting.terms", cfg.terms, problem)
        self.tables: dict[str, PointTable] = {}
        self.points: dict[str, Points] = {}
        self.ascent = True
        self.started = False

    def on_points(self, changed: Mapping[str, Points]) -> None:
        """The run's first points start at 0 (the paper); later ones at NaN, filled with their fixed
        point at their first residual (module docstring)."""
        for term, points in changed.items():
            if term not in self.terms:
                continue
            fresh = torch.full((len(points),), torch.nan if self.started else 0.0, dtype=points.x.dtype, device=points.x.device)
            self.tables[term] = self.tables[term].rekey(points.ids, fresh) if term in self.tables else PointTable(points.ids, fresh)
            self.points[term] = points

    def loss(self, residuals: Mapping[str, Tensor], points: Mapping[str, Points], step: int) -> tuple[Tensor, dict[str, Tensor]]:
        self.started = True
        weights = {}
        for term in self.terms:
            table, index = self.tables[term], self.tables[term].index(points[term].ids)
            if self.ascent:
                self.update(table, index, residuals[term])
            weights[term] = table.values[index].square()
        return weighted_loss(residuals, self.constants, point_weights=weights)

    def update(self, table: PointTable, index: Tensor, r: Tensor) -> None:
        """lam <- gamma lam + eta |r| / max|r|; a new point (NaN) takes its fixed point instead."""
        step = self.cfg.eta * normalised_residual(r).to(table.values.dtype)
        lam = table.values[index]
        table.values[index] = torch.where(lam.isnan(), step / (1.0 - self.cfg.gamma), self.cfg.gamma * lam + step)

    def after_step(self, ascent: bool) -> None:
        self.ascent = ascent

    def point_weights(self) -> dict[str, Tensor]:
        return {term: self.tables[term].lookup(p.ids).square() for term, p in self.points.items()}

    def state_dict(self) -> dict[str, Any]:
        return {"tables": {t: {"ids": tb.ids, "lam": tb.values} for t, tb in self.tables.items()},
                "points": {t: {"x": p.x, "ids": p.ids} for t, p in self.points.items()}, "started": self.started}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        device = next(self.model.parameters()).device
        self.tables = {t: PointTable(s["ids"].to(device), s["lam"].to(device)) for t, s in state["tables"].items()}
        self.points = {t: Points(p["x"].to(device), p["ids"].to(device)) for t, p in state["points"].items()}
        self.started = bool(state["started"])
