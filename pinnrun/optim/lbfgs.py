"""L-BFGS (Liu & Nocedal 1989) with a strong-Wolfe line search, as PINN papers finish training.

torch's `LBFGS.step` returns the loss of its first evaluation and hides how many iterations ran
and why it stopped; this phase reads the iteration and evaluation counters from the optimizer
state and names the stop reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

import torch
from torch import Tensor

from pinnrun.config import require_choice, require_positive
from pinnrun.optim.base import Closure, Phase, Plan

LINE_SEARCHES = ("strong_wolfe", "none")


@dataclass
class LBFGSConfig:
    steps: int = 5000  # maximum iterations
    lr: float = 1.0
    history_size: int = 50
    tolerance_grad: float = 1e-9  # stop when max |grad| falls below
    tolerance_change: float = 1e-12  # stop when the loss or the step changes less than this
    max_eval_per_iter: float = 1.25  # closure evaluations allowed per iteration (torch's default ratio)
    line_search: str = "strong_wolfe"

    def validate(self, prefix: str) -> None:
        require_positive(f"{prefix}.steps", self.steps)
        require_positive(f"{prefix}.lr", self.lr)
        require_positive(f"{prefix}.history_size", self.history_size)
        require_positive(f"{prefix}.tolerance_grad", self.tolerance_grad)
        require_positive(f"{prefix}.tolerance_change", self.tolerance_change)
        require_positive(f"{prefix}.max_eval_per_iter", self.max_eval_per_iter)
        require_choice(f"{prefix}.line_search", self.line_search, LINE_SEARCHES)


class LBFGSPhase(Phase):
    name = "lbfgs"
    adaptive = False

    def __init__(self, cfg: LBFGSConfig):
        super().__init__(cfg.steps)
        self.cfg = cfg
        self.evaluations = 0
        self.last_loss = math.nan

    def start(self, params: Iterable[Tensor]) -> None:
        self.params = list(params)
        self.optimizer = torch.optim.LBFGS(
            self.params,
            lr=self.cfg.lr,
            max_iter=1,
            history_size=self.cfg.history_size,
            tolerance_grad=self.cfg.tolerance_grad,
            tolerance_change=self.cfg.tolerance_change,
            line_search_fn=None if self.cfg.line_search == "none" else self.cfg.line_search,
        )

    def _counters(self) -> tuple[int, int]:
        state = self.optimizer.state[self.params[0]]
        return int(state.get("n_iter", 0)), int(state.get("func_evals", 0))

    def advance(self, closure: Closure, limit: int) -> int:
        """Up to `limit` iterations in one `step`; on a non-finite loss, restore the parameters."""
        group = self.optimizer.param_groups[0]
        group["max_iter"] = limit
        group["max_eval"] = max(limit, int(limit * self.cfg.max_eval_per_iter))
        saved = [p.detach().clone() for p in self.params]
        iters_before, evals_before = self._counters()
        final = {}

        def recording_closure() -> Tensor:
            loss = closure()
            final["loss"] = loss.detach()
            return loss

        self.optimizer.step(recording_closure)
        iters, evals = self._counters()
        advanced = iters - iters_before
        self.done += advanced
        self.evaluations += evals - evals_before
        self.last_loss = float(final["loss"])
        if not math.isfinite(self.last_loss):
            with torch.no_grad():
                for p, s in zip(self.params, saved):
                    p.copy_(s)
            self.stop_reason = "non_finite_loss"
        elif advanced < limit:
            self.stop_reason = self._converged_reason(evals - evals_before, group["max_eval"])
        elif self.done >= self.steps:
            self.stop_reason = "max_iterations"
        return advanced

    def _converged_reason(self, evals: int, max_eval: int) -> str:
        if evals >= max_eval:
            return "max_evaluations"
        grads = [p.grad.abs().max() for p in self.params if p.grad is not None]
        if grads and float(torch.stack(grads).max()) <= self.cfg.tolerance_grad:
            return "tolerance_grad"
        return "tolerance_change"

    def metrics(self) -> dict[str, float]:
        return {"lbfgs/iterations": float(self.done), "lbfgs/evaluations": float(self.evaluations)}

    def state_dict(self) -> dict:
        return {**super().state_dict(), "evaluations": self.evaluations}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.evaluations = int(state.get("evaluations", 0))


class LBFGS(Plan):
    """`optimizer=lbfgs`: one L-BFGS phase."""

    Config = LBFGSConfig

    def __init__(self, cfg: LBFGSConfig):
        self.cfg = cfg

    def phases(self) -> list[Phase]:
        return [LBFGSPhase(self.cfg)]
