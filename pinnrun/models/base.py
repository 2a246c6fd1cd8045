"""What every model shares: input normalisation from the problem's domain and the optional
hard-constraint ansatz around the network."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor, nn

from pinnrun import jet
from pinnrun.config import ConfigError
from pinnrun.problems.base import Ansatz, Problem


@dataclass
class ModelConfig:
    normalize_inputs: bool = True  # map each input from its domain interval to [-1, 1]
    hard_constraints: bool = False  # wrap the network in the problem's output ansatz


class PINNModel(nn.Module):
    """A network u(inputs) -> (N, 1) with input scaling and an optional output ansatz."""

    def __init__(self, cfg: ModelConfig, problem: Problem):
        super().__init__()
        low = torch.tensor([lo for lo, _ in problem.bounds])
        span = torch.tensor([hi - lo for lo, hi in problem.bounds])
        if not cfg.normalize_inputs:
            low, span = torch.full_like(low, -1.0), torch.full_like(span, 2.0)
        self.register_buffer("input_low", low)
        self.register_buffer("input_span", span)
        self.in_features = len(problem.input_names)
        self.ansatz: Optional[Ansatz] = None
        if cfg.hard_constraints:
            self.ansatz = problem.ansatz()
            if self.ansatz is None:
                raise ConfigError(f"model.hard_constraints=true: problem {problem.name!r} has no hard-constraint ansatz")

    def network(self, z: Tensor) -> Tensor:
        """The network on normalised inputs z in [-1, 1]^d."""
        raise NotImplementedError

    def normalise(self, inputs: Tensor) -> Tensor:
        """Inputs mapped from the domain box to [-1, 1]^d."""
        return 2.0 * (inputs - self.input_low) / self.input_span - 1.0

    def forward(self, inputs: Tensor) -> Tensor:
        out = self.network(self.normalise(inputs))
        return out if self.ansatz is None else self.ansatz.transform(inputs, out)

    def network_jet(self, z: jet.Jet) -> jet.Jet:
        """`network` on a Taylor jet (pinnrun.jet). This default uses forward-mode AD through
        `network`; a model built from layers the jet knows overrides it to walk them (MLP does)."""
        return jet.apply_jvp(self.network, z)

    def forward_jet(self, inputs: jet.Jet) -> jet.Jet:
        """`forward` on a Taylor jet of the inputs: u and its input derivatives, first-order graph."""
        stack = inputs.stack
        z = torch.cat([self.normalise(stack[0]).unsqueeze(0), 2.0 * stack[1:] / self.input_span])
        out = self.network_jet(jet.Jet(z, inputs.layout))
        return out if self.ansatz is None else jet.apply_jvp(self.ansatz.transform, inputs, out)
