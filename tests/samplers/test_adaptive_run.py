"""Adaptive sampling and hard constraints inside a real run: the engine's residual function, the
`points/<term>` metric, the point-cloud snapshots logged at each round, the dropped terms."""

from __future__ import annotations

import torch
from mlflow.tracking import MlflowClient

from pinnrun.engine import build, residual_values, residuals, run, validate


def test_residual_function_matches_the_training_residuals(make_cfg) -> None:
    cfg = make_cfg("problem.n.pde=300", "dtype=float64", "problem.eval_grid=[8,4]")
    parts = build(cfg, validate(cfg))
    points = parts.sampler.initial()
    at_points = residuals(parts.problem, parts.model, points)
    for term in ("pde", "ic", "bc"):
        values = residual_values(parts.problem, parts.model, term, points[term].x, parts)
        assert values.dtype == torch.float64 and not values.requires_grad
        torch.testing.assert_close(values, at_points[term].detach(), rtol=1e-12, atol=1e-14)


def test_run_logs_point_counts_snapshots_and_dropped_terms(make_cfg, tmp_path) -> None:
    """RAR-D every 5 steps (+10 points per round) with the Burgers ansatz on: the IC and BC terms
    leave the loss and are tagged; points/pde grows by round; each round leaves a snapshot."""
    cfg = make_cfg("sampler=rar_d", "sampler.resample_every=5", "sampler.pool=400", "sampler.add=10",
                   "problem.n.pde=200", "problem.eval_grid=[16,8]", "model=modified_mlp", "model.depth=2", "model.width=8",
                   "model.hard_constraints=true", "output.checkpoint=false", "output.prediction=false")
    run(cfg)
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    (found,) = client.search_runs([client.get_experiment_by_name("burgers").experiment_id])
    assert found.data.tags["dropped_terms"] == "ic,bc"
    assert {key for key in found.data.metrics if key.startswith(("loss/", "mse/", "points/"))} == {
        "loss/total", "loss/pde", "mse/pde", "points/pde"}
    history = client.get_metric_history(found.info.run_id, "points/pde")
    assert [(m.step, m.value) for m in sorted(history, key=lambda m: m.step)] == [(10, 210.0), (20, 230.0)]
    snapshots = [f.path for f in client.list_artifacts(found.info.run_id, "plots/points")]
    assert snapshots == [f"plots/points/points_{step:07d}.png" for step in (5, 10, 15)]
