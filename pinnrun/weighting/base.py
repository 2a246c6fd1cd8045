"""The weighting interface: a strategy object the engine calls without knowing which it is.

A scheme sees each term's per-point residuals together with the ids of those points, returns the
scalar loss and its diagnostics, and owns its state (trainable weights, moving averages), which
goes into checkpoints. The problem's term constants c_i apply on top of every scheme. Per-point
state lives in a `PointTable` keyed by point id, never by batch position, so a shuffle or a
resample cannot attach a weight to the wrong point.
"""

from __future__ import annotations

from abc import ABC
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import torch
from torch import Tensor, nn

from pinnrun.config import ConfigError
from pinnrun.problems.base import Problem
from pinnrun.samplers.base import Points, SamplerConfig

ResidualFunction = Callable[[Mapping[str, Points]], dict[str, Tensor]]
"""The engine's residuals: each term's per-point residual at the given points, with its graph."""

QUANTILES = {"p50": 0.5, "p90": 0.9, "p99": 0.99}


@dataclass
class WeightingConfig:
    histogram_every: int = 1000  # steps between per-point weight histograms, maps and .npz; 0: at the end only

    def validate(self, prefix: str) -> None:
        if self.histogram_every < 0:
            raise ConfigError(f"{prefix}.histogram_every={self.histogram_every}: must be >= 0 (0 = at the end only)")


def require_terms(key: str, terms: Optional[list[str]], problem: Problem) -> list[str]:
    """The terms a scheme acts on: the named ones (checked against the problem) or all (None)."""
    if terms is None:
        return list(problem.terms)
    unknown = sorted(set(terms) - set(problem.terms))
    if unknown:
        raise ConfigError(f"{key}: unknown term {unknown[0]!r}; {problem.name} has {', '.join(problem.terms)}")
    return list(terms)


def weighted_loss(
    residuals: Mapping[str, Tensor],
    constants: Mapping[str, float],
    point_weights: Optional[Mapping[str, Tensor]] = None,
    term_weights: Optional[Mapping[str, Tensor]] = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """L = sum_i c_i * lam_i * mean_j w_ij r_ij^2, with diagnostics per term.

    `loss/<term>` is the term's weighted contribution, `mse/<term>` its raw mean square, so the
    raw error stays visible when a scheme's weights make the weighted total rise.
    """
    total: Tensor = torch.zeros((), device=next(iter(residuals.values())).device)
    diagnostics: dict[str, Tensor] = {}
    for term, r in residuals.items():
        squared = r.square()
        mse = squared.mean()
        weighted = (point_weights[term] * squared).mean() if point_weights and term in point_weights else mse
        contribution = constants[term] * weighted
        if term_weights and term in term_weights:
            contribution = term_weights[term] * contribution
        total = total + contribution
        diagnostics[f"loss/{term}"] = contribution.detach()
        diagnostics[f"mse/{term}"] = mse.detach()
    diagnostics["loss/total"] = total.detach()
    return total, diagnostics


def weight_summaries(weights: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """`w/<term>/mean|p50|p90|p99|max` of each term's per-point weights (detached, no host sync)."""
    summaries: dict[str, Tensor] = {}
    for term, w in weights.items():
        w = w.detach().float()
        quantiles = torch.quantile(w, torch.tensor(list(QUANTILES.values()), device=w.device))
        summaries[f"w/{term}/mean"] = w.mean()
        summaries.update({f"w/{term}/{name}": q for name, q in zip(QUANTILES, quantiles)})
        summaries[f"w/{term}/max"] = w.max()
    return summaries


class PointTable:
    """Per-point values of one term, keyed by point id: ids kept sorted, looked up by binary search."""

    def __init__(self, ids: Tensor, values: Tensor):
        order = torch.argsort(ids)
        self.ids = ids[order]
        self.values = values[order]

    def index(self, ids: Tensor) -> Tensor:
        """Positions in `values` of the given ids (which must all be in the table)."""
        return torch.searchsorted(self.ids, ids)

    def lookup(self, ids: Tensor) -> Tensor:
        """The values of the given ids, in their order (a gather that keeps the graph to `values`)."""
        return self.values[self.index(ids)]

    def known(self, ids: Tensor) -> Tensor:
        """Which of the given ids the table holds (bool mask)."""
        if not len(self.ids):
            return torch.zeros_like(ids, dtype=torch.bool)
        position = self.index(ids).clamp(max=len(self.ids) - 1)
        return self.ids[position] == ids

    def rekey(self, ids: Tensor, fresh: Tensor) -> PointTable:
        """A table over `ids`: values kept for ids already held, `fresh[k]` for each new id."""
        known = self.known(ids)
        values = fresh.detach().clone().to(self.values.dtype)
        values[known] = self.values.detach()[self.index(ids[known])]
        return PointTable(ids, values)


class Weighting(ABC):
    """Base scheme: term constants only. Subclasses override the hooks they need."""

    Config = WeightingConfig
    composes_terms = False  # term_weights needs only the term losses: the scheme can weight another's terms (causal)

    def __init__(self, cfg: WeightingConfig, problem: Problem, model: nn.Module):
        self.cfg = cfg
        self.problem = problem
        self.constants = problem.term_weights()
        self.model = model

    @classmethod
    def reconcile_sampler(cls, cfg: WeightingConfig, sampler: SamplerConfig) -> None:
        """Check the sampler's config against the scheme before the run starts (ConfigError when they
        cannot work together); a scheme that owns a resampling cadence may set it here."""

    def loss(self, residuals: Mapping[str, Tensor], points: Mapping[str, Points], step: int) -> tuple[Tensor, dict[str, Tensor]]:
        """The scalar loss to minimise and its diagnostics (detached tensors; no host sync)."""
        return weighted_loss(residuals, self.constants)

    def objective(self, compute_residuals: ResidualFunction, points: Mapping[str, Points], step: int) -> tuple[Tensor, dict[str, Tensor]]:
        """The loss of one training step at the current parameters, ready for backward(): `loss` of
        the engine's residuals, unless a scheme needs its own pass over the network (gradnorm's refresh)."""
        return self.loss(compute_residuals(points), points, step)

    def term_weights(self, losses: Mapping[str, Tensor], step: int) -> dict[str, Tensor]:
        """Term weights lam_i for the per-term losses L_i of this step (scalars with their graphs to the
        network): what a term-level scheme computes, so that a per-point scheme (causal) can hand it
        its own point-weighted term losses. {} (every lam_i = 1) for schemes without term weights."""
        return {}

    def after_step(self, ascent: bool) -> None:
        """Called after each optimizer step; `ascent` is False in phases where weights are frozen."""

    def on_points(self, changed: Mapping[str, Points]) -> None:
        """Called when the sampler replaced the points of some terms."""

    def point_weights(self) -> dict[str, Tensor]:
        """Per-point weights w_ij of the current points, by term, in the order the points were given
        (empty for term-level schemes)."""
        return {}

    def metrics(self) -> dict[str, Tensor]:
        """Scheme-specific metrics for the log step: per-point weight summaries by default."""
        return weight_summaries(self.point_weights())

    def artifacts(self, stem: Path) -> list[Path]:
        """Scheme-specific figures written beside the weight histograms and maps (`stem` + suffix)."""
        return []

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class Refresh:
    """When a periodically refreshed scheme recomputes its weights: every `every` steps, once per step
    (L-BFGS evaluates the loss several times per step), and only while weights may move."""

    def __init__(self, every: int):
        self.every = every
        self.adaptive = True
        self.last = -1

    def due(self, step: int) -> bool:
        if not self.adaptive or step % self.every or step == self.last:
            return False
        self.last = step
        return True
