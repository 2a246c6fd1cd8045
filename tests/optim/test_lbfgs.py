"""The L-BFGS phase: every stop reason, per-iteration rows, evaluation counts, NaN recovery."""

from __future__ import annotations

import math
from typing import Callable

import pytest
import torch

from pinnrun.optim.lbfgs import LBFGSConfig, LBFGSPhase


def closure_for(w: torch.nn.Parameter, loss_fn: Callable[[torch.Tensor], torch.Tensor], calls: list) -> Callable:
    def closure():
        w.grad = None
        loss = loss_fn(w)
        loss.backward()
        calls.append(w.detach().clone())
        return loss, {"loss/total": loss.detach()}

    return closure


def run(loss_fn, start, limit: int = 1000, **settings):
    w = torch.nn.Parameter(torch.tensor(start, dtype=torch.float64))
    phase = LBFGSPhase(LBFGSConfig(**settings))
    phase.start([w])
    calls: list = []
    rows = phase.advance(closure_for(w, loss_fn, calls), limit)
    return phase, rows, w, calls


def quadratic(w):
    return 0.5 * (w[0] ** 2 + 10.0 * w[1] ** 2)


def rosenbrock(w):
    return (1 - w[0]) ** 2 + 100 * (w[1] - w[0] ** 2) ** 2


def test_converges_on_a_quadratic_and_stops_on_the_gradient_tolerance() -> None:
    phase, rows, w, calls = run(quadratic, [1.0, 1.0], steps=100, tolerance_grad=1e-7, tolerance_change=1e-30)
    assert phase.stop_reason == "tolerance_grad"
    assert w.grad.abs().max() <= 1e-7
    assert len(rows) == phase.done and 0 < phase.done < 20
    assert phase.evaluations == len(calls)


def test_rows_are_the_iterates_losses_and_decrease_monotonically() -> None:
    """Each row is f(x_k) of the accepted iterate: the last equals the loss at the final
    parameters, and strong-Wolfe steps only go down."""
    phase, rows, w, _ = run(rosenbrock, [-1.2, 1.0], limit=15, steps=100, tolerance_change=1e-30)
    losses = [float(row["loss/total"]) for row in rows]
    assert len(rows) == 15 == phase.done and phase.stop_reason is None
    assert losses[-1] == float(rosenbrock(w.detach()))
    assert all(b <= a for a, b in zip(losses, losses[1:]))
    evaluations = [row["lbfgs/evaluations"] for row in rows]
    assert evaluations == sorted(evaluations) and evaluations[-1] == phase.evaluations


def test_re_evaluating_the_accepted_point_costs_nothing() -> None:
    """The closure is never run twice at the same parameters in a row of iterations."""
    phase, _, _, calls = run(rosenbrock, [-1.2, 1.0], limit=20, steps=100, tolerance_change=1e-30)
    distinct = {tuple(c.tolist()) for c in calls}
    assert phase.evaluations == len(calls) == len(distinct)


def test_max_iterations_when_the_steps_are_used_up_across_calls() -> None:
    w = torch.nn.Parameter(torch.tensor([-1.2, 1.0], dtype=torch.float64))
    phase = LBFGSPhase(LBFGSConfig(steps=7, tolerance_change=1e-30))
    phase.start([w])
    closure = closure_for(w, rosenbrock, [])
    counts = [len(phase.advance(closure, 3)) for _ in range(3)]
    assert counts == [3, 3, 1] and phase.done == 7
    assert phase.stop_reason == "max_iterations" and phase.finished()


def test_max_evaluations_caps_closure_calls_at_the_budget() -> None:
    phase, rows, _, calls = run(rosenbrock, [-1.2, 1.0], steps=20, max_eval_per_iter=0.5, tolerance_change=1e-30)
    assert phase.stop_reason == "max_evaluations"
    assert len(calls) == phase.evaluations <= 10 and phase.done < 20


def test_tolerance_change_when_the_loss_stops_moving() -> None:
    phase, _, w, _ = run(quadratic, [1.0, 1.0], steps=100, tolerance_grad=1e-12, tolerance_change=1e-3)
    assert phase.stop_reason == "tolerance_change"
    assert w.grad.abs().max() > 1e-12


def test_tolerance_change_when_there_is_no_descent_direction_left() -> None:
    """A plateau with a tiny slope: the directional derivative is above -tolerance_change."""
    phase, _, _, _ = run(lambda w: 1e-8 * w.sum(), [0.0, 0.0], steps=50, tolerance_grad=1e-12, tolerance_change=1e-6)
    assert phase.stop_reason == "tolerance_change" and phase.done == 1


def nan_beyond_three(w):
    """(w - 100)^2 where w < 3, NaN beyond: the line search extrapolates into the NaN region."""
    return torch.where(w < 3, (w - 100) ** 2, torch.full_like(w, math.nan)).sum()


@pytest.mark.parametrize("line_search", ["strong_wolfe", "none"])
def test_nan_ends_the_phase_with_the_best_parameters_kept(line_search: str) -> None:
    phase, rows, w, calls = run(nan_beyond_three, [0.0], steps=50, line_search=line_search, tolerance_change=1e-30)
    assert phase.stop_reason == "non_finite_loss" and phase.finished()
    finite = [(float(nan_beyond_three(c)), c) for c in calls if math.isfinite(float(nan_beyond_three(c)))]
    best_loss, best_w = min(finite, key=lambda pair: pair[0])
    assert torch.equal(w.detach(), best_w) and float(nan_beyond_three(w.detach())) == best_loss
    assert best_w.item() > 0.0  # it kept progress made before the NaN, not just the start
    assert all(math.isfinite(float(row["loss/total"])) for row in rows)
    assert any(not math.isfinite(float(nan_beyond_three(c))) for c in calls)


def test_nan_at_the_very_first_evaluation_keeps_the_starting_parameters() -> None:
    phase, rows, w, _ = run(nan_beyond_three, [5.0], steps=10)
    assert phase.stop_reason == "non_finite_loss" and rows == []
    assert w.item() == 5.0


LUA = {"line_search": "none", "lr": 0.8, "rules": "lua", "tolerance_grad": 1e-5, "tolerance_change": 1e-9}


def norm_squared(w):
    return 0.5 * (w**2).sum()


def test_lua_rules_first_step_is_one_over_the_gradient_sum_without_lr() -> None:
    """f = |w|^2 / 2 from (3, 4): g = (3, 4), sum|g| = 7. The lua port steps w - g / 7 (eager_lbfgs.py:
    129-131); torch's rule takes lr times that, w - 0.8 g / 7. Later steps are lr d under both."""
    start = torch.tensor([3.0, 4.0], dtype=torch.float64)
    lua, _, w_lua, _ = run(norm_squared, [3.0, 4.0], limit=1, steps=10, **LUA)
    torch_rules, _, w_torch, _ = run(norm_squared, [3.0, 4.0], limit=1, steps=10, **{**LUA, "rules": "torch"})
    torch.testing.assert_close(w_lua.detach(), start - start / 7)
    torch.testing.assert_close(w_torch.detach(), start - 0.8 * start / 7)
    assert lua.cfg.lr == 0.8 and lua.optimizer.param_groups[0]["lr"] == 0.8


def test_lua_rules_test_the_gradient_sum_not_its_max() -> None:
    """g = 8e-6 in each of 20 coordinates at the start: max|g| <= 1e-5 stops torch's rules at once;
    sum|g| = 1.6e-4 does not, so the lua rules take the first step (t = min(1, 1 / sum|g|) = 1: to
    w = 0) and stop there (g . d = -1.3e-9 passes both rules' progress test, g . d < -1e-9)."""
    start = [8e-6] * 20
    torch_rules, rows, _, _ = run(norm_squared, start, steps=3, **{**LUA, "rules": "torch"})
    assert torch_rules.stop_reason == "tolerance_grad" and rows == []
    lua, rows, _, _ = run(norm_squared, start, steps=3, **LUA)
    assert lua.stop_reason == "tolerance_grad" and len(rows) == 1


def test_lua_rules_stop_on_a_small_loss_however_fast_it_changes() -> None:
    """The code's 'function change' test is |f| < tolX (eager_lbfgs.py:176): a loss of 1e-10 that
    halves every step stops the lua rules after one iteration, while torch's |f - f_prev| test goes on."""
    def tiny(w):
        return 1e-10 * (w**2).sum() + 0 * w.sum()

    lua, rows, _, _ = run(tiny, [1.0], steps=20, **{**LUA, "tolerance_grad": 1e-30})
    assert lua.stop_reason == "tolerance_change" and len(rows) == 1
    torch_rules, rows, _, _ = run(tiny, [1.0], steps=20, **{**LUA, "rules": "torch", "tolerance_grad": 1e-30, "tolerance_change": 1e-30})
    assert torch_rules.stop_reason == "max_iterations" and len(rows) == 20
