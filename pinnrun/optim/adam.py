"""Adam (Kingma & Ba 2015) with an optional learning-rate decay, and the epsilon of either framework.

torch adds eps to the bias-corrected root, lr m_hat / (sqrt(v_hat) + eps). TensorFlow (tf.train.
AdamOptimizer and Keras Adam, which the SA-PINN and LRA authors ran) adds it to the uncorrected root:
lr sqrt(1 - b2^t) / (1 - b1^t) m / (sqrt(v) + eps), which is torch's rule with eps / sqrt(1 - b2^t)
(Kingma & Ba 2015, sec. 2, "epsilon hat"). `eps_mode: keras` runs torch's Adam with that effective
epsilon, set before each step: 1e-7 becomes about 3.2e-6 at the first step and 1e-7 again late on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, List, Optional

import torch
from torch import Tensor

from pinnrun.config import ConfigError, require_choice, require_positive
from pinnrun.optim.base import LOSS_TRANSFORMS, Closure, Phase, Plan, transform_loss

SCHEDULES = ("none", "exponential", "step", "cosine")
EPS_MODES = ("torch", "keras")


@dataclass
class AdamConfig:
    steps: int = 5000
    lr: float = 1e-3
    betas: List[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8  # added to sqrt(v): torch's default 1e-8; TF1 1e-8, Keras 1e-7
    eps_mode: str = "torch"  # torch: on the bias-corrected sqrt(v_hat) | keras: on the uncorrected sqrt(v) (TF and Keras)
    schedule: str = "none"  # none | exponential (lr * rate^(step/decay_steps)) | step | cosine
    decay_rate: float = 0.9
    decay_steps: int = 1000
    loss_transform: str = "none"  # none | sqrt | log: the objective is T(total loss) (see pinnrun.optim.base)

    def validate(self, prefix: str) -> None:
        require_positive(f"{prefix}.steps", self.steps)
        require_positive(f"{prefix}.lr", self.lr)
        require_positive(f"{prefix}.eps", self.eps)
        require_choice(f"{prefix}.eps_mode", self.eps_mode, EPS_MODES)
        require_choice(f"{prefix}.schedule", self.schedule, SCHEDULES)
        require_positive(f"{prefix}.decay_rate", self.decay_rate)
        require_positive(f"{prefix}.decay_steps", self.decay_steps)
        require_choice(f"{prefix}.loss_transform", self.loss_transform, LOSS_TRANSFORMS)
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ConfigError(f"{prefix}.betas={list(self.betas)}: must be two numbers in [0, 1)")


def lr_factor(cfg: AdamConfig, step: int) -> float:
    """The multiplier on the base learning rate after `step` steps."""
    if cfg.schedule == "exponential":
        return cfg.decay_rate ** (step / cfg.decay_steps)
    if cfg.schedule == "step":
        return cfg.decay_rate ** (step // cfg.decay_steps)
    if cfg.schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * min(step, cfg.steps) / cfg.steps))
    return 1.0


def set_epsilon(optimizer: torch.optim.Adam, eps: float, mode: str, step: int) -> None:
    """Before Adam's step number `step` (1-based): torch's eps, or the Keras rule's eps / sqrt(1 - b2^step)."""
    for group in optimizer.param_groups:
        group["eps"] = eps if mode == "torch" else eps / math.sqrt(1.0 - group["betas"][1] ** step)


class AdamPhase(Phase):
    name = "adam"
    adaptive = True

    def __init__(self, cfg: AdamConfig):
        super().__init__(cfg.steps)
        self.cfg = cfg
        self.scheduler: Optional[torch.optim.lr_scheduler.LambdaLR] = None

    def state_bytes(self, n_params: int, dtype: torch.dtype) -> int:
        """The two moment estimates."""
        return 2 * n_params * torch.empty((), dtype=dtype).element_size()

    def start(self, params: Iterable[Tensor]) -> None:
        self.params = list(params)
        self.optimizer = torch.optim.Adam(self.params, lr=self.cfg.lr, betas=tuple(self.cfg.betas), eps=self.cfg.eps)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda step: lr_factor(self.cfg, step))

    def advance(self, closure: Closure, limit: int) -> list[dict[str, Any]]:
        """One Adam step; its row holds the diagnostics of the loss it stepped on (no host sync)."""
        row: dict[str, Any] = {}
        closure = transform_loss(closure, self.params, self.cfg.loss_transform)

        def loss() -> Tensor:
            value, diagnostics = closure()
            row.update(diagnostics)
            return value

        set_epsilon(self.optimizer, self.cfg.eps, self.cfg.eps_mode, self.done + 1)
        self.optimizer.step(loss)
        self.scheduler.step()
        self.done += 1
        return [row]

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "scheduler": self.scheduler.state_dict() if self.scheduler else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        if self.scheduler is not None and state.get("scheduler") is not None:
            self.scheduler.load_state_dict(state["scheduler"])


class Adam(Plan):
    """`optimizer=adam`: one Adam phase."""

    Config = AdamConfig

    def __init__(self, cfg: AdamConfig):
        self.cfg = cfg

    def phases(self) -> list[Phase]:
        return [AdamPhase(self.cfg)]
