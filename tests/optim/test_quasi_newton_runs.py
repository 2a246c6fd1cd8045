"""The dense quasi-Newton options inside real runs: each lowers a PINN's loss with every iteration
logged, a too-large model is refused before any MLflow run exists, and an interrupted run resumed
from its checkpoint in the middle of the quasi-Newton phase ends exactly where an uninterrupted one does."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from pinnrun.checkpoint import load_checkpoint
from pinnrun.config import ConfigError
from pinnrun.engine import run
from pinnrun.runtime import RunInterrupted
from tests.optim.test_phases import train_with
from tests.test_faults import BUDGET, signal_at_step

COMPACT = ["dtype=float64", "model.depth=2", "model.width=10"]


@pytest.mark.parametrize("method", ["bfgs", "ssbfgs", "ssbroyden"])
def test_adam_then_the_method_lowers_the_loss_and_logs_every_iteration(make_cfg, tmp_path: Path, method: str) -> None:
    parts, tracker, final = train_with(
        make_cfg, tmp_path, *COMPACT, f"optimizer=adam_{method}", "optimizer.adam.steps=20", f"optimizer.{method}.steps=30",
        "train.log_every=10", "train.eval_every=10",
    )
    assert final["final/steps"] == 50.0
    rows = [step for step, row in tracker.metrics.items() if f"{method}/evaluations" in row]
    assert rows == list(range(21, 51))
    losses = [tracker.metrics[step]["loss/total"] for step in rows]
    assert all(b <= a for a, b in zip(losses, losses[1:])) and losses[-1] < 0.5 * tracker.metrics[20]["loss/total"]
    assert tracker.metrics[50][f"{method}/iterations"] == 30.0 and "l2_rel" in tracker.metrics[50]
    assert {k: v for k, v in tracker.tags.items() if k.startswith("stop_reason/")} == {
        "stop_reason/adam": "max_steps", f"stop_reason/{method}": "max_iterations"}
    H = parts.phases[1].H
    assert H.dtype == torch.float64 and H.shape == (sum(p.numel() for p in parts.model.parameters()),) * 2


def test_single_option_runs_alone_with_a_loss_transform(make_cfg, tmp_path: Path) -> None:
    _, tracker, _ = train_with(make_cfg, tmp_path, *COMPACT, "optimizer=ssbroyden", "optimizer.steps=15",
                               "optimizer.loss_transform=sqrt", "train.log_every=5")
    rows = [row for _, row in sorted(tracker.metrics.items()) if "ssbroyden/objective" in row]
    assert len(rows) == 15
    assert all(row["ssbroyden/objective"] == pytest.approx(row["loss/total"] ** 0.5, rel=1e-6) for row in rows)
    assert rows[-1]["loss/total"] < rows[0]["loss/total"]


def test_too_many_parameters_are_refused_before_any_run_is_recorded(make_cfg, tmp_path: Path) -> None:
    cfg = make_cfg("optimizer=adam_ssbroyden", "optimizer.ssbroyden.max_dense_params=1000", "device=cpu", quick=False)
    with pytest.raises(ConfigError, match=r"optimizer.ssbroyden.max_dense_params=1000: this model has 3021 parameters .* use optimizer=lbfgs"):
        run(cfg)
    assert not (tmp_path / "mlflow.db").exists()


def test_interrupt_in_the_quasi_newton_phase_then_resume_matches_uninterrupted(make_cfg, tmp_path: Path, monkeypatch) -> None:
    budget = [*(o for o in BUDGET if not o.startswith("optimizer")), *COMPACT, "optimizer=adam_ssbroyden", "optimizer.adam.steps=30", "optimizer.ssbroyden.steps=20",
              "optimizer.ssbroyden.loss_transform=log"]
    reference = run(make_cfg(*budget, "tracking.enabled=false", f"output.dir={tmp_path / 'reference'}", quick=False))
    with monkeypatch.context() as patch:
        signal_at_step(patch, 31, signal.SIGINT)  # advance calls: 30 Adam steps, then 10 iterations per call
        with pytest.raises(RunInterrupted):
            run(make_cfg(*budget, quick=False))
    saved = load_checkpoint(tmp_path / "out" / "checkpoint.pt")
    assert saved["progress"]["step"] == 50 - 10 and saved["phases"][1]["quasi_newton"]["H"].shape[0] > 0
    resumed = run(make_cfg(*budget, f"resume={tmp_path / 'out' / 'checkpoint.pt'}", quick=False))
    assert resumed["final/l2_rel"] == reference["final/l2_rel"] and resumed["final/steps"] == reference["final/steps"] == 50
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (record,) = client.search_runs([client.get_experiment_by_name("burgers").experiment_id])
    assert record.data.tags["stop_reason/ssbroyden"] == "max_iterations"
    evaluations = [m.value for m in client.get_metric_history(record.info.run_id, "ssbroyden/evaluations")]
    assert evaluations == sorted(evaluations) and len(evaluations) == 20
