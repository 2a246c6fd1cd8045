"""The no-Docker tracking stack for real: scripts/tracking_server.sh starts a throwaway PostgreSQL
cluster and `mlflow server` on free loopback ports; pinnrun runs (one, then four at once) log to it
over HTTP; the MLflow client reads every run, metric and artifact back through the server."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from glob import glob
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

from tests.conftest import QUICK, run_cli

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "tracking_server.sh"
# A small Burgers problem: the test is about the tracking path, not about accuracy.
SMALL = ["problem=burgers", "problem.n.pde=256", "problem.eval_grid=[32,16]", "problem.quadrature_nodes=200",
         "output.plots=false"]
ARTIFACTS = {"config.yaml", "prediction.npz", "checkpoint.pt"}


def postgres_server_binaries() -> bool:
    """initdb and pg_ctl on PATH or in a Debian/Ubuntu /usr/lib/postgresql/<version>/bin."""
    on_path = shutil.which("initdb") and shutil.which("pg_ctl")
    return bool(on_path or glob("/usr/lib/postgresql/*/bin/pg_ctl"))


pytestmark = pytest.mark.skipif(
    not postgres_server_binaries(),
    reason="PostgreSQL server binaries (initdb, pg_ctl) not installed: apt-get install postgresql (.ci/run does)",
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    uri: str
    artifacts: Path


def script(command: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([str(SCRIPT), command], env=env, capture_output=True, text=True, timeout=timeout)


def alive(pid: int) -> bool:
    """Running, not merely a zombie waiting for init to reap it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.fixture(scope="module")
def tracking_server() -> Iterator[Server]:
    """Started by the script; stopped by it and removed afterwards, also when anything failed."""
    base = Path(tempfile.mkdtemp(prefix="pinnrun-tracking-"))
    base.chmod(0o755)  # as root, PostgreSQL runs as another user that must reach the state directory
    state, mlflow_port = base / "server", free_port()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "PINNRUN_SERVER_DIR": str(state), "PG_PORT": str(free_port()), "MLFLOW_PORT": str(mlflow_port),
           "MLFLOW_WORKERS": "1", "START_TIMEOUT_S": "150"}
    if os.geteuid() == 0:
        env["PG_RUN_AS"] = "postgres" if "postgres" in {p.pw_name for p in pwd.getpwall()} else "nobody"
    started: list[int] = []
    try:
        start = script("start", env, timeout=240)
        for pid_file in (state / "mlflow.pid", state / "pgdata" / "postmaster.pid"):
            if pid_file.exists():
                started.append(int(pid_file.read_text().split()[0]))
        logs = "".join(f"\n--- {log.name}\n{log.read_text()[-3000:]}" for log in sorted(state.glob("logs/*.log")))
        assert start.returncode == 0, f"start failed:\n{start.stdout}{start.stderr}{logs}"
        status = script("status", env)
        assert status.returncode == 0, status.stdout + status.stderr
        yield Server(f"http://127.0.0.1:{mlflow_port}", state / "artifacts")
    finally:
        stop = script("stop", env)
        left = [pid for pid in started if alive(pid)]
        for pid in left:
            os.kill(pid, signal.SIGKILL)
        stopped = script("status", env).returncode
        shutil.rmtree(base, ignore_errors=True)
    assert stop.returncode == 0, stop.stdout + stop.stderr
    assert not left, f"processes left running after stop: {left}"
    assert stopped == 3, "status should report the stack stopped"


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
