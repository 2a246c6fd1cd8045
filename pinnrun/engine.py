"""Build a run from its config, train it, evaluate it, record it.

`run(cfg)` validates everything first (no MLflow run and no artifact exists before the config is
known to be good), builds the parts, and hands them to `train`, the loop you can read top to bottom.
"""

from __future__ import annotations

import functools
import hashlib
import math
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, NoReturn

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor

import pinnrun
from pinnrun import plots, report
from pinnrun.checkpoint import (CHECKPOINT, Progress, check_same_run, checkpoint_payload, find_checkpoint, restore,
                                save_checkpoint)
from pinnrun.config import GROUPS, ConfigError, Option, parse_option, unwritable, validate_top_level
from pinnrun.derivatives import ENGINES, FieldsFunction, autograd_fields
from pinnrun.memory import available_bytes, check_fits, run_needs
from pinnrun.models.base import PINNModel
from pinnrun.optim.base import Phase
from pinnrun.problems.base import Evaluation, Problem
from pinnrun.runtime import (DTYPES, JOB_CLOCK, RunInterrupted, StopOnSignal, check_cuda_graphs, malloc_tuned, resolve_device,
                             seed_everything, set_allocator, set_threads, use_deterministic)
from pinnrun.samplers.base import Points, Sampler
from pinnrun.sweep import sweep_tags
from pinnrun.tracking import Tracker, flatten, heartbeat_tags, open_run, run_location
from pinnrun.weighting.base import ResidualFunction, Weighting
from pinnrun.weighting.record import WeightRecorder

EVAL_BATCH = 65536
RESIDUAL_BATCH = 16384


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or Inf; training cannot continue meaningfully."""


@dataclass
class Parts:
    """Everything a training run works on, built on one device and dtype."""

    problem: Problem
    model: PINNModel
    sampler: Sampler
    weighting: Weighting
    phases: list[Phase]
    evaluation: Evaluation
    device: torch.device
    dtype: torch.dtype


def validate(cfg: DictConfig) -> dict[str, Option]:
    """Check every value of the config; raises ConfigError before anything is created."""
    options = check_values(cfg)
    check_cuda_graphs(cfg.engine.cuda_graphs, resolve_device(cfg.device))
    return options


def check_values(cfg: DictConfig) -> dict[str, Option]:
    """The checks that do not depend on this machine's devices (what `pinnrun --multirun` runs on
    every swept value before launching); raises ConfigError."""
    validate_top_level(cfg)
    options = {group: parse_option(group, cfg[group]) for group in GROUPS}
    options["weighting"].cls.reconcile_sampler(options["weighting"].cfg, options["sampler"].cfg)
    return options


def build(cfg: DictConfig, options: Mapping[str, Option]) -> Parts:
    """Construct problem, model, sampler, weighting and optimizer phases on the run's device."""
    device, dtype = resolve_device(cfg.device), DTYPES[cfg.dtype]
    use_deterministic(cfg.deterministic)
    set_threads(cfg.threads)
    set_allocator(cfg.engine.allocator)
    seed_everything(cfg.seed)
    problem = options["problem"].build()
    model = options["model"].build(problem).to(device=device, dtype=dtype)
    problem = problem.without_terms(model.ansatz.satisfies if model.ansatz else ())
    phases = options["optimizer"].build().phases()
    for phase in phases:
        phase.check(list(model.parameters()))
    counts = {**problem.counts(), **options["sampler"].cfg.n}
    check_fits(run_needs(problem, model, counts, phases, dtype, EVAL_BATCH), available_bytes(device), device)
    sampler = options["sampler"].build(problem, torch.Generator().manual_seed(cfg.seed))
    weighting = options["weighting"].build(problem, model)
    return Parts(problem, model, sampler, weighting, phases, problem.evaluation(), device, dtype)


def run(cfg: DictConfig) -> dict[str, float]:
    """Validate, build, train and record one run (or continue one with `resume=`); returns the final
    metrics and prints the closing summary on stderr."""
    JOB_CLOCK.start()
    options = validate(cfg)
    out_dir = writable_directory(Path(cfg.output.dir))
    resume = find_checkpoint(cfg.resume, cfg.tracking, out_dir) if cfg.resume else None
    if resume:
        check_same_run(resume, cfg)
    parts = build(cfg, options)
    progress = restore(parts, resume) if resume else Progress()
    if cfg.tracking.new_run:
        progress.run_id = None
    names = option_names(cfg)
    run_name = cfg.tracking.run_name or f"{names['problem']}-{names['weighting']}-s{cfg.seed}"
    tags = {**names, "seed": str(cfg.seed), "device": str(parts.device), "dtype": cfg.dtype,
            "torch_threads": str(torch.get_num_threads()), "malloc_tuned": str(malloc_tuned()).lower(),
            "pinnrun_version": pinnrun.__version__, **git_commit(), **sweep_tags(),
            "dropped_terms": ",".join(parts.model.ansatz.satisfies) if parts.model.ansatz else ""}
    params = flatten(OmegaConf.to_container(cfg, resolve=True))
    experiment = cfg.tracking.experiment or names["problem"]
    with StopOnSignal() as stop, open_run(cfg.tracking, experiment, run_name, tags, params, progress.run_id,
                                               out_dir) as tracker:
        progress.run_id = tracker.run_id
        final = train(parts, cfg, tracker, out_dir, progress, stop)
    location = run_location(cfg.tracking.uri, tracker.run_id) if tracker.run_id else None
    print(report.run_summary(run_name, final, progress.best, JOB_CLOCK.age(), out_dir, experiment, location), file=sys.stderr)
    return final


def train(parts: Parts, cfg: DictConfig, tracker: Tracker, out_dir: Path, progress: Progress, stop: StopOnSignal) -> dict[str, float]:
    """The training loop: phases in order; per step points -> residuals -> weighting -> step."""
    problem, model, sampler, weighting = parts.problem, parts.model, parts.sampler, parts.weighting
    resumed = bool(sampler.points)  # restored from a checkpoint, with the weighting's own state
    points = on_device(sampler.points if resumed else sampler.initial(), parts)
    if not resumed:
        weighting.on_points(points)
        tracker.set_tags(start_hashes(model, points))
    p = progress
    book = Cadence(parts, cfg, tracker, out_dir, p)
    compute_residuals = residual_function(problem, model, cfg.engine)

    def closure() -> tuple[Tensor, dict[str, Tensor]]:
        model.zero_grad(set_to_none=True)
        loss, diagnostics = weighting.objective(compute_residuals, points, p.step)
        loss.backward()
        return loss, diagnostics

    def residual_at(term: str, x: Tensor) -> Tensor:
        return residual_values(problem, model, term, x, parts)

    started = time.perf_counter()
    for phase in parts.phases:
        if phase.finished():  # ended before the checkpoint this run resumed from
            continue
        if not phase.started:
            phase.start(model.parameters())
        phase_started = time.perf_counter()
        while not phase.finished():
            changed = sampler.update(p.step, residual_at, phase.opens_round()) if phase.adaptive else None
            if changed:
                changed = on_device(changed, parts)
                points.update(changed)
                weighting.on_points(changed)
                if sampler.residual_based and cfg.output.plots:
                    log_point_cloud(sampler.points, problem.input_names, p.step, out_dir, tracker)
            rows = phase.advance(closure, min(phase.steps - phase.done, p.next_log - p.step))
            weighting.after_step(ascent=phase.adaptive)
            book.advanced(phase, rows)
            if stop.requested:
                book.interrupt(stop.requested)
            book.log_if_due(phase, points)
        end_phase(phase, book.evaluate(), time.perf_counter() - phase_started, p.step, tracker)
    book.close()
    u_pred = predict(model, book.eval_inputs)
    final = {"final/l2_rel": rel_l2(u_pred, parts.evaluation.u_ref), "final/time_s": time.perf_counter() - started,
             "final/steps": float(p.step)}
    tracker.log_metrics(final, p.step)
    book.recorder.record(p.step, parts.weighting, points)
    write_outputs(parts, cfg, tracker, out_dir, p, u_pred)
    return final


class Cadence:
    """The loop's bookkeeping between steps, so that `train` reads as phases and steps: iteration
    rows held for the next log step, the log / eval / checkpoint cadences (kept in the Progress
    that checkpoints carry), the heartbeat, the weight artifacts, the progress bar and the
    interrupt checkpoint.
    Host syncs happen only here, at log steps."""

    def __init__(self, parts: Parts, cfg: DictConfig, tracker: Tracker, out_dir: Path, progress: Progress):
        self.parts, self.cfg, self.tracker, self.out_dir, self.p = parts, cfg, tracker, out_dir, progress
        p = progress
        p.next_log = p.next_log if p.next_log > p.step else p.step + cfg.train.log_every  # a run stopped on a log step resumes past it
        p.next_eval = p.next_eval or cfg.train.eval_every
        p.next_checkpoint = p.next_checkpoint or cfg.train.checkpoint_every
        self.eval_inputs = torch.as_tensor(parts.evaluation.inputs, device=parts.device, dtype=parts.dtype)
        self.recorder = WeightRecorder(parts.weighting.cfg.histogram_every, parts.problem.input_names, out_dir / "weights", tracker)
        self.bar = report.RunProgress(sum(phase.steps for phase in parts.phases), p.step, parts.problem.name, cfg.train.progress)
        self.rows: list[tuple[int, dict[str, Any]]] = []
        self.last: dict[str, Any] = {}
        startup = JOB_CLOCK.age()
        if startup is not None:
            tracker.log_metrics({"time/startup_s": startup}, p.step)
        self.logged_at, self.logged_step = time.perf_counter(), p.step

    def advanced(self, phase: Phase, rows: list[dict[str, Any]]) -> None:
        """Count the iterations a phase just ran, keeping each row where the phase logs every iteration."""
        if phase.logs_iterations:
            self.rows += [(self.p.step + i + 1, row) for i, row in enumerate(rows)]
        self.p.step += len(rows)
        self.last = rows[-1] if rows else self.last
        self.bar.update(len(rows))

    def interrupt(self, signum: signal.Signals) -> NoReturn:
        """Record what is pending, checkpoint, and stop the run as interrupted by the signal."""
        self.tracker.log_rows([(at, to_floats(row)) for at, row in self.rows])
        save_and_log_checkpoint(self.parts, self.cfg, self.tracker, self.out_dir, self.p)
        raise RunInterrupted(f"stopped by {signum.name} at step {self.p.step}; resume with resume={self.out_dir / CHECKPOINT}",
                             signum)

    def evaluate(self) -> float:
        return rel_l2(predict(self.parts.model, self.eval_inputs), self.parts.evaluation.u_ref)

    def log_if_due(self, phase: Phase, points: Mapping[str, Points]) -> None:
        """At a log step (or a phase's end): the metrics, rel-L2 at the eval cadence, weight
        artifacts, history, and a checkpoint at its cadence."""
        p, cfg, parts = self.p, self.cfg, self.parts
        if (p.step < p.next_log and not phase.finished()) or not self.last:
            return
        self.tracker.log_rows([(at, to_floats(row)) for at, row in self.rows[:-1]])
        self.rows = []
        now = time.perf_counter()
        metrics = {**to_floats({**self.last, **parts.weighting.metrics()}), **phase.metrics(), **parts.sampler.metrics(),
                   "lr": phase.lr(), "time/step_ms": 1e3 * (now - self.logged_at) / max(p.step - self.logged_step, 1)}
        check_finite(metrics, p.step, self.tracker)
        if p.step >= p.next_eval or phase.finished():
            metrics["l2_rel"] = self.evaluate()
            p.best = min(p.best, metrics["l2_rel"])
            metrics["l2_rel_best"] = p.best
            metrics.update(parts.problem.extra_metrics(parts.model))
            p.next_eval = p.step + cfg.train.eval_every
            self.bar.set_postfix(loss=f"{metrics['loss/total']:.3e}", l2=f"{metrics['l2_rel']:.2e}")
        self.tracker.log_metrics(metrics, p.step)
        self.tracker.set_tags(heartbeat_tags())
        self.recorder.at_log_step(p.step, parts.weighting, points)
        p.history.append((p.step, metrics))
        self.logged_at, self.logged_step, p.next_log = now, p.step, p.step + cfg.train.log_every
        if cfg.train.checkpoint_every and p.step >= p.next_checkpoint:
            p.next_checkpoint = p.step + cfg.train.checkpoint_every
            save_and_log_checkpoint(parts, cfg, self.tracker, self.out_dir, p)

    def close(self) -> None:
        self.bar.close()


def end_phase(phase: Phase, l2_rel: float, seconds: float, step: int, tracker: Tracker) -> None:
    """Record where a phase left the run: `phase/<name>/l2_rel`, `steps` (its own) and `time_s`
    (wall-clock in this process, as final/time_s), and why it stopped. The error after each phase
    shows what a weighting did in Adam before L-BFGS, with the weights frozen, takes over."""
    tracker.log_metrics({f"phase/{phase.name}/l2_rel": l2_rel, f"phase/{phase.name}/steps": float(phase.done),
                         f"phase/{phase.name}/time_s": seconds}, step)
    tracker.set_tags({f"stop_reason/{phase.name}": phase.stop_reason or "max_steps"})


def start_hashes(model: PINNModel, points: Mapping[str, Points]) -> dict[str, str]:
    """Short digests of the initial network (parameters and buffers) and the initial points of
    every term: runs that pinnrun-compare pairs by seed must share both, whatever their scheme."""
    state = model.state_dict()
    return {"init_params_hash": digest(state[name] for name in sorted(state)),
            "init_points_hash": digest(t for term in sorted(points) for t in (points[term].x, points[term].ids))}


def digest(tensors: Iterable[Tensor]) -> str:
    """The first 12 hex digits of the SHA-256 of the tensors' bytes on the host, in order."""
    sha = hashlib.sha256()
    for tensor in tensors:
        sha.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return sha.hexdigest()[:12]


def residuals(
    problem: Problem, model: PINNModel, points: Mapping[str, Points], fields: FieldsFunction = autograd_fields
) -> dict[str, Tensor]:
    """Per-point residual of every term at its current points, derivatives by the `fields` engine."""
    return {name: term_residual(problem, model, name, points[name].x, fields) for name in problem.terms}


def term_residual(problem: Problem, model: PINNModel, name: str, x: Tensor, fields: FieldsFunction = autograd_fields) -> Tensor:
    """One term's per-point residual at the coordinates x (and their periodic partners, if any)."""
    term = problem.terms[name]
    return term.residual(fields(model, term.field_inputs(x), problem.input_names, term.derivatives))


def residual_values(problem: Problem, model: PINNModel, term: str, x: Tensor, parts: Parts) -> Tensor:
    """One term's per-point residual at arbitrary coordinates (float64 CPU), in chunks, detached:
    what residual-based samplers rank their candidates by."""
    values = [term_residual(problem, model, term, chunk.to(parts.device, parts.dtype)).detach()
              for chunk in x.split(RESIDUAL_BATCH)]
    return torch.cat(values).to("cpu", torch.float64)


def log_point_cloud(points: Mapping[str, Points], names: tuple[str, ...], step: int, out_dir: Path,
                    tracker: Tracker) -> None:
    """A snapshot of every term's points after an adaptive sampling round, as an image artifact."""
    path = out_dir / "plots" / "points" / f"points_{step:07d}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    plots.plot_points({term: p.x.numpy() for term, p in points.items()}, names, step, path)
    tracker.log_artifact(path, "plots/points")


def residual_function(problem: Problem, model: PINNModel, engine: DictConfig) -> ResidualFunction:
    """`residuals` with the configured derivative engine, compiled by torch.compile when asked
    (the jet engine's first-order graph compiles; nested autograd's double backward does not)."""
    function = functools.partial(residuals, problem, model, fields=ENGINES[engine.derivatives])
    return torch.compile(function) if engine.compile else function


def on_device(points: Mapping[str, Points], parts: Parts) -> dict[str, Points]:
    """Sampler points (float64, CPU) moved to the run's device and dtype."""
    return {term: Points(p.x.to(parts.device, parts.dtype), p.ids.to(parts.device)) for term, p in points.items()}


@torch.no_grad()
def predict(model: PINNModel, inputs: Tensor) -> np.ndarray:
    """The model on the evaluation inputs, in batches, as float64 numpy."""
    return torch.cat([model(chunk).squeeze(-1) for chunk in inputs.split(EVAL_BATCH)]).double().cpu().numpy()


def rel_l2(u_pred: np.ndarray, u_ref: np.ndarray) -> float:
    """||u_pred - u_ref||_2 / ||u_ref||_2 over the evaluation grid."""
    return float(np.linalg.norm(u_pred - u_ref) / np.linalg.norm(u_ref))


def to_floats(values: Mapping[str, Tensor | float]) -> dict[str, float]:
    """Detached scalar tensors (and plain numbers) to floats with a single host sync."""
    tensors = {key: value for key, value in values.items() if isinstance(value, Tensor)}
    floats = {key: float(value) for key, value in values.items() if not isinstance(value, Tensor)}
    if tensors:
        synced = torch.stack([t.detach().float().reshape(()) for t in tensors.values()]).cpu().tolist()
        floats.update(zip(tensors.keys(), synced))
    return floats


def check_finite(metrics: Mapping[str, float], step: int, tracker: Tracker) -> None:
    """Stop a run whose loss went NaN/Inf, tagging the step and the terms that went bad.

    The checkpoint on disk is then the last periodic one, written before the fault."""
    if math.isfinite(metrics["loss/total"]):
        return
    bad = [key.split("/", 1)[1] for key, value in metrics.items() if key.startswith("mse/") and not math.isfinite(value)]
    terms = ", ".join(bad) or "weights"
    tracker.set_tags({"failed_step": str(step), "failed_terms": terms})
    raise NonFiniteLossError(f"loss became non-finite at step {step} (terms: {terms})")


def write_outputs(parts: Parts, cfg: DictConfig, tracker: Tracker, out_dir: Path, progress: Progress, u_pred: np.ndarray) -> None:
    """Config, prediction, checkpoint and plots into the output directory, then to the tracker.

    Every file is on disk before the first upload, and the checkpoint before the plots, so neither
    the store nor a plotting or disk fault can cost the trained model."""
    evaluation, problem = parts.evaluation, parts.problem
    files: list[tuple[Path, str | None]] = []
    config_path = out_dir / "config.yaml"
    OmegaConf.save(cfg, config_path, resolve=True)
    files.append((config_path, None))
    if cfg.output.prediction:
        path = out_dir / "prediction.npz"
        np.savez_compressed(path, inputs=evaluation.inputs, input_names=np.array(problem.input_names),
                            u_pred=u_pred, u_ref=evaluation.u_ref, shape=np.array(evaluation.shape))
        files.append((path, None))
    if cfg.output.checkpoint:
        save_checkpoint(out_dir / CHECKPOINT, checkpoint_payload(parts, cfg, progress))
        files.append((out_dir / CHECKPOINT, None))
    if cfg.output.plots:
        plot_dir = out_dir / "plots"
        plot_dir.mkdir(exist_ok=True)
        starts = phase_starts(parts.phases)
        names = option_names(cfg)
        title = plots.fields_title(names["problem"], names["weighting"], cfg.seed, rel_l2(u_pred, evaluation.u_ref))
        plots.plot_losses(progress.history, list(problem.terms), plot_dir / "losses.png", starts)
        plots.plot_l2(progress.history, plot_dir / "l2_rel.png", starts)
        plots.plot_fields(evaluation.inputs, u_pred, evaluation.u_ref, evaluation.shape, problem.input_names, title,
                          plot_dir / "fields.png")
        files.append((plot_dir, "plots"))
    for path, artifact_path in files:
        tracker.log_artifact(path, artifact_path)


def phase_starts(phases: list[Phase]) -> list[tuple[int, str]]:
    """(step, name) where each optimizer phase after the first took over, for the plots' markers."""
    starts, step = [], 0
    for previous, phase in zip(phases, phases[1:]):
        step += previous.done
        starts.append((step, phase.name))
    return starts


def save_and_log_checkpoint(parts: Parts, cfg: DictConfig, tracker: Tracker, out_dir: Path, progress: Progress) -> None:
    """Write the checkpoint atomically into the output directory and log it to the run."""
    path = out_dir / CHECKPOINT
    save_checkpoint(path, checkpoint_payload(parts, cfg, progress))
    tracker.log_artifact(path)


def writable_directory(path: Path) -> Path:
    """Create the output directory or fail with a one-line error."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"output.dir={str(path)!r}: not writable ({exc.strerror})") from None
    reason = unwritable(path)
    if reason:
        raise ConfigError(f"output.dir={str(path)!r}: not writable ({reason})")
    return path


def option_names(cfg: DictConfig) -> dict[str, str]:
    """The chosen option of each group: Hydra's choices when run from the CLI, else the class name."""
    from hydra.core.hydra_config import HydraConfig

    choices = HydraConfig.get().runtime.choices if HydraConfig.initialized() else {}
    return {group: str(choices.get(group) or cfg[group]._target_.rsplit(".", 1)[-1].lower()) for group in GROUPS}


def git_commit() -> dict[str, str]:
    """The pinnrun source's git commit as a tag, when it is a git checkout."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                                text=True, timeout=2, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return {}
    return {"git_commit": commit}
