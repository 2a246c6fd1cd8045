"""Stratified and low-discrepancy point sets from scipy.stats.qmc (Wu et al. 2023, section 2)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from scipy.stats import qmc
from torch import Tensor

from pinnrun.samplers.base import Sampler, SamplerConfig, numpy_seed


@dataclass
class QMCConfig(SamplerConfig):
    scramble: bool = True  # randomise the sequence (seeded from `seed`); false gives the plain sequence


class LatinHypercubeSampler(Sampler):
    """Latin hypercube sampling (McKay et al. 1979): one point per stratum in every coordinate."""

    Config = QMCConfig

    def unit(self, n: int, dim: int) -> Tensor:
        engine = qmc.LatinHypercube(d=dim, scramble=self.cfg.scramble, rng=numpy_seed(self.generator))
        return torch.from_numpy(engine.random(n))
