"""The plain fully connected PINN network (Raissi et al. 2019): tanh layers with Glorot init."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from pinnrun import jet
from pinnrun.config import require_choice, require_positive
from pinnrun.models.base import ModelConfig, PINNModel
from pinnrun.problems.base import Problem

ACTIVATIONS = {"tanh": nn.Tanh, "sin": None, "gelu": nn.GELU, "silu": nn.SiLU}
INITS = ("glorot_normal", "glorot_uniform", "kaiming_normal")


class Sin(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return torch.sin(x)

    def jet_rule(self, v: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """sin and its first two derivatives, for the Taylor-jet engine."""
        return jet.sin_rule(v)


@dataclass
class MLPConfig(ModelConfig):
    depth: int = 8  # hidden layers
    width: int = 20  # units per hidden layer
    activation: str = "tanh"
    init: str = "glorot_normal"

    def validate(self, prefix: str) -> None:
        super().validate(prefix)
        require_positive(f"{prefix}.depth", self.depth)
        require_positive(f"{prefix}.width", self.width)
        require_choice(f"{prefix}.activation", self.activation, ACTIVATIONS)
        require_choice(f"{prefix}.init", self.init, INITS)


def activation(name: str) -> nn.Module:
    """The activation module for a validated name."""
    factory = ACTIVATIONS[name]
    return Sin() if factory is None else factory()


def initialise(layer: nn.Linear, init: str) -> None:
    """Weights by the named scheme, biases zero (Glorot & Bengio 2010 for the default)."""
    if init == "glorot_normal":
        nn.init.xavier_normal_(layer.weight)
    elif init == "glorot_uniform":
        nn.init.xavier_uniform_(layer.weight)
    else:
        nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
    nn.init.zeros_(layer.bias)


class MLP(PINNModel):
    """depth hidden layers of width units, one linear output."""

    Config = MLPConfig

    def __init__(self, cfg: MLPConfig, problem: Problem):
        super().__init__(cfg, problem)
        sizes = [self.in_features] + [cfg.width] * cfg.depth
        layers: list[nn.Module] = []
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(fan_in, fan_out), activation(cfg.activation)]
        layers.append(nn.Linear(sizes[-1], 1))
        self.body = nn.Sequential(*layers)
        for layer in self.body:
            if isinstance(layer, nn.Linear):
                initialise(layer, cfg.init)

    def network(self, z: Tensor) -> Tensor:
        return self.body(z)

    def network_jet(self, z: jet.Jet) -> jet.Jet:
        return jet.propagate(self.body, z)
