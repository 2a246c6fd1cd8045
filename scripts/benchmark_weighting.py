"""Step cost of the weighting schemes relative to a uniform step, measured side by side.

Burgers, 8x20 tanh MLP, 10k collocation points (100 IC, 200 BC), float32, CPU by default. The
schemes' steps are interleaved round by round so machine load hits them alike; medians are
reported with their ratio to the uniform step of the same run:

- uniform: residuals, loss, backward, Adam step;
- sapinn: the same plus the id lookup, mask and the weights' own Adam ascent step;
- gradnorm refresh: a step that also measures every point's exact gradient norm (its Taylor-jet pass
  gives the norms and the step's gradient together);
- gradnorm plain: a step between refreshes;
- rba: the multipliers' update from the step's residuals (no gradient) and the weighted loss;
- causal: the chunk losses and weights (no gradient) and the weighted loss;
- ntk and gradnorm_terms, refresh and plain: a step that also computes the term weights (NTK traces
  by one Taylor-jet pass per term; the term losses' gradient norms), and one between refreshes; the
  amortised cost is (refresh + (k - 1) plain) / k at the scheme's default cadence k;
- GP refit + predict (sapinn_gp resample, M = 1000 fit points, 10k predictions), the torch exact
  posterior and, when installed, scikit-learn's GaussianProcessRegressor with the same fixed
  kernel; reported as a share of the wall clock of `resample_every` sapinn steps.

Usage: python scripts/benchmark_weighting.py [--rounds 30] [--threads 1] [--device cpu]
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import torch

from pinnrun.config import parse_node
from pinnrun.engine import residuals
from pinnrun.models.mlp import MLP
from pinnrun.problems.burgers import Burgers
from pinnrun.samplers.random import RandomSampler
from pinnrun.weighting.causal import Causal
from pinnrun.weighting.gradnorm import GradNorm
from pinnrun.weighting.gradnorm_terms import GradNormTerms
from pinnrun.weighting.ntk import NTK
from pinnrun.weighting.rba import RBA
from pinnrun.weighting.sapinn import SelfAdaptive
from pinnrun.weighting.sapinn_gp import GPConfig, gp_posterior_mean
from pinnrun.weighting.uniform import Uniform


def make_step(weighting, problem, model, points, device) -> Callable[[int], None]:
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step(index: int) -> None:
        optimizer.zero_grad(set_to_none=True)
        loss, _ = weighting.objective(lambda pts: residuals(problem, model, pts), points, index)
        loss.backward()
        optimizer.step()
        weighting.after_step(ascent=True)
        if device.type == "cuda":
            torch.cuda.synchronize()

    return step


def sklearn_gp(x_fit: torch.Tensor, y_fit: torch.Tensor, x_new: torch.Tensor, cfg: GPConfig):
    """The same fixed-kernel posterior mean with scikit-learn (None when it is not installed)."""
    try:
        from sklearn.gaussian_process import GaussianProcessRegressor
        from sklearn.gaussian_process.kernels import RBF
    except ImportError:
        return None
    a, b, y = x_fit.double().cpu().numpy(), x_new.double().cpu().numpy(), y_fit.double().cpu().numpy()
    mean, std = a.mean(axis=0), a.std(axis=0)
    regressor = GaussianProcessRegressor(RBF(cfg.length_scale), alpha=cfg.noise, optimizer=None, normalize_y=True)
    regressor.fit((a - mean) / std, y)
    return regressor.predict((b - mean) / std)


def median_ms(samples: list[float]) -> float:
    return 1e3 * statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--points", type=int, default=10000)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    problem = Burgers(parse_node("problem", Burgers.Config, {"n": {"pde": args.points, "ic": 100, "bc": 200}}))
    sampler = RandomSampler(parse_node("sampler", RandomSampler.Config, {}), problem, torch.Generator().manual_seed(0))
    points = {t: type(p)(p.x.to(device, torch.float32), p.ids.to(device)) for t, p in sampler.initial().items()}

    def model() -> MLP:
        torch.manual_seed(0)
        return MLP(parse_node("model", MLP.Config, {}), problem).to(device)

    schemes = {
        "uniform": (Uniform, {}),
        "sapinn": (SelfAdaptive, {}),
        "gradnorm refresh": (GradNorm, {"update_every": 1}),
        "gradnorm plain": (GradNorm, {"update_every": 10**9}),
        "rba": (RBA, {}),
        "causal": (Causal, {}),
        "ntk refresh": (NTK, {"update_every": 1}),
        "ntk plain": (NTK, {"update_every": 10**9}),
        "gradnorm_terms refresh": (GradNormTerms, {"update_every": 1}),
        "gradnorm_terms plain": (GradNormTerms, {"update_every": 10**9}),
    }
    steps, times = {}, {name: [] for name in schemes}
    for name, (cls, options) in schemes.items():
        net = model()
        weighting = cls(parse_node("weighting", cls.Config, options), problem, net)
        weighting.on_points(points)
        steps[name] = make_step(weighting, problem, net, points, device)
        steps[name](0)  # warm-up (and gradnorm plain's one refresh at step 0)
    for index in range(1, args.rounds + 1):
        for name, step in steps.items():
            started = time.perf_counter()
            step(index)
            times[name].append(time.perf_counter() - started)

    base = median_ms(times["uniform"])
    print(f"Burgers 8x20, {args.points} PDE points, float32, {device}, {args.threads} thread(s), {args.rounds} rounds")
    print(f"{'step':<24} {'median ms':>10} {'x uniform':>10}")
    for name, samples in times.items():
        print(f"{name:<24} {median_ms(samples):>10.2f} {median_ms(samples) / base:>10.2f}")
    for name, cls in (("ntk", NTK), ("gradnorm_terms", GradNormTerms)):
        every = cls.Config().update_every
        amortised = (median_ms(times[f"{name} refresh"]) + (every - 1) * median_ms(times[f"{name} plain"])) / every
        print(f"{name + ' amortised':<24} {amortised:>10.2f} {amortised / base:>10.2f}   (a refresh every {every} steps)")

    cfg = GPConfig()
    x_fit, x_new = points["pde"].x[: cfg.fit_points], points["pde"].x
    y_fit = torch.rand(len(x_fit), device=device)
    gp_times: dict[str, list[float]] = {"GP torch": [], "GP sklearn": []}
    for _ in range(3):
        started = time.perf_counter()
        gp_posterior_mean(x_fit, y_fit, x_new, cfg)  # in the run's dtype, as sapinn_gp calls it
        gp_times["GP torch"].append(time.perf_counter() - started)
        started = time.perf_counter()
        if sklearn_gp(x_fit, y_fit, x_new, cfg) is None:
            gp_times.pop("GP sklearn")
            break
        gp_times["GP sklearn"].append(time.perf_counter() - started)
    cadence = 100
    window = cadence * median_ms(times["sapinn"])
    print(f"{'refit + predict':<18} {'median ms':>10} {'share of a sapinn_gp run (every 100 steps)':>44}")
    for name, samples in gp_times.items():
        print(f"{name:<18} {median_ms(samples):>10.2f} {median_ms(samples) / (window + median_ms(samples)):>44.2%}")


if __name__ == "__main__":
    main()
