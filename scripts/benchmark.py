"""Side-by-side speed benchmark of pinnrun against DeepXDE's PyTorch backend, in one process.

Same network (8 x 20 tanh, Glorot normal), same Burgers problem and point counts (10k collocation,
200 boundary, 100 initial), fp32, CPU. Variants are measured in turn within each repeat, so
machine load hits them alike; the report gives medians over repeats and ratios.

    python scripts/benchmark.py --repeats 3 --steps 50 --json benchmark.json

Sections: Adam steps/s (pinnrun autograd, jet, jet + torch.compile, DeepXDE), tracking on/off,
start-up to the first step, peak RSS at 10k and 100k points, per-scheme step ratios where those
schemes exist, and (with --time-to-target) wall-clock to rel-L2 <= 1e-2.
DeepXDE comes with the `bench` extra: pip install -e '.[bench]'.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

os.environ.setdefault("DDE_BACKEND", "pytorch")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402

from pinnrun.checkpoint import Progress  # noqa: E402
from pinnrun.cli import config_dir  # noqa: E402
from pinnrun.config import parse_option  # noqa: E402
from pinnrun.engine import Parts, build, rel_l2, train, validate  # noqa: E402
from pinnrun.runtime import StopOnSignal  # noqa: E402
from pinnrun.tracking import MemoryTracker, flatten, open_run  # noqa: E402

TARGET_L2 = 1e-2


def compose_cfg(out: Path, *overrides: str) -> DictConfig:
    base = ["problem=burgers", "model=mlp", "model.depth=8", "model.width=20", "model.activation=tanh",
            "dtype=float32", "device=cpu", "optimizer=adam", "train.progress=false", "output.plots=false",
            "output.prediction=false", "output.checkpoint=false", f"output.dir={out}",
            f"tracking.uri=sqlite:///{out / 'mlflow.db'}"]
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return compose("config", overrides=base + list(overrides))


class PinnrunVariant:
    """A built pinnrun run that trains `steps` more Adam steps per call (the real `train` loop)."""

    def __init__(self, out: Path, *overrides: str):
        self.out = out
        self.overrides = overrides
        out.mkdir(parents=True, exist_ok=True)
        cfg = compose_cfg(out, *overrides)
        self.parts: Parts = build(cfg, validate(cfg))

    def cfg(self, steps: int, log_every: int, eval_every: int) -> DictConfig:
        return compose_cfg(self.out, *self.overrides, f"optimizer.steps={steps}", f"train.log_every={log_every}",
                           f"train.eval_every={eval_every}")

    def train(self, steps: int, log_every: Optional[int] = None, eval_every: int = 10**9, tracking: bool = False) -> MemoryTracker:
        cfg = self.cfg(steps, log_every or steps, eval_every)
        self.parts.phases = parse_option("optimizer", cfg.optimizer).build().phases()
        recorder = MemoryTracker()
        if tracking:
            params = flatten(OmegaConf.to_container(cfg, resolve=True))
            with open_run(cfg.tracking, "benchmark", "tracking", {"problem": "burgers"}, params) as tracker:
                train(self.parts, cfg, tracker, self.out, Progress(), StopOnSignal())
        else:
            train(self.parts, cfg, recorder, self.out, Progress(), StopOnSignal())
        return recorder

    def step_ms(self, steps: int) -> float:
        """Milliseconds per Adam step over `steps` steps (the loop's own timer, no evaluation)."""
        return self.train(steps).metrics[steps]["time/step_ms"]


class DeepXDEBurgers:
    """DeepXDE's Burgers example (PyTorch backend) with pinnrun's network and point counts."""

    def __init__(self, n_pde: int, seed: int = 0):
        import deepxde as dde

        dde.config.set_random_seed(seed)
        geomtime = dde.geometry.GeometryXTime(dde.geometry.Interval(-1, 1), dde.geometry.TimeDomain(0, 1))
        nu = 0.01 / np.pi

        def pde(x, y):
            u_x = dde.grad.jacobian(y, x, i=0, j=0)
            u_t = dde.grad.jacobian(y, x, i=0, j=1)
            u_xx = dde.grad.hessian(y, x, i=0, j=0)
            return u_t + y * u_x - nu * u_xx

        bc = dde.icbc.DirichletBC(geomtime, lambda x: 0, lambda _, on_boundary: on_boundary)
        ic = dde.icbc.IC(geomtime, lambda x: -np.sin(np.pi * x[:, 0:1]), lambda _, on_initial: on_initial)
        data = dde.data.TimePDE(geomtime, pde, [bc, ic], num_domain=n_pde, num_boundary=200, num_initial=100)
        net = dde.nn.FNN([2] + [20] * 8 + [1], "tanh", "Glorot normal")
        self.model = dde.Model(data, net)
        self.model.compile("adam", lr=1e-3)

    def step_ms(self, steps: int) -> float:
        start = time.perf_counter()
        self.model.train(iterations=steps, display_every=steps, verbose=0)
        return 1e3 * (time.perf_counter() - start) / steps

    def predict(self, inputs: np.ndarray) -> np.ndarray:
        """u on the evaluation inputs (float64)."""
        return self.model.predict(inputs.astype(np.float32))[:, 0].astype(np.float64)


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def adam_speed(out: Path, args: argparse.Namespace, notes: list[str]) -> dict[str, Any]:
    """ms per Adam step of each variant, measured in turn within each repeat."""
    points = f"problem.n.pde={args.points}"
    variants: dict[str, Any] = {
        "pinnrun autograd": PinnrunVariant(out / "autograd", points),
        "pinnrun jet": PinnrunVariant(out / "jet", points, "engine.derivatives=jet"),
        "pinnrun jet+compile": PinnrunVariant(out / "compile", points, "engine.derivatives=jet", "engine.compile=true"),
    }
    if importlib.util.find_spec("deepxde") is not None and not args.skip_deepxde:
        variants["deepxde pytorch"] = DeepXDEBurgers(args.points)
    else:
        notes.append("DeepXDE not measured: install the bench extra (pip install -e '.[bench]')")
    warmup_s = {}
    for name, variant in variants.items():
        start = time.perf_counter()
        variant.step_ms(args.warmup)
        warmup_s[name] = time.perf_counter() - start
        print(f"  warm-up {name}: {warmup_s[name]:.1f} s for {args.warmup} steps", flush=True)
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for repeat in range(args.repeats):
        for name, variant in variants.items():
            samples[name].append(variant.step_ms(args.steps))
        print(f"  repeat {repeat + 1}: " + ", ".join(f"{n} {s[-1]:.1f} ms" for n, s in samples.items()), flush=True)
    result: dict[str, Any] = {"ms_per_step": {n: median(s) for n, s in samples.items()}, "samples_ms": samples,
                              "warmup_s": warmup_s}
    if "deepxde pytorch" in samples:
        # per-repeat ratios (same repeat = same load), then their median
        result["speedup_vs_deepxde"] = {
            n: median([d / p for d, p in zip(samples["deepxde pytorch"], s)]) for n, s in samples.items() if n != "deepxde pytorch"
        }
    result["speedup_vs_autograd"] = {
        n: median([a / p for a, p in zip(samples["pinnrun autograd"], s)]) for n, s in samples.items()
    }
    return result


def tracking_overhead(out: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Wall-clock of a run (open, train with logs every 100 steps, close) with MLflow vs without."""
    variant = PinnrunVariant(out / "tracking", f"problem.n.pde={args.points}")
    variant.train(5, tracking=True)
    times: dict[str, list[float]] = {"on": [], "off": []}
    for _ in range(args.repeats):
        for mode in ("on", "off"):
            start = time.perf_counter()
            variant.train(args.tracking_steps, log_every=100, tracking=mode == "on")
            times[mode].append(time.perf_counter() - start)
    ratios = [on / off for on, off in zip(times["on"], times["off"])]
    return {"steps": args.tracking_steps, "seconds": times, "ratio_on_off": median(ratios)}


def startup(out: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Seconds from launching `pinnrun` to its exit after one Adam step: an upper bound on the time
    to the first step (it also includes the final evaluation and closing the run)."""
    results: dict[str, list[float]] = {"tracking on": [], "tracking off": []}
    for _ in range(args.repeats):
        for mode in results:
            command = [sys.executable, "-m", "pinnrun.cli", "problem=burgers", "optimizer=adam", "optimizer.steps=1",
                       "train.log_every=1", "train.progress=false", "output.plots=false", "device=cpu",
                       f"tracking.enabled={str(mode == 'tracking on').lower()}", f"tracking.uri=sqlite:///{out / 'startup.db'}",
                       f"hydra.run.dir={out / 'startup'}"]
            start = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True, cwd=out)
            results[mode].append(time.perf_counter() - start)
    return {"seconds": results, "median_s": {mode: median(v) for mode, v in results.items()}}


def peak_rss(out: Path, points: int, derivatives: str) -> float:
    """Peak resident memory (MiB) of a `pinnrun` process running 3 Adam steps at `points` points."""
    command = [sys.executable, "-m", "pinnrun.cli", "problem=burgers", "optimizer=adam", "optimizer.steps=3",
               "train.log_every=3", "train.progress=false", "output.plots=false", "tracking.enabled=false", "device=cpu",
               f"problem.n.pde={points}", f"engine.derivatives={derivatives}", f"hydra.run.dir={out / 'rss'}"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=out)
    _, status, usage = os.wait4(process.pid, 0)
    if status != 0:
        raise RuntimeError(f"peak RSS run failed: {process.stderr.read().decode()[-2000:]}")
    return usage.ru_maxrss / 1024


def scheme_ratios(out: Path, args: argparse.Namespace, notes: list[str]) -> dict[str, float]:
    """Step time of sapinn and gradnorm relative to uniform, where those schemes exist."""
    results: dict[str, float] = {}
    for scheme in ("sapinn", "gradnorm"):
        if not (Path(config_dir()) / "weighting" / f"{scheme}.yaml").exists():
            notes.append(f"{scheme}/uniform not measured: weighting={scheme} is not in this checkout")
            continue
        pair = {name: PinnrunVariant(out / name, f"problem.n.pde={args.points}", f"weighting={name}")
                for name in (scheme, "uniform")}
        for variant in pair.values():
            variant.step_ms(args.warmup)
        ratios = []
        for _ in range(args.repeats):
            ms = {name: variant.step_ms(args.steps) for name, variant in pair.items()}
            ratios.append(ms[scheme] / ms["uniform"])
        results[f"{scheme}/uniform"] = median(ratios)
    return results


def time_to_target(out: Path, args: argparse.Namespace) -> dict[str, Optional[float]]:
    """Training seconds (evaluations excluded) until rel-L2 <= 1e-2 on the Burgers reference grid,
    from fresh networks, checked every `args.check_every` Adam steps (lr 1e-3) up to `args.max_steps`.
    The compiled variant's time includes its compilation."""
    points = f"problem.n.pde={args.points}"
    variants = {
        "pinnrun autograd": PinnrunVariant(out / "target-autograd", points),
        "pinnrun jet+compile": PinnrunVariant(out / "target-compile", points, "engine.derivatives=jet", "engine.compile=true"),
    }
    reference = variants["pinnrun autograd"].parts.evaluation
    results: dict[str, Optional[float]] = {}
    for name, variant in variants.items():
        recorder = variant.train(args.max_steps, log_every=args.check_every, eval_every=args.check_every)
        elapsed, previous, results[name] = 0.0, 0, None
        for step in sorted(recorder.metrics):
            elapsed += recorder.metrics[step]["time/step_ms"] * (step - previous) / 1e3
            previous = step
            if recorder.metrics[step]["l2_rel"] <= TARGET_L2:
                results[name] = elapsed
                break
    if importlib.util.find_spec("deepxde") is not None and not args.skip_deepxde:
        deepxde, elapsed, results["deepxde pytorch"] = DeepXDEBurgers(args.points), 0.0, None
        for _ in range(0, args.max_steps, args.check_every):
            elapsed += deepxde.step_ms(args.check_every) * args.check_every / 1e3
            if rel_l2(deepxde.predict(reference.inputs), reference.u_ref) <= TARGET_L2:
                results["deepxde pytorch"] = elapsed
                break
    for name, seconds in results.items():
        print(f"  {name}: {'not reached' if seconds is None else f'{seconds:.1f} s'}", flush=True)
    return results


def table(rows: list[tuple[str, str, str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) for row in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=50, help="Adam steps per timed sample")
    parser.add_argument("--warmup", type=int, default=10, help="Adam steps before timing (includes compilation)")
    parser.add_argument("--points", type=int, default=10000, help="collocation points")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--tracking-steps", type=int, default=300)
    parser.add_argument("--skip-deepxde", action="store_true")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--time-to-target", action="store_true", help="also train each variant to rel-L2 <= 1e-2")
    parser.add_argument("--check-every", type=int, default=500)
    parser.add_argument("--max-steps", type=int, default=20000)
    parser.add_argument("--json", type=Path, default=Path("benchmark.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    notes: list[str] = []
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, {args.threads} thread(s)"
    print(f"machine: {machine}; load average {os.getloadavg()[0]:.1f}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        print("Adam steps:", flush=True)
        speed = adam_speed(out, args, notes)
        print("tracking on/off:", flush=True)
        tracking = tracking_overhead(out, args)
        print("start-up:", flush=True)
        start = startup(out, args)
        memory = {}
        if not args.skip_memory:
            for points in (10_000, 100_000):
                for derivatives in ("autograd", "jet"):
                    memory[f"{derivatives} {points}"] = peak_rss(out, points, derivatives)
        schemes = scheme_ratios(out, args, notes)
        target = None
        if args.time_to_target:
            print("time to rel-L2 <= 1e-2:", flush=True)
            target = time_to_target(out, args)
        else:
            notes.append("time to rel-L2 <= 1e-2 not measured (pass --time-to-target)")
    rows = [("measure", "value", "target")]
    for name, ms in speed["ms_per_step"].items():
        rows.append((f"Adam ms/step, {name}", f"{ms:.1f}", ""))
    for name, ratio in speed.get("speedup_vs_deepxde", {}).items():
        rows.append((f"speed-up vs DeepXDE, {name}", f"{ratio:.2f}x", ">= 2x"))
    for name, ratio in speed["speedup_vs_autograd"].items():
        rows.append((f"speed-up vs pinnrun autograd, {name}", f"{ratio:.2f}x", ""))
    rows.append(("compile warm-up (s)", f"{speed['warmup_s']['pinnrun jet+compile']:.1f}", ""))
    rows.append(("tracking on/off", f"{tracking['ratio_on_off']:.3f}", "<= 1.03"))
    for mode, seconds in start["median_s"].items():
        rows.append((f"launch to exit after 1 step, {mode} (s)", f"{seconds:.1f}", "<= 5"))
    for name, mib in memory.items():
        rows.append((f"peak RSS, {name} points (MiB)", f"{mib:.0f}", ""))
    for name, ratio in schemes.items():
        rows.append((f"step ratio {name}", f"{ratio:.2f}", "sapinn <= 1.1, gradnorm <= 2"))
    for name, seconds in (target or {}).items():
        rows.append((f"seconds to rel-L2 <= 1e-2, {name}", "not reached" if seconds is None else f"{seconds:.1f}", ""))
    print()
    print(table(rows))
    for note in notes:
        print(f"note: {note}")
    report = {"machine": machine, "args": {k: str(v) for k, v in vars(args).items()}, "adam": speed,
              "tracking": tracking, "startup": start, "peak_rss_mib": memory, "schemes": schemes,
              "time_to_target_s": target, "notes": notes, "load_average": os.getloadavg()}
    args.json.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
