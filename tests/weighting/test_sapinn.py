"""SA-PINN: one ascent step against a hand computation, id keying, freezing, state round trip and
the refusal of a resampling sampler."""

from __future__ import annotations

import math

import io

import pytest
import torch
from torch import nn

from pinnrun.config import ConfigError, parse_node
from pinnrun.problems.burgers import Burgers
from pinnrun.samplers.base import Points, SamplerConfig
from pinnrun.weighting.sapinn import SelfAdaptive

LR = 0.01


def make(**cfg) -> SelfAdaptive:
    problem = Burgers(parse_node("problem", Burgers.Config, {}))
    model = nn.Linear(2, 1).double()
    options = {"terms": ["pde"], "lr": LR, "default_init": {"kind": "constant", "scale": 0.5}, **cfg}
    return SelfAdaptive(parse_node("weighting", SelfAdaptive.Config, options), problem, model)


def term_points(ids: list[int]) -> dict[str, Points]:
    x = torch.stack([torch.linspace(-1, 1, len(ids)), torch.linspace(0, 1, len(ids))], dim=1).double()
    return {"pde": Points(x, torch.tensor(ids)), "ic": Points(x[:1], torch.tensor([100])), "bc": Points(x[:1], torch.tensor([200]))}


def residuals_for(values: list[float]) -> dict[str, torch.Tensor]:
    one = torch.ones(1, dtype=torch.float64)
    return {"pde": torch.tensor(values, dtype=torch.float64), "ic": one, "bc": one}


def test_one_ascent_step_by_hand() -> None:
    """lam = 0.5 at three points, r = (2, 1, 0), mask lam^2: L_pde = mean(0.25 r^2) = 5/12,
    dL/dlam_j = 2 lam_j r_j^2 / 3 = (4/3, 1/3, 0); Adam's first step with maximize moves each lam by
    lr * g / (|g| + eps) = +lr where g > 0 and not at all where g = 0."""
    sa = make()
    pts = term_points([7, 8, 9])
    sa.on_points(pts)
    loss, diagnostics = sa.loss(residuals_for([2.0, 1.0, 0.0]), pts, step=0)
    assert float(diagnostics["loss/pde"]) == pytest.approx(5 / 12)
    loss.backward()
    lam = sa.tables["pde"].values
    assert torch.allclose(lam.grad, torch.tensor([4 / 3, 1 / 3, 0.0], dtype=torch.float64))
    sa.after_step(ascent=True)
    assert torch.allclose(lam.detach(), torch.tensor([0.5 + LR, 0.5 + LR, 0.5], dtype=torch.float64), atol=1e-9)
    assert lam.grad is None


def test_eps_above_the_gradients_makes_the_step_proportional_to_them() -> None:
    """Same case with eps = 10: the first Adam step lr * g / (|g| + eps) is lr * (4/3) / (34/3) and
    lr * (1/3) / (31/3), so the large residual's weight moves 3.6x as far (gradient ratio 4), where
    eps = 1e-8 moves both by lr: eps decides whether the residual's size sets the growth."""
    moved = first_ascent_step(eps=10.0)
    assert torch.allclose(moved, torch.tensor([LR * 4 / 34, LR / 31, 0.0], dtype=torch.float64), atol=1e-12)


def first_ascent_step(**settings: object) -> torch.Tensor:
    """How far the first ascent step moves the weights (all 0.5) of residuals (2, 1, 0)."""
    sa = make(**settings)
    pts = term_points([7, 8, 9])
    sa.on_points(pts)
    loss, _ = sa.loss(residuals_for([2.0, 1.0, 0.0]), pts, step=0)
    loss.backward()
    sa.after_step(ascent=True)
    return sa.tables["pde"].values.detach() - 0.5


def test_keras_eps_mode_puts_eps_on_the_uncorrected_root() -> None:
    """Same case, eps = 1: Keras Adam's first ascent step is lr sqrt(1 - b2) g / (sqrt(1 - b2) |g| + eps)
    (b1's correction cancels): with sqrt(1 - 0.999) = 0.0316 it moves lr * 0.0422 / 1.0422 and
    lr * 0.0105 / 1.0105, where torch's rule with eps = 1 moves lr * (4/3) / (7/3) and lr * (1/3) / (4/3)."""
    root = math.sqrt(1 - 0.999)
    for mode, expected in (("keras", [root * 4 / 3 / (root * 4 / 3 + 1), root / 3 / (root / 3 + 1)]),
                           ("torch", [4 / 7, 1 / 4])):
        moved = first_ascent_step(eps=1.0, eps_mode=mode)
        assert torch.allclose(moved, LR * torch.tensor([*expected, 0.0], dtype=torch.float64), atol=1e-12)


def test_logistic_mask_gradient() -> None:
    """m = c / (1 + exp(-lam)): dL/dlam = c s(lam)(1 - s(lam)) r^2 / N."""
    sa = make(mask="logistic", c=3.0)
    pts = term_points([1, 2])
    sa.on_points(pts)
    loss, _ = sa.loss(residuals_for([1.0, 2.0]), pts, step=0)
    loss.backward()
    s = torch.sigmoid(torch.tensor(0.5, dtype=torch.float64))
    expected = 3.0 * s * (1 - s) * torch.tensor([1.0, 4.0], dtype=torch.float64) / 2
    assert torch.allclose(sa.tables["pde"].values.grad, expected)


def test_weights_follow_ids_through_a_shuffle() -> None:
    sa = make(default_init={"kind": "uniform", "scale": 1.0})
    pts = term_points([30, 10, 20, 40])
    sa.on_points(pts)
    before = dict(zip(pts["pde"].ids.tolist(), sa.point_weights()["pde"].tolist()))
    order = torch.tensor([2, 0, 3, 1])
    shuffled = {**pts, "pde": Points(pts["pde"].x[order], pts["pde"].ids[order])}
    r = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64)
    _, diagnostics = sa.loss({**residuals_for([0.0]), "pde": r}, shuffled, step=0)
    expected = torch.tensor([before[i] for i in shuffled["pde"].ids.tolist()], dtype=torch.float64)
    assert float(diagnostics["loss/pde"]) == pytest.approx(float((expected * r.square()).mean()))
    sa.on_points(shuffled)
    assert dict(zip(shuffled["pde"].ids.tolist(), sa.point_weights()["pde"].tolist())) == before


def through_a_file(state: dict) -> dict:
    """Save and load as checkpoints do (weights_only=True)."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def test_frozen_outside_adaptive_phases_and_state_round_trip() -> None:
    sa = make()
    pts = term_points([1, 2, 3])
    sa.on_points(pts)
    for _ in range(3):
        loss, _ = sa.loss(residuals_for([1.0, 2.0, 3.0]), pts, step=0)
        loss.backward()
        sa.after_step(ascent=True)
    trained = sa.tables["pde"].values.detach().clone()
    restored = make()
    restored.load_state_dict(through_a_file(sa.state_dict()))
    loss, _ = sa.loss(residuals_for([1.0, 2.0, 3.0]), pts, step=0)
    loss.backward()
    sa.after_step(ascent=False)
    assert torch.equal(sa.tables["pde"].values.detach(), trained)
    assert not sa.tables["pde"].values.requires_grad
    for scheme in (sa, restored):
        scheme.tables["pde"].values.requires_grad_(True)
        loss, _ = scheme.loss(residuals_for([1.0, 2.0, 3.0]), pts, step=0)
        loss.backward()
        scheme.after_step(ascent=True)
    assert torch.equal(restored.tables["pde"].values.detach(), sa.tables["pde"].values.detach())


def test_refuses_a_sampler_that_redraws_a_self_adaptive_term() -> None:
    cfg = parse_node("weighting", SelfAdaptive.Config, {})
    with pytest.raises(ConfigError, match="sampler.resample_every=100: weighting=sapinn .* use weighting=sapinn_gp"):
        SelfAdaptive.reconcile_sampler(cfg, SamplerConfig(resample_every=100))
    only_ic = parse_node("weighting", SelfAdaptive.Config, {"terms": ["ic"]})
    SelfAdaptive.reconcile_sampler(only_ic, SamplerConfig(resample_every=100, resample_terms=["pde"]))


def test_config_errors_name_the_allowed_values() -> None:
    with pytest.raises(ConfigError, match="weighting.mask='cubic': not one of polynomial, logistic"):
        parse_node("weighting", SelfAdaptive.Config, {"mask": "cubic"})
    with pytest.raises(ConfigError, match="weighting.default_init.kind='normal': not one of uniform, constant"):
        parse_node("weighting", SelfAdaptive.Config, {"default_init": {"kind": "normal"}})
    with pytest.raises(ConfigError, match="weighting.init.bc: not a self-adaptive term"):
        make(init={"bc": {"kind": "constant", "scale": 1.0}})
