"""Residual-based attention: the multiplier update over three steps by hand, keyed by point id."""

from __future__ import annotations

import pytest
import torch

from pinnrun.config import ConfigError, parse_node
from pinnrun.samplers.base import Points
from pinnrun.weighting.rba import RBA
from tests.weighting.test_gradnorm import burgers, small_mlp


def scheme(**cfg) -> RBA:
    problem = burgers()
    return RBA(parse_node("weighting", RBA.Config, cfg), problem, small_mlp(problem))


def pde_points(ids: list[int]) -> dict[str, Points]:
    return {"pde": Points(torch.zeros(len(ids), 2, dtype=torch.float64), torch.tensor(ids))}


def others() -> dict[str, torch.Tensor]:
    return {"ic": torch.tensor([0.5], dtype=torch.float64), "bc": torch.tensor([0.0], dtype=torch.float64)}


def test_three_updates_by_hand() -> None:
    rba = scheme(gamma=0.9, eta=0.1)
    points = pde_points([10, 11, 12])
    rba.on_points(points)
    steps = [[1.0, -2.0, 0.5], [2.0, 1.0, -1.0], [0.0, -4.0, 1.0]]  # |r| / max|r|: [.5 1 .25], [1 .5 .5], [0 1 .25]
    lam = [0.0, 0.0, 0.0]
    for r in steps:
        scaled = [abs(v) / max(abs(u) for u in r) for v in r]
        lam = [0.9 * lam_j + 0.1 * s for lam_j, s in zip(lam, scaled)]
        loss, diagnostics = rba.loss({"pde": torch.tensor(r, dtype=torch.float64), **others()}, points, step=0)
        rba.after_step(ascent=True)
    # by hand: [.05 .1 .025] -> [.145 .14 .0725] -> [.1305 .226 .09025]
    assert lam == pytest.approx([0.1305, 0.226, 0.09025])
    assert rba.tables["pde"].values.tolist() == pytest.approx(lam, rel=1e-12)
    pde = sum((lam_j * r_j) ** 2 for lam_j, r_j in zip(lam, steps[-1])) / 3
    assert float(diagnostics["loss/pde"]) == pytest.approx(pde, rel=1e-12)
    assert float(loss.detach()) == pytest.approx(pde + 0.25, rel=1e-12)  # ic, bc carry no multipliers
    assert rba.point_weights()["pde"].tolist() == pytest.approx([v * v for v in lam])


def test_frozen_in_lbfgs_keyed_by_id_and_new_points_start_at_their_fixed_point() -> None:
    rba = scheme()
    points = pde_points([0, 1])
    rba.on_points(points)
    rba.loss({"pde": torch.tensor([1.0, 2.0], dtype=torch.float64), **others()}, points, step=0)
    assert rba.tables["pde"].values.tolist() == pytest.approx([0.005, 0.01])
    rba.after_step(ascent=False)
    rba.loss({"pde": torch.tensor([5.0, 1.0], dtype=torch.float64), **others()}, points, step=1)
    assert rba.tables["pde"].values.tolist() == pytest.approx([0.005, 0.01])
    rba.after_step(ascent=True)
    resampled = pde_points([1, 7])  # id 1 kept, id 7 new
    rba.on_points(resampled)
    rba.loss({"pde": torch.tensor([1.0, 4.0], dtype=torch.float64), **others()}, resampled, step=2)
    assert rba.tables["pde"].lookup(torch.tensor([1])).item() == pytest.approx(0.999 * 0.01 + 0.01 * 0.25)
    assert rba.tables["pde"].lookup(torch.tensor([7])).item() == pytest.approx(0.01 / (1 - 0.999))
    restored = scheme()
    restored.load_state_dict(rba.state_dict())
    assert torch.equal(restored.tables["pde"].values, rba.tables["pde"].values) and restored.started


def test_bad_settings_are_one_line_errors() -> None:
    with pytest.raises(ConfigError, match=r"weighting.gamma=1.0: must be in \[0, 1\)"):
        parse_node("weighting", RBA.Config, {"gamma": 1.0})
    with pytest.raises(ConfigError, match="weighting.terms: unknown term 'data'"):
        scheme(terms=["data"])
