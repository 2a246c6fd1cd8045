"""Learning-rate annealing: one update of each variant against a hand computation."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from pinnrun.config import ConfigError, parse_node
from pinnrun.problems.burgers import Burgers
from pinnrun.samplers.base import Points
from pinnrun.weighting.lra import LRA


def hand_case() -> tuple[Burgers, nn.Linear]:
    """theta = (1, 2). r_pde = (t1, t2): grad L_pde = (t1, t2) = (1, 2), max 2, mean 1.5, L2 sqrt 5.
    r_ic = (3 t1): grad L_ic = (18, 0), mean 9, L2 18. r_bc = (t2): grad L_bc = (0, 4), mean 2, L2 4."""
    model = nn.Linear(2, 1, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, 2.0]]))
    return Burgers(parse_node("problem", Burgers.Config, {})), model


def hand_residuals(model: nn.Linear) -> dict[str, torch.Tensor]:
    t1, t2 = model.weight[0]
    return {"pde": torch.stack([t1, t2]), "ic": (3 * t1).reshape(1), "bc": t2.reshape(1)}


NO_POINTS: dict[str, Points] = {}


@pytest.mark.parametrize(
    "variant, ic, bc",
    [
        ("paper", 0.1 + 0.9 * 2 / 9, 0.1 + 0.9 * 2 / 2),
        ("code", 0.9 + 0.1 * 2 / 9, 0.9 + 0.1 * 2 / 2),
        ("mean", 0.1 + 0.9 * 1.5 / 9, 0.1 + 0.9 * 1.5 / 2),
        ("l2", 0.1 + 0.9 * math.sqrt(5) / 18, 0.1 + 0.9 * math.sqrt(5) / 4),
    ],
)
def test_one_update_per_variant(variant: str, ic: float, bc: float) -> None:
    problem, model = hand_case()
    lra = LRA(parse_node("weighting", LRA.Config, {"variant": variant, "alpha": 0.9}), problem, model)
    loss, diagnostics = lra.loss(hand_residuals(model), NO_POINTS, step=0)
    assert float(lra.lam["ic"]) == pytest.approx(ic, rel=1e-12)
    assert float(lra.lam["bc"]) == pytest.approx(bc, rel=1e-12)
    assert float(loss.detach()) == pytest.approx((1 + 4) / 2 + ic * 9 + bc * 4, rel=1e-12)
    assert set(lra.metrics()) == {"lra/ic", "lra/bc"}


def test_update_cadence_and_frozen_in_lbfgs() -> None:
    problem, model = hand_case()
    lra = LRA(parse_node("weighting", LRA.Config, {"update_every": 10}), problem, model)
    lra.loss(hand_residuals(model), NO_POINTS, step=0)
    first = float(lra.lam["ic"])
    lra.loss(hand_residuals(model), NO_POINTS, step=5)
    assert float(lra.lam["ic"]) == first
    lra.loss(hand_residuals(model), NO_POINTS, step=10)
    second = float(lra.lam["ic"])
    assert second == pytest.approx(0.1 * first + 0.9 * 2 / 9)
    lra.after_step(ascent=False)
    lra.loss(hand_residuals(model), NO_POINTS, step=20)
    assert float(lra.lam["ic"]) == second
    restored = LRA(parse_node("weighting", LRA.Config, {"update_every": 10}), problem, model)
    restored.load_state_dict(lra.state_dict())
    assert float(restored.lam["ic"]) == second and restored.refresh.last == 10


def test_unknown_variant_and_reference_are_config_errors() -> None:
    problem, model = hand_case()
    with pytest.raises(ConfigError, match="weighting.variant='adam': not one of paper, code, mean, l2"):
        parse_node("weighting", LRA.Config, {"variant": "adam"})
    with pytest.raises(ConfigError, match="weighting.reference='residual'"):
        LRA(parse_node("weighting", LRA.Config, {"reference": "residual"}), problem, model)
