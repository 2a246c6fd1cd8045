"""Full-memory quasi-Newton phases on the flattened parameters: BFGS and its self-scaled variants.

Each iteration takes the direction p_k = -H_k g_k, a strong-Wolfe step a_k along it
(pinnrun.optim.line_search), s_k = a_k p_k, y_k = g_{k+1} - g_k, and updates the dense inverse
Hessian approximation by the self-scaled Broyden family (Al-Baali 1998; Urban, Stefanou & Pons,
J. Comput. Phys. 2025, arXiv 2405.04230, Sec. 2; Kiyani et al. 2025, arXiv 2501.16371, Sec. 2):

    H_{k+1} = (1 / tau_k) [H_k - H_k y_k y_k^T H_k / (y_k^T H_k y_k) + phi_k v_k v_k^T] + s_k s_k^T / (y_k^T s_k)
    v_k = sqrt(y_k^T H_k y_k) [s_k / (y_k^T s_k) - H_k y_k / (y_k^T H_k y_k)]

with the scalars b_k = -a_k s_k^T g_k / (y_k^T s_k) (= s_k^T B_k s_k / y_k^T s_k, B_k = H_k^-1) and
h_k = y_k^T H_k y_k / (y_k^T s_k). A method is its choice of (tau_k, phi_k): BFGS (1, 1); the
subclasses in bfgs.py, ssbfgs.py and ssbroyden.py. With phi_k = 1 the bracket is the BFGS update
of H_k / tau_k (the form of the authors' code). H_0 = I, as in the authors' runs.

The matrix is n x n for n parameters, in the run's dtype on its device; `check` refuses a model
above `max_dense_params` before any run exists. These methods pay off in float64 (the papers run
float64 throughout); in float32 the run goes ahead with a warning. The update is done in place (four
rank-one updates, no n x n temporary).

Stop reasons (`stop_reason/<phase>`): `max_iterations`, `tolerance_grad` (max |g| of the objective
below the tolerance), `tolerance_change` (no progress: the objective changed by at most
tolerance_change x |objective| in an iteration), `line_search_failed` (no strong-Wolfe step: the
parameters stay at the last iterate), `non_finite_loss` (a NaN/Inf anywhere, the line search
included, ends the phase at once with the parameters of the lowest finite loss seen, as in L-BFGS).
A direction that is not a descent direction (H lost positive definiteness to rounding) resets
H to I and is counted in `<phase>/resets`; an update whose curvature y^T s is not positive is
skipped (the strong-Wolfe step makes it positive in exact arithmetic).

The phase checkpoints H, the current objective and gradient and the previous objective (which sets
the first trial step), so a resumed run continues bit for bit.
"""

from __future__ import annotations

import math
import warnings
from abc import abstractmethod
from dataclasses import dataclass, field, fields
from typing import Any, Iterable, Optional, Sequence

import torch
from torch import Tensor

from pinnrun.config import ConfigError, require_choice, require_positive
from pinnrun.optim.adam import AdamConfig, AdamPhase
from pinnrun.optim.base import LOSS_TRANSFORMS, Closure, Diagnostics, Phase, Plan, transform_loss
from pinnrun.optim.lbfgs import NonFiniteEvaluation
from pinnrun.optim.line_search import strong_wolfe

DENSE_COPIES = 2  # H plus one copy of it (a checkpoint's host copy on a GPU, the optimizer's working vectors are O(n))


@dataclass
class QuasiNewtonConfig:
    steps: int = 5000  # maximum iterations
    tolerance_grad: float = 1e-12  # stop when max |grad| of the objective falls to this
    tolerance_change: float = 1e-15  # stop when an iteration changes the objective by at most this x |objective|
    c1: float = 1e-4  # strong Wolfe: sufficient decrease
    c2: float = 0.9  # strong Wolfe: curvature
    loss_transform: str = "none"  # none | sqrt | log: the objective is T(total loss)
    max_dense_params: int = 30000  # refuse larger models: H is n^2 numbers (30000: 7.2 GB in float64)

    def validate(self, prefix: str) -> None:
        require_positive(f"{prefix}.steps", self.steps)
        require_positive(f"{prefix}.tolerance_grad", self.tolerance_grad)
        require_positive(f"{prefix}.tolerance_change", self.tolerance_change)
        require_positive(f"{prefix}.max_dense_params", self.max_dense_params)
        require_choice(f"{prefix}.loss_transform", self.loss_transform, LOSS_TRANSFORMS)
        if not 0 < self.c1 < self.c2 < 1:
            raise ConfigError(f"{prefix}.c1={self.c1!r}, {prefix}.c2={self.c2!r}: the strong Wolfe conditions need 0 < c1 < c2 < 1")


@dataclass
class Iterate:
    """The objective at one point of the parameter space, with its flat gradient."""

    flat: Tensor
    loss: float
    grad: Tensor
    diagnostics: Diagnostics


def dense_bytes(n: int, dtype: torch.dtype) -> int:
    """Memory the phase holds for an n-parameter model: DENSE_COPIES n x n matrices."""
    return DENSE_COPIES * n * n * torch.empty((), dtype=dtype).element_size()


def update_inverse_hessian(H: Tensor, s: Tensor, y: Tensor, tau: float, phi: float) -> None:
    """The self-scaled Broyden update of H in place (the formula in the module docstring)."""
    Hy = H @ y
    yHy = float(y @ Hy)
    rho = 1.0 / float(y @ s)
    v = rho * s - Hy / yHy
    H.addr_(Hy, Hy, alpha=-1.0 / yHy)
    H.addr_(v, v, alpha=phi * yHy)
    H.div_(tau)
    H.addr_(s, s, alpha=rho)


class QuasiNewtonPhase(Phase):
    """One dense quasi-Newton method; subclasses give its name and (tau_k, phi_k)."""

    adaptive = False  # SA-PINN and LRA weights stay frozen, points are not resampled (as in L-BFGS)
    logs_iterations = True

    def __init__(self, cfg: QuasiNewtonConfig, key: str):
        super().__init__(cfg.steps)
        self.cfg = cfg
        self.key = key  # where its settings sit in the config, for error messages
        self.params: Optional[list[Tensor]] = None
        self.H: Optional[Tensor] = None
        self.current: Optional[Iterate] = None
        self.best: Optional[Iterate] = None
        self.previous_loss: Optional[float] = None
        self.evaluations = 0
        self.resets = 0
        self.step_length = 0.0
        self.loaded: Optional[dict[str, Any]] = None

    @abstractmethod
    def scaling(self, b: float, h: float, n: int) -> tuple[float, float]:
        """(tau_k, phi_k) of the method from b_k, h_k and the number of parameters."""

    @property
    def started(self) -> bool:
        return self.params is not None

    def state_bytes(self, n_params: int, dtype: torch.dtype) -> int:
        """The dense inverse Hessian (and its copy)."""
        return dense_bytes(n_params, dtype)

    def check(self, params: Sequence[Tensor]) -> None:
        n = sum(p.numel() for p in params)
        dtype = params[0].dtype
        if n > self.cfg.max_dense_params:
            raise ConfigError(
                f"{self.key}.max_dense_params={self.cfg.max_dense_params}: this model has {n} parameters and the dense inverse "
                f"Hessian would take {dense_bytes(n, dtype) / 2**30:.1f} GiB ({DENSE_COPIES} x n^2 {str(dtype).removeprefix('torch.')}); "
                f"use optimizer=lbfgs or adam_lbfgs (limited memory), a smaller model, or raise {self.key}.max_dense_params")
        if dtype != torch.float64:
            warnings.warn(f"{self.key}: {self.name} runs in {str(dtype).removeprefix('torch.')}; full-memory quasi-Newton "
                          "methods reach their accuracy in float64 (dtype=float64)", stacklevel=2)

    def start(self, params: Iterable[Tensor]) -> None:
        self.params = list(params)
        flat = self._flat()
        n = flat.numel()
        if self.loaded is None:
            self.H = torch.eye(n, dtype=flat.dtype, device=flat.device)
            return
        state, self.loaded = self.loaded, None
        self.H = state["H"].to(flat.device, flat.dtype)
        self.current = Iterate(flat, state["loss"], state["grad"].to(flat.device, flat.dtype), {})
        self.best = self.current
        self.previous_loss = state["previous_loss"]

    def _flat(self) -> Tensor:
        return torch.cat([p.detach().reshape(-1) for p in self.params]).clone()

    def _set_flat(self, flat: Tensor) -> None:
        offset = 0
        with torch.no_grad():
            for p in self.params:
                p.copy_(flat[offset : offset + p.numel()].view_as(p))
                offset += p.numel()

    def _evaluate(self, closure: Closure, flat: Tensor) -> Iterate:
        """The objective and its gradient at `flat` (counted); a non-finite loss raises NonFiniteEvaluation."""
        self._set_flat(flat)
        loss, diagnostics = closure()
        self.evaluations += 1
        value = float(loss.detach())
        if not math.isfinite(value):
            raise NonFiniteEvaluation
        grad = torch.cat([torch.zeros_like(p).reshape(-1) if p.grad is None else p.grad.detach().reshape(-1) for p in self.params])
        evaluation = Iterate(flat, value, grad, diagnostics)
        if self.best is None or value < self.best.loss:
            self.best = evaluation
        return evaluation

    def advance(self, closure: Closure, limit: int) -> list[dict[str, Any]]:
        """Up to `limit` iterations; one row per iteration with the new iterate's diagnostics, the
        objective the method sees, the step length and the evaluations so far."""
        rows: list[dict[str, Any]] = []
        closure = transform_loss(closure, self.params, self.cfg.loss_transform)
        try:
            if self.current is None:
                self.current = self._evaluate(closure, self._flat())
            while len(rows) < limit and self.stop_reason is None:
                self.stop_reason = self._stop_before_iteration()
                if self.stop_reason is None:
                    rows += self._iterate(closure)
        except NonFiniteEvaluation:
            self._set_flat(self.best.flat)
            self.stop_reason = "non_finite_loss"
        if self.stop_reason is None and self.done >= self.steps:
            self.stop_reason = "max_iterations"
        return rows

    def _stop_before_iteration(self) -> Optional[str]:
        if self.done >= self.steps:
            return "max_iterations"
        if float(self.current.grad.abs().max()) <= self.cfg.tolerance_grad:
            return "tolerance_grad"
        return None

    def _iterate(self, closure: Closure) -> list[dict[str, Any]]:
        """One quasi-Newton iteration from the current iterate: its row, or none when the line search failed."""
        x, g = self.current.flat, self.current.grad
        p = -(self.H @ g)
        slope = float(g @ p)
        if not slope < 0:
            self.H = torch.eye(x.numel(), dtype=x.dtype, device=x.device)
            self.resets += 1
            p, slope = -g, -float(g @ g)
        trials: dict[float, Iterate] = {}

        def phi(a: float) -> tuple[float, float]:
            trials[a] = self._evaluate(closure, x + a * p)
            return trials[a].loss, float(trials[a].grad @ p)

        previous = self.previous_loss if self.previous_loss is not None else self.current.loss + float(g.norm()) / 2
        a = strong_wolfe(phi, self.current.loss, slope, previous, self.cfg.c1, self.cfg.c2)
        if a is None:
            self._set_flat(x)
            self.stop_reason = "line_search_failed"
            return []
        new = trials[a]
        self._set_flat(new.flat)
        s, y = new.flat - x, new.grad - g
        curvature = float(y @ s)
        if curvature > 0:
            b = -a * float(s @ g) / curvature
            h = float(y @ (self.H @ y)) / curvature
            update_inverse_hessian(self.H, s, y, *self.scaling(b, h, x.numel()))
        self.previous_loss, self.current, self.step_length = self.current.loss, new, a
        self.done += 1
        if abs(self.previous_loss - new.loss) <= self.cfg.tolerance_change * abs(self.previous_loss):
            self.stop_reason = "tolerance_change"
        return [{**new.diagnostics, f"{self.name}/objective": new.loss, f"{self.name}/step_length": a,
                 f"{self.name}/evaluations": float(self.evaluations)}]

    def lr(self) -> float:
        return self.step_length

    def metrics(self) -> dict[str, float]:
        return {f"{self.name}/iterations": float(self.done), f"{self.name}/evaluations": float(self.evaluations),
                f"{self.name}/resets": float(self.resets)}

    def state_dict(self) -> dict[str, Any]:
        state = {"H": self.H, "loss": self.current.loss, "grad": self.current.grad, "previous_loss": self.previous_loss} if self.current else None
        return {**super().state_dict(), "evaluations": self.evaluations, "resets": self.resets,
                "step_length": self.step_length, "quasi_newton": state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.evaluations, self.resets = int(state["evaluations"]), int(state["resets"])
        self.step_length = float(state["step_length"])
        self.loaded = state["quasi_newton"]


class QuasiNewton(Plan):
    """`optimizer=<method>`: one dense quasi-Newton phase; a subclass names the method's phase."""

    Config = QuasiNewtonConfig
    method: type[QuasiNewtonPhase]

    def __init__(self, cfg: QuasiNewtonConfig):
        self.cfg = cfg

    def phases(self) -> list[Phase]:
        return [self.method(self.cfg, "optimizer")]


@dataclass
class AdamQuasiNewtonConfig:
    """Adam's block; a subclass adds the method's block, named after the method."""

    adam: AdamConfig = field(default_factory=AdamConfig)

    def validate(self, prefix: str) -> None:
        for block in fields(self):
            getattr(self, block.name).validate(f"{prefix}.{block.name}")


class AdamQuasiNewton(Plan):
    """`optimizer=adam_<method>`: Adam, then the method from where Adam stopped (as adam_lbfgs)."""

    method: type[QuasiNewtonPhase]

    def __init__(self, cfg: AdamQuasiNewtonConfig):
        self.cfg = cfg

    def phases(self) -> list[Phase]:
        name = self.method.name
        return [AdamPhase(self.cfg.adam), self.method(getattr(self.cfg, name), f"optimizer.{name}")]
