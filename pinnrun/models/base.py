"""What every model shares: the input embedding (normalisation, periodic coordinates, Fourier
features) in front of the network and the optional hard-constraint ansatz around it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, List, Optional

import torch
from torch import Tensor, nn

from pinnrun import jet
from pinnrun.config import ConfigError, require_choice
from pinnrun.models.embedding import INPUT_SCALES, FourierConfig, InputEmbedding
from pinnrun.problems.base import Ansatz, Problem


@dataclass
class ModelConfig:
    normalize_inputs: bool = True  # rescale each input from its domain interval (see input_scale)
    input_scale: str = "unit"  # unit: domain -> [-1, 1] | standard: zero mean, unit variance over the domain
    hard_constraints: bool = False  # wrap the network in the problem's output ansatz
    periodic: List[str] = field(default_factory=list)  # inputs embedded as (cos, sin) of their period, e.g. [x]
    fourier: FourierConfig = field(default_factory=FourierConfig)

    def validate(self, prefix: str) -> None:
        if len(set(self.periodic)) != len(self.periodic):
            raise ConfigError(f"{prefix}.periodic={list(self.periodic)}: names an input twice")
        require_choice(f"{prefix}.input_scale", self.input_scale, INPUT_SCALES)
        self.fourier.validate(f"{prefix}.fourier")


def linear_weights(module: nn.Module) -> list[Tensor]:
    """The weight matrices of every nn.Linear in `module`, in registration order."""
    return [layer.weight for layer in module.modules() if isinstance(layer, nn.Linear)]


class PINNModel(nn.Module):
    """A network u(inputs) -> (N, 1) behind the input embedding, with an optional output ansatz."""

    def __init__(self, cfg: ModelConfig, problem: Problem):
        super().__init__()
        self.embedding = InputEmbedding(problem, cfg.input_scale if cfg.normalize_inputs else None, list(cfg.periodic), cfg.fourier)
        self.in_features = self.embedding.out_features
        self.ansatz: Optional[Ansatz] = None
        if cfg.hard_constraints:
            self.ansatz = problem.ansatz()
            if self.ansatz is None:
                raise ConfigError(f"model.hard_constraints=true: problem {problem.name!r} has no hard-constraint ansatz")

    def network(self, z: Tensor) -> Tensor:
        """The network on the embedded inputs z."""
        raise NotImplementedError

    def layer_weights(self) -> list[Tensor]:
        """The weight matrices of the network's layers, in order, without biases: the parameters
        Wang et al.'s LRA code takes its gradient statistics over (weighting `lra`, variant
        `authors`). This default takes every linear layer; a model with side branches overrides it."""
        return linear_weights(self)

    def forward(self, inputs: Tensor) -> Tensor:
        return self.surround(inputs, self.network)

    def surround(self, inputs: Tensor, network: Callable[[Tensor], Tensor]) -> Tensor:
        """Embed the inputs, apply `network`, wrap the ansatz: the forward pass around any stand-in
        network (per-point gradient norms use a Taylor surrogate of it)."""
        out = network(self.embedding(inputs))
        return out if self.ansatz is None else self.ansatz.transform(inputs, out)

    def network_jet(self, z: jet.Jet) -> jet.Jet:
        """`network` on a Taylor jet (pinnrun.jet). This default uses forward-mode AD through
        `network`; a model built from layers the jet knows overrides it to walk them (MLP does)."""
        return jet.apply_jvp(self.network, z)

    def embedding_jet(self, inputs: jet.Jet) -> jet.Jet:
        """The input embedding on a Taylor jet: exact and cheap for the affine normalisation (the
        derivatives scale by 2 / span); forward-mode AD for periodic or Fourier features."""
        embedding = self.embedding
        if embedding.periodic or embedding.fourier is not None:
            return jet.apply_jvp(embedding, inputs)
        stack = inputs.stack
        scale = 2.0 / embedding.input_span.to(stack.dtype)
        return jet.Jet(torch.cat([embedding(stack[0]).unsqueeze(0), stack[1:] * scale]), inputs.layout)

    def forward_jet(self, inputs: jet.Jet) -> jet.Jet:
        """`forward` on a Taylor jet of the inputs: u and its input derivatives, first-order graph."""
        out = self.network_jet(self.embedding_jet(inputs))
        return out if self.ansatz is None else jet.apply_jvp(self.ansatz.transform, inputs, out)
