"""Error against wall-clock on Burgers for the optimizers: pinnrun's Adam + L-BFGS, Adam + BFGS,
Adam + SSBFGS, Adam + SSBroyden, and DeepXDE's Adam + L-BFGS with its default backend
(tensorflow.compat.v1) and with its PyTorch backend.

One recipe for every contender: the same tanh network (Glorot normal, raw inputs), the same point
counts drawn uniformly at random (each tool draws its own), float64, one thread, Adam (lr 1e-3) for
`--adam` steps, then the second-order phase for at most `--qn` iterations; rel-L2 on pinnrun's
Cole-Hopf reference grid every `--check-every` steps/iterations. pinnrun's seconds are its loop's
step timer, which includes its own periodic evaluation; DeepXDE's leave its checks out.

    python scripts/benchmark_optimizers.py --depth 2 --width 20 --pde 2000 --adam 2000 --qn 5000 \\
        --out docs/results/optimizers

writes curves.json, optimizers.png (rel-L2 against seconds) and a table: seconds to rel-L2 1e-2,
1e-3, 1e-4, and each contender's error at an equal budget (the shortest contender's total time
unless `--budget` is given). `--paired-seeds 0 1 2 3 4` adds a paired comparison of uniform vs
SA-PINN weights under Adam + SSBroyden (per-seed error ratios: geometric mean, t-interval of the
log ratios, Wilcoxon signed-rank p). DeepXDE runs in its own virtual environment, `--deepxde-venv`
(created with scripts/peer_venvs.py DEEPXDE_PACKAGES when missing; `--skip-deepxde` leaves it out).
With deepxde 1.15.0 and TensorFlow 2.12-2.21 the default backend's L-BFGS-B stops after one
iteration without lowering the loss (deepxde issues #1819, #1977); its curve shows that.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from hydra import compose, initialize_config_dir

from pinnrun.checkpoint import Progress
from pinnrun.cli import config_dir
from pinnrun.engine import build, train, validate
from pinnrun.runtime import StopOnSignal
from pinnrun.tracking import MemoryTracker

from peer_venvs import DEEPXDE_PACKAGES, venv_python  # scripts/peer_venvs.py, beside this script

TARGETS = (1e-2, 1e-3, 1e-4)
CONTENDERS = {"pinnrun adam+lbfgs": "lbfgs", "pinnrun adam+bfgs": "bfgs", "pinnrun adam+ssbfgs": "ssbfgs",
              "pinnrun adam+ssbroyden": "ssbroyden"}
DEEPXDE = {"deepxde tf.compat.v1 adam+lbfgs": "tensorflow.compat.v1", "deepxde pytorch adam+lbfgs": "pytorch"}
DRIVER = Path(__file__).with_name("deepxde_burgers.py")
Curve = list[tuple[float, float]]


def overrides(args: argparse.Namespace, method: str, out: Path, seed: int, weighting: str = "uniform") -> list[str]:
    """The pinnrun run of one contender: Adam, then `method` (lbfgs or a dense quasi-Newton method)."""
    transform = args.lbfgs_loss_transform if method == "lbfgs" else args.loss_transform
    qn = [f"optimizer.{method}.steps={args.qn}", f"optimizer.{method}.loss_transform={transform}"]
    return [f"optimizer=adam_{method}", f"optimizer.adam.steps={args.adam}", "optimizer.adam.lr=1e-3", *qn,
            "problem=burgers", f"problem.n.pde={args.pde}", f"problem.n.ic={args.ic}", f"problem.n.bc={args.bc}",
            f"model.depth={args.depth}", f"model.width={args.width}", "model.activation=tanh", "model.init=glorot_normal",
            "model.normalize_inputs=false", f"weighting={weighting}", "dtype=float64", "device=cpu", "threads=1",
            f"seed={seed}", f"train.log_every={args.check_every}", f"train.eval_every={args.check_every}",
            "train.progress=false", "output.plots=false", "output.prediction=false", "output.checkpoint=false",
            f"output.dir={out}"]


def pinnrun_curve(args: argparse.Namespace, method: str, out: Path, seed: int, weighting: str = "uniform") -> dict:
    """Train one contender with the real loop; the curve is (training seconds, rel-L2) at each check."""
    out.mkdir(parents=True, exist_ok=True)
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose("config", overrides=overrides(args, method, out, seed, weighting))
    parts, tracker = build(cfg, validate(cfg)), MemoryTracker()
    final = train(parts, cfg, tracker, out, Progress(), StopOnSignal())
    curve: Curve = []
    elapsed, previous = 0.0, 0
    for step in sorted(tracker.metrics):
        row = tracker.metrics[step]
        if "time/step_ms" in row:
            elapsed += row["time/step_ms"] * (step - previous) / 1e3
            previous = step
            if "l2_rel" in row:
                curve.append((elapsed, row["l2_rel"]))
    return {"curve": curve, "final_l2": final["final/l2_rel"], "steps": final["final/steps"],
            "adam_checks": sum(1 for step in tracker.metrics if step <= args.adam and "l2_rel" in tracker.metrics[step]),
            "stop_reasons": tracker.tags}


def deepxde_curve(args: argparse.Namespace, reference: Path, out: Path, backend: str) -> dict:
    """DeepXDE's recipe with one backend in its own environment, one thread (TensorFlow's, torch's and OpenMP's)."""
    result = out / f"deepxde-{backend}.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1",
           "DDE_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2"}
    command = [str(venv_python(args.deepxde_venv, DEEPXDE_PACKAGES)), str(DRIVER), "--reference", str(reference), "--out", str(result),
               "--depth", str(args.depth), "--width", str(args.width), "--pde", str(args.pde), "--bc", str(args.bc),
               "--ic", str(args.ic), "--adam", str(args.adam), "--lbfgs", str(args.qn), "--check-every",
               str(args.check_every), "--seed", str(args.seed)]
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)
    data = json.loads(result.read_text())
    data["final_l2"] = data["curve"][-1][1]
    return data


def write_reference(path: Path) -> None:
    """pinnrun's Burgers reference grid and u_ref, for DeepXDE's checks."""
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose("config", overrides=["problem=burgers"])
    evaluation = build(cfg, validate(cfg)).evaluation
    np.savez(path, inputs=evaluation.inputs, u_ref=evaluation.u_ref)


def seconds_to(curve: Curve, target: float) -> Optional[float]:
    """Training seconds at the first check with rel-L2 <= target (None: not reached)."""
    return next((t for t, l2 in curve if l2 <= target), None)


def error_at(curve: Curve, budget: float) -> float:
    """rel-L2 of the last check within the budget (a run that ended earlier keeps its final error)."""
    within = [l2 for t, l2 in curve if t <= budget]
    return within[-1] if within else math.nan


def paired_ratios(errors_a: Sequence[float], errors_b: Sequence[float]) -> dict:
    """Per-seed ratios b/a as pinnrun-compare --baseline reports them (pinnrun.paired): geometric
    mean, 95 % t-interval of the mean log ratio, exact Wilcoxon signed-rank p, verdict."""
    from pinnrun import paired

    result = paired.compare_pairs(errors_a, errors_b)
    return {"geometric_mean": result.ratio, "interval_95": [result.ci_low, result.ci_high], "wilcoxon_p": result.p_value,
            "seeds_needed": result.seeds_needed, "verdict": paired.verdict(result, result.p_value), "seeds": result.n_pairs}


def plot(curves: dict[str, Curve], budget: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, curve in curves.items():
        ax.plot([t for t, _ in curve], [l2 for _, l2 in curve], label=name)
    for target in TARGETS:
        ax.axhline(target, color="grey", lw=0.6, ls=":")
    ax.axvline(budget, color="black", lw=0.8, ls="--", label=f"equal budget {budget:.0f} s")
    ax.set(xlabel="training seconds (one thread)", ylabel="rel-L2", yscale="log", title="Burgers, float64")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def sci(value: Optional[float]) -> str:
    return "not reached" if value is None else f"{value:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--depth", type=int, default=2)
    parser.add_argument("--width", type=int, default=20)
    parser.add_argument("--pde", type=int, default=2000)
    parser.add_argument("--ic", type=int, default=100)
    parser.add_argument("--bc", type=int, default=200)
    parser.add_argument("--adam", type=int, default=2000)
    parser.add_argument("--qn", type=int, default=5000, help="iterations of the second-order phase, at most")
    parser.add_argument("--check-every", type=int, default=100)
    parser.add_argument("--loss-transform", default="none", help="of the dense quasi-Newton phases: none | sqrt | log")
    parser.add_argument("--lbfgs-loss-transform", default="none", help="of pinnrun's L-BFGS phase: none | sqrt | log")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--budget", type=float, help="equal wall-clock budget in seconds (default: the shortest run)")
    parser.add_argument("--only", nargs="*", help="contenders to run (default: all)")
    parser.add_argument("--skip-deepxde", action="store_true")
    parser.add_argument("--deepxde-venv", type=Path, default=Path(".venv-deepxde"))
    parser.add_argument("--paired-seeds", type=int, nargs="*", default=[])
    parser.add_argument("--out", type=Path, default=Path("benchmark-optimizers"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}", flush=True)
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name, method in CONTENDERS.items():
            if args.only is None or name in args.only:
                started = time.perf_counter()
                results[name] = pinnrun_curve(args, method, work / method, args.seed)
                print(f"{name}: final rel-L2 {results[name]['final_l2']:.3e} ({time.perf_counter() - started:.0f} s wall)", flush=True)
        write_reference(work / "reference.npz")
        for name, backend in DEEPXDE.items():
            if not args.skip_deepxde and (args.only is None or name in args.only):
                results[name] = deepxde_curve(args, work / "reference.npz", work, backend)
                print(f"{name}: final rel-L2 {results[name]['final_l2']:.3e}", flush=True)
        paired = {}
        if args.paired_seeds:
            finals: dict[str, list[float]] = {"uniform": [], "sapinn": []}
            for seed in args.paired_seeds:
                for weighting in finals:
                    finals[weighting].append(pinnrun_curve(args, "ssbroyden", work / f"{weighting}-{seed}", seed, weighting)["final_l2"])
                print(f"seed {seed}: uniform {finals['uniform'][-1]:.3e}, sapinn {finals['sapinn'][-1]:.3e}", flush=True)
            paired = {"weighting": finals, "seeds": args.paired_seeds, "sapinn_over_uniform": paired_ratios(finals["uniform"], finals["sapinn"])}
    curves = {name: result["curve"] for name, result in results.items()}
    budget = args.budget or min((curve[-1][0] for curve in curves.values()), default=0.0)
    summary = {name: {"seconds_to": {str(target): seconds_to(curve, target) for target in TARGETS},
                      "l2_at_budget": error_at(curve, budget), "final_l2": results[name]["final_l2"], "total_s": curve[-1][0]}
               for name, curve in curves.items()}
    print(f"\nequal budget: {budget:.1f} s")
    print(f"{'contender':26s} {'s to 1e-2':>11s} {'s to 1e-3':>11s} {'s to 1e-4':>11s} {'l2 at budget':>13s} {'final l2':>10s} {'total s':>8s}")
    for name, row in summary.items():
        cells = [sci(row["seconds_to"][str(t)]) for t in TARGETS]
        print(f"{name:26s} {cells[0]:>11s} {cells[1]:>11s} {cells[2]:>11s} {row['l2_at_budget']:13.3e} {row['final_l2']:10.3e} {row['total_s']:8.1f}")
    if paired:
        ratio = paired["sapinn_over_uniform"]
        print(f"SA-PINN / uniform under Adam + SSBroyden over seeds {args.paired_seeds}: geometric mean {ratio['geometric_mean']:.2f}, "
              f"95 % interval [{ratio['interval_95'][0]:.2f}, {ratio['interval_95'][1]:.2f}], Wilcoxon p {ratio['wilcoxon_p']:.3f}: "
              f"{ratio['verdict']}")
    report = {"command": " ".join(sys.argv), "args": {k: str(v) for k, v in vars(args).items()}, "budget_s": budget,
              "summary": summary, "results": results, "paired": paired, "load_average": os.getloadavg()}
    (args.out / "curves.json").write_text(json.dumps(report, indent=1))
    if curves:
        plot(curves, budget, args.out / "optimizers.png")
    print(f"wrote {args.out / 'curves.json'}" + (f" and {args.out / 'optimizers.png'}" if curves else ""))


if __name__ == "__main__":
    main()
