"""Damped harmonic oscillator, the 1-D PINN toy (m u'' + mu u' + k u = 0 divided by m):

    u'' + 2 delta u' + omega0^2 u = 0,  t in [0, 1],  u(0) = 1,  u'(0) = 0,
    delta = mu / (2 m),  omega0 = sqrt(k / m).

Underdamped (delta < omega0): u = e^{-delta t} (cos(omega t) + (delta / omega) sin(omega t)),
omega = sqrt(omega0^2 - delta^2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, List

import torch
from torch import Tensor

from pinnrun.config import ConfigError, require_positive
from pinnrun.problems.base import Ansatz, Box, ClosedFormProblem, ProblemConfig, Term


@dataclass
class OscillatorConfig(ProblemConfig):
    delta: float = 2.0  # damping rate mu / (2 m)
    omega0: float = 20.0  # undamped angular frequency sqrt(k / m)
    n: Dict[str, int] = field(default_factory=lambda: {"pde": 200, "ic": 1, "ic_t": 1})
    # The residual is O(omega0^2) while u(0) - 1 is O(1): the tutorial constants keep them comparable.
    weights: Dict[str, float] = field(default_factory=lambda: {"pde": 1.0e-4, "ic": 1.0, "ic_t": 1.0e-1})
    eval_grid: List[int] = field(default_factory=lambda: [501])  # t: ~160 points per period at omega0 = 20

    def validate(self, prefix: str) -> None:
        super().validate(prefix)
        require_positive(f"{prefix}.omega0", self.omega0)
        if not (0 <= self.delta < self.omega0):
            raise ConfigError(f"{prefix}.delta={self.delta!r}: must satisfy 0 <= delta < omega0 (underdamped)")


class Oscillator(ClosedFormProblem):
    """The underdamped oscillator; u' and u'' are exact derivatives in t."""

    name = "oscillator"
    input_names = ("t",)
    Config = OscillatorConfig

    def domain(self) -> Box:
        return ((0.0, 1.0),)

    def exact(self, inputs: Tensor) -> Tensor:
        delta, omega0 = self.cfg.delta, self.cfg.omega0
        omega = math.sqrt(omega0**2 - delta**2)
        t = inputs[:, 0]
        return torch.exp(-delta * t) * (torch.cos(omega * t) + delta / omega * torch.sin(omega * t))

    def build_terms(self) -> dict[str, Term]:
        two_delta, omega0_2 = 2 * self.cfg.delta, self.cfg.omega0**2
        start = (((0.0, 0.0),),)
        return {
            "pde": Term((self.bounds,), lambda f: f["tt"] + two_delta * f["t"] + omega0_2 * f.u, ("t", "tt")),
            "ic": Term(start, lambda f: f.u - 1.0),
            "ic_t": Term(start, lambda f: f["t"], ("t",)),
        }

    def ansatz(self) -> Ansatz:
        """u = 1 + t^2 N(t): u(0) = 1 and u'(0) = 0 hold."""
        return Ansatz(lambda inputs, net: 1 + inputs[:, 0:1] ** 2 * net, satisfies=("ic", "ic_t"))
