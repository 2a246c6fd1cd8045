"""1-D wave equation with two modes, the resampling benchmark of McClenny & Braga-Neto 2023 (GP-SA).

    u_tt = c^2 u_xx,  x, t in [0, 1],  u(0, t) = u(1, t) = 0,
    u(x, 0) = sin(pi x) + 0.5 sin(4 pi x),  u_t(x, 0) = 0,
    u = sin(pi x) cos(c pi t) + 0.5 sin(4 pi x) cos(4 c pi t).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, List

import torch
from torch import Tensor

from pinnrun.config import require_positive
from pinnrun.problems.base import Ansatz, Box, ClosedFormProblem, ProblemConfig, Term


@dataclass
class WaveConfig(ProblemConfig):
    c: float = 2.0  # wave speed
    n: Dict[str, int] = field(default_factory=lambda: {"pde": 10000, "ic": 200, "ic_t": 200, "bc": 200})
    eval_grid: List[int] = field(default_factory=lambda: [101, 201])  # x, t: >= 25 points per period of each mode

    def validate(self, prefix: str) -> None:
        super().validate(prefix)
        require_positive(f"{prefix}.c", self.c)


def initial_displacement(x: Tensor) -> Tensor:
    """u(x, 0) = sin(pi x) + 0.5 sin(4 pi x)."""
    return torch.sin(math.pi * x) + 0.5 * torch.sin(4 * math.pi * x)


class Wave(ClosedFormProblem):
    """The wave equation; the fast mode (period 1/(2c) in t) is what plain PINNs fail to fit."""

    name = "wave"
    input_names = ("x", "t")
    Config = WaveConfig

    def domain(self) -> Box:
        return ((0.0, 1.0), (0.0, 1.0))

    def exact(self, inputs: Tensor) -> Tensor:
        x, t, c = inputs[:, 0], inputs[:, 1], self.cfg.c
        return torch.sin(math.pi * x) * torch.cos(c * math.pi * t) + 0.5 * torch.sin(4 * math.pi * x) * torch.cos(4 * c * math.pi * t)

    def build_terms(self) -> dict[str, Term]:
        c2 = self.cfg.c**2
        initial = (((0.0, 1.0), (0.0, 0.0)),)
        return {
            "pde": Term((self.bounds,), lambda f: f["tt"] - c2 * f["xx"], ("tt", "xx")),
            "ic": Term(initial, lambda f: f.u - initial_displacement(f.coord("x"))),
            "ic_t": Term(initial, lambda f: f["t"], ("t",)),
            "bc": Term((((0.0, 0.0), (0.0, 1.0)), ((1.0, 1.0), (0.0, 1.0))), lambda f: f.u),
        }

    def ansatz(self) -> Ansatz:
        """u = u0(x) + x (1 - x) t^2 N(x, t): u(x, 0) = u0, u_t(x, 0) = 0 and u(0) = u(1) = 0 hold."""

        def transform(inputs: Tensor, net: Tensor) -> Tensor:
            x, t = inputs[:, 0:1], inputs[:, 1:2]
            return initial_displacement(x) + x * (1 - x) * t**2 * net

        return Ansatz(transform, satisfies=("ic", "ic_t", "bc"))
