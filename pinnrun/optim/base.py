"""A training phase: one torch optimizer and how far it may advance per call.

The loop calls `advance(closure, limit)` until the phase has used its steps or stopped; an Adam
phase advances one step per call, an L-BFGS phase up to `limit` iterations. `advance` returns one
row of diagnostics per iteration it ran: the loop logs the last row at its log cadence, and every
row (with its own step) for phases that set `logs_iterations`. `check` refuses, before any run is
created, a phase that cannot work on the model's parameters (a dense quasi-Newton matrix too large
for memory).

Loss transforms (`loss_transform: none | sqrt | log`, a setting of every phase's config) change
the objective the optimizer minimises from the total loss L to sqrt(L) or log(L), as Urban,
Stefanou & Pons (J. Comput. Phys. 2025, arXiv 2405.04230) and Kiyani et al. (2025, arXiv
2501.16371) train their quasi-Newton phases. It is applied to what the phase's optimizer sees (the
loss value and the gradients of the phase's parameters); the logged `loss/*` and `mse/*` metrics
stay the raw terms.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Callable, Iterable, Optional, Sequence

import torch
from torch import Tensor

Diagnostics = dict[str, Tensor]
Closure = Callable[[], tuple[Tensor, Diagnostics]]
"""Evaluates the loss at the current parameters, back-propagates it, returns (loss, diagnostics)."""

LOSS_TRANSFORMS = ("none", "sqrt", "log")


def transform_loss(closure: Closure, params: Sequence[Tensor], transform: str) -> Closure:
    """The closure of the objective T(L) for T = sqrt or log (identity for none).

    The chain rule is applied after the backward pass: the value becomes T(L) and the gradients of
    `params` are scaled by T'(L) = 1 / (2 sqrt(L)) or 1 / L, on the device, without a host sync.
    Diagnostics keep the raw terms.
    """
    if transform == "none":
        return closure

    def transformed() -> tuple[Tensor, Diagnostics]:
        loss, diagnostics = closure()
        with torch.no_grad():
            value = loss.sqrt() if transform == "sqrt" else loss.log()
            slope = 0.5 / value if transform == "sqrt" else 1.0 / loss
            for p in params:
                if p.grad is not None:
                    p.grad.mul_(slope)
        return value.detach(), diagnostics

    return transformed


class Phase(ABC):
    """One optimizer over the model parameters, for `steps` iterations."""

    name: str = "phase"
    adaptive: bool = True  # weights ascend and points resample only in adaptive phases (SA-PINN: Adam only)
    logs_iterations: bool = False  # log every iteration's row, not only the last one per log step
    starts_round: bool = False  # the sampler redraws its points before this phase's first step (pinnrun.optim.rounds)

    def __init__(self, steps: int):
        self.steps = steps
        self.done = 0
        self.stop_reason: Optional[str] = None
        self.optimizer: Optional[torch.optim.Optimizer] = None

    @abstractmethod
    def start(self, params: Iterable[Tensor]) -> None:
        """Create the torch optimizer over the parameters."""

    @abstractmethod
    def advance(self, closure: Closure, limit: int) -> list[dict[str, Any]]:
        """Run at most `limit` iterations; return one row of diagnostics per iteration that ran."""

    @property
    def started(self) -> bool:
        """Whether `start` has bound the phase to the parameters (the loop starts a phase once)."""
        return self.optimizer is not None

    def check(self, params: Sequence[Tensor]) -> None:
        """Refuse (ConfigError), before any run is created, parameters this phase cannot work on."""

    def opens_round(self) -> bool:
        """True before the first step of a phase that starts a round of new points."""
        return self.starts_round and self.done == 0

    def state_bytes(self, n_params: int, dtype: torch.dtype) -> int:
        """Bytes of optimizer state this phase will hold for an n-parameter model (pinnrun.memory)."""
        return 0

    def finished(self) -> bool:
        return self.stop_reason is not None or self.done >= self.steps

    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"]) if self.optimizer else 0.0

    def metrics(self) -> dict[str, float]:
        """Phase-specific metrics for the log step."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {"done": self.done, "stop_reason": self.stop_reason, "optimizer": self.optimizer.state_dict() if self.optimizer else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.done = int(state["done"])
        self.stop_reason = state["stop_reason"]
        if self.optimizer is not None and state["optimizer"] is not None:
            self.optimizer.load_state_dict(state["optimizer"])


class Plan(ABC):
    """An optimizer option: the phases it runs, in order."""

    @abstractmethod
    def phases(self) -> list[Phase]:
        """Fresh phases for one run."""
