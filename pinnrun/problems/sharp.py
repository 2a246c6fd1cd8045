"""Regression of a function with a sharp central transition from a few uniformly spaced points:
the sampling-bias toy (a data term only, no PDE).

    fit u(x) = tanh(x / eps) on x in [-1, 1] from n uniformly spaced samples (default 30).

With uniform weights the few points inside the transition carry little of the mean loss and the
fit there lags (McClenny & Braga-Neto 2023 report self-adaptive weights cutting the centre/outer
residual ratio by about 2x). `extra_metrics` reports that ratio.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List

import numpy as np
import torch
from torch import Tensor

from pinnrun.config import ConfigError, require_positive
from pinnrun.problems.base import Box, ClosedFormProblem, ProblemConfig, Term


@dataclass
class SharpConfig(ProblemConfig):
    eps: float = 0.05  # transition width of tanh(x / eps)
    band: float = 3.0  # the centre band is |x| <= band * eps (tanh(3) = 0.995)
    n: Dict[str, int] = field(default_factory=lambda: {"data": 30})  # uniformly spaced samples, ends included
    eval_grid: List[int] = field(default_factory=lambda: [2001])  # x: ~50 points across the transition

    def validate(self, prefix: str) -> None:
        super().validate(prefix)
        require_positive(f"{prefix}.eps", self.eps)
        require_positive(f"{prefix}.band", self.band)


class Sharp(ClosedFormProblem):
    """The sharp-transition regression; the data points are fixed, one degenerate box per sample."""

    name = "sharp"
    input_names = ("x",)
    Config = SharpConfig

    def __init__(self, cfg: SharpConfig):
        self.samples = np.linspace(-1.0, 1.0, cfg.n.get("data", 1))
        super().__init__(cfg)
        if not np.any(self.in_band(self.samples)):
            raise ConfigError(
                f"problem.band={cfg.band!r}: no data point lies in the centre band |x| <= {cfg.band * cfg.eps:g}; "
                "widen the band or add points"
            )

    def domain(self) -> Box:
        return ((-1.0, 1.0),)

    def exact(self, inputs: Tensor) -> Tensor:
        return torch.tanh(inputs[:, 0] / self.cfg.eps)

    def in_band(self, x: np.ndarray) -> np.ndarray:
        """Whether each x lies in the centre band |x| <= band * eps."""
        return np.abs(x) <= self.cfg.band * self.cfg.eps

    def build_terms(self) -> dict[str, Term]:
        region = tuple(((float(x), float(x)),) for x in self.samples)
        return {"data": Term(region, lambda f: f.u - self.exact(f.inputs))}

    def extra_metrics(self, model: torch.nn.Module) -> dict[str, float]:
        """RMS residual inside the centre band over RMS residual outside it, at the data points
        (what the loss sees) and on the evaluation grid (what the fit does between them)."""
        grid = self.grid(tuple(self.cfg.eval_grid))[:, 0]
        return {
            "sharp/centre_outer_ratio": self.centre_outer_ratio(model, self.samples),
            "sharp/centre_outer_ratio_grid": self.centre_outer_ratio(model, grid),
        }

    def centre_outer_ratio(self, model: torch.nn.Module, x: np.ndarray) -> float:
        """RMS of u - tanh(x / eps) over x in the band divided by its RMS over x outside."""
        parameter = next(model.parameters())
        inputs = torch.as_tensor(x[:, None], dtype=parameter.dtype, device=parameter.device)
        with torch.no_grad():
            residual = (model(inputs).squeeze(-1) - self.exact(inputs)).double().cpu().numpy()
        centre = self.in_band(x)
        return float(np.sqrt(np.mean(residual[centre] ** 2)) / np.sqrt(np.mean(residual[~centre] ** 2)))
