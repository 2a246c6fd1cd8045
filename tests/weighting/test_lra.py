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
        ("paper_ema_old", 0.9 + 0.1 * 2 / 9, 0.9 + 0.1 * 2 / 2),
        ("authors", 0.9 + 0.1 * 2 / 9, 0.9 + 0.1 * 2 / 2),  # lam = 1 inside: the first step is paper_ema_old's
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
    with pytest.raises(ConfigError, match="weighting.variant='adam': not one of paper, paper_ema_old, mean, l2, authors"):
        parse_node("weighting", LRA.Config, {"variant": "adam"})
    with pytest.raises(ConfigError, match="variant='code' was renamed: .* use 'paper_ema_old' .* or 'authors'"):
        parse_node("weighting", LRA.Config, {"variant": "code"})
    with pytest.raises(ConfigError, match="weighting.reference='residual'"):
        LRA(parse_node("weighting", LRA.Config, {"reference": "residual"}), problem, model)


def iterate(variant: str, steps: int, **cfg: object) -> LRA:
    """`steps` refreshes of LRA at the fixed theta of the hand case (alpha 0.9, every step)."""
    problem, model = hand_case()
    lra = LRA(parse_node("weighting", LRA.Config, {"variant": variant, "alpha": 0.9, "update_every": 1, **cfg}), problem, model)
    for step in range(steps):
        lra.loss(hand_residuals(model), NO_POINTS, step=step)
    return lra


def test_authors_fixed_point_is_the_square_root_of_the_papers() -> None:
    """Wang et al.'s code measures grad(lam * L_i) with the current lam inside, so at fixed theta the
    average settles where lam = S / (lam M): lam = sqrt(S / M) = sqrt(2/9) and sqrt(2/2) here, where
    the paper's statistic settles at S / M = 2/9 and 1 (hand case: S = max|grad L_pde| = 2,
    M = mean|grad L_ic| = 9, mean|grad L_bc| = 2)."""
    authors, paper = iterate("authors", 400), iterate("paper_ema_old", 400)
    assert float(authors.lam["ic"]) == pytest.approx(math.sqrt(2 / 9), rel=1e-9)
    assert float(authors.lam["bc"]) == pytest.approx(1.0, rel=1e-9)
    assert float(paper.lam["ic"]) == pytest.approx(2 / 9, rel=1e-9)


def test_authors_statistics_skip_biases_and_average_per_layer() -> None:
    """Two layers, weights only: S is the max over both layers' weight gradients, M the mean of the
    two layers' mean |grad|; the bias (gradient 50 in the reference) counts for `paper_ema_old` only.
    L_pde = (w1_0^2 + b1_0^2 + w2_1^2) / 2, L_ic = w1_1^2, L_bc = w2_0^2 at w1 = (1, 2), b1_0 = 50,
    w2 = (3, 4): every gradient below is by hand."""

    class TwoLayers(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.first = nn.Linear(1, 2).double()
            self.second = nn.Linear(2, 1, bias=False).double()
            with torch.no_grad():
                self.first.weight.copy_(torch.tensor([[1.0], [2.0]]))
                self.first.bias.copy_(torch.tensor([50.0, 0.0]))
                self.second.weight.copy_(torch.tensor([[3.0, 4.0]]))

    model = TwoLayers()
    problem = Burgers(parse_node("problem", Burgers.Config, {}))
    w1, b1, w2 = model.first.weight[:, 0], model.first.bias, model.second.weight[0]
    residuals = {"pde": torch.stack([w1[0], b1[0], w2[1]]) * math.sqrt(3 / 2),
                 "ic": (w1[1]).reshape(1), "bc": (w2[0]).reshape(1)}
    # grad L_pde: first.weight (1, 0), first.bias (50, 0), second.weight (0, 4): max over weights 4, over all 50
    # grad L_ic: first.weight (0, 4), second.weight (0, 0): per-layer means 2, 0 -> 1; flat mean over 6 numbers 4/6
    # grad L_bc: first.weight (0, 0), second.weight (6, 0): per-layer means 0, 3 -> 1.5; flat mean 6/6
    authors = LRA(parse_node("weighting", LRA.Config, {"variant": "authors", "alpha": 0.0}), problem, model)
    authors.loss(residuals, NO_POINTS, step=0)
    assert float(authors.lam["ic"]) == pytest.approx(4 / 1.0, rel=1e-12)
    assert float(authors.lam["bc"]) == pytest.approx(4 / 1.5, rel=1e-12)
    paper = LRA(parse_node("weighting", LRA.Config, {"variant": "paper_ema_old", "alpha": 0.0}), problem, model)
    paper.loss(residuals, NO_POINTS, step=0)
    assert float(paper.lam["ic"]) == pytest.approx(50 / (4 / 6), rel=1e-12)
    assert float(paper.lam["bc"]) == pytest.approx(50 / 1.0, rel=1e-12)


def test_a_group_shares_one_weight_measured_on_the_sum_of_its_terms() -> None:
    """groups {boundary: [ic, bc]}: one lam from grad(L_ic + L_bc) = (18, 4), mean 11 (hand case), used
    for both terms and logged once."""
    lra = iterate("paper", 1, groups={"boundary": ["ic", "bc"]})
    assert float(lra.lam["boundary"]) == pytest.approx(0.1 + 0.9 * 2 / 11, rel=1e-12)
    assert set(lra.metrics()) == {"lra/boundary"}
    problem, model = hand_case()
    with pytest.raises(ConfigError, match=r"weighting.groups.boundary: 'pde' is not a weighted term of burgers \(ic, bc\)"):
        LRA(parse_node("weighting", LRA.Config, {"groups": {"boundary": ["pde", "bc"]}}), problem, model)
    with pytest.raises(ConfigError, match="'bc' is already in another group"):
        LRA(parse_node("weighting", LRA.Config, {"groups": {"a": ["bc"], "b": ["bc", "ic"]}}), problem, model)
