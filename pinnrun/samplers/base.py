"""The sampler interface: it hands out `Points` (coordinates plus ids) per loss term.

Ids are unique for the life of a run; a resampled point gets a new id, so per-point weighting
state keyed by id can never land on the wrong point after a resample.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional

import numpy as np
import torch
from torch import Tensor

from pinnrun.config import ConfigError, require_positive
from pinnrun.problems.base import Box, Problem

ResidualFn = Callable[[str, Tensor], Tensor]
"""(term name, points) -> per-point residual, for residual-based adaptive samplers."""


@dataclass(frozen=True)
class Points:
    """Coordinates (N, d) of one term's points and their ids (N,) int64."""

    x: Tensor
    ids: Tensor

    def __len__(self) -> int:
        return self.x.shape[0]


@dataclass
class SamplerConfig:
    n: Dict[str, int] = field(default_factory=dict)  # per-term count overrides of the problem's defaults
    resample_every: int = 0  # steps between fresh draws; 0 keeps the points fixed
    resample_terms: List[str] = field(default_factory=lambda: ["pde"])  # which terms are redrawn

    def validate(self, prefix: str) -> None:
        for term, count in self.n.items():
            require_positive(f"{prefix}.n.{term}", count)
        if self.resample_every < 0:
            raise ConfigError(f"{prefix}.resample_every={self.resample_every}: must be >= 0 (0 = fixed points)")


def split_count(total: int, measures: list[float]) -> list[int]:
    """Split `total` points over boxes in proportion to their measures (largest remainder)."""
    measures_arr = np.asarray(measures, dtype=np.float64)
    share = total * measures_arr / measures_arr.sum()
    counts = np.floor(share).astype(int)
    for index in np.argsort(counts - share)[: total - counts.sum()]:
        counts[index] += 1
    return counts.tolist()


def box_measure(box: Box) -> float:
    """The measure of a box over its free coordinates (a point has measure 1)."""
    return float(np.prod([hi - lo for lo, hi in box if hi > lo])) if any(hi > lo for lo, hi in box) else 1.0


class Sampler(ABC):
    """Draws each term's points from its region; subclasses choose how points fill a unit cube."""

    Config = SamplerConfig
    residual_based = False  # True: `update` needs the residual function (RAD, RAR); the engine snapshots its rounds

    def __init__(self, cfg: SamplerConfig, problem: Problem, generator: torch.Generator):
        unknown = sorted(set(cfg.n) - set(problem.terms))
        if unknown:
            raise ConfigError(f"sampler.n.{unknown[0]}: unknown term; {problem.name} has {', '.join(problem.terms)}")
        bad = sorted(set(cfg.resample_terms) - set(problem.terms))
        if bad and cfg.resample_every:  # fixed points: resample_terms is unused (e.g. sharp has no "pde")
            raise ConfigError(f"sampler.resample_terms: unknown term {bad[0]!r}; {problem.name} has {', '.join(problem.terms)}")
        self.cfg = cfg
        self.problem = problem
        self.generator = generator
        self.counts = {**problem.counts(), **cfg.n}
        self.next_id = 0
        self.points: dict[str, Points] = {}

    @abstractmethod
    def unit(self, n: int, dim: int) -> Tensor:
        """n points in the unit cube [0, 1)^dim, float64."""

    def fill(self, n: int, span: Tensor) -> Tensor:
        """Points in a box [0, span) with the given side lengths; the rows need not number n
        exactly (a grid rounds to whole points per axis)."""
        return self.unit(n, span.numel()) * span

    def coordinates(self, term: str, n: int) -> Tensor:
        """About n coordinates (N, d) float64 in the term's region, split over its boxes by measure."""
        boxes = self.problem.terms[term].region
        parts = []
        for box, count in zip(boxes, split_count(n, [box_measure(b) for b in boxes])):
            free = [i for i, (lo, hi) in enumerate(box) if hi > lo]
            low = torch.tensor([lo for lo, _ in box], dtype=torch.float64)
            if not free or not count:
                parts.append(low.repeat(count, 1))
                continue
            inner = self.fill(count, torch.tensor([box[i][1] - box[i][0] for i in free], dtype=torch.float64))
            x = low.repeat(inner.shape[0], 1)
            x[:, free] = x[:, free] + inner
            parts.append(x)
        return torch.cat(parts)

    def label(self, x: Tensor) -> Points:
        """Give coordinates fresh ids, never used before in this run."""
        ids = torch.arange(self.next_id, self.next_id + x.shape[0], dtype=torch.int64)
        self.next_id += x.shape[0]
        return Points(x, ids)

    def draw(self, term: str, n: int) -> Points:
        """About n new points in the term's region, with fresh ids."""
        return self.label(self.coordinates(term, n))

    def initial(self) -> dict[str, Points]:
        """The first point set of every term."""
        self.points = {term: self.draw(term, self.counts[term]) for term in self.problem.terms}
        return self.points

    def update(self, step: int, residual: Optional[ResidualFn] = None) -> Optional[dict[str, Points]]:
        """New points for the terms that change at this step, or None when nothing changes."""
        if not self.cfg.resample_every or step == 0 or step % self.cfg.resample_every:
            return None
        changed = {term: self.draw(term, self.counts[term]) for term in self.cfg.resample_terms}
        self.points.update(changed)
        return changed

    def metrics(self) -> dict[str, float]:
        """The current point count of every term, logged as `points/<term>`."""
        return {f"points/{term}": float(len(p)) for term, p in self.points.items()}

    def state_dict(self) -> dict[str, Any]:
        return {
            "next_id": self.next_id,
            "points": {term: {"x": p.x, "ids": p.ids} for term, p in self.points.items()},
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.next_id = int(state["next_id"])
        self.points = {term: Points(p["x"], p["ids"]) for term, p in state["points"].items()}
        self.generator.set_state(state["generator"])


def numpy_seed(generator: torch.Generator) -> int:
    """A seed for numpy/scipy drawn from the run's torch generator (keeps one source of randomness)."""
    return int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
