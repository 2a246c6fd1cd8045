"""NTK weighting (Wang, Yu & Perdikaris 2022, "When and why PINNs fail to train: a neural tangent
kernel perspective", J. Comput. Phys. 449, 110768, Algorithm 1): term weights from the traces of
the diagonal blocks of the network's neural tangent kernel,

    K_ii = J_i J_i^T,   J_i = d r_i / d theta  (one row per point of term i),
    tr(K_ii) = sum_j ||d r_ij / d theta||^2,
    lam_i = sum_k tr(K_kk) / tr(K_ii)                                  (Algorithm 1, eq. 6.4)

so that every term's kernel has the same average eigenvalue scale. `statistic: trace` is the paper's
(the sum over the term's points); `mean` divides by the term's point count, as jaxpi's `ntk` scheme
does, which differs when the terms have different numbers of points. The paper refreshes at every
step; jaxpi (and the default here) every 1000 steps with a moving average 0.9 on the old value.

The per-point norms ||d r_ij / d theta|| are the exact Gram-form norms of pinnrun's per-point
gradient machinery (`weighting/gradnorm.py`), back-propagating sum_j r_j instead of sum_j r_j^2:
one Taylor-jet pass per term per refresh, no Jacobian is formed, and the same passes give that
step's gradient. Same network restriction as `gradnorm` (plain MLP).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import torch
from torch import Tensor, nn

from pinnrun.config import require_choice
from pinnrun.problems.base import Problem
from pinnrun.samplers.base import Points
from pinnrun.weighting.base import ResidualFunction, weighted_loss
from pinnrun.weighting.gradnorm import (add_weighted_gradient, gram_norms, jet_pass, layer_stack, second_order_pairs,
                                        with_gradient)
from pinnrun.weighting.gradnorm_terms import TermBalance, TermBalanceConfig

STATISTICS = ("trace", "mean")


@dataclass
class NTKConfig(TermBalanceConfig):
    statistic: str = "trace"  # trace: sum_j ||dr_j/dtheta||^2 (the paper) | mean: over the term's points (jaxpi)

    def validate(self, prefix: str) -> None:
        super().validate(prefix)
        require_choice(f"{prefix}.statistic", self.statistic, STATISTICS)


def residual_jacobian(residual: Tensor) -> Tensor:
    """sum_j r_j: its deltas are the rows of dr/dtheta, one per point."""
    return residual.sum()


class NTK(TermBalance):
    """Term weights by NTK trace ratios, refreshed every k steps of adaptive phases."""

    Config = NTKConfig
    prefix = "ntk"

    def __init__(self, cfg: NTKConfig, problem: Problem, model: nn.Module):
        super().__init__(cfg, problem, model)
        self.layers = layer_stack(model)
        self.params = [p for layer in self.layers if isinstance(layer, nn.Linear) for p in (layer.weight, layer.bias)]
        for term in problem.terms.values():
            second_order_pairs(term, problem.input_names)

    def kernel_passes(self, points: Mapping[str, Points]) -> dict[str, tuple[Tensor, Tensor, list, list]]:
        """Per term: its residual, tr(K_ii) (or its mean over points), and the jet pass's layer records
        and Jacobian-row deltas."""
        passes = {}
        for name, term in self.problem.terms.items():
            residual, records, deltas = jet_pass(self.model, self.layers, term, points[name].x, self.problem.input_names,
                                                 residual_jacobian)
            squared = gram_norms(records, deltas).square()
            trace = (squared.sum() if self.cfg.statistic == "trace" else squared.mean()).detach()
            passes[name] = (residual, trace, records, deltas)
        return passes

    def kernel_traces(self, points: Mapping[str, Points]) -> dict[str, Tensor]:
        """tr(K_ii) (or its mean over points) of every term at its current points."""
        return {name: trace for name, (_, trace, _, _) in self.kernel_passes(points).items()}

    def objective(self, compute_residuals: ResidualFunction, points: Mapping[str, Points], step: int) -> tuple[Tensor, dict[str, Tensor]]:
        """On a refresh step the jet passes that give the traces also give the step's gradient: the
        deltas of r_j, scaled by 2 c_i lam_i r_j / N_i, are those of the weighted loss (as gradnorm
        folds its refresh), so a refresh costs one jet pass per term, not a step plus the passes."""
        if not self.refresh.due(step):
            return self.loss(compute_residuals(points), points, step)
        passes = self.kernel_passes(points)
        self.smooth({name: trace for name, (_, trace, _, _) in passes.items()})
        grads = [torch.zeros_like(p) for p in self.params]
        for name, (residual, _, records, deltas) in passes.items():
            scale = 2.0 * self.constants[name] * self.w[name] * residual / len(residual)
            add_weighted_gradient(grads, records, deltas, scale)
        residuals = {name: residual for name, (residual, _, _, _) in passes.items()}
        total, diagnostics = weighted_loss(residuals, self.constants, term_weights=self.w)
        return with_gradient(total, self.params, grads), diagnostics

    def loss(self, residuals: Mapping[str, Tensor], points: Mapping[str, Points], step: int) -> tuple[Tensor, dict[str, Tensor]]:
        return weighted_loss(residuals, self.constants, term_weights=self.w)
