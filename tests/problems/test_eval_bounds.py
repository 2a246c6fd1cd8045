"""Evaluation grids of the papers: `eval_bounds` sets each input's first and last node."""

from __future__ import annotations

import numpy as np
import pytest

from pinnrun.config import ConfigError, parse_node
from pinnrun.problems.allen_cahn import AllenCahn
from pinnrun.problems.burgers import Burgers, cole_hopf


def test_burgers_on_raissis_data_grid_stops_at_t_099() -> None:
    """burgers_shock.mat: 256 x-nodes on [-1, 1] by t = 0, 0.01, ..., 0.99; the reference there is
    Cole-Hopf at exactly those nodes."""
    problem = Burgers(parse_node("problem", Burgers.Config, {"eval_grid": [256, 100], "eval_bounds": [[-1.0, 1.0], [0.0, 0.99]]}))
    evaluation = problem.evaluation()
    t = np.unique(evaluation.inputs[:, 1])
    np.testing.assert_allclose(t, np.arange(100) * 0.01, atol=1e-15)
    np.testing.assert_allclose(evaluation.u_ref, cole_hopf(evaluation.inputs[:, 0], evaluation.inputs[:, 1], problem.cfg.nu, 1000))


def test_allen_cahn_on_the_ac_mat_grid_excludes_x_1() -> None:
    """AC.mat: x = -1 .. 1 - 2/512 (512 nodes) by t = 0 .. 1 (201): the x-nodes are the Fourier grid
    itself, so the reference there is the spectral solution without interpolation, and u(x, 0)
    is the initial condition x^2 cos(pi x)."""
    problem = AllenCahn(parse_node("problem", AllenCahn.Config, {"eval_grid": [512, 201], "eval_bounds": [[-1.0, 1.0 - 2 / 512], [0.0, 1.0]]}))
    evaluation = problem.evaluation()
    x = np.unique(evaluation.inputs[:, 0])
    np.testing.assert_allclose(x, -1.0 + 2.0 * np.arange(512) / 512, atol=1e-15)
    at_zero = evaluation.inputs[:, 1] == 0.0
    xs = evaluation.inputs[at_zero, 0]
    np.testing.assert_allclose(evaluation.u_ref[at_zero], xs**2 * np.cos(np.pi * xs), atol=1e-12)


def test_eval_bounds_outside_the_domain_or_reversed_are_config_errors() -> None:
    with pytest.raises(ConfigError, match=r"problem.eval_bounds=\[\[-1.0, 1.0\], \[0.0, 2.0\]\]: needs one \[first, last\] per input"):
        Burgers(parse_node("problem", Burgers.Config, {"eval_bounds": [[-1.0, 1.0], [0.0, 2.0]]}))
    with pytest.raises(ConfigError, match="each input needs .first, last. with first <= last"):
        parse_node("problem", Burgers.Config, {"eval_bounds": [[1.0, -1.0], [0.0, 1.0]]})
