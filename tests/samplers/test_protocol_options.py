"""Sampler options for authors' protocols: folded coordinates (SA-PINN's t = |t|) and points picked
off a grid's nodes (SA-PINN's initial points and boundary times from Raissi's data grid)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pinnrun.config import ConfigError
from tests.samplers.test_generators import build


def test_folded_lhs_puts_two_points_in_every_stratum_of_twice_the_width(make_cfg) -> None:
    """LHS on t in [-1, 1] has one point per stratum of width 2/n; t = |t| folds stratum j onto
    stratum n - 1 - j, so every bin of width 2/n on [0, 1] holds exactly two points (n even). Plain
    LHS on [0, 1] has one per bin of width 1/n instead."""
    n = 200
    folded = build(make_cfg, "lhs", f"+sampler.n.pde={n}", "sampler.fold=[t]").initial()["pde"].x[:, 1].numpy()
    plain = build(make_cfg, "lhs", f"+sampler.n.pde={n}").initial()["pde"].x[:, 1].numpy()
    assert folded.min() >= 0.0 and folded.max() <= 1.0
    assert (np.histogram(folded, bins=n // 2, range=(0.0, 1.0))[0] == 2).all()
    assert (np.histogram(plain, bins=n, range=(0.0, 1.0))[0] == 1).all()
    assert not (np.histogram(folded, bins=n, range=(0.0, 1.0))[0] == 1).all()


def test_grid_pick_takes_distinct_nodes_of_the_data_grid(make_cfg) -> None:
    """As SA-PINN's Burgers code: 100 of the 256 x-nodes of linspace(-1, 1, 256) at t = 0, and 25
    boundary times per side off t = 0, 0.01, ..., 0.99 (the data stop at 0.99)."""
    points = build(make_cfg, "lhs", "+sampler.n.ic=100", "+sampler.n.bc=50",
                   "+sampler.grid_pick.ic={nodes: [256]}", "+sampler.grid_pick.bc={nodes: [100], last: [0.99]}").initial()
    ic, bc = points["ic"].x.numpy(), points["bc"].x.numpy()
    x_nodes, t_nodes = np.linspace(-1.0, 1.0, 256), np.linspace(0.0, 0.99, 100)
    assert len(ic) == 100 and len(np.unique(ic[:, 0])) == 100 and (ic[:, 1] == 0).all()
    assert np.abs(ic[:, 0, None] - x_nodes[None, :]).min(axis=1).max() < 1e-12
    for side in (-1.0, 1.0):
        times = bc[bc[:, 0] == side, 1]
        assert len(times) == 25 and len(np.unique(times)) == 25
        assert np.abs(times[:, None] - t_nodes[None, :]).min(axis=1).max() < 1e-12
    assert bc[:, 1].max() <= 0.99 + 1e-12


def test_grid_pick_and_fold_errors_name_the_bad_value(make_cfg) -> None:
    with pytest.raises(ConfigError, match="sampler.grid_pick.ic: 300 points asked of a grid of 256 nodes"):
        build(make_cfg, "lhs", "+sampler.n.ic=300", "+sampler.grid_pick.ic={nodes: [256]}")  # refused when built
    with pytest.raises(ConfigError, match="sampler.grid_pick.source: unknown term; burgers has pde, ic, bc"):
        build(make_cfg, "lhs", "+sampler.grid_pick.source={nodes: [8]}")
    with pytest.raises(ConfigError, match=r"sampler.fold: 'y' is not an input of burgers \(x, t\)"):
        build(make_cfg, "lhs", "sampler.fold=[y]")
    with pytest.raises(ConfigError, match=r"sampler.grid_pick.bc.nodes=\[10, 10\]: the term's boxes have 1 free coordinate"):
        build(make_cfg, "lhs", "+sampler.grid_pick.bc={nodes: [10, 10]}")
