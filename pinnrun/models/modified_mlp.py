"""The modified MLP of Wang, Teng & Perdikaris 2021 (SISC 43(5), sec. 4, eq. 43-47, "improved
fully-connected architecture").

Two encoders lift the inputs, U = act(X W_u + b_u) and V = act(X W_v + b_v), and every hidden
layer is a gate between them:

    H_0 = X,  Z_k = act(H_k W_k + b_k),  H_{k+1} = (1 - Z_k) * U + Z_k * V,  u = H_depth W + b,

for k = 0 .. depth - 1, so `depth` counts the hidden layers as in the plain MLP and the first is
gated straight from the inputs. That is what the authors' code does (GradientPathologiesPINNs,
Helmholtz/Helmholtz2D_model_tf.py:255-269, the loop starting at weights[0] of shape [2, width]) and
what jaxpi does (archs.py, Mlp with arch_name ModifiedMlp). Its encoder biases are random like the
weights (Helmholtz2D_model_tf.py:52-56, xavier_init([1, width])). `gate_first: false` keeps the
earlier form, H_1 = act(X W_1 + b_1) ungated, and `encoder_bias: zeros` the zero encoder biases.
The code's H = Z U + (1 - Z) V is this form with U and V swapped: the same family, identically
initialised. Passing the inputs to every layer multiplicatively is meant to ease the stiff
gradient flow the paper analyses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import Tensor, nn

from pinnrun.config import require_choice
from pinnrun.models.base import PINNModel
from pinnrun.models.mlp import MLPConfig, activation, initialise
from pinnrun.problems.base import Problem

ENCODER_BIASES = ("glorot_normal", "zeros")


@dataclass
class ModifiedMLPConfig(MLPConfig):
    gate_first: bool = True  # gate the first hidden layer from the inputs (the authors' code); false: ungated
    encoder_bias: str = "glorot_normal"  # glorot_normal (the authors' code: N(0, 2 / (1 + width))) | zeros

    def validate(self, prefix: str) -> None:
        super().validate(prefix)
        require_choice(f"{prefix}.encoder_bias", self.encoder_bias, ENCODER_BIASES)


class ModifiedMLP(PINNModel):
    """Encoders U, V and `depth` hidden layers of width units (all gated, or all but the first),
    one linear output."""

    Config = ModifiedMLPConfig

    def __init__(self, cfg: ModifiedMLPConfig, problem: Problem):
        super().__init__(cfg, problem)
        self.gate_first = cfg.gate_first
        self.encoder_u = nn.Linear(self.in_features, cfg.width)
        self.encoder_v = nn.Linear(self.in_features, cfg.width)
        self.first = nn.Linear(self.in_features, cfg.width)
        self.gates = nn.ModuleList(nn.Linear(cfg.width, cfg.width) for _ in range(cfg.depth - 1))
        self.output = nn.Linear(cfg.width, 1)
        self.act = activation(cfg.activation)
        for layer in self.modules():
            if isinstance(layer, nn.Linear):
                initialise(layer, cfg.init)
        if cfg.encoder_bias == "glorot_normal":
            for encoder in (self.encoder_u, self.encoder_v):
                nn.init.normal_(encoder.bias, std=math.sqrt(2.0 / (1 + cfg.width)))

    def network(self, z: Tensor) -> Tensor:
        u, v = self.act(self.encoder_u(z)), self.act(self.encoder_v(z))
        h = self.gate(self.first(z), u, v) if self.gate_first else self.act(self.first(z))
        for layer in self.gates:
            h = self.gate(layer(h), u, v)
        return self.output(h)

    def gate(self, pre: Tensor, u: Tensor, v: Tensor) -> Tensor:
        """H = (1 - Z) U + Z V with Z = act(pre)."""
        return u + self.act(pre) * (v - u)

    def layer_weights(self) -> list[Tensor]:
        """The hidden and output weight matrices, without the encoders (the set the authors' LRA
        statistics run over: Helmholtz2D_model_tf.py:131-147 take self.weights only)."""
        return [self.first.weight, *(layer.weight for layer in self.gates), self.output.weight]
