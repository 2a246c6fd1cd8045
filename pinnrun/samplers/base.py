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
class GridPickConfig:
    """A term's points picked without replacement from the nodes of a uniform grid on each of its
    boxes: `nodes` per free coordinate, from the box's lower end to `last` (default: its upper end).
    SA-PINN's Burgers code takes its initial points off the 256 x-nodes of Raissi's data and its
    boundary times off the data's t = 0, 0.01, ..., 0.99 (Burgers/burgers.py:215-221)."""

    nodes: List[int] = field(default_factory=list)
    last: List[float] = field(default_factory=list)

    def validate(self, prefix: str) -> None:
        if not self.nodes:
            raise ConfigError(f"{prefix}.nodes: empty; give the grid's node count per free coordinate")
        for count in self.nodes:
            require_positive(f"{prefix}.nodes", count)
        if self.last and len(self.last) != len(self.nodes):
            raise ConfigError(f"{prefix}.last={list(self.last)}: needs one value per entry of nodes {list(self.nodes)}")


@dataclass
class SamplerConfig:
    n: Dict[str, int] = field(default_factory=dict)  # per-term count overrides of the problem's defaults
    resample_every: int = 0  # steps between fresh draws; 0 keeps the points fixed
    resample_terms: List[str] = field(default_factory=lambda: ["pde"])  # which terms are redrawn
    fold: List[str] = field(default_factory=list)  # inputs drawn on [lo - span, hi] and folded to lo + |x - lo|
    grid_pick: Dict[str, GridPickConfig] = field(default_factory=dict)  # per term: points off a grid's nodes

    def validate(self, prefix: str) -> None:
        for term, count in self.n.items():
            require_positive(f"{prefix}.n.{term}", count)
        if self.resample_every < 0:
            raise ConfigError(f"{prefix}.resample_every={self.resample_every}: must be >= 0 (0 = fixed points)")
        for term, pick in self.grid_pick.items():
            pick.validate(f"{prefix}.grid_pick.{term}")


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
        unknown_inputs = sorted(set(cfg.fold) - set(problem.input_names))
        if unknown_inputs:
            raise ConfigError(f"sampler.fold: {unknown_inputs[0]!r} is not an input of {problem.name} ({', '.join(problem.input_names)})")
        picked = sorted(set(cfg.grid_pick) - set(problem.terms))
        if picked:
            raise ConfigError(f"sampler.grid_pick.{picked[0]}: unknown term; {problem.name} has {', '.join(problem.terms)}")
        self.cfg = cfg
        self.problem = problem
        self.folded = [problem.input_names.index(name) for name in cfg.fold]
        self.generator = generator
        self.counts = {**problem.counts(), **cfg.n}
        self.next_id = 0
        self.points: dict[str, Points] = {}
        self.check_grid_picks()

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
            span = torch.tensor([box[i][1] - box[i][0] for i in free], dtype=torch.float64)
            inner = self.pick(term, count, box, free) if term in self.cfg.grid_pick else self.folded_fill(count, span, free)
            x = low.repeat(inner.shape[0], 1)
            x[:, free] = x[:, free] + inner
            parts.append(x)
        return torch.cat(parts)

    def folded_fill(self, n: int, span: Tensor, free: list[int]) -> Tensor:
        """`fill`, with each folded coordinate drawn on twice its span and folded at the lower end:
        SA-PINN's code draws its LHS collocation points on [-1, 1]^2 and takes t = |t|
        (Burgers/burgers.py:224-227), which keeps t uniform but not one point per stratum."""
        axes = [k for k, i in enumerate(free) if i in self.folded]
        if not axes:
            return self.fill(n, span)
        doubled = span.clone()
        doubled[axes] = 2.0 * span[axes]
        inner = self.fill(n, doubled)
        inner[:, axes] = (inner[:, axes] - span[axes]).abs()
        return inner

    def pick(self, term: str, n: int, box: Box, free: list[int]) -> Tensor:
        """n distinct nodes of the term's grid (GridPickConfig) on one box, offsets from its lower
        corner along the free coordinates, in random order."""
        nodes = self.grid_nodes(term, box, free, n)
        return nodes[torch.randperm(nodes.shape[0], generator=self.generator)[:n]]

    def grid_nodes(self, term: str, box: Box, free: list[int], n: int) -> Tensor:
        """The nodes of the term's grid on one box (offsets from its lower corner), refusing a grid
        that does not match the box's free coordinates or has fewer than n nodes."""
        cfg = self.cfg.grid_pick[term]
        if len(cfg.nodes) != len(free):
            raise ConfigError(f"sampler.grid_pick.{term}.nodes={list(cfg.nodes)}: the term's boxes have {len(free)} free coordinate(s)")
        ends = cfg.last or [box[i][1] for i in free]
        axes = [torch.linspace(0.0, end - box[i][0], count, dtype=torch.float64) for i, end, count in zip(free, ends, cfg.nodes)]
        nodes = torch.cartesian_prod(*axes).reshape(-1, len(axes))
        if n > nodes.shape[0]:
            raise ConfigError(f"sampler.grid_pick.{term}: {n} points asked of a grid of {nodes.shape[0]} nodes")
        return nodes

    def check_grid_picks(self) -> None:
        """Refuse, when the sampler is built (before any run exists), a grid that cannot give a
        term its first points."""
        for term in self.cfg.grid_pick:
            boxes = self.problem.terms[term].region
            for box, count in zip(boxes, split_count(self.counts[term], [box_measure(b) for b in boxes])):
                free = [i for i, (lo, hi) in enumerate(box) if hi > lo]
                if free and count:
                    self.grid_nodes(term, box, free, count)

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

    def due(self, step: int, round_start: bool) -> bool:
        """Whether to redraw now: every `resample_every` steps (0: never by the clock), and whenever
        the optimizer opens a round (pinnrun.optim.rounds)."""
        every = self.cfg.resample_every
        return round_start or bool(every and step and step % every == 0)

    def update(self, step: int, residual: Optional[ResidualFn] = None, round_start: bool = False) -> Optional[dict[str, Points]]:
        """New points for the terms that change at this step, or None when nothing changes."""
        if not self.due(step, round_start):
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
