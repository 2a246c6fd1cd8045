"""Per-point gradient-norm weighting: exact norms against a brute-force per-point loop, and one
weighting refresh against a hand computation."""

from __future__ import annotations

import pytest
import torch

from pinnrun.config import ConfigError, parse_node
from pinnrun.engine import residuals
from pinnrun.models.mlp import MLP
from pinnrun.problems.base import Term
from pinnrun.problems.burgers import Burgers
from pinnrun.samplers.base import Points
from pinnrun.weighting.gradnorm import GradNorm, inverse_norm_weights, layer_stack, per_point_gradient_norms


def burgers() -> Burgers:
    return Burgers(parse_node("problem", Burgers.Config, {}))


def small_mlp(problem, **overrides) -> MLP:
    torch.manual_seed(3)
    return MLP(parse_node("model", MLP.Config, {"depth": 3, "width": 8, **overrides}), problem).double()


def points_in_domain(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 2, generator=g, dtype=torch.float64) * torch.tensor([2.0, 1.0]) - torch.tensor([1.0, 0.0])


def brute_force_norms(model, term: Term, x: torch.Tensor, input_names) -> torch.Tensor:
    """||grad_theta r_j^2|| one point at a time through the engine's nested-autograd residual."""
    from pinnrun.derivatives import autograd_fields

    params = list(model.parameters())
    norms = []
    for j in range(len(x)):
        r = term.residual(autograd_fields(model, x[j : j + 1], input_names, term.derivatives))[0]
        grads = torch.autograd.grad(r.square(), params, allow_unused=True)
        norms.append(torch.sqrt(sum(g.square().sum() for g in grads if g is not None)))
    return torch.stack(norms)


@pytest.mark.parametrize("term_name", ["pde", "ic", "bc"])
@pytest.mark.parametrize("options", [{}, {"hard_constraints": True}, {"activation": "sin"}, {"activation": "silu"}])
def test_norms_match_per_point_loop(term_name: str, options: dict) -> None:
    problem = burgers()
    model = small_mlp(problem, **options)
    term = problem.terms[term_name]
    x = points_in_domain(9)
    if term_name == "ic":
        x[:, 1] = 0.0
    if term_name == "bc":
        x[:, 0] = torch.where(x[:, 0] > 0, 1.0, -1.0)
    fast = per_point_gradient_norms(model, layer_stack(model), term, x, problem.input_names)
    brute = brute_force_norms(model, term, x, problem.input_names)
    if options.get("hard_constraints") and term_name != "pde":
        assert torch.allclose(fast, brute, atol=1e-12)  # the ansatz satisfies IC/BC: zero gradients
    else:
        assert torch.allclose(fast, brute, rtol=1e-5, atol=0)


def test_norms_exact_for_mixed_and_second_time_derivatives() -> None:
    """A residual reading u_t, u_xt and u_tt (the jet's cross channel) is exact too."""
    problem = burgers()
    model = small_mlp(problem)
    term = Term((problem.bounds,), lambda f: f["tt"] - f["xt"] * f.u + f["t"] ** 2, ("t", "xt", "tt"))
    x = points_in_domain(7, seed=1)
    fast = per_point_gradient_norms(model, layer_stack(model), term, x, problem.input_names)
    assert torch.allclose(fast, brute_force_norms(model, term, x, problem.input_names), rtol=1e-5, atol=0)


def test_inverse_norm_weights_by_hand() -> None:
    """norms (1, 2, 4, 0): mean 1.75, floor 0.1 -> relative (4/7, 8/7, 16/7, 0.1); inverse
    (1.75, 0.875, 0.4375, 10), normalised by its mean 3.265625, clipped at 2, renormalised."""
    norms = torch.tensor([1.0, 2.0, 4.0, 0.0], dtype=torch.float64)
    inverse = torch.tensor([1.75, 0.875, 0.4375, 10.0], dtype=torch.float64)
    clipped = (inverse / inverse.mean()).clamp(max=2.0)
    expected = clipped / clipped.mean()
    assert torch.allclose(inverse_norm_weights(norms, floor=0.1, max_weight=2.0), expected)
    assert torch.allclose(expected.mean(), torch.tensor(1.0, dtype=torch.float64))
    assert torch.allclose(inverse_norm_weights(torch.zeros(3), floor=1e-3, max_weight=100.0), torch.ones(3))


def residual_function(problem, model):
    """The engine's residual function (nested autograd) for `Weighting.objective`."""
    return lambda pts: residuals(problem, model, pts)


def scheme(problem, model, **cfg) -> GradNorm:
    return GradNorm(parse_node("weighting", GradNorm.Config, {"update_every": 5, **cfg}), problem, model)


def test_refresh_sets_smoothed_inverse_norm_weights_keyed_by_id() -> None:
    problem = burgers()
    model = small_mlp(problem)
    weighting = scheme(problem, model, smoothing=0.25, terms=["pde"])
    x = points_in_domain(6)
    pts = {name: Points(x, torch.arange(10, 16)) for name in problem.terms}
    weighting.on_points(pts)
    _, diagnostics = weighting.objective(residual_function(problem, model), pts, step=0)
    norms = brute_force_norms(model, problem.terms["pde"], x, problem.input_names)
    expected = 0.25 * 1.0 + 0.75 * inverse_norm_weights(norms, 1e-3, 100.0)
    assert torch.allclose(weighting.point_weights()["pde"], expected, rtol=1e-6)
    weighted = (expected * residuals(problem, model, pts)["pde"].square()).mean()
    assert torch.allclose(diagnostics["loss/pde"], weighted.detach(), rtol=1e-6)
    order = torch.tensor([3, 0, 5, 1, 4, 2])
    shuffled = {name: Points(x[order], pts[name].ids[order]) for name in problem.terms}
    _, again = weighting.objective(residual_function(problem, model), shuffled, step=1)
    assert torch.allclose(again["loss/pde"], diagnostics["loss/pde"], rtol=1e-12)


@pytest.mark.parametrize("options", [{}, {"hard_constraints": True}])
def test_refresh_step_gradient_equals_weighted_loss_gradient(options: dict) -> None:
    """The refresh step's loss and its gradient (assembled from per-point deltas, no second backward)
    equal nested autograd on sum_i c_i mean_j w_ij r_ij^2 with the weights it just set, including a
    term it does not reweight."""
    problem = burgers()
    model = small_mlp(problem, **options)
    weighting = scheme(problem, model, smoothing=0.5, terms=["pde"])
    pts = {name: Points(points_in_domain(8, seed=i), torch.arange(8)) for i, name in enumerate(problem.terms)}
    weighting.on_points(pts)
    loss, diagnostics = weighting.objective(residual_function(problem, model), pts, step=0)
    loss.backward()
    folded = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    expected, expected_diagnostics = weighting.loss(residuals(problem, model, pts), pts, step=1)
    expected.backward()
    assert not torch.allclose(weighting.point_weights()["pde"], torch.ones(8, dtype=torch.float64))
    assert torch.allclose(loss, expected, rtol=1e-12)
    for key, value in expected_diagnostics.items():
        assert torch.allclose(diagnostics[key], value, rtol=1e-10, atol=1e-14), key
    for got, want in zip(folded, (p.grad for p in model.parameters())):
        assert torch.allclose(got, want, rtol=1e-10, atol=1e-14)


def test_refresh_cadence_and_frozen_outside_adaptive_phases() -> None:
    problem = burgers()
    model = small_mlp(problem)
    weighting = scheme(problem, model, smoothing=0.0, terms=["pde"])
    pts = {name: Points(points_in_domain(4), torch.arange(4)) for name in problem.terms}
    weighting.on_points(pts)
    weighting.objective(residual_function(problem, model), pts, step=0)
    first = weighting.point_weights()["pde"].clone()
    with torch.no_grad():
        next(model.parameters()).mul_(1.5)
    weighting.objective(residual_function(problem, model), pts, step=3)
    assert torch.equal(weighting.point_weights()["pde"], first)
    weighting.after_step(ascent=False)
    weighting.objective(residual_function(problem, model), pts, step=5)
    assert torch.equal(weighting.point_weights()["pde"], first)
    weighting.after_step(ascent=True)
    weighting.objective(residual_function(problem, model), pts, step=10)
    assert not torch.allclose(weighting.point_weights()["pde"], first)


def test_state_dict_round_trip() -> None:
    problem = burgers()
    model = small_mlp(problem)
    weighting = scheme(problem, model)
    pts = {name: Points(points_in_domain(5), torch.arange(5)) for name in problem.terms}
    weighting.on_points(pts)
    weighting.objective(residual_function(problem, model), pts, step=0)
    restored = scheme(problem, model)
    restored.load_state_dict(weighting.state_dict())
    for term, w in weighting.point_weights().items():
        assert torch.equal(restored.point_weights()[term], w)
    assert restored.refresh.last == 0


def test_refuses_models_it_cannot_differentiate_exactly() -> None:
    problem = burgers()
    model = small_mlp(problem)
    model.extra = torch.nn.Parameter(torch.zeros(1))
    with pytest.raises(ConfigError, match="Linear layers and elementwise activations"):
        scheme(problem, model)
