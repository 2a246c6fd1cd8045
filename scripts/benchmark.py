"""Side-by-side speed benchmark of pinnrun against every backend a user could pick instead.

Same network (8 x 20 tanh, Glorot normal), same Burgers problem and point counts (10k collocation,
200 boundary, 100 initial), fp32, CPU. Variants are measured in turn within each repeat, so
machine load hits them alike; the report gives medians over repeats and ratios.

    python scripts/benchmark.py --repeats 3 --steps 50 --threads 1 2 --json benchmark.json

Sections: Adam steps/s (scripts/backend_race.py: pinnrun autograd, jet, jet + torch.compile with
either allocator, DeepXDE's pytorch, tensorflow.compat.v1, tensorflow and jax backends and a
plain JAX step, each in a worker process of its own, at each `--threads` count, with page faults
per step and the matrix-product floor), tracking on/off, start-up to the first step, peak RSS
(Burgers at 10k and 100k points, Helmholtz 4x50 at 100k), sapinn and gradnorm-refresh step ratios
to uniform, the GP's share of a sapinn_gp run, and (with --time-to-target) wall-clock to rel-L2 <=
1e-2. `--adam-only` runs the first section alone.
DeepXDE and JAX run in their own environments, `--deepxde-venv` and `--jax-venv`, created with
scripts/peer_venvs.py's package lists when missing (`--skip-deepxde`, `--skip-jax` leave them
out). The time-to-target section runs DeepXDE's PyTorch backend in this process, from the `bench`
extra: pip install -e '.[bench]'.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
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
from pinnrun.problems.base import Evaluation  # noqa: E402
from pinnrun.runtime import StopOnSignal  # noqa: E402
from pinnrun.tracking import MemoryTracker, flatten, open_run  # noqa: E402

from backend_race import median, race, report  # noqa: E402 - scripts/backend_race.py, beside this script
from peer_venvs import DEEPXDE_PACKAGES, JAX_PACKAGES, venv_python  # noqa: E402

TARGET_L2 = 1e-2


def compose_cfg(out: Path, *overrides: str) -> DictConfig:
    base = ["problem=burgers", "model=mlp", "model.depth=8", "model.width=20", "model.activation=tanh",
            "dtype=float32", "device=cpu", "train.progress=false", "output.plots=false",
            "output.prediction=false", "output.checkpoint=false", f"output.dir={out}",
            f"tracking.uri=sqlite:///{out / 'mlflow.db'}"]
    if not any(o.startswith("optimizer=") for o in overrides):
        base.append("optimizer=adam")
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

        from deepxde_burgers import burgers_data  # scripts/deepxde_burgers.py, beside this script

        dde.config.set_random_seed(seed)
        data = burgers_data(dde, n_pde)
        net = dde.nn.FNN([2] + [20] * 8 + [1], "tanh", "Glorot normal")
        self.model = dde.Model(data, net)
        self.model.compile("adam", lr=1e-3)

    def seconds_to_target(self, args: argparse.Namespace, reference: Evaluation) -> Optional[float]:
        """The time-to-target recipe in DeepXDE: Adam then L-BFGS, rel-L2 checked by a callback every
        `check_every` steps/iterations (the check's own time excluded), stopping at the target."""
        import deepxde as dde

        model, check = self.model, args.check_every

        class Target(dde.callbacks.Callback):
            def __init__(self) -> None:
                super().__init__()
                self.started, self.excluded, self.checked, self.reached = time.perf_counter(), 0.0, 0, None

            def on_epoch_end(self) -> None:
                if model.train_state.step - self.checked < check or self.reached is not None:
                    return
                start = time.perf_counter()
                self.checked = model.train_state.step
                u = model.predict(reference.inputs.astype(np.float32))[:, 0].astype(np.float64)
                self.excluded += time.perf_counter() - start
                if rel_l2(u, reference.u_ref) <= TARGET_L2:
                    self.reached = time.perf_counter() - self.started - self.excluded
                    model.stop_training = True

        target = Target()
        model.train(iterations=args.target_adam, callbacks=[target], display_every=check, verbose=0)
        if target.reached is None:
            dde.optimizers.set_LBFGS_options(maxiter=args.target_lbfgs)
            dde.optimizers.config.LBFGS_options.update(iter_per_step=check, fun_per_step=int(1.25 * check))
            model.compile("L-BFGS")
            model.train(callbacks=[target], display_every=check, verbose=0)
        return target.reached


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
    """Start-up of `pinnrun` with MLflow tracking on an existing sqlite store: the run's own
    `time/startup_s` (process launch to the first training step), and launch to exit after one
    Adam step with tracking on and off (which also includes the final evaluation and closing)."""
    store = out / "startup.db"
    results: dict[str, list[float]] = {"first step, tracking on": [], "exit, tracking on": [], "exit, tracking off": []}
    for repeat in range(args.repeats + 1):  # the first launch creates the store and fills the reference cache
        for tracking in ("on", "off"):
            command = [sys.executable, "-m", "pinnrun.cli", "problem=burgers", "optimizer=adam", "optimizer.steps=1",
                       "train.log_every=1", "train.progress=false", "output.plots=false", "device=cpu",
                       f"tracking.enabled={str(tracking == 'on').lower()}", f"tracking.uri=sqlite:///{store}",
                       f"tracking.experiment=startup-{repeat}", f"hydra.run.dir={out / 'startup'}"]
            start = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True, cwd=out)
            if repeat:
                results[f"exit, tracking {tracking}"].append(time.perf_counter() - start)
        if repeat:
            results["first step, tracking on"].append(logged_startup(store, f"startup-{repeat}"))
    return {"seconds": results, "median_s": {mode: median(v) for mode, v in results.items()}}


def logged_startup(store: Path, experiment: str) -> float:
    """The `time/startup_s` metric of the one run in `experiment`."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{store}")
    (run,) = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    return run.data.metrics["time/startup_s"]


def peak_rss(out: Path, *overrides: str) -> float:
    """Peak resident memory (MiB) of a `pinnrun` process running 3 Adam steps with the overrides."""
    command = [sys.executable, "-m", "pinnrun.cli", "optimizer=adam", "optimizer.steps=3", "train.log_every=3",
               "train.progress=false", "output.plots=false", "tracking.enabled=false", "device=cpu",
               f"hydra.run.dir={out / 'rss'}", *overrides]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=out)
    _, status, usage = os.wait4(process.pid, 0)
    if status != 0:
        raise RuntimeError(f"peak RSS run failed: {process.stderr.read().decode()[-2000:]}")
    return usage.ru_maxrss / 1024


MEMORY_CASES = {
    "burgers 8x20, 10k points, autograd": ["problem=burgers", "problem.n.pde=10000"],
    "burgers 8x20, 100k points, autograd": ["problem=burgers", "problem.n.pde=100000"],
    "burgers 8x20, 100k points, jet": ["problem=burgers", "problem.n.pde=100000", "engine.derivatives=jet"],
    "helmholtz 4x50, 100k points, autograd": ["problem=helmholtz", "model.depth=4", "model.width=50", "problem.n.pde=100000"],
    "helmholtz 4x50, 100k points, jet": ["problem=helmholtz", "model.depth=4", "model.width=50", "problem.n.pde=100000",
                                         "engine.derivatives=jet"],
    "helmholtz 4x50, 100k points, sapinn": ["problem=helmholtz", "model.depth=4", "model.width=50", "problem.n.pde=100000",
                                            "weighting=sapinn"],
}
"""Peak-RSS cases: the issue's 10k and 100k points, and Helmholtz 4x50 at 100k (must fit in 24 GiB)."""


SCHEMES = {"sapinn": ["weighting=sapinn"], "gradnorm refresh": ["weighting=gradnorm", "weighting.update_every=1"]}
"""Schemes timed against uniform; gradnorm refreshes at every step, so its ratio is the refresh step's."""


def scheme_ratios(out: Path, args: argparse.Namespace) -> dict[str, float]:
    """Step time of sapinn and of a gradnorm refresh relative to uniform, in the real training loop,
    and the GP's share of a sapinn_gp run at the default cadence (refit + predict every 100 steps)."""
    points = f"problem.n.pde={args.points}"
    variants = {"uniform": PinnrunVariant(out / "uniform", points)}
    variants.update({name: PinnrunVariant(out / name.replace(" ", "-"), points, *extra) for name, extra in SCHEMES.items()})
    for variant in variants.values():
        variant.step_ms(args.warmup)
    ratios: dict[str, list[float]] = {name: [] for name in SCHEMES}
    for _ in range(args.repeats):
        ms = {name: variant.step_ms(args.steps) for name, variant in variants.items()}
        for name in SCHEMES:
            ratios[name].append(ms[name] / ms["uniform"])
    results = {f"{name}/uniform": median(values) for name, values in ratios.items()}
    results["GP share of sapinn_gp"] = gp_share(out, args)
    return results


def gp_share(out: Path, args: argparse.Namespace) -> float:
    """Seconds inside the GP posterior (refit + predict) over the wall-clock of a sapinn_gp run of
    `args.gp_steps` Adam steps with the default resampling cadence (the GP timed by wrapping it)."""
    from pinnrun.weighting import sapinn_gp

    spent: list[float] = []
    original = sapinn_gp.gp_posterior_mean

    def timed(*gp_args: Any) -> Any:
        start = time.perf_counter()
        result = original(*gp_args)
        spent.append(time.perf_counter() - start)
        return result

    variant = PinnrunVariant(out / "sapinn_gp", f"problem.n.pde={args.points}", "weighting=sapinn_gp")
    sapinn_gp.gp_posterior_mean = timed
    try:
        start = time.perf_counter()
        variant.train(args.gp_steps)
        wall = time.perf_counter() - start
    finally:
        sapinn_gp.gp_posterior_mean = original
    return sum(spent) / wall


def time_to_target(out: Path, args: argparse.Namespace) -> dict[str, Optional[float]]:
    """Training seconds (evaluations excluded) until rel-L2 <= 1e-2 on the Burgers reference grid,
    from fresh networks, with one recipe for every tool: Adam (lr 1e-3) for `--target-adam` steps,
    then L-BFGS for up to `--target-lbfgs` iterations, rel-L2 checked every `--check-every`
    steps/iterations. The compiled variant's time includes its compilation."""
    points = f"problem.n.pde={args.points}"
    recipe = ["optimizer=adam_lbfgs", f"optimizer.adam.steps={args.target_adam}", "optimizer.adam.lr=1e-3",
              f"optimizer.lbfgs.steps={args.target_lbfgs}", f"train.log_every={args.check_every}",
              f"train.eval_every={args.check_every}", points]
    variants = {"pinnrun autograd": [], "pinnrun jet+compile": ["engine.derivatives=jet", "engine.compile=true"]}
    results: dict[str, Optional[float]] = {}
    for name, extra in variants.items():
        cfg = compose_cfg(out / name.replace(" ", "-"), *recipe, *extra)
        recorder, parts = MemoryTracker(), build(cfg, validate(cfg))
        train(parts, cfg, recorder, out, Progress(), StopOnSignal())
        results[name] = seconds_to_target(recorder.metrics)
    if importlib.util.find_spec("deepxde") is not None and not args.skip_deepxde:
        results["deepxde pytorch"] = DeepXDEBurgers(args.points).seconds_to_target(args, parts.evaluation)
    for name, seconds in results.items():
        print(f"  {name}: {'not reached' if seconds is None else f'{seconds:.1f} s'}", flush=True)
    return results


def seconds_to_target(metrics: dict[int, dict[str, float]]) -> Optional[float]:
    """Training seconds up to the first logged step with rel-L2 <= 1e-2, from the loop's own step timer."""
    elapsed, previous = 0.0, 0
    for step in sorted(metrics):
        if "time/step_ms" not in metrics[step]:
            continue
        elapsed += metrics[step]["time/step_ms"] * (step - previous) / 1e3
        previous = step
        if metrics[step].get("l2_rel", float("inf")) <= TARGET_L2:
            return elapsed
    return None


def table(rows: list[tuple[str, str, str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) for row in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=50, help="Adam steps per timed sample")
    parser.add_argument("--warmup", type=int, default=10, help="Adam steps before timing (includes compilation)")
    parser.add_argument("--points", type=int, default=10000, help="collocation points")
    parser.add_argument("--ic", type=int, default=100, help="initial points (the Adam race)")
    parser.add_argument("--bc", type=int, default=200, help="boundary points (the Adam race)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1],
                        help="CPU threads of each contender in the Adam race, one count after the other; the first "
                             "is torch's in the other sections")
    parser.add_argument("--floor-repeats", type=int, default=30, help="samples of the matrix-product floor (0: none)")
    parser.add_argument("--adam-only", action="store_true", help="only the Adam race (the backend comparison)")
    parser.add_argument("--tracking-steps", type=int, default=300)
    parser.add_argument("--gp-steps", type=int, default=500, help="Adam steps of the sapinn_gp run (5 resamples)")
    parser.add_argument("--skip-deepxde", action="store_true", help="no DeepXDE contender (nor in time to target)")
    parser.add_argument("--skip-jax", action="store_true", help="no DeepXDE-jax nor plain JAX contender")
    parser.add_argument("--deepxde-venv", type=Path, default=Path(".venv-deepxde"),
                        help="DeepXDE with torch, TensorFlow and tensorflow-probability (created when missing)")
    parser.add_argument("--jax-venv", type=Path, default=Path(".venv-jax"),
                        help="JAX, optax, flax and DeepXDE (created when missing)")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--time-to-target", action="store_true", help="also train each variant to rel-L2 <= 1e-2")
    parser.add_argument("--check-every", type=int, default=250, help="steps between rel-L2 checks (time to target)")
    parser.add_argument("--target-adam", type=int, default=2000, help="Adam steps of the time-to-target recipe")
    parser.add_argument("--target-lbfgs", type=int, default=3000, help="L-BFGS iterations (at most) after them")
    parser.add_argument("--json", type=Path, default=Path("benchmark.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads[0])
    notes: list[str] = []
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, {args.threads[0]} thread(s)"
    print(f"machine: {machine}; load average {os.getloadavg()[0]:.1f}", flush=True)
    pythons = {"pinnrun": Path(sys.executable)}
    if not args.skip_deepxde:
        pythons["deepxde"] = venv_python(args.deepxde_venv, DEEPXDE_PACKAGES)
    if not args.skip_jax:
        pythons["jax"] = venv_python(args.jax_venv, JAX_PACKAGES)
    speed = race(args, pythons)
    result: dict[str, Any] = {"command": " ".join(sys.argv), "machine": machine, "args": {k: str(v) for k, v in vars(args).items()},
                              "adam": speed}
    print()
    print(report(speed))
    if not args.adam_only:
        result.update(other_sections(args, speed, notes))
    result.update({"notes": notes, "load_average": os.getloadavg()})
    args.json.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.json}")


def other_sections(args: argparse.Namespace, speed: dict[str, Any], notes: list[str]) -> dict[str, Any]:
    """Tracking, start-up, memory, schemes and time to target, in this process; their table printed."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        print("tracking on/off:", flush=True)
        tracking = tracking_overhead(out, args)
        print("start-up:", flush=True)
        start = startup(out, args)
        memory = {} if args.skip_memory else {name: peak_rss(out, *case) for name, case in MEMORY_CASES.items()}
        print("schemes:", flush=True)
        schemes = scheme_ratios(out, args)
        target = None
        if args.time_to_target:
            print("time to rel-L2 <= 1e-2:", flush=True)
            target = time_to_target(out, args)
        else:
            notes.append("time to rel-L2 <= 1e-2 not measured (pass --time-to-target)")
    rows = [("measure", "value", "target")]
    warmup = speed["threads"][str(args.threads[0])]["warmup_s"]
    if "pinnrun jet+compile" in warmup:
        rows.append((f"compile warm-up, {args.warmup} steps (s)", f"{warmup['pinnrun jet+compile']:.1f}", ""))
    rows.append(("tracking on/off", f"{tracking['ratio_on_off']:.3f}", "<= 1.03"))
    for mode, seconds in start["median_s"].items():
        rows.append((f"launch to {mode} (s)", f"{seconds:.1f}", "<= 5" if mode.startswith("first step") else ""))
    for name, mib in memory.items():
        rows.append((f"peak RSS, {name} (MiB)", f"{mib:.0f}", "< 24 GiB" if "100k" in name else ""))
    targets = {"sapinn/uniform": "<= 1.1", "gradnorm refresh/uniform": "<= 2", "GP share of sapinn_gp": "<= 0.05"}
    for name, ratio in schemes.items():
        rows.append((name, f"{ratio:.3f}", targets[name]))
    for name, seconds in (target or {}).items():
        rows.append((f"seconds to rel-L2 <= 1e-2, {name}", "not reached" if seconds is None else f"{seconds:.1f}", ""))
    print()
    print(table(rows))
    for note in notes:
        print(f"note: {note}")
    return {"tracking": tracking, "startup": start, "peak_rss_mib": memory, "schemes": schemes, "time_to_target_s": target}


if __name__ == "__main__":
    main()
