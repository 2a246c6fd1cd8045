"""Per-point gradient-norm weighting: w_j proportional to 1 / ||grad_theta r_j^2||, normalised to
mean 1 within each term, so every point pushes the parameters about equally hard. Since
||grad r_j^2|| = 2 |r_j| ||grad r_j||, it down-weights the high-residual points (a shock), the
opposite of SA-PINN and RBA; it is the course's scheme, not a published one (jaxpi's grad-norm is
term level: `gradnorm_terms`).

Refreshed every k steps of adaptive phases. Points whose gradient is numerical noise would get
huge weights, so norms below `floor` times the term's mean norm count as that floor, weights are
clipped at `max_weight` (then renormalised), and refreshes are smoothed by a moving average.

Exact per-point gradient norms for all points at once. A residual uses the network several times
per point (u and its input derivatives), so the per-sample identity of Opacus' ghost clipping
(||grad W_j|| = ||delta_j|| ||a_j|| for one use per sample) does not apply to the nested-autograd
graph. Instead the network is evaluated on a second-order Taylor jet: channels k = value, the d
first derivatives and the needed second derivatives with respect to the normalised inputs,
propagated layer by layer (Linear: every channel times W, the bias on the value channel only;
activation s: y_i = s'(z) z_i, y_ik = s''(z) z_i z_k + s'(z) z_ik). Each Linear layer then sees
sample j through K inputs a_jk with back-propagated outputs delta_jk, and its per-sample gradient
sum_k delta_jk a_jk^T has the exact Gram-form norm

    ||sum_k delta_jk a_jk^T||_F^2 = sum_{k,l} (delta_jk . delta_jl)(a_jk . a_jl),

the bias contributing ||delta_j0||^2; layers add in squares. The residual sees the jet through the
network's local Taylor polynomial around each point (exact up to second derivatives there), put in
the model's own forward pass (normalisation, ansatz) so any residual of order <= 2 works.

A refresh is folded into the training step it happens on: the same deltas give the norms and,
scaled by the new weights, the parameter gradient of the weighted loss (sum_k (w delta_k)^T a_k per
layer), so a refresh step is one jet forward and one first-order backward, not a step plus a norm
pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations_with_replacement
from typing import Any, Callable, List, Mapping, Optional

import torch
from torch import Tensor, nn

from pinnrun.config import ConfigError, require_positive
from pinnrun.derivatives import autograd_fields
from pinnrun.models.mlp import Sin
from pinnrun.problems.base import Problem, Term
from pinnrun.samplers.base import Points
from pinnrun.weighting.base import (PointTable, Refresh, ResidualFunction, Weighting, WeightingConfig, require_terms,
                                    weighted_loss)

ELEMENTWISE = (nn.Tanh, nn.GELU, nn.SiLU, Sin)


@dataclass
class GradNormConfig(WeightingConfig):
    terms: Optional[List[str]] = None  # per-point weighted terms; null: every term
    update_every: int = 100  # k: steps between refreshes
    smoothing: float = 0.9  # moving average: w <- smoothing * w_old + (1 - smoothing) * w_new
    floor: float = 1e-3  # gradient norms below floor * (term mean norm) count as that
    max_weight: float = 100.0  # clip normalised weights here, then renormalise to mean 1

    def validate(self, prefix: str) -> None:
        super().validate(prefix)
        require_positive(f"{prefix}.update_every", self.update_every)
        if not 0.0 <= self.smoothing < 1.0:
            raise ConfigError(f"{prefix}.smoothing={self.smoothing!r}: must be in [0, 1)")
        require_positive(f"{prefix}.floor", self.floor)
        require_positive(f"{prefix}.max_weight", self.max_weight)


def layer_stack(model: nn.Module) -> list[nn.Module]:
    """The network as Linear layers and elementwise activations, or ConfigError."""
    body = getattr(model, "body", None)
    layers = list(body) if isinstance(body, nn.Sequential) else []
    linear_params = {id(p) for layer in layers if isinstance(layer, nn.Linear) for p in layer.parameters()}
    if (not layers or not all(isinstance(layer, (nn.Linear, *ELEMENTWISE)) for layer in layers)
            or linear_params != {id(p) for p in model.parameters()}):
        raise ConfigError(f"weighting=gradnorm: exact per-point gradient norms need a network of Linear layers and "
                          f"elementwise activations (model=mlp); {type(model).__name__} is not one")
    if model.embedding.periodic or model.embedding.fourier is not None:
        raise ConfigError("weighting=gradnorm: exact per-point gradient norms need plain input normalisation "
                          "(model.periodic=[] and model.fourier.features=0)")
    return layers


def second_order_pairs(term: Term, input_names: tuple[str, ...]) -> list[tuple[int, int]]:
    """The (i, k) input pairs whose second derivative the term's residual reads."""
    if any(len(key) > 2 for key in term.derivatives):
        raise ConfigError("weighting=gradnorm: residuals with derivatives above second order are not supported")
    pairs = {tuple(sorted(input_names.index(c) for c in key)) for key in term.derivatives if len(key) == 2}
    return [pair for pair in combinations_with_replacement(range(len(input_names)), 2) if pair in pairs]


def activation_derivatives(layer: nn.Module, z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """s(z), s'(z), s''(z) elementwise, keeping the graph to z."""
    if isinstance(layer, nn.Tanh):
        s = torch.tanh(z)
        s1 = 1.0 - s.square()
        return s, s1, -2.0 * s * s1
    with torch.enable_grad():
        s = layer(z)
        s1 = torch.autograd.grad(s.sum(), z, create_graph=True)[0]
        s2 = torch.autograd.grad(s1.sum(), z, create_graph=True)[0]
    return s, s1, s2


def network_jet(layers: list[nn.Module], z0: Tensor, pairs: list[tuple[int, int]]) -> tuple[list[Tensor], list[tuple[list[Tensor], list[Tensor]]]]:
    """The network's Taylor jet at z0: channels [u, du/dz_i, d2u/dz_i dz_k for the pairs], each (N,),
    and each Linear layer's input and output (without bias) channels, K tensors (N, fan_in) and
    (N, fan_out).

    Channels travel as separate tensors: slicing or stacking one (N, K, width) tensor costs more
    in copies and zero-filled backward buffers than the products themselves."""
    n, d = z0.shape
    unit = torch.eye(d, dtype=z0.dtype, device=z0.device)
    channels = [z0, *(unit[i].expand(n, d) for i in range(d)), *(z0.new_zeros(n, d) for _ in pairs)]
    records: list[tuple[list[Tensor], list[Tensor]]] = []
    for layer in layers:
        if isinstance(layer, nn.Linear):
            outputs = [c @ layer.weight.T for c in channels]
            records.append((channels, outputs))
            channels = [outputs[0] + layer.bias, *outputs[1:]]
            continue
        value, grads, hessians = channels[0], channels[1 : 1 + d], channels[1 + d :]
        s, s1, s2 = activation_derivatives(layer, value)
        channels = [s, *(s1 * g for g in grads),
                    *(s2 * grads[i] * grads[k] + s1 * h for h, (i, k) in zip(hessians, pairs))]
    return [c.squeeze(-1) for c in channels], records


def taylor_network(jet: list[Tensor], z0: Tensor, pairs: list[tuple[int, int]]):
    """The network's second-order Taylor polynomial around each point (row) z0: equal to the
    network there in value, first derivatives and the listed second derivatives."""
    d = z0.shape[1]

    def network(z: Tensor) -> Tensor:
        dz = z - z0
        value = jet[0]
        for i in range(d):
            value = value + jet[1 + i] * dz[:, i]
        for p, (i, k) in enumerate(pairs):
            value = value + (0.5 if i == k else 1.0) * jet[1 + d + p] * dz[:, i] * dz[:, k]
        return value.unsqueeze(-1)

    return network


LayerRecord = tuple[list[Tensor], list[Tensor]]
"""One Linear layer in the jet: its K input channels (N, fan_in) and K output channels (N, fan_out)."""


def squared_sum(residual: Tensor) -> Tensor:
    return residual.square().sum()


def jet_pass(model: nn.Module, layers: list[nn.Module], term: Term, x: Tensor, input_names: tuple[str, ...],
             objective: Callable[[Tensor], Tensor] = squared_sum) -> tuple[Tensor, list[LayerRecord], list[list[Tensor]]]:
    """One term's residual through the network's Taylor jet, with every Linear layer's record and
    the back-propagated deltas d(objective(r))/d(layer output), K per layer (no parameter gradients).
    The objective is a sum over points (sum_j r_j^2 here; sum_j r_j gives the Jacobian rows of r
    that the NTK scheme needs), so each point's deltas are its own term's."""
    pairs = second_order_pairs(term, input_names)
    with torch.enable_grad():
        z0 = model.embedding(x.detach())
        jet, records = network_jet(layers, z0, pairs)
        surrogate = taylor_network(jet, z0, pairs)
        residual = term.residual(autograd_fields(lambda inputs: model.surround(inputs, surrogate), x, input_names, term.derivatives))
        outputs = [out for _, layer_outputs in records for out in layer_outputs]
        flat = iter(torch.autograd.grad(objective(residual), outputs))
    deltas = [[next(flat) for _ in layer_outputs] for _, layer_outputs in records]
    return residual.detach(), records, deltas


def gram_norms(records: list[LayerRecord], deltas: list[list[Tensor]]) -> Tensor:
    """Per-sample gradient norms from the layers' channels and deltas by the Gram form (module doc)."""
    squared = torch.zeros(len(deltas[0][0]), dtype=deltas[0][0].dtype, device=deltas[0][0].device)
    for (inputs, _), delta in zip(records, deltas):
        inputs = [a.detach() for a in inputs]
        for k, l in combinations_with_replacement(range(len(inputs)), 2):
            gram = (inputs[k] * inputs[l]).sum(dim=1).mul_((delta[k] * delta[l]).sum(dim=1))
            squared.add_(gram, alpha=1.0 if k == l else 2.0)
        squared.add_(delta[0].square().sum(dim=1))
    return squared.sqrt()


def per_point_gradient_norms(model: nn.Module, layers: list[nn.Module], term: Term, x: Tensor,
                             input_names: tuple[str, ...]) -> Tensor:
    """||grad_theta r_j^2|| for every point j of one term, exact, in one jet pass."""
    _, records, deltas = jet_pass(model, layers, term, x, input_names)
    return gram_norms(records, deltas)


def add_weighted_gradient(grads: list[Tensor], records: list[LayerRecord], deltas: list[list[Tensor]], scale: Tensor) -> None:
    """grads += gradient of sum_j scale_j r_j^2 in the Linear layers' (weight, bias) pairs: per layer
    sum_k (scale * delta_k)^T a_k and sum_j scale_j delta_j0, from the deltas of sum_j r_j^2 (each
    point's residual depends only on its own rows, so per-point factors move onto the deltas)."""
    for index, ((inputs, _), delta) in enumerate(zip(records, deltas)):
        weighted = [scale.unsqueeze(1) * d for d in delta]
        grads[2 * index] += sum(w.T @ a.detach() for w, a in zip(weighted, inputs))
        grads[2 * index + 1] += weighted[0].sum(dim=0)


def with_gradient(value: Tensor, params: list[Tensor], grads: list[Tensor]) -> Tensor:
    """A scalar equal to `value` whose gradient in `params` is `grads`: backward() on it sets the
    gradient assembled from per-point deltas, so the engine's step needs no second backward pass."""
    return value.detach() + sum(((p - p.detach()) * g).sum() for p, g in zip(params, grads))


def inverse_norm_weights(norms: Tensor, floor: float, max_weight: float) -> Tensor:
    """w_j = 1 / max(n_j, floor * mean n), normalised to mean 1, clipped at max_weight, renormalised.

    Norms are first taken in units of their mean, so all-zero norms (a term a hard constraint
    satisfies) give weights 1 rather than an overflow."""
    relative = norms / norms.mean().clamp_min(torch.finfo(norms.dtype).tiny)
    weights = 1.0 / relative.clamp_min(floor)
    weights = (weights / weights.mean()).clamp(max=max_weight)
    return weights / weights.mean()


class GradNorm(Weighting):
    """Per-point weights inversely proportional to each point's loss-gradient norm."""

    Config = GradNormConfig

    def __init__(self, cfg: GradNormConfig, problem: Problem, model: nn.Module):
        super().__init__(cfg, problem, model)
        self.terms = require_terms("weighting.terms", cfg.terms, problem)
        self.layers = layer_stack(model)
        self.params = [p for layer in self.layers if isinstance(layer, nn.Linear) for p in (layer.weight, layer.bias)]
        for term in self.terms:
            second_order_pairs(problem.terms[term], problem.input_names)
        self.refresh = Refresh(cfg.update_every)
        self.tables: dict[str, PointTable] = {}
        self.points: dict[str, Points] = {}

    def on_points(self, changed: Mapping[str, Points]) -> None:
        """New points start at weight 1 (the term mean) until the next refresh measures them."""
        for term, points in changed.items():
            if term in self.terms:
                ones = torch.ones(len(points), dtype=points.x.dtype, device=points.x.device)
                self.tables[term] = self.tables[term].rekey(points.ids, ones) if term in self.tables else PointTable(points.ids, ones)
                self.points[term] = points

    def objective(self, compute_residuals: ResidualFunction, points: Mapping[str, Points], step: int) -> tuple[Tensor, dict[str, Tensor]]:
        """On a refresh step, one jet pass per term measures the norms, sets the new weights and gives
        the weighted loss with its gradient (a refresh costs one step, not a step plus a norm pass);
        otherwise the engine's residuals with the current weights."""
        if not self.refresh.due(step):
            return self.loss(compute_residuals(points), points, step)
        grads = [torch.zeros_like(p) for p in self.params]
        residuals, weights = {}, {}
        for name, term in self.problem.terms.items():
            residual, records, deltas = jet_pass(self.model, self.layers, term, points[name].x, self.problem.input_names)
            residuals[name] = residual
            scale = torch.full_like(residual, self.constants[name] / len(residual))
            if name in self.terms:
                weights[name] = self.reweight(name, points[name], gram_norms(records, deltas))
                scale = scale * weights[name]
            add_weighted_gradient(grads, records, deltas, scale)
        total, diagnostics = weighted_loss(residuals, self.constants, point_weights=weights)
        return with_gradient(total, self.params, grads), diagnostics

    def reweight(self, term: str, points: Points, norms: Tensor) -> Tensor:
        """Move the term's weights towards 1/norm (smoothed); returns them in the points' order."""
        table = self.tables[term]
        index = table.index(points.ids)
        fresh = inverse_norm_weights(norms, self.cfg.floor, self.cfg.max_weight)
        table.values[index] = self.cfg.smoothing * table.values[index] + (1.0 - self.cfg.smoothing) * fresh
        self.points[term] = points
        return table.values[index]

    def loss(self, residuals: Mapping[str, Tensor], points: Mapping[str, Points], step: int) -> tuple[Tensor, dict[str, Tensor]]:
        weights = {term: self.tables[term].lookup(points[term].ids) for term in self.terms}
        return weighted_loss(residuals, self.constants, point_weights=weights)

    def after_step(self, ascent: bool) -> None:
        self.refresh.adaptive = ascent

    def point_weights(self) -> dict[str, Tensor]:
        return {term: self.tables[term].lookup(p.ids) for term, p in self.points.items()}

    def state_dict(self) -> dict[str, Any]:
        return {"tables": {t: {"ids": tb.ids, "w": tb.values} for t, tb in self.tables.items()},
                "points": {t: {"x": p.x, "ids": p.ids} for t, p in self.points.items()}, "last_refresh": self.refresh.last}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.tables = {t: PointTable(s["ids"], s["w"]) for t, s in state["tables"].items()}
        self.points = {t: Points(p["x"], p["ids"]) for t, p in state["points"].items()}
        self.refresh.last = int(state["last_refresh"])
