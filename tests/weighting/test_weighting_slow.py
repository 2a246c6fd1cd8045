"""Long runs: the schemes change where the network fits (run with `pytest -m slow -s`).

- The three-mode race on a sharp-transition 1-D regression from 30 points: SA-PINN lowers the
  centre/outer residual ratio versus uniform (McClenny & Braga-Neto 2023 report about 2x).
- Burgers at an equal, reduced budget: SA-PINN ends with a lower rel-L2 than uniform; the shock
  concentration of its PDE weights is printed (not asserted: it does not happen, see the test).
- Burgers at the paper's point count: the weights' Adam epsilon decides whether the map lights up
  the shock (eps above the gradients: growth proportional to r^2) or not (eps = 1e-8: every weight
  climbs by about lr per step).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from pinnrun.checkpoint import Progress
from pinnrun.engine import build, predict, train, validate
from pinnrun.runtime import StopOnSignal
from pinnrun.problems.base import AnalyticProblem, Box, ProblemConfig, Term
from pinnrun.tracking import NullTracker

SHARPNESS = 0.05  # width of the central transition
CENTRE = 0.2  # training points with |x| below this are the "centre"


@dataclass
class SharpConfig(ProblemConfig):
    n: Dict[str, int] = field(default_factory=lambda: {"data": 30})
    eval_grid: List[int] = field(default_factory=lambda: [2001])


class SharpTransition(AnalyticProblem):
    """Regression of u(x) = tanh(x / 0.05) on [-1, 1] from 30 random points (test-only stand-in for
    the `sharp` problem being added on another branch)."""

    name = "sharp_test"
    input_names = ("x",)
    Config = SharpConfig

    def domain(self) -> Box:
        return ((-1.0, 1.0),)

    def build_terms(self) -> dict[str, Term]:
        return {"data": Term((self.bounds,), lambda f: f.u - torch.tanh(f.coord("x") / SHARPNESS))}

    def solution(self, inputs: np.ndarray) -> np.ndarray:
        return np.tanh(inputs[:, 0] / SHARPNESS)


def trained(make_cfg, *overrides: str, problem: dict | None = None):
    """Validate, build and train one configuration (one thread: the test shares the machine)."""
    torch.set_num_threads(1)
    cfg = make_cfg("train.progress=false", "output.plots=false", "output.checkpoint=false", *overrides, quick=False)
    if problem is not None:
        cfg.problem = OmegaConf.create(problem)
    parts = build(cfg, validate(cfg))
    out = Path(cfg.output.dir)
    out.mkdir(parents=True, exist_ok=True)
    train(parts, cfg, NullTracker(), out, Progress(), StopOnSignal())
    return parts


def centre_outer_ratio(parts) -> float:
    """RMS residual |u - f| at the training points with |x| < 0.2 over the RMS at the other training
    points (points in the transition are the ones uniform averaging under-serves)."""
    points = parts.sampler.points["data"].x.to(parts.dtype)
    error = predict(parts.model, points) - np.tanh(points[:, 0].double().numpy() / SHARPNESS)
    centre = np.abs(points[:, 0].double().numpy()) < CENTRE
    return float(np.sqrt(np.mean(error[centre] ** 2)) / np.sqrt(np.mean(error[~centre] ** 2)))


@pytest.mark.slow
def test_sapinn_lowers_centre_outer_ratio_on_sharp_race(make_cfg) -> None:
    problem = {"_target_": f"{__name__}.SharpTransition", "n": {"data": 30}, "eval_grid": [2001]}
    common = ("sampler.resample_terms=[data]", "model.depth=4", "model.width=20", "optimizer=adam",
              "optimizer.steps=2000", "optimizer.lr=1e-3", "train.log_every=500", "train.eval_every=2000")
    schemes = {"uniform": ["weighting=uniform"], "gradnorm": ["weighting=gradnorm", "weighting.update_every=50"],
               "sapinn": ["weighting=sapinn", "weighting.lr=0.05"]}
    ratios = {name: [] for name in schemes}
    for seed in range(5):
        for name, extra in schemes.items():
            ratios[name].append(centre_outer_ratio(trained(make_cfg, *common, *extra, f"seed={seed}", problem=problem)))
            print(f"race seed {seed} {name}: centre/outer ratio {ratios[name][-1]:.3g}", flush=True)
    for name, values in ratios.items():
        print(f"race {name}: centre/outer ratio {np.mean(values):.3g} +- {np.std(values):.2g} {np.round(values, 3).tolist()}")
    assert np.median(ratios["sapinn"]) < np.median(ratios["uniform"])


def shock_concentration(parts) -> float:
    """Mean PDE weight of points near the shock (|x| < 0.1, t > 0.3) over the mean elsewhere."""
    w = parts.weighting.point_weights()["pde"].detach().cpu().numpy()
    x = parts.weighting.points["pde"].x.detach().cpu().numpy()
    near = (np.abs(x[:, 0]) < 0.1) & (x[:, 1] > 0.3)
    return float(w[near].mean() / w[~near].mean())


@pytest.mark.slow
def test_sapinn_beats_uniform_on_burgers_at_equal_budget(make_cfg) -> None:
    common = ("problem=burgers", "problem.n.pde=1000", "optimizer=adam_lbfgs", "optimizer.adam.steps=2000",
              "optimizer.lbfgs.steps=1000", "train.log_every=500", "train.eval_every=5000")
    errors = {"uniform": [], "sapinn": []}
    concentration = []
    for seed in range(2):
        for name in errors:
            parts = trained(make_cfg, *common, f"weighting={name}", f"seed={seed}")
            inputs = torch.as_tensor(parts.evaluation.inputs, dtype=parts.dtype)
            u = predict(parts.model, inputs)
            errors[name].append(float(np.linalg.norm(u - parts.evaluation.u_ref) / np.linalg.norm(parts.evaluation.u_ref)))
            if name == "sapinn":
                concentration.append(shock_concentration(parts))
    print(f"burgers rel-L2 uniform {errors['uniform']} sapinn {errors['sapinn']}; shock weight ratio {concentration}")
    assert np.mean(np.log(errors["sapinn"])) < np.mean(np.log(errors["uniform"]))
    # Not asserted: with the default eps = 1e-8 the map does not concentrate on the shock, here (2k
    # Adam steps, measured 2026-11-25: ratios 0.61 and 0.96) nor at the paper's budget (0.47-0.93;
    # docs/results.md). The next test shows the setting under which it does.
    assert all(math.isfinite(c) and c > 0 for c in concentration)


@pytest.mark.slow
def test_eps_above_the_gradients_lights_up_the_shock(make_cfg) -> None:
    """10k LHS points and the paper's 8x20 network, 2k Adam steps (the shock has formed by then):
    with eps = 1e-4, above the gradients 2 lam r^2 / N of all but the largest residuals, the weights
    near the shock end well above the rest (measured 2026-11-25 at this step: 3.2); with eps = 1e-8
    they do not (0.98)."""
    common = ("+experiment=sapinn_burgers", "optimizer.adam.lr=1e-3", "optimizer.adam.steps=2000",
              "optimizer.lbfgs.steps=1", "engine.derivatives=jet", "engine.compile=true", "train.log_every=500",
              "train.eval_every=5000", "seed=0")
    ratios = {eps: shock_concentration(trained(make_cfg, *common, f"weighting.eps={eps}")) for eps in ("1e-4", "1e-8")}
    print(f"burgers shock weight ratio after 2k Adam steps by eps: {ratios}")
    assert ratios["1e-4"] > 2.0
    assert ratios["1e-4"] > 2.0 * ratios["1e-8"]
