"""The dense quasi-Newton phases: finite termination of BFGS on a quadratic, the self-scaled updates
against the papers' formulas, the stop reasons, NaN recovery, loss transforms and the memory refusal."""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import pytest
import torch

from pinnrun.config import ConfigError
from pinnrun.optim.base import transform_loss
from pinnrun.optim.bfgs import BFGSPhase
from pinnrun.optim.quasi_newton import QuasiNewtonConfig, QuasiNewtonPhase, update_inverse_hessian
from pinnrun.optim.ssbfgs import SSBFGSPhase
from pinnrun.optim.ssbroyden import SSBroydenPhase, ssbroyden_scaling
from tests.optim.test_lbfgs import closure_for, nan_beyond_three, rosenbrock

PHASES = [BFGSPhase, SSBFGSPhase, SSBroydenPhase]


def run(phase_class: type[QuasiNewtonPhase], loss_fn: Callable, start, limit: int = 1000, **settings):
    w = torch.nn.Parameter(torch.tensor(start, dtype=torch.float64))
    phase = phase_class(QuasiNewtonConfig(**settings), "optimizer")
    phase.start([w])
    calls: list = []
    rows = phase.advance(closure_for(w, loss_fn, calls), limit)
    return phase, rows, w, calls


def spd_quadratic(n: int, condition: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A = Q diag(1 .. condition) Q^T and b: f(w) = w^T A w / 2 - b^T w, minimum at A^-1 b."""
    generator = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=generator, dtype=torch.float64))
    a = q @ torch.diag(torch.logspace(0, math.log10(condition), n, dtype=torch.float64)) @ q.T
    return a, torch.randn(n, generator=generator, dtype=torch.float64)


def test_bfgs_minimises_a_convex_quadratic_in_n_iterations_and_H_becomes_the_inverse_hessian() -> None:
    """With exact line searches BFGS ends on a quadratic in at most n steps with H_n = A^-1
    (Nocedal & Wright 2006, Thm. 6.4); a strong-Wolfe search with c2 = 1e-8 is exact to rounding
    (dcsrch interpolates the quadratic phi(a) exactly)."""
    n = 6
    a, b = spd_quadratic(n, condition=100.0)
    phase, rows, w, _ = run(BFGSPhase, lambda w: 0.5 * w @ a @ w - b @ w, [0.0] * n, steps=100, c1=1e-10, c2=1e-8,
                            tolerance_grad=1e-9)
    assert phase.stop_reason == "tolerance_grad" and phase.done <= n
    torch.testing.assert_close(w.detach(), torch.linalg.solve(a, b), rtol=0, atol=1e-8)
    assert phase.done == n  # the n-th update is the one that completes H; check it against A^-1
    torch.testing.assert_close(phase.H, torch.linalg.inv(a), rtol=1e-6, atol=1e-8)


def paper_update(H: np.ndarray, s: np.ndarray, y: np.ndarray, tau: float, phi: float) -> np.ndarray:
    """The self-scaled Broyden family as the papers write it (Urban et al. 2025, Sec. 2), in full matrices."""
    Hy, ys = H @ y, y @ s
    yHy = y @ Hy
    v = math.sqrt(yHy) * (s / ys - Hy / yHy)
    return (H - np.outer(Hy, Hy) / yHy + phi * np.outer(v, v)) / tau + np.outer(s, s) / ys


def test_ssbroyden_scalars_match_hand_values() -> None:
    """b = 2, h = 1, n = 3: a = 1, rho- = 1 - sqrt(1/2), theta = max(-0.7071, min(3.414, -0.5)) = -0.5,
    sigma = 0.5, rho+ = 0.5, tau = min(0.5 * 0.5^(-1/2), 0.5) = 0.5, phi = 1.5 / 0.5 = 3.
    b = 0.5, h = 4, n = 2: a = 1, rho- = 1, theta = max(0, min(1, 1)) = 1, sigma = 2, rho+ = 1,
    tau = min(2^(-1), 1) = 0.5, phi = 0 (the DFP member)."""
    assert ssbroyden_scaling(2.0, 1.0, 3) == pytest.approx((0.5, 3.0), rel=1e-14)
    assert ssbroyden_scaling(0.5, 4.0, 2) == pytest.approx((0.5, 0.0), abs=1e-14)


@pytest.mark.parametrize("phase_class", PHASES, ids=lambda c: c.name)
def test_two_updates_match_the_papers_formulas(phase_class: type[QuasiNewtonPhase]) -> None:
    """Two hand-set steps (s, y, step length, gradient) through the phase's scalars and in-place
    update, against the full-matrix formula with tau and phi computed here from b and h; the
    secant condition H+ y = s holds after each."""
    H = np.eye(3)
    steps = [  # (step length a, gradient g_k, s_k, y_k) with y^T s > 0
        (0.5, np.array([1.0, -2.0, 0.5]), np.array([-0.5, 1.0, -0.25]), np.array([-1.0, 3.0, -0.1])),
        (1.0, np.array([1.0, 1.0, -1.0]), np.array([-0.2, -0.5, 0.3]), np.array([-0.4, -0.6, 0.9])),  # b > 1
    ]
    phase = phase_class(QuasiNewtonConfig(), "optimizer")
    ours = torch.eye(3, dtype=torch.float64)
    taus = []
    for a, g, s, y in steps:
        b, h = -a * (s @ g) / (y @ s), (y @ H @ y) / (y @ s)
        expected_scalars = {"bfgs": (1.0, 1.0), "ssbfgs": (min(1.0, 1.0 / b), 1.0)}.get(phase.name) or ssbroyden_scaling(b, h, 3)
        tau, phi = phase.scaling(b, h, 3)
        taus.append(tau)
        assert (tau, phi) == pytest.approx(expected_scalars, rel=1e-14)
        H = paper_update(H, s, y, tau, phi)
        update_inverse_hessian(ours, torch.tensor(s), torch.tensor(y), tau, phi)
        np.testing.assert_allclose(ours.numpy(), H, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(H @ y, s, rtol=1e-12, atol=1e-14)
    assert (taus == [1.0, 1.0]) == (phase.name == "bfgs")  # the self-scaled methods did scale


def test_self_scaled_bfgs_is_bfgs_of_the_scaled_matrix() -> None:
    """phi = 1: (1/tau)[...] + rho s s^T equals the BFGS update of H / tau (the authors' code form)."""
    s, y, tau = np.array([0.3, -0.1, 0.2]), np.array([0.5, 0.1, 0.4]), 0.4
    H = np.array([[2.0, 0.3, 0.0], [0.3, 1.0, 0.1], [0.0, 0.1, 0.5]])
    rho, eye = 1.0 / (y @ s), np.eye(3)
    bfgs_of_scaled = (eye - rho * np.outer(s, y)) @ (H / tau) @ (eye - rho * np.outer(y, s)) + rho * np.outer(s, s)
    np.testing.assert_allclose(paper_update(H, s, y, tau, 1.0), bfgs_of_scaled, rtol=1e-12)


@pytest.mark.parametrize("phase_class", PHASES, ids=lambda c: c.name)
def test_each_method_solves_rosenbrock_with_monotone_rows(phase_class: type[QuasiNewtonPhase]) -> None:
    phase, rows, w, calls = run(phase_class, rosenbrock, [-1.2, 1.0], steps=200, tolerance_grad=1e-8)
    assert phase.stop_reason in ("tolerance_grad", "tolerance_change")
    torch.testing.assert_close(w.detach(), torch.tensor([1.0, 1.0], dtype=torch.float64), rtol=0, atol=1e-6)
    losses = [float(row["loss/total"]) for row in rows]
    assert all(b <= a for a, b in zip(losses, losses[1:])) and losses[-1] == float(rosenbrock(w.detach()))
    assert rows[-1][f"{phase.name}/evaluations"] == phase.evaluations == len(calls)
    assert all(row[f"{phase.name}/step_length"] > 0 for row in rows)


def test_max_iterations_across_calls() -> None:
    w = torch.nn.Parameter(torch.tensor([-1.2, 1.0], dtype=torch.float64))
    phase = SSBroydenPhase(QuasiNewtonConfig(steps=7), "optimizer")
    phase.start([w])
    closure = closure_for(w, rosenbrock, [])
    assert [len(phase.advance(closure, 3)) for _ in range(3)] == [3, 3, 1]
    assert phase.stop_reason == "max_iterations" and phase.finished()


def test_tolerance_change_when_the_objective_stops_moving() -> None:
    """1 + 1e-6 |w|^2 from (1, 1): the first step changes the objective by about 2e-6 of itself."""
    phase, _, _, _ = run(BFGSPhase, lambda w: 1 + 1e-6 * (w**2).sum(), [1.0, 1.0], steps=100, tolerance_grad=1e-30,
                         tolerance_change=1e-4)
    assert phase.stop_reason == "tolerance_change" and phase.done == 1


def test_line_search_failure_stops_and_keeps_the_last_iterate() -> None:
    """A gradient that points uphill: no step along -g satisfies sufficient decrease."""
    w = torch.nn.Parameter(torch.tensor([1.0, 2.0], dtype=torch.float64))
    phase = BFGSPhase(QuasiNewtonConfig(steps=10), "optimizer")
    phase.start([w])

    def closure():
        loss = (w.detach() ** 2).sum()
        w.grad = -2 * w.detach()
        return loss, {"loss/total": loss}

    rows = phase.advance(closure, 10)
    assert phase.stop_reason == "line_search_failed" and rows == [] and phase.done == 0
    assert w.detach().tolist() == [1.0, 2.0]


def test_nan_ends_the_phase_with_the_best_parameters_kept() -> None:
    phase, rows, w, calls = run(SSBroydenPhase, nan_beyond_three, [0.0], steps=50)
    assert phase.stop_reason == "non_finite_loss"
    finite = [(float(nan_beyond_three(c)), c) for c in calls if math.isfinite(float(nan_beyond_three(c)))]
    best_loss, best_w = min(finite, key=lambda pair: pair[0])
    assert torch.equal(w.detach(), best_w) and best_w.item() > 0.0
    assert any(not math.isfinite(float(nan_beyond_three(c))) for c in calls)


@pytest.mark.parametrize(("transform", "objective"), [("sqrt", torch.sqrt), ("log", torch.log)])
def test_loss_transform_gives_the_value_and_gradient_of_the_transformed_loss(transform: str, objective) -> None:
    w = torch.nn.Parameter(torch.tensor([0.7, -1.3], dtype=torch.float64))
    value, diagnostics = transform_loss(closure_for(w, rosenbrock, []), [w], transform)()
    expected = objective(rosenbrock(w))
    (grad,) = torch.autograd.grad(expected, w)
    assert float(value) == pytest.approx(float(expected.detach()), rel=1e-15)
    torch.testing.assert_close(w.grad, grad, rtol=1e-14, atol=0)
    assert float(diagnostics["loss/total"]) == float(rosenbrock(w.detach()))  # the raw loss stays logged


def test_phase_minimises_the_transformed_loss_and_logs_it() -> None:
    phase, rows, w, _ = run(SSBFGSPhase, rosenbrock, [-1.2, 1.0], limit=5, steps=50, loss_transform="log")
    assert [row["ssbfgs/objective"] for row in rows] == pytest.approx([math.log(float(r["loss/total"])) for r in rows], rel=1e-14)


def test_memory_refusal_names_the_parameter_count_and_suggests_lbfgs() -> None:
    phase = SSBroydenPhase(QuasiNewtonConfig(max_dense_params=1000), "optimizer.ssbroyden")
    with pytest.raises(ConfigError) as info:
        phase.check([torch.zeros(40, 30, dtype=torch.float64), torch.zeros(30, dtype=torch.float64)])
    message = str(info.value)
    assert message.startswith("optimizer.ssbroyden.max_dense_params=1000: this model has 1230 parameters")
    assert "lbfgs" in message and "GiB" in message and "\n" not in message
    phase.check([torch.zeros(1000, dtype=torch.float64)])  # at the limit: accepted


def test_float32_is_warned_about_not_refused() -> None:
    with pytest.warns(UserWarning, match="float64"):
        BFGSPhase(QuasiNewtonConfig(), "optimizer").check([torch.zeros(10)])


@pytest.mark.parametrize(("settings", "message"), [
    ({"c1": 0.9, "c2": 0.5}, "optimizer.c1=0.9, optimizer.c2=0.5: the strong Wolfe conditions need 0 < c1 < c2 < 1"),
    ({"loss_transform": "exp"}, "optimizer.loss_transform='exp': not one of none, sqrt, log"),
    ({"max_dense_params": 0}, "optimizer.max_dense_params=0: must be > 0"),
])
def test_bad_settings_are_refused_with_the_key(settings: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        QuasiNewtonConfig(**settings).validate("optimizer")
