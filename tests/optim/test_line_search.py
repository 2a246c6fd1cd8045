"""The strong-Wolfe line search: the steps it returns satisfy both conditions; no step is None."""

from __future__ import annotations

import pytest
import torch

from pinnrun.optim.line_search import strong_wolfe
from tests.optim.test_lbfgs import rosenbrock


def along(x: torch.Tensor, p: torch.Tensor, calls: list):
    """phi(a) = f(x + a p) and phi'(a) = grad f(x + a p) . p for the Rosenbrock function."""

    def phi(a: float) -> tuple[float, float]:
        w = (x + a * p).requires_grad_()
        value = rosenbrock(w)
        (grad,) = torch.autograd.grad(value, w)
        calls.append(a)
        return float(value.detach()), float(grad @ p)

    return phi


@pytest.mark.parametrize(("start", "c1", "c2"), [((-1.2, 1.0), 1e-4, 0.9), ((-1.2, 1.0), 1e-4, 0.1), ((0.5, 0.8), 0.3, 0.4)])
def test_the_step_satisfies_the_strong_wolfe_conditions(start, c1: float, c2: float) -> None:
    x = torch.tensor(start, dtype=torch.float64)
    calls: list = []
    w = x.clone().requires_grad_()
    (g,) = torch.autograd.grad(rosenbrock(w), w)
    p = -g / g.norm()  # unit steepest descent: the first trial step (1) overshoots the valley
    phi = along(x, p, calls)
    phi0, slope0 = phi(0.0)
    calls.clear()
    a = strong_wolfe(phi, phi0, slope0, phi0 + float(g.norm()) / 2, c1, c2)
    value, slope = phi(a)
    assert a > 0 and len(calls) > 2  # it searched, not just accepted the first trial
    assert value <= phi0 + c1 * a * slope0
    assert abs(slope) <= c2 * abs(slope0)


def test_no_step_when_the_slope_lies() -> None:
    """phi rises while phi' claims descent: no step gives sufficient decrease."""
    assert strong_wolfe(lambda a: (a, -1.0), 0.0, -1.0, 0.5, 1e-4, 0.9) is None
