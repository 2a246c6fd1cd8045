"""Stratified and low-discrepancy point sets from scipy.stats.qmc (Wu et al. 2023, section 2).

Each draw builds a fresh engine whose scrambling is seeded from the run's generator, so a resample
gives a new, independently scrambled point set with the same low-discrepancy structure.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from scipy.stats import qmc
from torch import Tensor

from pinnrun.config import ConfigError
from pinnrun.samplers.base import Sampler, SamplerConfig, numpy_seed


@dataclass
class QMCConfig(SamplerConfig):
    scramble: bool = True  # randomise the sequence (seeded from `seed`); false gives the plain sequence


@dataclass
class SequenceConfig(QMCConfig):
    """A deterministic sequence: unscrambled, every draw is the same point set."""

    def validate(self, prefix: str) -> None:
        super().validate(prefix)
        if not self.scramble and self.resample_every:
            raise ConfigError(
                f"{prefix}.scramble=false with {prefix}.resample_every={self.resample_every}: an unscrambled "
                "sequence redraws the same points; set scramble=true or resample_every=0"
            )


class LatinHypercubeSampler(Sampler):
    """Latin hypercube sampling (McKay et al. 1979): one point per stratum in every coordinate."""

    Config = QMCConfig

    def unit(self, n: int, dim: int) -> Tensor:
        engine = qmc.LatinHypercube(d=dim, scramble=self.cfg.scramble, rng=numpy_seed(self.generator))
        return torch.from_numpy(engine.random(n))


class HaltonSampler(Sampler):
    """The Halton sequence (Halton 1960), scrambled by random digit permutations (Owen 2017)."""

    Config = SequenceConfig

    def unit(self, n: int, dim: int) -> Tensor:
        return halton(n, dim, self.cfg.scramble, numpy_seed(self.generator))


class HammersleySampler(Sampler):
    """The Hammersley set (Hammersley 1960): i/n in the first coordinate and the Halton sequence in
    the others. Scrambled, the first coordinate is shifted by one common u/n, u ~ U(0, 1), which
    keeps exactly one point per stratum [i/n, (i+1)/n)."""

    Config = SequenceConfig

    def unit(self, n: int, dim: int) -> Tensor:
        seed = numpy_seed(self.generator)
        shift = float(torch.rand((), generator=self.generator, dtype=torch.float64)) if self.cfg.scramble else 0.0
        first = (torch.arange(n, dtype=torch.float64) + shift) / n
        if dim == 1:
            return first[:, None]
        return torch.cat([first[:, None], halton(n, dim - 1, self.cfg.scramble, seed)], dim=1)


class SobolSampler(Sampler):
    """The Sobol' sequence (Sobol' 1967; Joe & Kuo 2008 directions), scrambled by Owen's linear
    matrix scrambling with a digital shift. Its balance is exact only for powers of two; other
    counts take the sequence's first n points (scipy warns about it, which we silence)."""

    Config = SequenceConfig

    def unit(self, n: int, dim: int) -> Tensor:
        engine = qmc.Sobol(d=dim, scramble=self.cfg.scramble, rng=numpy_seed(self.generator))
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*balance properties of Sobol.*")
            return torch.from_numpy(engine.random(n))


def halton(n: int, dim: int, scramble: bool, seed: int) -> Tensor:
    """The first n points of a dim-dimensional Halton sequence in [0, 1)^dim."""
    return torch.from_numpy(qmc.Halton(d=dim, scramble=scramble, rng=seed).random(n))
