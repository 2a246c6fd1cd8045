"""Every scheme end to end through the real `pinnrun` command, with MLflow artifacts and metrics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pinnrun.checkpoint import load_checkpoint
from tests.conftest import run_cli

QUICK = ["problem=burgers", "problem.n.pde=300", "model.depth=3", "optimizer=adam_lbfgs", "optimizer.adam.steps=30",
         "optimizer.lbfgs.steps=10", "train.log_every=10", "train.eval_every=20", "train.progress=false",
         "weighting.histogram_every=30"]


def run_scheme(tmp_path: Path, *args: str):
    out = tmp_path / "out"
    result = run_cli([*QUICK, *args, f"hydra.run.dir={out}", f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}"], cwd=tmp_path,
                     timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    return out


def checkpoint(out: Path) -> dict:
    """The run's checkpoint, loaded as `resume=` loads it (weights_only=True)."""
    return load_checkpoint(out / "checkpoint.pt")


def logged_run(tmp_path: Path):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("burgers").experiment_id])
    return client, run


@pytest.mark.parametrize("scheme", ["gradnorm", "sapinn"])
def test_per_point_scheme_logs_summaries_histograms_maps_and_raw_weights(tmp_path: Path, scheme: str) -> None:
    out = run_scheme(tmp_path, f"weighting={scheme}")
    raw = np.load(out / "weights" / "step_0000030.npz")
    assert raw["pde/x"].shape == (300, 2) and raw["pde/w"].shape == (300,) and (raw["pde/w"] >= 0).all()
    final = sorted((out / "weights").glob("*.npz"))[-1]
    assert final.name > "step_0000030.npz" and final.with_name(final.stem + "_map.png").exists()
    if scheme == "sapinn":  # frozen in L-BFGS: the final weights are those at the end of Adam
        assert np.array_equal(np.load(final)["pde/w"], raw["pde/w"])
    client, run = logged_run(tmp_path)
    assert run.info.status == "FINISHED"
    for key in ("mean", "p50", "p90", "p99", "max"):
        assert f"w/pde/{key}" in run.data.metrics
    assert run.data.metrics["w/pde/max"] >= run.data.metrics["w/pde/p99"] >= run.data.metrics["w/pde/p50"]
    logged = {a.path for a in client.list_artifacts(run.info.run_id, "weights")}
    assert {"weights/step_0000030_hist.png", "weights/step_0000030_map.png", "weights/step_0000030.npz"} <= logged
    state = checkpoint(out)["weighting"]
    assert set(state["tables"]) == {"pde", "ic", "bc"}


def test_lra_logs_its_variant_and_term_weights(tmp_path: Path) -> None:
    run_scheme(tmp_path, "weighting=lra", "weighting.variant=l2")
    _, run = logged_run(tmp_path)
    assert run.data.params["weighting.variant"] == "l2"
    assert run.data.metrics["lra/ic"] > 0 and run.data.metrics["lra/bc"] > 0


def test_sapinn_gp_resamples_with_no_other_override(tmp_path: Path) -> None:
    out = run_scheme(tmp_path, "weighting=sapinn_gp", "optimizer.adam.steps=110")
    state = checkpoint(out)
    assert state["sampler"]["next_id"] == 300 + 100 + 200 + 300  # the PDE points were redrawn once, at step 100
    assert state["weighting"]["tables"]["pde"]["ids"].min() >= 600
    _, run = logged_run(tmp_path)
    assert run.data.metrics["time/gp_s"] > 0


def test_sapinn_refuses_a_resampling_sampler_before_the_run(tmp_path: Path) -> None:
    result = run_cli([*QUICK, "weighting=sapinn", "sampler.resample_every=100", f"hydra.run.dir={tmp_path / 'out'}",
                      f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}"], cwd=tmp_path)
    assert result.returncode == 2
    assert "pinnrun: error: sampler.resample_every=100: weighting=sapinn" in result.stderr
    assert not (tmp_path / "mlflow.db").exists()


@pytest.mark.parametrize(("scheme", "metric", "artifact"), [
    ("gradnorm_terms", "gradnorm_terms/ic", None),
    ("ntk", "ntk/bc", None),
    ("rba", "w/pde/p99", "weights/step_0000030_map.png"),
    ("causal", "causal/w_last", "weights/step_0000030_causal.png"),
    ("causal weighting.term_scheme=gradnorm_terms", "gradnorm_terms/pde", "weights/step_0000030_causal.png"),
])
def test_newer_schemes_run_end_to_end_and_log_their_summaries(tmp_path: Path, scheme: str, metric: str,
                                                               artifact: str | None) -> None:
    run_scheme(tmp_path, f"weighting={scheme.split()[0]}", *scheme.split()[1:])
    client, run = logged_run(tmp_path)
    assert run.info.status == "FINISHED" and np.isfinite(run.data.metrics["final/l2_rel"])
    assert metric in run.data.metrics and run.data.metrics[metric] > 0
    if artifact:
        assert artifact in {a.path for a in client.list_artifacts(run.info.run_id, "weights")}
