"""Term-level balancing: jaxpi's grad-norm and NTK weights against hand computations and a
brute-force Jacobian."""

from __future__ import annotations

import math

import pytest
import torch

from pinnrun.config import ConfigError, parse_node
from pinnrun.samplers.base import Points
from pinnrun.weighting.gradnorm_terms import GradNormTerms, balanced_weights
from pinnrun.weighting.ntk import NTK
from tests.weighting.test_gradnorm import burgers, points_in_domain, small_mlp
from tests.weighting.test_lra import NO_POINTS, hand_case, hand_residuals


def test_balanced_weights_by_hand() -> None:
    w = balanced_weights({"a": torch.tensor(1.0), "b": torch.tensor(3.0)})
    assert (float(w["a"]), float(w["b"])) == pytest.approx((4.0, 4.0 / 3.0))


def test_gradnorm_terms_one_refresh_by_hand() -> None:
    """hand_case: grad L_pde = (1, 2), L2 sqrt 5; grad L_ic = (18, 0), L2 18; grad L_bc = (0, 4), L2 4.
    w_hat_i = (sqrt 5 + 22) / S_i; w = 0.9 * 1 + 0.1 * w_hat (weights start at 1)."""
    problem, model = hand_case()
    scheme = GradNormTerms(parse_node("weighting", GradNormTerms.Config, {"update_every": 10}), problem, model)
    loss, _ = scheme.loss(hand_residuals(model), NO_POINTS, step=0)
    total = math.sqrt(5) + 22
    expected = {"pde": 0.9 + 0.1 * total / math.sqrt(5), "ic": 0.9 + 0.1 * total / 18, "bc": 0.9 + 0.1 * total / 4}
    assert {t: float(w) for t, w in scheme.w.items()} == pytest.approx(expected, rel=1e-12)
    assert float(loss.detach()) == pytest.approx(expected["pde"] * 2.5 + expected["ic"] * 9 + expected["bc"] * 4, rel=1e-12)
    scheme.loss(hand_residuals(model), NO_POINTS, step=5)  # not due
    assert float(scheme.w["ic"]) == pytest.approx(expected["ic"])
    scheme.after_step(ascent=False)
    scheme.loss(hand_residuals(model), NO_POINTS, step=10)  # due, but frozen outside adaptive phases
    assert float(scheme.w["ic"]) == pytest.approx(expected["ic"])
    restored = GradNormTerms(parse_node("weighting", GradNormTerms.Config, {}), problem, model)
    restored.load_state_dict(scheme.state_dict())
    assert float(restored.w["bc"]) == pytest.approx(expected["bc"]) and restored.refresh.last == 0
    assert set(scheme.metrics()) == {"gradnorm_terms/pde", "gradnorm_terms/ic", "gradnorm_terms/bc"}


def brute_force_trace(model, problem, term_name: str, x: torch.Tensor) -> float:
    """sum_j ||d r_j / d theta||^2 from one autograd gradient per point (the Jacobian row by row)."""
    from pinnrun.derivatives import autograd_fields

    term, params = problem.terms[term_name], list(model.parameters())
    total = 0.0
    for j in range(len(x)):
        r = term.residual(autograd_fields(model, x[j : j + 1], problem.input_names, term.derivatives))[0]
        total += float(sum(g.square().sum() for g in torch.autograd.grad(r, params, allow_unused=True) if g is not None))
    return total


def burgers_points() -> dict[str, Points]:
    x = {"pde": points_in_domain(7), "ic": points_in_domain(4, seed=1), "bc": points_in_domain(3, seed=2)}
    x["ic"][:, 1] = 0.0
    x["bc"][:, 0] = torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64)
    return {t: Points(v, torch.arange(len(v))) for t, v in x.items()}


@pytest.mark.parametrize("statistic", ["trace", "mean"])
def test_ntk_traces_match_a_brute_force_jacobian_and_set_the_weights(statistic: str) -> None:
    problem = burgers()
    model = small_mlp(problem)
    points = burgers_points()
    ntk = NTK(parse_node("weighting", NTK.Config, {"statistic": statistic, "momentum": 0.0}), problem, model)
    traces = ntk.kernel_traces(points)
    for term, p in points.items():
        brute = brute_force_trace(model, problem, term, p.x) / (1 if statistic == "trace" else len(p))
        assert float(traces[term]) == pytest.approx(brute, rel=1e-10)
    from pinnrun.engine import residuals

    ntk.objective(lambda p: residuals(problem, model, p), points, step=0)
    total = sum(float(t) for t in traces.values())
    assert {t: float(w) for t, w in ntk.w.items()} == pytest.approx({t: total / float(v) for t, v in traces.items()})


def test_bad_settings_are_one_line_errors() -> None:
    with pytest.raises(ConfigError, match="weighting.statistic='max': not one of trace, mean"):
        parse_node("weighting", NTK.Config, {"statistic": "max"})
    with pytest.raises(ConfigError, match=r"weighting.momentum=1.0: must be in \[0, 1\)"):
        parse_node("weighting", GradNormTerms.Config, {"momentum": 1.0})


def test_ntk_refresh_step_gradient_equals_the_weighted_loss_gradient() -> None:
    """The refresh step assembles its gradient from the jet passes; it must be the autograd
    gradient of sum_i c_i lam_i mean_j r_ij^2 at the new weights."""
    from pinnrun.engine import residuals

    problem = burgers()
    model = small_mlp(problem)
    points = burgers_points()
    ntk = NTK(parse_node("weighting", NTK.Config, {"update_every": 10}), problem, model)
    loss, _ = ntk.objective(lambda p: residuals(problem, model, p), points, step=0)
    model.zero_grad()
    loss.backward()
    folded = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    reference = sum(ntk.w[t] * r.square().mean() for t, r in residuals(problem, model, points).items())
    reference.backward()
    for got, want in zip(folded, (p.grad for p in model.parameters())):
        assert torch.allclose(got, want, rtol=1e-10, atol=1e-12)
    assert float(loss.detach()) == pytest.approx(float(reference.detach()), rel=1e-12)
