"""The no-Docker tracking stack for real: scripts/tracking_server.sh starts a throwaway PostgreSQL
cluster and `mlflow server` on free loopback ports; pinnrun runs (one, then four at once) log to it
over HTTP; the MLflow client reads every run, metric and artifact back through the server."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import QUICK, Server, run_cli

# A small Burgers problem: the test is about the tracking path, not about accuracy.
SMALL = ["problem=burgers", "problem.n.pde=256", "problem.eval_grid=[32,16]", "problem.quadrature_nodes=200",
         "output.plots=false"]
ARTIFACTS = {"config.yaml", "prediction.npz", "checkpoint.pt"}


def pinnrun_args(server: Server, experiment: str, out: Path, *extra: str) -> list[str]:
    return [*QUICK, *SMALL, f"tracking.uri={server.uri}", f"tracking.experiment={experiment}",
            f"hydra.run.dir={out}", *extra]


def finished_runs(uri: str, experiment: str) -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"experiment {experiment!r} not on the server"
    runs = client.search_runs([found.experiment_id])
    assert all(run.info.status == "FINISHED" for run in runs), [run.info.status for run in runs]
    return runs


def check_run_round_trip(uri: str, run, tmp_path: Path) -> None:
    """Metrics stored in PostgreSQL, artifacts served by the server, and the two agree."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    run_id = run.info.run_id
    tmp_path.mkdir(parents=True, exist_ok=True)
    assert run.info.artifact_uri.startswith("mlflow-artifacts:"), "artifacts must go through the server"
    assert {f.path for f in client.list_artifacts(run_id)} >= ARTIFACTS
    assert [m.step for m in client.get_metric_history(run_id, "loss/total")] == [10, 20]
    assert run.data.metrics["final/steps"] == 20
    local = Path(client.download_artifacts(run_id, "prediction.npz", str(tmp_path)))
    with np.load(local) as prediction:
        l2 = np.linalg.norm(prediction["u_pred"] - prediction["u_ref"]) / np.linalg.norm(prediction["u_ref"])
    assert run.data.metrics["final/l2_rel"] == pytest.approx(l2, rel=1e-12)


def test_single_run_round_trip(tracking_server: Server, tmp_path: Path) -> None:
    done = run_cli(pinnrun_args(tracking_server, "single", tmp_path / "run", "seed=7"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    runs = finished_runs(tracking_server.uri, "single")
    assert len(runs) == 1
    assert runs[0].data.tags["seed"] == "7"
    assert runs[0].data.params["tracking.uri"] == tracking_server.uri
    check_run_round_trip(tracking_server.uri, runs[0], tmp_path)
    stored = tracking_server.artifacts / runs[0].info.experiment_id / runs[0].info.run_id / "artifacts"
    assert {p.name for p in stored.iterdir()} >= ARTIFACTS


def test_four_concurrent_runs(tracking_server: Server, tmp_path: Path) -> None:
    """Four pinnrun processes at once against one server: the parallel-sweep situation."""
    seeds = range(4)
    jobs = [subprocess.Popen([sys.executable, "-m", "pinnrun.cli",
                              *pinnrun_args(tracking_server, "sweep", tmp_path / f"s{seed}", f"seed={seed}")],
                             cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            for seed in seeds]
    try:
        errors = [job.communicate(timeout=600)[1] for job in jobs]
    finally:
        for job in jobs:
            if job.poll() is None:
                job.kill()
                job.wait()
    assert [job.returncode for job in jobs] == [0] * 4, "\n".join(e[-1500:] for e in errors)
    runs = finished_runs(tracking_server.uri, "sweep")
    assert sorted(run.data.tags["seed"] for run in runs) == [str(seed) for seed in seeds]
    for run in runs:
        check_run_round_trip(tracking_server.uri, run, tmp_path / run.info.run_id)
