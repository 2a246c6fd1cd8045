"""Residual-based adaptive sampling (Wu, Zhu, Tan, Kartha & Lu 2023, CMAME 403, 115671).

Every `resample_every` steps a pool of uniform random candidates is drawn in each of
`resample_terms`' regions and the current network's residual is evaluated there:

- RAD replaces all of the term's points by as many candidates drawn with probability
  p(x) proportional to |r(x)|^k / mean|r|^k + c (the mean over the pool);
- RAR-D keeps the points and adds `add` candidates drawn by the same density;
- RAR-G (Lu et al. 2021, SIAM Rev. 63(1)) keeps the points and adds the `add` candidates with
  the largest |r|.

Draws are without replacement (as in the paper's code, so no point is repeated), which follows p
closely only while the pool is much larger than the draw: a 25x pool already visibly thins a sharp
peak. RAR stops adding once a term holds `max_growth` times its initial
count. New points get new ids; points that stay keep theirs.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from pinnrun.config import ConfigError, require_positive
from pinnrun.problems.base import Problem
from pinnrun.samplers.base import Points, ResidualFn, SamplerConfig
from pinnrun.samplers.random import RandomSampler


@dataclass
class AdaptiveConfig(SamplerConfig):
    resample_every: int = 1000  # steps between adaptive rounds; 0: only when the optimizer opens a round (adam_lbfgs_rounds)
    pool: int = 100000  # uniform random candidates per term per round

    def validate(self, prefix: str) -> None:
        super().validate(prefix)
        require_positive(f"{prefix}.pool", self.pool)


@dataclass
class DensityConfig(AdaptiveConfig):
    k: float = 1.0  # exponent on |r| (Wu et al.: k = 1 is a good default)
    c: float = 1.0  # uniform floor relative to the mean of |r|^k (c = 1 default; c -> inf is uniform)

    def validate(self, prefix: str) -> None:
        super().validate(prefix)
        for key in ("k", "c"):
            if not getattr(self, key) >= 0:
                raise ConfigError(f"{prefix}.{key}={getattr(self, key)!r}: must be >= 0")


@dataclass
class GrowthConfig:
    """What refinement (RAR) samplers add: `add` points per term per round, up to a cap."""

    add: int = 100  # points added per term per round
    max_growth: float = 2.0  # stop adding once a term holds this many times its initial count

    def validate(self, prefix: str) -> None:
        super().validate(prefix)  # the sampler config this is mixed into
        require_positive(f"{prefix}.add", self.add)
        if not self.max_growth >= 1:
            raise ConfigError(f"{prefix}.max_growth={self.max_growth!r}: must be >= 1 (a multiple of the initial count)")


@dataclass
class RARDConfig(GrowthConfig, DensityConfig):
    pass


@dataclass
class RARGConfig(GrowthConfig, AdaptiveConfig):
    pass


def residual_density(residual: Tensor, k: float, c: float) -> Tensor:
    """p proportional to |r|^k / mean|r|^k + c (Wu et al. 2023), normalised to sum 1.

    An all-zero residual (or k = 0) leaves the uniform floor; with c = 0 it falls back to uniform.
    """
    power = residual.detach().abs().to(torch.float64) ** k
    if not torch.isfinite(power).all():
        raise FloatingPointError("residual-based sampling: the residual at the candidates is not finite")
    mean = power.mean()
    density = (power / mean if mean > 0 else torch.zeros_like(power)) + c
    if density.sum() <= 0:
        density = torch.ones_like(density)
    return density / density.sum()


class ResidualSampler(RandomSampler):
    """Uniform random initial points; every `resample_every` steps, `adapt` each resampled term."""

    Config = AdaptiveConfig
    residual_based = True

    def update(self, step: int, residual: Optional[ResidualFn] = None, round_start: bool = False) -> Optional[dict[str, Points]]:
        if not self.due(step, round_start):
            return None
        if residual is None:
            raise ValueError(f"{type(self).__name__}.update needs the residual function at step {step}")
        changed = {}
        for term in self.cfg.resample_terms:
            candidates = self.coordinates(term, self.cfg.pool)
            points = self.adapt(term, candidates, residual(term, candidates))
            if points is not None:
                changed[term] = points
        self.points.update(changed)
        return changed or None

    @abstractmethod
    def adapt(self, term: str, candidates: Tensor, residual: Tensor) -> Optional[Points]:
        """The term's new point set from the candidates and their residuals, or None to keep it."""

class RADSampler(ResidualSampler):
    """RAD: every round, all of the term's points are redrawn from the residual density."""

    Config = DensityConfig

    def __init__(self, cfg: DensityConfig, problem: Problem, generator: torch.Generator):
        super().__init__(cfg, problem, generator)
        small = [t for t in cfg.resample_terms if cfg.pool < self.counts[t]]
        if small:
            raise ConfigError(f"sampler.pool={cfg.pool}: smaller than the {self.counts[small[0]]} points of term {small[0]!r}")

    def adapt(self, term: str, candidates: Tensor, residual: Tensor) -> Points:
        density = residual_density(residual, self.cfg.k, self.cfg.c)
        chosen = torch.multinomial(density, self.counts[term], replacement=False, generator=self.generator)
        return self.label(candidates[chosen])


class GrowingSampler(ResidualSampler):
    """RAR: points are only ever added, up to `max_growth` times the initial count."""

    def adapt(self, term: str, candidates: Tensor, residual: Tensor) -> Optional[Points]:
        cap = int(self.cfg.max_growth * self.counts[term])
        count = max(0, min(self.cfg.add, cap - len(self.points[term]), candidates.shape[0]))
        if not count:
            return None
        added = self.label(candidates[self.choose(residual, count)])
        old = self.points[term]
        return Points(torch.cat([old.x, added.x]), torch.cat([old.ids, added.ids]))

    @abstractmethod
    def choose(self, residual: Tensor, count: int) -> Tensor:
        """Indices of the `count` candidates to add."""


class RARDSampler(GrowingSampler):
    """RAR-D: every round, `add` candidates drawn from the residual density join the term's points."""

    Config = RARDConfig

    def choose(self, residual: Tensor, count: int) -> Tensor:
        density = residual_density(residual, self.cfg.k, self.cfg.c)
        return torch.multinomial(density, count, replacement=False, generator=self.generator)


class RARGSampler(GrowingSampler):
    """RAR-G: every round, the `add` candidates with the largest |r| join the term's points."""

    Config = RARGConfig

    def choose(self, residual: Tensor, count: int) -> Tensor:
        return torch.topk(residual.detach().abs(), count).indices
