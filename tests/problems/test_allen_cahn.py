"""The Allen-Cahn reference: spectral convergence in modes and time step, a finite-difference
residual check independent of the spectral derivatives, the maximum principle, the periodic
terms, and the disk cache's handling of corrupt or mismatched entries.

Measured (float64): dt vs dt/2 agree to ~4e-12; 512 vs 1024 modes agree to ~1e-5 relative over
t in [0, 1], limited by the initial condition itself: u_x(-1, 0) = 2 but u_x(1, 0) = -2, a kink of
the periodic extension that gives second-order convergence in the mode count and decays like
e^{-10 t}; by t = 1, 1024 vs 2048 modes agree to ~2e-10.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from pinnrun.cli import config_dir
from pinnrun.config import ConfigError, parse_option
from pinnrun.derivatives import autograd_fields
from pinnrun.problems import cache
from pinnrun.problems.allen_cahn import fourier_interpolate, solve_allen_cahn

D, R = 1.0e-4, 5.0
TIMES = np.linspace(0.0, 1.0, 11)


def relative(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def make_problem(**overrides):
    node = OmegaConf.merge(OmegaConf.load(f"{config_dir()}/problem/allen_cahn.yaml"), overrides)
    return parse_option("problem", node).build()


@pytest.fixture(scope="module")
def solutions() -> dict[int, np.ndarray]:
    """u at TIMES on each grid, dt = 1e-3 (time error ~1e-12, below every check here)."""
    return {modes: solve_allen_cahn(D, R, modes, TIMES, 1e-3) for modes in (512, 1024, 2048)}


def on_512(u: np.ndarray) -> np.ndarray:
    return u[:, :: u.shape[1] // 512]


def test_time_step_convergence():
    coarse = solve_allen_cahn(D, R, 512, TIMES, 1e-3)
    fine = solve_allen_cahn(D, R, 512, TIMES, 5e-4)
    assert relative(coarse, fine) <= 1e-9


def test_mode_convergence(solutions):
    u512, u1024, u2048 = (on_512(solutions[m]) for m in (512, 1024, 2048))
    assert relative(u512, u1024) <= 3e-5
    assert relative(u512, u2048) >= 3 * relative(u1024, u2048)  # at least second order in the mode count
    assert relative(u1024[-1], u2048[-1]) <= 1e-8  # once the initial kink has decayed


def test_fourier_interpolation_is_exact_for_band_limited_data():
    grid = -1 + 2 * np.arange(64) / 64
    field = lambda x: np.cos(np.pi * x) + 0.3 * np.sin(5 * np.pi * x) + 0.1 * np.cos(32 * np.pi * x)  # noqa: E731
    x = np.linspace(-1, 1, 37)
    np.testing.assert_allclose(fourier_interpolate(field(grid)[None, :], x)[0], field(x), atol=1e-13)


def test_finite_difference_residual_away_from_fronts():
    """u_t - D u_xx + R (u^3 - u) by 4th-order central differences (dx = 2/512, dt_out = 2e-3) on
    the spectral solution, for t >= 0.05 away from the fronts (slopes ~ sqrt(R / 2D) ~ 158) and
    from the layer the initial kink leaves at x = +-1. Measured: 2.5e-7 (plateaus, |u_xx| < 1)
    and 4.3e-5 (|u_xx| < 10), relative to max |R (u^3 - u)|."""
    times = np.linspace(0.0, 1.0, 501)
    u = solve_allen_cahn(D, R, 512, times, 1e-3)  # (nt, nx)
    dx, dt = 2.0 / 512, times[1]
    roll = lambda s: np.roll(u, s, axis=1)  # noqa: E731
    u_x = (-roll(-2) + 8 * roll(-1) - 8 * roll(1) + roll(2)) / (12 * dx)
    u_xx = (-roll(-2) + 16 * roll(-1) - 30 * u + 16 * roll(1) - roll(2)) / (12 * dx**2)
    u_t = (-u[4:] + 8 * u[3:-1] - 8 * u[1:-3] + u[:-4]) / (12 * dt)
    inner = slice(2, -2)
    residual = np.abs(u_t - D * u_xx[inner] + R * (u[inner] ** 3 - u[inner]))
    scale = np.abs(R * (u[inner] ** 3 - u[inner])).max()
    later = times[inner, None] >= 0.05
    for curvature, bound, share in ((1.0, 1e-6, 0.15), (10.0, 1e-4, 0.4)):
        smooth = later & (np.abs(u_x[inner]) < 1.0) & (np.abs(u_xx[inner]) < curvature)
        assert smooth.mean() > share
        assert residual[smooth].max() <= bound * scale, curvature
    assert residual.max() > 1e-3 * scale  # the masks matter: in the layers these differences are poor


def test_solution_stays_in_unit_interval(solutions):
    for u in solutions.values():
        assert np.all(np.abs(u) <= 1.0 + 1e-12)
    assert solutions[512][-1].max() > 0.99 and solutions[512][-1].min() < -0.99  # plateaus at +-1 form


def test_periodic_terms_compare_each_point_with_its_image():
    problem = make_problem()
    periodic = lambda x: torch.cos(np.pi * x[:, :1]) * (1 + x[:, 1:])  # noqa: E731
    skewed = lambda x: periodic(x) + 0.1 * (x[:, :1] ** 3 + x[:, :1] ** 2)  # noqa: E731
    t = torch.rand(50, 1, dtype=torch.float64)
    x = torch.cat([torch.full_like(t, -1.0), t], dim=1)
    for name in ("bc", "bc_x"):
        term = problem.terms[name]
        for model, expect_zero in ((periodic, True), (skewed, False)):
            fields = autograd_fields(model, term.field_inputs(x), problem.input_names, term.derivatives)
            r = term.residual(fields)
            assert r.shape == (50,)
            assert (r.abs().max().item() <= 1e-12) == expect_zero, name


def test_evaluation_uses_and_validates_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path))
    problem = make_problem(eval_grid=[64, 11], modes=64, dt=1e-2)
    first = problem.evaluation()
    files = list(tmp_path.glob("allen_cahn-*.npz"))
    assert len(files) == 1
    stamp = files[0].stat().st_mtime_ns
    np.testing.assert_array_equal(problem.evaluation().u_ref, first.u_ref)
    assert files[0].stat().st_mtime_ns == stamp  # read, not recomputed

    other = make_problem(eval_grid=[64, 11], modes=64, dt=1e-2, diffusion=2e-4)
    assert relative(other.evaluation().u_ref, first.u_ref) > 1e-6  # another parameter set, another entry
    assert len(list(tmp_path.glob("allen_cahn-*.npz"))) == 2


def test_corrupt_or_mismatched_cache_entry_is_recomputed(tmp_path, monkeypatch):
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path))
    key = {"what": "test", "modes": 8}
    calls = []

    def compute() -> dict[str, np.ndarray]:
        calls.append(1)
        return {"u": np.arange(8.0)}

    path = cache.entry_path("demo", key)
    assert cache.cached("demo", key, compute)["u"].sum() == 28.0 and len(calls) == 1
    assert cache.cached("demo", key, compute)["u"].sum() == 28.0 and len(calls) == 1

    good = path.read_bytes()
    damaged = [good[: len(good) // 2], b"not a zip file"]
    for content in damaged:
        path.write_bytes(content)
        with pytest.warns(UserWarning, match="corrupt"):
            assert cache.cached("demo", key, compute)["u"].sum() == 28.0
    assert len(calls) == 3

    cache.save(path, {"what": "other"}, {"u": np.zeros(8)})  # another key under this name
    with pytest.warns(UserWarning):
        assert cache.cached("demo", key, compute)["u"].sum() == 28.0
    assert len(calls) == 4

    with np.load(path) as stored:  # right key, altered numbers, stale checksum
        tampered = {name: stored[name] for name in stored.files}
    tampered["u"] = tampered["u"] + 1
    np.savez(path, **tampered)
    with pytest.warns(UserWarning):
        assert cache.cached("demo", key, compute)["u"].sum() == 28.0
    assert len(calls) == 5
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cache.cached("demo", key, compute)["u"].sum() == 28.0
    assert len(calls) == 5


def test_config_errors():
    with pytest.raises(ConfigError, match="modes"):
        make_problem(modes=511)
    with pytest.raises(ConfigError, match="dt"):
        make_problem(dt=0.0)
