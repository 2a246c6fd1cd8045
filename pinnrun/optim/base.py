"""A training phase: one torch optimizer and how far it may advance per call.

The loop calls `advance(closure, limit)` until the phase has used its steps or stopped; an Adam
phase advances one step per call, an L-BFGS phase up to `limit` iterations. `advance` returns one
row of diagnostics per iteration it ran: the loop logs the last row at its log cadence, and every
row (with its own step) for phases that set `logs_iterations`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Callable, Iterable, Optional

import torch
from torch import Tensor

Diagnostics = dict[str, Tensor]
Closure = Callable[[], tuple[Tensor, Diagnostics]]
"""Evaluates the loss at the current parameters, back-propagates it, returns (loss, diagnostics)."""


class Phase(ABC):
    """One optimizer over the model parameters, for `steps` iterations."""

    name: str = "phase"
    adaptive: bool = True  # weights ascend and points resample only in adaptive phases (SA-PINN: Adam only)
    logs_iterations: bool = False  # log every iteration's row, not only the last one per log step

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
