"""An equispaced tensor grid (the "grid" sampler of Wu et al. 2023, section 2.1)."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch
from torch import Tensor

from pinnrun.config import ConfigError
from pinnrun.samplers.base import Sampler, SamplerConfig


@dataclass
class GridConfig(SamplerConfig):
    def validate(self, prefix: str) -> None:
        super().validate(prefix)
        if self.resample_every:
            raise ConfigError(f"{prefix}.resample_every={self.resample_every}: a grid is the same at every draw; use 0")


def axis_counts(n: int, span: Tensor) -> list[int]:
    """Points per axis: each the floor or ceiling of side / h for the spacing h that gives n points
    on a square grid, choosing the combination whose product is closest to n (then the one with
    the most even spacing)."""
    sides = [float(side) for side in span]
    spacing = (math.prod(sides) / n) ** (1.0 / len(sides))
    choices = [sorted({max(1, math.floor(side / spacing)), max(1, math.ceil(side / spacing))}) for side in sides]

    def badness(counts: tuple[int, ...]) -> tuple[int, float]:
        steps = [side / k for side, k in zip(sides, counts)]
        return abs(math.prod(counts) - n), max(steps) / min(steps)

    return list(min(itertools.product(*choices), key=badness))


class GridSampler(Sampler):
    """Cell-centred points of an equispaced grid, so no point sits on the boundary of its box.

    The grid has nearly the same spacing along every axis of the physical box (whole counts per
    axis), and its point count is the product of those counts, so it can differ slightly from the
    requested count (exact in one dimension). The logged `points/<term>` metric gives the real count.
    """

    Config = GridConfig

    def unit(self, n: int, dim: int) -> Tensor:
        return self.fill(n, torch.ones(dim, dtype=torch.float64))

    def fill(self, n: int, span: Tensor) -> Tensor:
        axes = [(torch.arange(k, dtype=torch.float64) + 0.5) / k * side for k, side in zip(axis_counts(n, span), span)]
        return torch.cartesian_prod(*axes).reshape(-1, span.numel())
