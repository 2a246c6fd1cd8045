"""Causal training (Wang, Sankaran & Perdikaris 2024, "Respecting causality for training
physics-informed neural networks", Comput. Methods Appl. Mech. Eng. 421, 116813, eq. 3.6-3.8):
the PDE points are binned into M time chunks, and chunk k counts only once every earlier chunk's
residual is small,

    L_r = (1/M) sum_k w_k L_r(k),    w_k = exp(-eps sum_{l<k} L_r(l)),

L_r(k) the mean squared residual of chunk k; the w_k are computed from the current residuals
without gradient (a stop-gradient in the paper) at every step, in every phase (they are part of the
loss, not trained weights). Defaults are jaxpi's Burgers example: M = 32, eps = 1. Empty chunks
(too few points) are left out of the mean. As per-point weights on r_j^2 this is
w_k(j) N / (M n_k(j)), n_k the chunk's point count: the weight map shows the front of what the
network may already fit moving forward in time.

It composes with a term-level scheme, as jaxpi runs causal training under grad-norm or NTK term
weights: `weighting.term_scheme` names a conf/weighting option whose term weights are computed
from the causal PDE loss and the other terms' mean squares (`lra`, `gradnorm_terms`; `uniform`
for none), `weighting.term_settings` overrides its keys. Refused on a problem without a time input.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

import torch
from omegaconf import OmegaConf
from torch import Tensor, nn

from pinnrun import plots
from pinnrun.config import ConfigError, Option, parse_option, require_positive
from pinnrun.problems.base import Problem
from pinnrun.samplers.base import Points
from pinnrun.weighting.base import Weighting, WeightingConfig, weight_summaries, weighted_loss


@dataclass
class CausalConfig(WeightingConfig):
    chunks: int = 32  # M: time chunks of the PDE points
    eps: float = 1.0  # causality strength: w_k = exp(-eps * cumulative earlier chunk loss)
    term: str = "pde"  # the residual term binned in time
    time_input: str = "t"
    term_scheme: str = "uniform"  # term weights on top: uniform | lra | gradnorm_terms (a conf/weighting option)
    term_settings: Dict[str, Any] = field(default_factory=dict)  # overrides of that option's keys

    def validate(self, prefix: str) -> None:
        super().validate(prefix)
        require_positive(f"{prefix}.chunks", self.chunks)
        require_positive(f"{prefix}.eps", self.eps)
        term_option(self, prefix)


def term_option(cfg: CausalConfig, prefix: str = "weighting") -> Optional[Option]:
    """The validated term-level scheme named by `term_scheme` (None for uniform), or ConfigError."""
    from pinnrun.cli import config_dir

    if cfg.term_scheme == "uniform":
        return None
    path = Path(config_dir()) / "weighting" / f"{cfg.term_scheme}.yaml"
    composable = sorted(p.stem for p in path.parent.glob("*.yaml") if composes(p))
    if not path.is_file() or not composes(path):
        raise ConfigError(f"{prefix}.term_scheme={cfg.term_scheme!r}: not a term-level scheme that composes; "
                          f"one of uniform, {', '.join(composable)}")
    node = OmegaConf.merge(OmegaConf.load(path), cfg.term_settings)
    return parse_option(f"{prefix}.term_settings", node)


def composes(path: Path) -> bool:
    """Whether a conf/weighting option is a scheme whose term weights need only term losses."""
    from pinnrun.config import target_class

    node = OmegaConf.load(path)
    try:
        return bool(target_class("weighting", node).composes_terms)
    except ConfigError:
        return False


def chunk_weights(chunk_losses: Tensor, eps: float) -> Tensor:
    """w_k = exp(-eps sum_{l<k} L(l)): 1 for the first chunk (eq. 3.7)."""
    earlier = torch.cumsum(chunk_losses, dim=0) - chunk_losses
    return torch.exp(-eps * earlier)


class Causal(Weighting):
    """Causal weights over time chunks of the PDE term, optionally under a term-level scheme."""

    Config = CausalConfig

    def __init__(self, cfg: CausalConfig, problem: Problem, model: nn.Module):
        super().__init__(cfg, problem, model)
        if cfg.time_input not in problem.input_names:
            raise ConfigError(f"weighting=causal: problem {problem.name} has no time input {cfg.time_input!r} "
                              f"(inputs: {', '.join(problem.input_names)}); set weighting.time_input or use another scheme")
        if cfg.term not in problem.terms:
            raise ConfigError(f"weighting.term={cfg.term!r}: unknown term; {problem.name} has {', '.join(problem.terms)}")
        self.axis = problem.input_names.index(cfg.time_input)
        self.span = problem.bounds[self.axis]
        option = term_option(cfg)
        self.inner: Optional[Weighting] = option.build(problem, model) if option else None
        self.last: dict[str, Tensor] = {}  # the latest step's chunk weights, chunk losses and per-point weights

    def chunk_index(self, x: Tensor) -> Tensor:
        """Each point's time chunk, 0 .. M-1, from its time coordinate over the domain's time span."""
        low, high = self.span
        relative = (x[:, self.axis] - low) / (high - low)
        return (relative * self.cfg.chunks).floor().clamp(0, self.cfg.chunks - 1).long()

    def causal_weights(self, r: Tensor, x: Tensor) -> Tensor:
        """Per-point weights p_j with mean_j p_j r_j^2 = (1/M') sum_k w_k L(k) over the M' non-empty chunks."""
        chunk = self.chunk_index(x)
        counts = torch.bincount(chunk, minlength=self.cfg.chunks).to(r.dtype)
        sums = torch.zeros(self.cfg.chunks, dtype=r.dtype, device=r.device).index_add_(0, chunk, r.detach().square())
        filled = counts > 0
        losses = torch.where(filled, sums / counts.clamp_min(1), torch.zeros_like(sums))
        w = chunk_weights(losses, self.cfg.eps)
        self.last = {"w": w, "loss": losses, "filled": filled}
        per_chunk = torch.where(filled, w * len(r) / (filled.sum() * counts.clamp_min(1)), torch.zeros_like(w))
        self.last["p"] = per_chunk[chunk]
        return self.last["p"]

    def loss(self, residuals: Mapping[str, Tensor], points: Mapping[str, Points], step: int) -> tuple[Tensor, dict[str, Tensor]]:
        p = self.causal_weights(residuals[self.cfg.term], points[self.cfg.term].x)
        lam = {}
        if self.inner is not None:
            losses = {t: ((p * r.square()) if t == self.cfg.term else r.square()).mean() for t, r in residuals.items()}
            lam = self.inner.term_weights(losses, step)
        return weighted_loss(residuals, self.constants, point_weights={self.cfg.term: p}, term_weights=lam)

    def after_step(self, ascent: bool) -> None:
        if self.inner is not None:
            self.inner.after_step(ascent)

    def point_weights(self) -> dict[str, Tensor]:
        return {self.cfg.term: self.last["p"]} if self.last else {}

    def metrics(self) -> dict[str, Tensor]:
        inner = self.inner.metrics() if self.inner is not None else {}
        if not self.last:
            return inner
        w = self.last["w"][self.last["filled"]]
        return {**inner, "causal/w_min": w.min(), "causal/w_last": w[-1], **weight_summaries(self.point_weights())}

    def artifacts(self, stem: Path) -> list[Path]:
        """The chunk weights and chunk losses as a figure, beside the per-point weight artifacts."""
        if not self.last:
            return []
        path = Path(f"{stem}_causal.png")
        filled = self.last["filled"].cpu().numpy()
        plots.plot_causal_chunks(self.last["w"].double().cpu().numpy()[filled], self.last["loss"].double().cpu().numpy()[filled],
                                 self.span, self.cfg.chunks, filled, path)
        return [path]

    def state_dict(self) -> dict[str, Any]:
        return {"inner": self.inner.state_dict() if self.inner is not None else {}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.inner is not None:
            self.inner.load_state_dict(state["inner"])
