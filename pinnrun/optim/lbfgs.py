"""L-BFGS (Liu & Nocedal 1989) with a strong-Wolfe line search, as PINN papers finish training.

torch's `LBFGS.step` returns the loss of its first evaluation and hides how many iterations ran,
which point each evaluation was at and why it stopped. This phase drives torch's optimizer one
iteration per `step` call and evaluates the new iterate before the next one, so it knows:

- the loss and per-term diagnostics of every iterate (one row per iteration, for the log);
- the number of closure evaluations, counted where they happen;
- the stop reason: `max_iterations`, `max_evaluations`, `tolerance_grad` (max |grad| below),
  `tolerance_change` (loss change, step length or directional derivative below), or
  `non_finite_loss`.

`rules: lua` applies the tests of the lua-optim port that SA-PINN's code runs (levimcclenny/SA-PINNs,
Burgers/eager_lbfgs.py:17-187, with `line_search: none` and lr 0.8 its fixed step): the first step
is min(1, 1 / sum|g|) without the lr factor torch applies (:129-133); it stops on sum|g| <=
tolerance_grad (:164-168; the code's tolFun 1e-5), sum|step| <= tolerance_change (:170-174; tolX
1e-9), and on |f| < tolerance_change (:176: `tf.abs(f, f_old)` takes f_old as the op's name, so the
code's "function change" test is really this one); it has no loss-change test. torch's rules use
max|g|, max|step| and |f - f_prev|.

Re-evaluating the iterate costs nothing: the strong-Wolfe search already evaluated the accepted
point, and torch moves the parameters there with the same arithmetic, so the evaluation is looked
up by the exact parameter values. A non-finite loss (in the line search or anywhere) ends the
phase at once with the parameters of the lowest finite loss seen, instead of letting NaN steps
through the line search into the parameters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Optional

import torch
from torch import Tensor

from pinnrun.config import require_choice, require_positive
from pinnrun.optim.base import LOSS_TRANSFORMS, Closure, Diagnostics, Phase, Plan, transform_loss

LINE_SEARCHES = ("strong_wolfe", "none")
RULES = ("torch", "lua")
LINE_SEARCH_EVALUATIONS = 25  # evaluations one strong-Wolfe search may use (torch's default)


@dataclass
class LBFGSConfig:
    steps: int = 5000  # maximum iterations
    lr: float = 1.0
    history_size: int = 50
    tolerance_grad: float = 1e-9  # stop when max |grad| falls below
    tolerance_change: float = 1e-12  # stop when the loss or the step changes less than this
    max_eval_per_iter: float = 1.25  # closure evaluations allowed per iteration on average (torch's default ratio)
    line_search: str = "strong_wolfe"
    rules: str = "torch"  # torch: max|g|, max|step|, loss change | lua: SA-PINN's lua-optim port (module docstring)
    loss_transform: str = "none"  # none | sqrt | log: the objective is T(total loss) (see pinnrun.optim.base)

    def validate(self, prefix: str) -> None:
        require_positive(f"{prefix}.steps", self.steps)
        require_positive(f"{prefix}.lr", self.lr)
        require_positive(f"{prefix}.history_size", self.history_size)
        require_positive(f"{prefix}.tolerance_grad", self.tolerance_grad)
        require_positive(f"{prefix}.tolerance_change", self.tolerance_change)
        require_positive(f"{prefix}.max_eval_per_iter", self.max_eval_per_iter)
        require_choice(f"{prefix}.line_search", self.line_search, LINE_SEARCHES)
        require_choice(f"{prefix}.rules", self.rules, RULES)
        require_choice(f"{prefix}.loss_transform", self.loss_transform, LOSS_TRANSFORMS)


class NonFiniteEvaluation(Exception):
    """Raised inside the closure to abort torch's line search on a NaN/Inf loss."""


@dataclass
class ClosureEvaluation:
    """One closure evaluation: where (flat parameters), what it gave, and the gradients it left."""

    flat: Tensor
    loss: float
    diagnostics: Diagnostics
    grads: list[Optional[Tensor]]


class LBFGSPhase(Phase):
    name = "lbfgs"
    adaptive = False
    logs_iterations = True

    def __init__(self, cfg: LBFGSConfig):
        super().__init__(cfg.steps)
        self.cfg = cfg
        self.evaluations = 0
        self.budget = math.ceil(cfg.steps * cfg.max_eval_per_iter)
        self.recent: list[ClosureEvaluation] = []
        self.best: Optional[ClosureEvaluation] = None
        self.previous_loss: Optional[float] = None

    def state_bytes(self, n_params: int, dtype: torch.dtype) -> int:
        """history_size pairs (s, y) of flat vectors, plus the best iterate and the working vectors."""
        return (2 * self.cfg.history_size + 4) * n_params * torch.empty((), dtype=dtype).element_size()

    def start(self, params: Iterable[Tensor]) -> None:
        self.params = list(params)
        self.optimizer = torch.optim.LBFGS(
            self.params,
            lr=self.cfg.lr,
            max_iter=1,
            history_size=self.cfg.history_size,
            tolerance_grad=self.cfg.tolerance_grad if self.cfg.rules == "torch" else 0.0,  # lua: tested here
            tolerance_change=self.cfg.tolerance_change,
            line_search_fn=None if self.cfg.line_search == "none" else self.cfg.line_search,
        )
        self.best = ClosureEvaluation(self._flat(), math.inf, {}, [None] * len(self.params))

    def _flat(self) -> Tensor:
        return torch.cat([p.detach().reshape(-1) for p in self.params]).clone()

    def _evaluate(self, closure: Closure) -> ClosureEvaluation:
        """The loss at the current parameters: a recent evaluation at exactly these values, or a
        new one (counted). A non-finite loss raises NonFiniteEvaluation."""
        flat = self._flat()
        for seen in self.recent:
            if torch.equal(seen.flat, flat):
                for p, g in zip(self.params, seen.grads):
                    p.grad = None if g is None else g.clone()
                return seen
        loss, diagnostics = closure()
        self.evaluations += 1
        value = float(loss.detach())
        if not math.isfinite(value):
            raise NonFiniteEvaluation
        grads = [None if p.grad is None else p.grad.detach().clone() for p in self.params]
        evaluation = ClosureEvaluation(flat, value, diagnostics, grads)
        self.recent.append(evaluation)
        if value < self.best.loss:
            self.best = evaluation
        return evaluation

    def advance(self, closure: Closure, limit: int) -> list[dict[str, Any]]:
        """Up to `limit` iterations; one row per iteration with the new iterate's loss,
        diagnostics and the evaluations so far."""
        rows: list[dict[str, Any]] = []
        closure = transform_loss(closure, self.params, self.cfg.loss_transform)
        try:
            current = self._evaluate(closure)
            while len(rows) < limit and self.stop_reason is None:
                self.stop_reason = self._stop_before_iteration(current)
                if self.stop_reason is not None:
                    break
                self.recent = [current]
                # torch lets the line search use max_eval - 1 evaluations after its first one
                self.optimizer.param_groups[0]["max_eval"] = min(LINE_SEARCH_EVALUATIONS, self.budget - self.evaluations)
                self.previous_loss = current.loss
                self._step(closure)
                current = self._evaluate(closure)
                rows.append({**current.diagnostics, "lbfgs/evaluations": float(self.evaluations)})
                if self._norm(current.flat - self.recent[0].flat) <= self.cfg.tolerance_change:
                    exhausted = self.evaluations >= self.budget
                    self.stop_reason = "max_evaluations" if exhausted else "tolerance_change"
        except NonFiniteEvaluation:
            self._restore_best()
            self.stop_reason = "non_finite_loss"
        if self.stop_reason is None and self.done >= self.steps:
            self.stop_reason = "max_iterations"
        return rows

    def _step(self, closure: Closure) -> None:
        """One torch L-BFGS iteration; under the lua rules its first step is min(1, 1/sum|g|), not lr times that."""
        first_lua = self.cfg.rules == "lua" and "n_iter" not in self.optimizer.state[self.params[0]]
        group = self.optimizer.param_groups[0]
        group["lr"] = 1.0 if first_lua else self.cfg.lr
        self.optimizer.step(lambda: torch.tensor(self._evaluate(closure).loss))
        group["lr"] = self.cfg.lr
        self.done += 1

    def _norm(self, values: Tensor) -> float:
        """max|.| (torch's tests) or sum|.| (the lua port's)."""
        return float(values.abs().max() if self.cfg.rules == "torch" else values.abs().sum())

    def _stop_before_iteration(self, current: ClosureEvaluation) -> Optional[str]:
        """The convergence tests of the rules, applied to the iterate before the next iteration starts."""
        if self.done >= self.steps:
            return "max_iterations"
        if self.evaluations >= self.budget:
            return "max_evaluations"
        grads = [g.flatten() for g in current.grads if g is not None]
        if grads and self._norm(torch.cat(grads)) <= self.cfg.tolerance_grad:
            return "tolerance_grad"
        if self.previous_loss is None:
            return None
        change = abs(current.loss) if self.cfg.rules == "lua" else abs(current.loss - self.previous_loss)
        return "tolerance_change" if change < self.cfg.tolerance_change else None

    def _restore_best(self) -> None:
        """Put back the parameters of the lowest finite loss evaluated (the start if none was)."""
        offset = 0
        with torch.no_grad():
            for p in self.params:
                p.copy_(self.best.flat[offset : offset + p.numel()].view_as(p))
                offset += p.numel()

    def metrics(self) -> dict[str, float]:
        return {"lbfgs/iterations": float(self.done), "lbfgs/evaluations": float(self.evaluations)}

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "evaluations": self.evaluations}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.evaluations = int(state.get("evaluations", 0))


class LBFGS(Plan):
    """`optimizer=lbfgs`: one L-BFGS phase."""

    Config = LBFGSConfig

    def __init__(self, cfg: LBFGSConfig):
        self.cfg = cfg

    def phases(self) -> list[Phase]:
        return [LBFGSPhase(self.cfg)]
