"""The two derivative engines (nested autograd, forward Taylor jet) give the same residuals.

Parametrized over every problem shipped in conf/problem, so new problems are checked as they land.
The autograd engine is the reference; the jet is also checked against closed-form derivatives.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from torch import nn

from pinnrun import jet
from pinnrun.cli import config_dir
from pinnrun.derivatives import autograd_fields, jet_fields
from pinnrun.engine import validate
from pinnrun.models.base import ModelConfig, PINNModel
from pinnrun.runtime import DTYPES

PROBLEMS = sorted(path.stem for path in (Path(config_dir()) / "problem").glob("*.yaml"))
TOLERANCE = {"float32": 1e-6, "float64": 1e-12}
POINTS = 128


def build(*overrides: str):
    """Problem, model and a sampler of the composed config (no reference solution is computed)."""
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose("config", overrides=["device=cpu", *overrides])
    options = validate(cfg)
    torch.manual_seed(0)
    problem = options["problem"].build()
    model = options["model"].build(problem).to(DTYPES[cfg.dtype])
    sampler = options["sampler"].build(problem, torch.Generator().manual_seed(0))
    return problem, model, sampler, DTYPES[cfg.dtype]


def assert_engines_agree(problem, model, sampler, dtype, tolerance: float) -> None:
    """Every term's residual by both engines, to `tolerance` relative to the residual's scale."""
    for name, term in problem.terms.items():
        x = sampler.draw(name, POINTS).x.to(dtype)
        by_autograd = term.residual(autograd_fields(model, x, problem.input_names, term.derivatives))
        by_jet = term.residual(jet_fields(model, x, problem.input_names, term.derivatives))
        scale = max(1.0, float(by_autograd.detach().abs().max()))
        assert by_jet.dtype == dtype
        torch.testing.assert_close(by_jet, by_autograd, rtol=0, atol=tolerance * scale, msg=f"term {name}")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("problem_name", PROBLEMS)
def test_engines_agree_on_every_problem(problem_name: str, dtype: str) -> None:
    assert_engines_agree(*build(f"problem={problem_name}", f"dtype={dtype}"), TOLERANCE[dtype])


@pytest.mark.parametrize("problem_name", PROBLEMS)
def test_engines_agree_through_the_hard_constraint_ansatz(problem_name: str) -> None:
    problem, *_ = build(f"problem={problem_name}")
    if problem.ansatz() is None:
        pytest.skip(f"{problem_name} has no hard-constraint ansatz")
    assert_engines_agree(*build(f"problem={problem_name}", "dtype=float64", "model.hard_constraints=true"), 1e-12)


@pytest.mark.parametrize("activation", ["tanh", "sin", "silu", "gelu"])
def test_engines_agree_for_every_activation(activation: str) -> None:
    assert_engines_agree(*build("problem=burgers", "dtype=float64", f"model.activation={activation}"), 1e-12)


def test_every_second_derivative_including_mixed_matches_autograd() -> None:
    problem, model, sampler, dtype = build("problem=burgers", "dtype=float64")
    x = sampler.draw("pde", POINTS).x.to(dtype)
    keys = ("x", "t", "xx", "xt", "tx", "tt")
    reference = autograd_fields(model, x, problem.input_names, keys)
    fields = jet_fields(model, x, problem.input_names, keys)
    for key in keys:
        torch.testing.assert_close(fields[key], reference[key], rtol=0, atol=1e-12, msg=key)
    torch.testing.assert_close(fields.u, reference.u, rtol=0, atol=1e-14)


def test_jet_matches_closed_form_derivatives_through_the_jvp_fallback() -> None:
    """f(x, t) = sin(x) t^2 + x t through `apply_jvp` (the path for modules without a jet rule)."""
    inputs = torch.tensor([[0.3, 0.7], [-1.2, 0.1], [2.0, -0.5]], dtype=torch.float64)
    layout = jet.Layout.for_keys([(0,), (1,), (0, 0), (0, 1), (1, 1)])
    f = lambda z: (torch.sin(z[:, 0]) * z[:, 1] ** 2 + z[:, 0] * z[:, 1]).unsqueeze(-1)  # noqa: E731
    out = jet.apply_jvp(f, jet.input_jet(inputs, layout))
    x, t = inputs[:, 0], inputs[:, 1]
    expected = {
        (): torch.sin(x) * t**2 + x * t,
        (0,): torch.cos(x) * t**2 + t,
        (1,): 2 * torch.sin(x) * t + x,
        (0, 0): -torch.sin(x) * t**2,
        (0, 1): 2 * torch.cos(x) * t + 1,
        (1, 1): 2 * torch.sin(x),
    }
    for key, value in expected.items():
        torch.testing.assert_close(out.partial(key).squeeze(-1), value, rtol=0, atol=1e-14, msg=str(key))


class SoftplusNet(PINNModel):
    """A model whose network has a layer without a jet rule (Softplus) and no `network_jet`."""

    def __init__(self, problem):
        super().__init__(ModelConfig(), problem)
        self.net = nn.Sequential(nn.Linear(2, 8), nn.Softplus(), nn.Linear(8, 1))

    def network(self, z):
        return self.net(z)


def test_models_and_layers_without_jet_rules_fall_back_to_forward_mode_ad() -> None:
    problem, _, sampler, _ = build("problem=burgers")
    model = SoftplusNet(problem).double()
    x = sampler.draw("pde", POINTS).x
    keys = ("x", "t", "xx", "xt")
    reference = autograd_fields(model, x, problem.input_names, keys)
    whole_network = jet_fields(model, x, problem.input_names, keys)  # PINNModel.network_jet's default
    model.network_jet = lambda z: jet.propagate(model.net, z)  # Linear rules, fallback for Softplus only
    layer_by_layer = jet_fields(model, x, problem.input_names, keys)
    for fields in (whole_network, layer_by_layer):
        for key in keys:
            torch.testing.assert_close(fields[key], reference[key], rtol=0, atol=1e-12, msg=key)


def test_parameter_gradients_agree_between_engines() -> None:
    """The loss gradient w.r.t. the weights (what training uses) is the same under both engines."""
    problem, model, sampler, dtype = build("problem=burgers", "dtype=float64")
    term = problem.terms["pde"]
    x = sampler.draw("pde", POINTS).x.to(dtype)
    grads = []
    for fields in (autograd_fields, jet_fields):
        model.zero_grad()
        term.residual(fields(model, x, problem.input_names, term.derivatives)).square().mean().backward()
        grads.append(torch.cat([p.grad.reshape(-1) for p in model.parameters()]))
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-10, atol=1e-13)


def test_third_derivatives_are_refused_by_the_jet_with_a_pointer_to_autograd() -> None:
    with pytest.raises(ValueError, match="engine.derivatives=autograd"):
        jet.Layout.for_keys([(0, 0, 0)])


@pytest.mark.slow
def test_compiled_jet_residuals_equal_eager_in_one_graph() -> None:
    """torch.compile(fullgraph=True) compiles the jet residual of the MLP: no graph breaks."""
    problem, model, sampler, dtype = build("problem=burgers")
    term = problem.terms["pde"]
    x = sampler.draw("pde", 256).x.to(dtype)

    def residual(points):
        return term.residual(jet_fields(model, points, problem.input_names, term.derivatives)).square().mean()

    compiled = torch.compile(residual, fullgraph=True)
    eager_loss = residual(x)
    eager_loss.backward()
    eager_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    loss = compiled(x)
    loss.backward()
    assert math.isclose(float(loss), float(eager_loss), rel_tol=1e-5)
    for grad, reference in zip((p.grad for p in model.parameters()), eager_grads):
        torch.testing.assert_close(grad, reference, rtol=1e-4, atol=1e-6)


def test_product_and_sum_rules_match_forward_mode_ad() -> None:
    """`multiply` and `add` (for gated models) against the jvp fallback on the same jets."""
    torch.manual_seed(1)
    inputs = torch.randn(16, 2, dtype=torch.float64)
    layout = jet.Layout.for_keys([(0,), (1,), (0, 0), (0, 1), (1, 1)])
    x = jet.input_jet(inputs, layout)
    a = jet.propagate(nn.Sequential(nn.Linear(2, 3), nn.Tanh()).double(), x)
    b = jet.propagate(nn.Sequential(nn.Linear(2, 3), nn.SiLU()).double(), x)
    for rule, function in ((jet.multiply, torch.mul), (jet.add, torch.add)):
        torch.testing.assert_close(rule(a, b).stack, jet.apply_jvp(function, a, b).stack, rtol=0, atol=1e-12)
