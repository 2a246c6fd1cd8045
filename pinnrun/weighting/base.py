"""The weighting interface: a strategy object the engine calls without knowing which it is.

A scheme sees each term's per-point residuals together with the ids of those points, returns the
scalar loss and its diagnostics, and owns its state (trainable weights, moving averages), which
goes into checkpoints. The problem's term constants c_i apply on top of every scheme.
"""

from __future__ import annotations

from abc import ABC
from dataclasses import dataclass
from typing import Any, Mapping, Optional

import torch
from torch import Tensor, nn

from pinnrun.samplers.base import Points


@dataclass
class WeightingConfig:
    pass


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


class Weighting(ABC):
    """Base scheme: term constants only. Subclasses override the hooks they need."""

    Config = WeightingConfig

    def __init__(self, cfg: WeightingConfig, constants: Mapping[str, float], model: nn.Module):
        self.cfg = cfg
        self.constants = dict(constants)
        self.model = model

    def loss(self, residuals: Mapping[str, Tensor], points: Mapping[str, Points], step: int) -> tuple[Tensor, dict[str, Tensor]]:
        """The scalar loss to minimise and its diagnostics (detached tensors; no host sync)."""
        return weighted_loss(residuals, self.constants)

    def after_step(self, ascent: bool) -> None:
        """Called after each optimizer step; `ascent` is False in phases where weights are frozen."""

    def on_points(self, changed: Mapping[str, Points]) -> None:
        """Called when the sampler replaced the points of some terms."""

    def point_weights(self) -> dict[str, Tensor]:
        """Per-point weights of the current points, by term (empty for term-level schemes)."""
        return {}

    def metrics(self) -> dict[str, Tensor]:
        """Scheme-specific metrics for the log step (e.g. term weights)."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass
