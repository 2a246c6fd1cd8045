"""Diffusion equation with a source (the diffusion example of DeepXDE's documentation;
Lu et al. 2021, SIAM Rev. 63(1)).

    u_t = u_xx - e^{-t} (sin(pi x) - pi^2 sin(pi x)),  x in [-1, 1], t in [0, 1],
    u(x, 0) = sin(pi x),  u(+-1, t) = 0,  u = e^{-t} sin(pi x).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, List

import torch
from torch import Tensor

from pinnrun.derivatives import Fields
from pinnrun.problems.base import Ansatz, Box, ClosedFormProblem, ProblemConfig, Term


@dataclass
class DiffusionConfig(ProblemConfig):
    n: Dict[str, int] = field(default_factory=lambda: {"pde": 2000, "ic": 100, "bc": 100})
    eval_grid: List[int] = field(default_factory=lambda: [201, 101])  # x, t


class Diffusion(ClosedFormProblem):
    """A smooth, easy problem: a sanity baseline for every scheme."""

    name = "diffusion"
    input_names = ("x", "t")
    Config = DiffusionConfig

    def domain(self) -> Box:
        return ((-1.0, 1.0), (0.0, 1.0))

    def exact(self, inputs: Tensor) -> Tensor:
        return torch.exp(-inputs[:, 1]) * torch.sin(math.pi * inputs[:, 0])

    def build_terms(self) -> dict[str, Term]:
        def pde(f: Fields) -> Tensor:
            source = torch.exp(-f.coord("t")) * torch.sin(math.pi * f.coord("x")) * (1 - math.pi**2)
            return f["t"] - f["xx"] + source

        return {
            "pde": Term((self.bounds,), pde, ("t", "xx")),
            "ic": Term((((-1.0, 1.0), (0.0, 0.0)),), lambda f: f.u - torch.sin(math.pi * f.coord("x"))),
            "bc": Term((((-1.0, -1.0), (0.0, 1.0)), ((1.0, 1.0), (0.0, 1.0))), lambda f: f.u),
        }

    def ansatz(self) -> Ansatz:
        """u = t (1 - x^2) N(x, t) + sin(pi x), DeepXDE's hard-constraint version of this example."""

        def transform(inputs: Tensor, net: Tensor) -> Tensor:
            x, t = inputs[:, 0:1], inputs[:, 1:2]
            return t * (1 - x**2) * net + torch.sin(math.pi * x)

        return Ansatz(transform, satisfies=("ic", "bc"))
