"""The tracking contract: a run's metrics, params, tags, artifacts and final status in MLflow."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from pinnrun.engine import run
from pinnrun.runtime import process_age
from pinnrun.weighting.uniform import Uniform


def only_run(tmp_path: Path, experiment: str = "burgers"):
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    assert len(runs) == 1
    return client, runs[0]


def test_run_records_the_documented_contract(make_cfg, tmp_path: Path) -> None:
    final = run(make_cfg("seed=3", "device=cpu"))
    client, record = only_run(tmp_path)
    assert record.info.status == "FINISHED"
    assert record.info.run_name == "burgers-uniform-s3"
    for key in ("problem", "model", "sampler", "weighting", "optimizer", "seed", "device", "pinnrun_version"):
        assert key in record.data.tags
    assert record.data.tags["seed"] == "3"
    assert float(record.data.params["problem.nu"]) == pytest.approx(0.01 / np.pi, rel=1e-15)
    expected = {"loss/total", "loss/pde", "loss/ic", "loss/bc", "mse/pde", "mse/ic", "mse/bc", "l2_rel",
                "l2_rel_best", "lr", "time/step_ms", "final/l2_rel", "final/time_s", "final/steps"}
    assert expected <= set(record.data.metrics)
    assert record.data.metrics["final/l2_rel"] == pytest.approx(final["final/l2_rel"])
    assert record.data.metrics["final/steps"] == 20
    assert 0 < record.data.metrics["time/startup_s"] < process_age()  # launch to the first step, from /proc
    history = client.get_metric_history(record.info.run_id, "loss/total")
    assert [m.step for m in history] == [10, 20]
    artifacts = {a.path for a in client.list_artifacts(record.info.run_id)}
    assert {"config.yaml", "prediction.npz", "checkpoint.pt", "plots"} <= artifacts
    plots = {a.path for a in client.list_artifacts(record.info.run_id, "plots")}
    assert plots == {"plots/losses.png", "plots/l2_rel.png", "plots/fields.png"}


def test_prediction_file_layout(make_cfg, tmp_path: Path) -> None:
    final = run(make_cfg("device=cpu"))
    data = np.load(tmp_path / "out" / "prediction.npz")
    assert list(data["input_names"]) == ["x", "t"]
    assert data["inputs"].shape == (256 * 100, 2) and data["u_pred"].shape == data["u_ref"].shape == (256 * 100,)
    rel = np.linalg.norm(data["u_pred"] - data["u_ref"]) / np.linalg.norm(data["u_ref"])
    assert rel == pytest.approx(final["final/l2_rel"], rel=1e-9)


@pytest.mark.parametrize(("error", "status"), [(RuntimeError("boom"), "FAILED"), (KeyboardInterrupt(), "KILLED")])
def test_run_never_left_running(make_cfg, tmp_path: Path, monkeypatch, error: BaseException, status: str) -> None:
    def explode(self, *args, **kwargs):
        raise error

    monkeypatch.setattr(Uniform, "loss", explode)
    with pytest.raises(type(error)):
        run(make_cfg("device=cpu"))
    _, record = only_run(tmp_path)
    assert record.info.status == status
    if status == "FAILED":
        assert record.data.tags["error"] == "RuntimeError: boom"


def test_tracking_disabled_creates_no_store(make_cfg, tmp_path: Path) -> None:
    run(make_cfg("device=cpu", "tracking.enabled=false"))
    assert not (tmp_path / "mlflow.db").exists()
    assert (tmp_path / "out" / "prediction.npz").exists()


def test_same_seed_same_metrics(make_cfg, tmp_path: Path) -> None:
    first = run(make_cfg("device=cpu", "tracking.enabled=false", "seed=5"))
    second = run(make_cfg("device=cpu", "tracking.enabled=false", "seed=5"))
    third = run(make_cfg("device=cpu", "tracking.enabled=false", "seed=6"))
    assert first["final/l2_rel"] == second["final/l2_rel"]
    assert first["final/l2_rel"] != third["final/l2_rel"]


def test_every_phase_logs_where_it_left_the_run(make_cfg, tmp_path: Path) -> None:
    """phase/<name>/l2_rel, steps and time_s at the end of each phase: Adam's error is the one at its
    last step (before L-BFGS takes over), the last phase's is the final one."""
    final = run(make_cfg("device=cpu", "optimizer=adam_lbfgs", "optimizer.adam.steps=20", "optimizer.lbfgs.steps=10",
                         "train.log_every=10", "train.eval_every=10", "train.progress=false", quick=False))
    client, record = only_run(tmp_path)
    metrics = record.data.metrics
    adam_end = [m for m in client.get_metric_history(record.info.run_id, "l2_rel") if m.step == 20]
    assert metrics["phase/adam/l2_rel"] == pytest.approx(adam_end[0].value, rel=1e-12)
    assert metrics["phase/lbfgs/l2_rel"] == pytest.approx(final["final/l2_rel"], rel=1e-12)
    assert metrics["phase/adam/l2_rel"] != metrics["phase/lbfgs/l2_rel"]
    assert metrics["phase/adam/steps"] == 20 and 0 < metrics["phase/lbfgs/steps"] <= 10
    assert metrics["phase/adam/steps"] + metrics["phase/lbfgs/steps"] == final["final/steps"]
    assert 0 < metrics["phase/adam/time_s"] and 0 < metrics["phase/lbfgs/time_s"] < final["final/time_s"]
    history = client.get_metric_history(record.info.run_id, "phase/adam/l2_rel")
    assert [m.step for m in history] == [20]


def test_experiments_open_on_their_runs_in_mlflow_ui(make_cfg, tmp_path: Path) -> None:
    """pinnrun tags the experiments it creates, and untagged ones it logs into, as model training
    (`mlflow.experimentKind`) with a runs-table view of the final metrics, best first; a tag the
    user set is kept."""
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    client.create_experiment("helmholtz")  # made before pinnrun tagged experiments
    client.create_experiment("wave", tags={"mlflow.experimentKind": "genai_development"})  # the user's choice
    for problem in ("burgers", "helmholtz", "wave"):
        run(make_cfg(f"problem={problem}", "device=cpu", "problem.eval_grid=[8,8]"))
    tags = {name: client.get_experiment_by_name(name).tags for name in ("burgers", "helmholtz", "wave")}
    assert {name: t.get("mlflow.experimentKind") for name, t in tags.items()} == {
        "burgers": "custom_model_development", "helmholtz": "custom_model_development", "wave": "genai_development"}
    view = json.loads(tags["helmholtz"]["mlflow.sharedViewState.pinnrun"])  # the view the printed address opens
    assert view["orderByKey"] == "metrics.`final/l2_rel`" and view["orderByAsc"] is True
    assert {"metrics.`final/l2_rel`", "tags.`weighting`", "tags.`seed`"} <= set(view["selectedColumns"])
    assert all(re.fullmatch(r"(metrics|tags)\.`[\w/.]+`", column) for column in view["selectedColumns"])
