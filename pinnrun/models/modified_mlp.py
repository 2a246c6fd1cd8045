"""The modified MLP of Wang, Teng & Perdikaris 2021 (SISC 43(5), "improved fully-connected architecture").

Two encoders lift the inputs, U = act(X W_u + b_u) and V = act(X W_v + b_v), and every hidden
layer is a gate between them:

    H_1 = act(X W_1 + b_1),  Z_k = act(H_k W_k + b_k),  H_{k+1} = (1 - Z_k) * U + Z_k * V,
    u = H_depth W + b,

for k = 1 .. depth - 1, so `depth` counts the hidden layers H_1 .. H_depth as in the plain MLP.
Passing the inputs to every layer multiplicatively is meant to ease the stiff gradient flow the
paper analyses.
"""

from __future__ import annotations

from torch import Tensor, nn

from pinnrun.models.base import PINNModel
from pinnrun.models.mlp import MLPConfig, activation, initialise
from pinnrun.problems.base import Problem


class ModifiedMLP(PINNModel):
    """Encoders U, V and depth - 1 gated hidden layers of width units, one linear output."""

    Config = MLPConfig

    def __init__(self, cfg: MLPConfig, problem: Problem):
        super().__init__(cfg, problem)
        self.encoder_u = nn.Linear(self.in_features, cfg.width)
        self.encoder_v = nn.Linear(self.in_features, cfg.width)
        self.first = nn.Linear(self.in_features, cfg.width)
        self.gates = nn.ModuleList(nn.Linear(cfg.width, cfg.width) for _ in range(cfg.depth - 1))
        self.output = nn.Linear(cfg.width, 1)
        self.act = activation(cfg.activation)
        for layer in self.modules():
            if isinstance(layer, nn.Linear):
                initialise(layer, cfg.init)

    def network(self, z: Tensor) -> Tensor:
        u, v = self.act(self.encoder_u(z)), self.act(self.encoder_v(z))
        h = self.act(self.first(z))
        for gate in self.gates:
            g = self.act(gate(h))
            h = (1.0 - g) * u + g * v
        return self.output(h)
