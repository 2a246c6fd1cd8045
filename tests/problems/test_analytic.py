"""Closed-form references: every term's residual of the exact solution vanishes (autograd, float64),
so the PDE, its forcing, the initial and boundary data and the reference agree with one another;
each hard-constraint ansatz satisfies the terms it claims for an arbitrary network output."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from scipy.integrate import solve_ivp

from pinnrun.config import ConfigError, parse_option
from pinnrun.derivatives import autograd_fields
from pinnrun.problems.base import ClosedFormProblem, Problem
from pinnrun.samplers.random import RandomSampler
from pinnrun.cli import config_dir

CLOSED_FORM = ["helmholtz", "wave", "klein_gordon", "oscillator", "diffusion", "sharp"]
# Non-default parameters: the derived quantities (forcing, boundary data) must follow them.
VARIANTS = {
    "helmholtz": {"k": 3.0, "a1": 1.5, "a2": 2.0},
    "wave": {"c": 0.7},
    "klein_gordon": {"alpha": -2.0, "beta": 0.5, "gamma": 2.0, "p": 2},
    "oscillator": {"delta": 1.0, "omega0": 7.0},
    "diffusion": {},
    "sharp": {"eps": 0.2},
}


def make_problem(name: str, **overrides) -> Problem:
    node = OmegaConf.load(f"{config_dir()}/problem/{name}.yaml")
    return parse_option("problem", OmegaConf.merge(node, overrides)).build()


def term_points(problem: Problem, term: str, n: int = 200, seed: int = 0) -> torch.Tensor:
    sampler = RandomSampler(RandomSampler.Config(), problem, torch.Generator().manual_seed(seed))
    return sampler.draw(term, n).x


def relative_residuals(problem: ClosedFormProblem) -> dict[str, float]:
    """max |r| / max(1, max |u and declared derivatives|) per term, exact solution as the model."""
    exact = lambda x: problem.exact(x).unsqueeze(-1)  # noqa: E731
    out = {}
    for name, term in problem.terms.items():
        x = term.field_inputs(term_points(problem, name))
        fields = autograd_fields(exact, x, problem.input_names, term.derivatives)
        scale = max([1.0, fields.u.abs().max().item()] + [fields[k].abs().max().item() for k in term.derivatives])
        out[name] = term.residual(fields).abs().max().item() / scale
    return out


@pytest.mark.parametrize("overrides", ["default", "variant"])
@pytest.mark.parametrize("name", CLOSED_FORM)
def test_exact_solution_satisfies_every_term(name, overrides):
    problem = make_problem(name, **(VARIANTS[name] if overrides == "variant" else {}))
    residuals = relative_residuals(problem)
    assert set(residuals) == set(problem.terms)
    assert max(residuals.values()) <= 1e-8, residuals


@pytest.mark.parametrize("name", CLOSED_FORM)
def test_perturbed_solution_is_detected(name):
    """The residual check can fail: a slightly perturbed reference violates some term."""
    problem = make_problem(name)

    def perturbed(x: torch.Tensor) -> torch.Tensor:
        return (problem.exact(x) + 1e-2 * torch.sin(1.3 * x + 0.4).prod(dim=1)).unsqueeze(-1)

    worst = 0.0
    for name_, term in problem.terms.items():
        x = term.field_inputs(term_points(problem, name_))
        r = term.residual(autograd_fields(perturbed, x, problem.input_names, term.derivatives))
        worst = max(worst, r.abs().max().item())
    assert worst > 1e-3


@pytest.mark.parametrize("name", ["helmholtz", "wave", "oscillator"])
def test_reference_follows_its_parameters(name):
    """The default parameters' reference is not a solution under the variant's parameters."""
    problem, default = make_problem(name, **VARIANTS[name]), make_problem(name)
    term = problem.terms["pde"]
    x = term_points(problem, "pde")
    r = term.residual(autograd_fields(lambda z: default.exact(z).unsqueeze(-1), x, problem.input_names, term.derivatives))
    assert r.abs().max().item() > 1e-2


@pytest.mark.parametrize("name", CLOSED_FORM + ["allen_cahn", "burgers"])
def test_ansatz_satisfies_its_terms_for_any_network(name):
    problem = make_problem(name, **VARIANTS.get(name, {})) if name in CLOSED_FORM else make_problem(name)
    ansatz = problem.ansatz()
    if ansatz is None:
        assert name in ("sharp", "helmholtz")  # sharp has no ansatz; helmholtz only for integer a1, a2
        return
    assert ansatz.satisfies and set(ansatz.satisfies) <= set(problem.terms)
    weights = torch.randn(len(problem.input_names), 1, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    model = lambda x: ansatz.transform(x, torch.sin(3 * x @ weights) + 0.5)  # noqa: E731
    for name_ in ansatz.satisfies:
        term = problem.terms[name_]
        x = term.field_inputs(term_points(problem, name_))
        r = term.residual(autograd_fields(model, x, problem.input_names, term.derivatives))
        assert r.abs().max().item() <= 1e-12, name_


def test_helmholtz_ansatz_at_integer_modes():
    problem = make_problem("helmholtz")
    assert problem.ansatz().satisfies == ("bc",)


def test_oscillator_matches_an_ode_solver():
    """Independent check of the closed form: RK45 at tight tolerance on u'' + 2 delta u' + omega0^2 u = 0."""
    problem = make_problem("oscillator")
    delta, omega0 = problem.cfg.delta, problem.cfg.omega0
    t = np.linspace(0.0, 1.0, 101)
    ode = solve_ivp(lambda _, y: [y[1], -2 * delta * y[1] - omega0**2 * y[0]], (0, 1), [1.0, 0.0], t_eval=t,
                    rtol=1e-11, atol=1e-12, method="DOP853")
    np.testing.assert_allclose(problem.solution(t[:, None]), ode.y[0], atol=1e-8)


def test_oscillator_rejects_overdamping():
    with pytest.raises(ConfigError, match="delta"):
        make_problem("oscillator", delta=25.0)


def test_evaluation_grid_matches_the_solution():
    problem = make_problem("wave")
    evaluation = problem.evaluation()
    assert evaluation.inputs.shape == (math.prod(evaluation.shape), 2)
    x, t = evaluation.inputs[:, 0], evaluation.inputs[:, 1]
    expected = np.sin(np.pi * x) * np.cos(2 * np.pi * t) + 0.5 * np.sin(4 * np.pi * x) * np.cos(8 * np.pi * t)
    np.testing.assert_allclose(evaluation.u_ref, expected, atol=1e-14)
