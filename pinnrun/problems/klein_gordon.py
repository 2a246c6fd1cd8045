"""Nonlinear Klein-Gordon equation with a manufactured solution (Wang, Teng & Perdikaris 2021,
SISC 43(5)).

    u_tt + alpha u_xx + beta u + gamma u^p = f on [0, 1]^2,  alpha = -1, beta = 0, gamma = 1, p = 3,
    u = x cos(5 pi t) + (x t)^3,  f, the initial data and the boundary data taken from u.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, List

import torch
from torch import Tensor

from pinnrun.config import require_positive
from pinnrun.derivatives import Fields
from pinnrun.problems.base import Ansatz, Box, ClosedFormProblem, ProblemConfig, Term


@dataclass
class KleinGordonConfig(ProblemConfig):
    alpha: float = -1.0  # coefficient of u_xx
    beta: float = 0.0  # coefficient of u
    gamma: float = 1.0  # coefficient of u^p
    p: int = 3  # power of the nonlinearity
    n: Dict[str, int] = field(default_factory=lambda: {"pde": 10000, "ic": 200, "ic_t": 200, "bc": 200})
    eval_grid: List[int] = field(default_factory=lambda: [101, 201])  # x, t: cos(5 pi t) has 2.5 periods

    def validate(self, prefix: str) -> None:
        super().validate(prefix)
        require_positive(f"{prefix}.p", self.p)


def boundary_right(t: Tensor) -> Tensor:
    """u(1, t) = cos(5 pi t) + t^3 (u(0, t) = 0)."""
    return torch.cos(5 * math.pi * t) + t**3


class KleinGordon(ClosedFormProblem):
    """Klein-Gordon: second order in time, so value and velocity initial conditions are both terms."""

    name = "klein_gordon"
    input_names = ("x", "t")
    Config = KleinGordonConfig

    def domain(self) -> Box:
        return ((0.0, 1.0), (0.0, 1.0))

    def exact(self, inputs: Tensor) -> Tensor:
        x, t = inputs[:, 0], inputs[:, 1]
        return x * torch.cos(5 * math.pi * t) + (x * t) ** 3

    def forcing(self, inputs: Tensor) -> Tensor:
        """f = u_tt + alpha u_xx + beta u + gamma u^p with, by hand,
        u_tt = -25 pi^2 x cos(5 pi t) + 6 x^3 t and u_xx = 6 x t^3."""
        cfg = self.cfg
        x, t = inputs[:, 0], inputs[:, 1]
        u = self.exact(inputs)
        u_tt = -25 * math.pi**2 * x * torch.cos(5 * math.pi * t) + 6 * x**3 * t
        u_xx = 6 * x * t**3
        return u_tt + cfg.alpha * u_xx + cfg.beta * u + cfg.gamma * u**cfg.p

    def build_terms(self) -> dict[str, Term]:
        cfg = self.cfg

        def pde(f: Fields) -> Tensor:
            return f["tt"] + cfg.alpha * f["xx"] + cfg.beta * f.u + cfg.gamma * f.u**cfg.p - self.forcing(f.inputs)

        initial = (((0.0, 1.0), (0.0, 0.0)),)
        return {
            "pde": Term((self.bounds,), pde, ("tt", "xx")),
            "ic": Term(initial, lambda f: f.u - f.coord("x")),
            "ic_t": Term(initial, lambda f: f["t"], ("t",)),
            "bc": Term((((0.0, 0.0), (0.0, 1.0)), ((1.0, 1.0), (0.0, 1.0))), lambda f: f.u - self.exact(f.inputs)),
        }

    def ansatz(self) -> Ansatz:
        """u = x (cos(5 pi t) + t^3) + x (1 - x) t^2 N(x, t): the lift interpolates the boundary data
        linearly in x, and also matches u(x, 0) = x and u_t(x, 0) = 0."""

        def transform(inputs: Tensor, net: Tensor) -> Tensor:
            x, t = inputs[:, 0:1], inputs[:, 1:2]
            return x * boundary_right(t) + x * (1 - x) * t**2 * net

        return Ansatz(transform, satisfies=("ic", "ic_t", "bc"))
