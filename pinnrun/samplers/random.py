"""Independent uniform random points (the PINN default of Raissi et al. 2019)."""

from __future__ import annotations

import torch
from torch import Tensor

from pinnrun.samplers.base import Sampler


class RandomSampler(Sampler):
    """Uniform i.i.d. points from the run's generator."""

    def unit(self, n: int, dim: int) -> Tensor:
        return torch.rand(n, dim, generator=self.generator, dtype=torch.float64)
