"""What the network sees of the inputs: normalised coordinates, exact periodicity for periodic
coordinates, and optional random Fourier features. One module for every network, so any
embedding composes with the MLP and the modified MLP alike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor, nn

from pinnrun.config import ConfigError
from pinnrun.problems.base import Problem

INPUT_SCALES = ("unit", "standard")


@dataclass
class FourierConfig:
    """Random Fourier features gamma(h) = [cos(h B), sin(h B)], B_ij ~ N(0, sigma^2)
    (Tancik et al. 2020; Wang, Wang & Perdikaris 2021, CMAME 384, 113938)."""

    features: int = 0  # m frequencies (the embedding has 2m outputs); 0 switches it off
    sigma: float = 1.0  # standard deviation of the frequencies, on inputs scaled to [-1, 1]
    trainable: bool = False  # fixed by default (drawn once from the seeded generator)

    def validate(self, prefix: str) -> None:
        if self.features < 0:
            raise ConfigError(f"{prefix}.features={self.features}: must be >= 0 (0 = no Fourier features)")
        if not self.sigma > 0:
            raise ConfigError(f"{prefix}.sigma={self.sigma!r}: must be > 0")


class InputEmbedding(nn.Module):
    """inputs (N, d) -> features (N, out_features).

    Non-periodic inputs are rescaled from their domain interval [a, b] (when normalising): `unit`
    maps it to [-1, 1]; `standard` to zero mean and unit variance of a uniform draw on it,
    (x - (a + b) / 2) / ((b - a) / sqrt(12)), i.e. sqrt(3) times the unit map. Wang et al.'s code
    standardises with the mean and std of 1e5 uniform points (Helmholtz2D_model_tf.py:22-23,288),
    which this takes exactly; SA-PINN's code feeds raw inputs (`normalize_inputs: false`).
    A periodic input x with domain [a, a + L] becomes [cos(w (x - a)), sin(w (x - a))], w = 2 pi / L,
    so the network output and all its x-derivatives are exactly L-periodic (Dong & Ni 2021,
    J. Comput. Phys. 435, 110242). Fourier features, when on, act on the result of both.
    """

    def __init__(self, problem: Problem, scale: Optional[str], periodic: list[str], fourier: FourierConfig):
        super().__init__()
        names = problem.input_names
        unknown = [name for name in periodic if name not in names]
        if unknown:
            raise ConfigError(f"model.periodic: {unknown[0]!r} is not an input of {problem.name} ({', '.join(names)})")
        self.periodic = [names.index(name) for name in names if name in periodic]
        self.plain = [i for i in range(len(names)) if i not in self.periodic]
        # float64 buffers, cast to the inputs' dtype: a float64 model keeps the exact period
        low = torch.tensor([lo for lo, _ in problem.bounds], dtype=torch.float64)
        span = torch.tensor([hi - lo for lo, hi in problem.bounds], dtype=torch.float64)
        self.register_buffer("period_low", low[self.periodic].clone())
        self.register_buffer("period", span[self.periodic].clone())
        if scale is None:
            low, span = torch.full_like(low, -1.0), torch.full_like(span, 2.0)
        elif scale == "standard":
            low, span = low + span * (1.0 - 1.0 / math.sqrt(3.0)) / 2.0, span / math.sqrt(3.0)
        self.register_buffer("input_low", low)
        self.register_buffer("input_span", span)
        self.out_features = len(self.plain) + 2 * len(self.periodic)
        frequencies = fourier.sigma * torch.randn(self.out_features, fourier.features) if fourier.features else None
        if fourier.trainable and frequencies is not None:
            self.fourier = nn.Parameter(frequencies)
        else:
            self.register_buffer("fourier", frequencies)
        if fourier.features:
            self.out_features = 2 * fourier.features

    def forward(self, inputs: Tensor) -> Tensor:
        dtype = inputs.dtype
        z = 2.0 * (inputs - self.input_low.to(dtype)) / self.input_span.to(dtype) - 1.0
        h = z[:, self.plain]
        if self.periodic:
            phase = math.tau * (inputs[:, self.periodic] - self.period_low.to(dtype)) / self.period.to(dtype)
            h = torch.cat([h, torch.cos(phase), torch.sin(phase)], dim=1)
        if self.fourier is not None:
            projected = h @ self.fourier
            h = torch.cat([torch.cos(projected), torch.sin(projected)], dim=1)
        return h
