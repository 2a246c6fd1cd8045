"""The Burgers reference (Cole-Hopf): Basdevant et al. 1986's maximum slope, quadrature
convergence, symmetry, IC/BC, and a finite-difference PDE residual on a smooth region."""

from __future__ import annotations

import math

import numpy as np
from omegaconf import OmegaConf

from pinnrun.cli import config_dir
from pinnrun.config import parse_option
from pinnrun.problems import cache
from pinnrun.problems.burgers import cole_hopf

NU = 0.01 / math.pi


def test_basdevant_maximum_slope():
    """Basdevant et al. 1986 (Comput. Fluids 14(1), Table 1): max |u_x| = 152.00516 at x = 0,
    t = 1.6037 / pi."""
    t, h = 1.6037 / math.pi, 1e-6
    u = cole_hopf(np.array([-2 * h, -h, h, 2 * h]), np.full(4, t), NU, 4000)
    slope = (u[0] - 8 * u[1] + 8 * u[2] - u[3]) / (12 * h)
    assert abs(abs(slope) - 152.00516) <= 2e-5 * 152.00516


def test_quadrature_converges():
    rng = np.random.default_rng(0)
    x, t = rng.uniform(-1, 1, 400), rng.uniform(0, 1, 400)
    coarse, fine = cole_hopf(x, t, NU, 1000), cole_hopf(x, t, NU, 8000)
    assert np.abs(coarse - fine).max() <= 1e-12
    assert np.abs(cole_hopf(x, t, NU, 60) - fine).max() > 1e-9  # the check can fail when under-resolved


def test_odd_symmetry_and_initial_boundary_values():
    rng = np.random.default_rng(1)
    x, t = rng.uniform(-1, 1, 300), rng.uniform(0, 1, 300)
    np.testing.assert_allclose(cole_hopf(-x, t, NU, 1000), -cole_hopf(x, t, NU, 1000), atol=1e-13)
    np.testing.assert_allclose(cole_hopf(x, np.zeros_like(x), NU, 1000), -np.sin(np.pi * x), atol=1e-15)
    for edge in (-1.0, 1.0):
        assert np.abs(cole_hopf(np.full_like(t, edge), t, NU, 1000)).max() <= 1e-12


def test_finite_difference_residual_on_a_smooth_region():
    """u_t + u u_x - nu u_xx by 4th-order central differences away from the shock at x = 0."""
    h = 1e-3
    x0, t0 = np.meshgrid(np.linspace(-0.9, -0.3, 13), np.linspace(0.1, 0.9, 9))
    x0, t0 = x0.ravel(), t0.ravel()
    u = lambda dx, dt: cole_hopf(x0 + dx, t0 + dt, NU, 2000)  # noqa: E731
    u_x = (u(-2 * h, 0) - 8 * u(-h, 0) + 8 * u(h, 0) - u(2 * h, 0)) / (12 * h)
    u_xx = (-u(-2 * h, 0) + 16 * u(-h, 0) - 30 * u(0, 0) + 16 * u(h, 0) - u(2 * h, 0)) / (12 * h**2)
    u_t = (u(0, -2 * h) - 8 * u(0, -h) + 8 * u(0, h) - u(0, 2 * h)) / (12 * h)
    residual = u_t + u(0, 0) * u_x - NU * u_xx
    assert np.abs(residual).max() <= 1e-6 * np.abs(u_t).max()


def test_evaluation_grid():
    problem = parse_option("problem", OmegaConf.load(f"{config_dir()}/problem/burgers.yaml")).build()
    evaluation = problem.evaluation()
    assert evaluation.shape == (256, 100) and evaluation.u_ref.shape == (25600,)
    assert np.all(np.isfinite(evaluation.u_ref)) and np.abs(evaluation.u_ref).max() <= 1.0 + 1e-12


def test_reference_is_cached_per_inputs_and_settings(tmp_path, monkeypatch):
    """The evaluation reference comes from the disk cache on the second build, equals Cole-Hopf
    computed directly, and other inputs or another viscosity are not served from that entry."""
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path))
    problem = parse_option("problem", OmegaConf.load(f"{config_dir()}/problem/burgers.yaml")).build()
    inputs = problem.evaluation().inputs
    assert len(list(tmp_path.glob("burgers-*.npz"))) == 1
    direct = cole_hopf(inputs[:, 0], inputs[:, 1], problem.cfg.nu, problem.cfg.quadrature_nodes)
    assert np.array_equal(problem.solution(inputs), direct)
    problem.solution(inputs[:7])
    problem.cfg.nu = 0.02 / math.pi
    problem.solution(inputs[:7])
    assert len(list(tmp_path.glob("burgers-*.npz"))) == 3
