"""Faults during a run: NaN, SIGTERM/SIGINT with checkpoint and exact resume, a tracking store that
goes away, and many runs writing to one sqlite store at once."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from pinnrun.checkpoint import load_checkpoint
from pinnrun.engine import NonFiniteLossError, run
from pinnrun.runtime import RunInterrupted
from pinnrun.tracking import MlflowTracker
from pinnrun.weighting.sapinn_gp import SelfAdaptiveGP
from pinnrun.weighting.uniform import Uniform
from tests.test_bad_inputs import run_main

BUDGET = ["optimizer=adam_lbfgs", "optimizer.adam.steps=30", "optimizer.lbfgs.steps=20", "train.log_every=10",
          "train.eval_every=10", "train.progress=false", "problem.n.pde=256", "problem.eval_grid=[32,16]", "device=cpu"]


def the_run(tmp_path: Path):
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (record,) = client.search_runs([client.get_experiment_by_name("burgers").experiment_id])
    return client, record


def scheme_class(overrides: list[str]) -> type:
    """The weighting class whose `after_step` the signal rides on."""
    return SelfAdaptiveGP if "weighting=sapinn_gp" in overrides else Uniform


def signal_at_step(monkeypatch: pytest.MonkeyPatch, step: int, signum: int, scheme: type = Uniform, times: int = 1) -> None:
    """Deliver a real signal (`times` times in a row) to this process after the given number of optimizer steps."""
    calls = {"n": 0}
    original = scheme.after_step

    def after_step(self, ascent: bool) -> None:
        original(self, ascent)
        calls["n"] += 1
        if calls["n"] == step:
            for _ in range(times):
                os.kill(os.getpid(), signum)

    monkeypatch.setattr(scheme, "after_step", after_step)


def test_nan_fails_the_run_and_keeps_the_last_good_checkpoint(make_cfg, tmp_path: Path, monkeypatch) -> None:
    original = Uniform.loss

    def poisoned(self, residuals, points, step):
        loss, diagnostics = original(self, residuals, points, step)
        if step >= 25:
            diagnostics["mse/pde"] = diagnostics["mse/pde"] * float("nan")
            return loss * float("nan"), {**diagnostics, "loss/total": loss.detach() * float("nan")}
        return loss, diagnostics

    monkeypatch.setattr(Uniform, "loss", poisoned)
    with pytest.raises(NonFiniteLossError, match="non-finite at step 30 \\(terms: pde"):
        run(make_cfg(*BUDGET, "train.checkpoint_every=10", quick=False))
    _, record = the_run(tmp_path)
    assert record.info.status == "FAILED"
    assert record.data.tags["failed_step"] == "30" and "pde" in record.data.tags["failed_terms"]
    checkpoint = load_checkpoint(tmp_path / "out" / "checkpoint.pt")
    assert checkpoint["progress"]["step"] == 20
    assert all(torch.isfinite(p).all() for p in checkpoint["model"].values())


@pytest.mark.parametrize(
    ("stop_step", "signum", "scheme"),
    [(15, signal.SIGTERM, []), (32, signal.SIGINT, []), (31, signal.SIGINT, []),
     (15, signal.SIGTERM, ["weighting=sapinn_gp", "weighting.resample_every=10"])],
    ids=["adam-sigterm", "lbfgs-sigint", "lbfgs-sigint-on-a-log-step-mid-phase", "sapinn_gp-resampling"],
)
def test_interrupt_then_resume_matches_uninterrupted(make_cfg, tmp_path: Path, monkeypatch, stop_step: int, signum: int,
                                                     scheme: list[str]) -> None:
    """Model, optimizers, SA weights and their optimizer, GP, sampler points and generator all come back."""
    reference = run(make_cfg(*BUDGET, *scheme, "tracking.enabled=false", f"output.dir={tmp_path / 'reference'}", quick=False))

    with monkeypatch.context() as patch:
        signal_at_step(patch, stop_step, signum, scheme_class(scheme))
        with pytest.raises(RunInterrupted, match=f"stopped by {signal.Signals(signum).name}"):
            run(make_cfg(*BUDGET, *scheme, quick=False))
    client, record = the_run(tmp_path)
    assert record.info.status == "KILLED"
    saved = load_checkpoint(tmp_path / "out" / "checkpoint.pt")
    assert saved["progress"]["run_id"] == record.info.run_id and saved["progress"]["step"] > 0

    resumed = run(make_cfg(*BUDGET, *scheme, f"resume={tmp_path / 'out' / 'checkpoint.pt'}", quick=False))
    client, again = the_run(tmp_path)
    assert again.info.run_id == record.info.run_id and again.info.status == "FINISHED"
    assert resumed["final/l2_rel"] == reference["final/l2_rel"]
    assert resumed["final/steps"] == reference["final/steps"]
    steps = [m.step for m in client.get_metric_history(record.info.run_id, "loss/total")]
    assert steps == sorted(set(steps))


def test_a_second_ctrl_c_exits_130_without_a_traceback(tmp_path: Path, monkeypatch, capsys) -> None:
    """Two SIGINTs within one step through the real entry point: the second stops at once, with one
    line, exit status 130, and the MLflow run KILLED."""
    signal_at_step(monkeypatch, 5, signal.SIGINT, times=2)
    code, stderr = run_main([*BUDGET, "output.plots=false"], tmp_path, monkeypatch, capsys)
    lines = [line for line in stderr.splitlines() if line.startswith("pinnrun:")]
    assert code == 130 and "Traceback" not in stderr, stderr
    assert lines == ["pinnrun: interrupted: stopped at once by a second signal (the last checkpoint is the last periodic one)"]
    _, record = the_run(tmp_path)
    assert record.info.status == "KILLED"


def test_resume_by_run_id(make_cfg, tmp_path: Path, monkeypatch) -> None:
    with monkeypatch.context() as patch:
        signal_at_step(patch, 12, signal.SIGTERM)
        with pytest.raises(RunInterrupted):
            run(make_cfg(*BUDGET, quick=False))
    _, record = the_run(tmp_path)
    run(make_cfg(*BUDGET, f"resume={record.info.run_id}", f"output.dir={tmp_path / 'second'}", quick=False))
    _, again = the_run(tmp_path)
    assert again.info.status == "FINISHED" and again.data.metrics["final/steps"] > 30  # L-BFGS may stop early on tolerance


def test_resume_auto_continues_in_the_same_directory(make_cfg, tmp_path: Path, monkeypatch) -> None:
    """What a requeued SLURM job does: the same command, the same output directory."""
    fresh = run(make_cfg(*BUDGET, "resume=auto", "train.checkpoint_every=10", "tracking.enabled=false",
                         f"output.dir={tmp_path / 'fresh'}", quick=False))
    with monkeypatch.context() as patch:
        signal_at_step(patch, 12, signal.SIGTERM)
        with pytest.raises(RunInterrupted):
            run(make_cfg(*BUDGET, "resume=auto", "train.checkpoint_every=10", quick=False))
    requeued = run(make_cfg(*BUDGET, "resume=auto", "train.checkpoint_every=10", quick=False))
    _, record = the_run(tmp_path)
    assert record.info.status == "FINISHED"
    assert requeued["final/l2_rel"] == fresh["final/l2_rel"]


class FlakyClient:
    """An MLflow client whose store is away for the first `failures` calls."""

    def __init__(self, failures: int):
        self.failures = failures
        self.batches: list[list] = []

    def log_batch(self, run_id, metrics=(), **kwargs):
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionError("store away")
        self.batches.append([(m.key, m.step) for m in metrics])


def test_metrics_are_buffered_while_the_store_is_away() -> None:
    client = FlakyClient(failures=2)
    tracker = MlflowTracker(client, "run")
    tracker.log_metrics({"a": 1.0}, step=1)
    tracker.log_metrics({"a": 2.0}, step=2)
    assert client.batches == [] and len(tracker.pending) == 2
    tracker.log_metrics({"a": 3.0}, step=3)
    assert client.batches == [[("a", 1)], [("a", 2)], [("a", 3)]] and tracker.lost == 0


def test_metrics_that_never_arrive_are_counted() -> None:
    client = FlakyClient(failures=100)
    tracker = MlflowTracker(client, "run")
    tracker.log_metrics({"a": 1.0}, step=1)
    tracker.flush()
    assert tracker.lost == 1 and not tracker.pending


def test_parallel_runs_share_one_sqlite_store(tmp_path: Path) -> None:
    """8 runs launched at once against the default sqlite store all finish and are all recorded."""
    args = ["optimizer=adam", "optimizer.steps=4", "train.log_every=2", "train.eval_every=2", "train.progress=false",
            "problem.n.pde=64", "problem.eval_grid=[16,8]", "output.plots=false", "device=cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-m", "pinnrun.cli", *args, f"seed={seed}", f"output.dir={tmp_path / str(seed)}"],
                              cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for seed in range(8)]
    errors = [proc.communicate(timeout=600)[1] for proc in procs]
    assert [proc.returncode for proc in procs] == [0] * 8, errors
    with sqlite3.connect(tmp_path / "mlflow.db") as connection:
        rows = connection.execute("select name, status from runs").fetchall()
        metrics = connection.execute("select count(*) from metrics where key = 'final/l2_rel'").fetchone()
    assert sorted(rows) == sorted((f"burgers-uniform-s{seed}", "FINISHED") for seed in range(8))
    assert metrics == (8,)
