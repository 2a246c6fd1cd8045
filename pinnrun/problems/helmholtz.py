"""Helmholtz equation with a manufactured solution (Wang, Teng & Perdikaris 2021, SISC 43(5);
McClenny & Braga-Neto 2023).

    u_xx + u_yy + k^2 u = q(x, y) on (-1, 1)^2,  u = sin(a1 pi x) sin(a2 pi y),
    q = (k^2 - (a1 pi)^2 - (a2 pi)^2) u,  Dirichlet data from u on the boundary.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import torch
from torch import Tensor

from pinnrun.config import require_positive
from pinnrun.derivatives import Fields
from pinnrun.problems.base import Ansatz, Box, ClosedFormProblem, ProblemConfig, Term


@dataclass
class HelmholtzConfig(ProblemConfig):
    k: float = 1.0  # wave number
    a1: float = 1.0  # half-periods of the solution along x
    a2: float = 4.0  # half-periods of the solution along y
    n: Dict[str, int] = field(default_factory=lambda: {"pde": 10000, "bc": 400})
    eval_grid: List[int] = field(default_factory=lambda: [201, 201])  # x, y: >= 25 points per half-period

    def validate(self, prefix: str) -> None:
        super().validate(prefix)
        require_positive(f"{prefix}.k", self.k)
        require_positive(f"{prefix}.a1", self.a1)
        require_positive(f"{prefix}.a2", self.a2)


class Helmholtz(ClosedFormProblem):
    """The 2-D Helmholtz benchmark; a2 = 4 puts four half-periods along y, a test of spectral bias."""

    name = "helmholtz"
    input_names = ("x", "y")
    Config = HelmholtzConfig

    def domain(self) -> Box:
        return ((-1.0, 1.0), (-1.0, 1.0))

    def exact(self, inputs: Tensor) -> Tensor:
        x, y = inputs[:, 0], inputs[:, 1]
        return torch.sin(self.cfg.a1 * math.pi * x) * torch.sin(self.cfg.a2 * math.pi * y)

    def forcing(self, inputs: Tensor) -> Tensor:
        """q = (k^2 - (a1 pi)^2 - (a2 pi)^2) u, the Laplacian of u done by hand."""
        cfg = self.cfg
        return (cfg.k**2 - (cfg.a1 * math.pi) ** 2 - (cfg.a2 * math.pi) ** 2) * self.exact(inputs)

    def build_terms(self) -> dict[str, Term]:
        k2 = self.cfg.k**2
        edges = (((-1.0, -1.0), (-1.0, 1.0)), ((1.0, 1.0), (-1.0, 1.0)), ((-1.0, 1.0), (-1.0, -1.0)), ((-1.0, 1.0), (1.0, 1.0)))

        def pde(f: Fields) -> Tensor:
            return f["xx"] + f["yy"] + k2 * f.u - self.forcing(f.inputs)

        return {
            "pde": Term((self.bounds,), pde, ("xx", "yy")),
            "bc": Term(edges, lambda f: f.u - self.exact(f.inputs)),
        }

    def ansatz(self) -> Optional[Ansatz]:
        """u = (1 - x^2)(1 - y^2) N(x, y): the boundary data vanish when a1 and a2 are integers
        (otherwise there is no ansatz)."""
        if not (float(self.cfg.a1).is_integer() and float(self.cfg.a2).is_integer()):
            return None

        def transform(inputs: Tensor, net: Tensor) -> Tensor:
            x, y = inputs[:, 0:1], inputs[:, 1:2]
            return (1 - x**2) * (1 - y**2) * net

        return Ansatz(transform, satisfies=("bc",))
