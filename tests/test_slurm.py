"""Sweeps on a real SLURM cluster: scripts/slurm_cluster.sh starts one node on loopback (munge,
slurmctld and slurmd, state in a temporary directory); `pinnrun --multirun hydra/launcher=submitit_slurm`
submits a job array that SLURM runs to the end, into a sqlite store on the shared file system or the
PostgreSQL-backed tracking server; an array task that SLURM requeues, or signals ahead of its time
limit, checkpoints, ends its run KILLED and continues the same run to FINISHED with resume=auto."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import Server, alive, background_cli, free_port, run_cli, script, training_run, wait_for
from tests.test_sweeps import TINY, sweep, sweep_runs

DAEMONS = ("munge/munged.pid", "slurmctld.pid", "slurmd.pid")
# CPU jobs of one core each: the submitit_slurm defaults ask for a GPU and 4 cores per run.
CPU_ARRAY = ["hydra/launcher=submitit_slurm", "hydra.launcher.gpus_per_task=0", "hydra.launcher.cpus_per_task=1",
             "hydra.launcher.mem_gb=1", "hydra.launcher.timeout_min=10", "threads=1"]


@dataclass
class Cluster:
    """A running one-node cluster: `env` points SLURM's commands (and pinnrun's sbatch) at it."""

    env: dict[str, str]

    def command(self, *args: str) -> str:
        """Run a SLURM client command against this cluster; its stdout."""
        return subprocess.run(args, env={**os.environ, **self.env}, capture_output=True, text=True, timeout=60,
                              check=True).stdout


def slurm_missing() -> Optional[str]:
    """Why no cluster can be started here, or None."""
    tools = [tool for tool in ("munged", "slurmctld", "slurmd", "sbatch", "scontrol") if not shutil.which(tool)]
    if tools:
        return f"{', '.join(tools)} not installed: apt-get install slurm-wlm munge (.ci/run does)"
    if os.geteuid() != 0:
        return "a test SLURM cluster needs root (slurmd starts each job as its user)"
    return None


def daemon_pids(base: Path) -> set[int]:
    """The process ids in the cluster's pid files (munged, slurmctld, slurmd) that exist."""
    return {int((base / name).read_text()) for name in DAEMONS if (base / name).is_file()}


@pytest.fixture(scope="module")
def slurm_cluster() -> Iterator[Cluster]:
    """Started by scripts/slurm_cluster.sh on free loopback ports; every job cancelled, the daemons
    stopped and the state removed afterwards, also when anything failed. Skips, saying why, where
    SLURM is not installed or the cluster does not come up."""
    reason = slurm_missing()
    if reason:
        pytest.skip(reason)
    base = Path(tempfile.mkdtemp(prefix="pinnrun-slurm-"))
    base.chmod(0o755)  # munged wants every directory above its socket open to all
    env = {**os.environ, "SLURM_CLUSTER_DIR": str(base), "SLURMCTLD_PORT": str(free_port()),
           "SLURMD_PORT": str(free_port()), "START_TIMEOUT_S": "60"}
    started: set[int] = set()
    try:
        start = script("slurm_cluster.sh", "start", env, timeout=120)
        started = daemon_pids(base)
        if start.returncode != 0:
            logs = "".join(f" [{log.name}] {log.read_text()[-400:]}" for log in sorted(base.glob("logs/*.log")))
            pytest.skip(f"the one-node SLURM cluster did not start: {start.stderr.strip()}{logs}")
        yield Cluster({"SLURM_CONF": str(base / "slurm.conf")})
    finally:
        stop = script("slurm_cluster.sh", "stop", env, timeout=180)
        left = [pid for pid in started | daemon_pids(base) if alive(pid)]
        for pid in left:
            os.kill(pid, signal.SIGKILL)
        shutil.rmtree(base, ignore_errors=True)
    assert stop.returncode == 0, stop.stdout + stop.stderr
    assert not left, f"SLURM daemons left running after stop: {left}"


def array_tasks(sweep_dir: Path) -> list[str]:
    """The SLURM ids (`<array>_<index>`) of the sweep's array tasks, from submitit's per-task folders."""
    return sorted(p.name for p in (sweep_dir / ".submitit").iterdir() if p.is_dir() and re.fullmatch(r"\d+_\d+", p.name))


def check_array(cluster: Cluster, children: pd.DataFrame, parent: pd.Series, sweep_dir: Path, seeds: list[int]) -> None:
    """Every task of one job array ran to the end under SLURM and its run FINISHED; the parent
    counts them all; the tasks leave the queue."""
    assert sorted(children["tags.override/seed"]) == [str(seed) for seed in seeds]
    assert set(children["status"]) == {"FINISHED"} and children["metrics.final/l2_rel"].notna().all()
    assert parent["status"] == "FINISHED" and parent["params.launcher"] == "submitit_slurm"
    assert (parent["metrics.sweep/n_runs"], parent["metrics.sweep/n_ok"], parent["metrics.sweep/n_failed"]) == (len(seeds), len(seeds), 0)
    tasks = array_tasks(sweep_dir)
    array_id = tasks[0].split("_")[0]
    assert tasks == [f"{array_id}_{index}" for index in range(len(seeds))], tasks  # one array, a task per job
    for task in tasks:  # each task's log, written by the SLURM job step, ends with pinnrun's closing summary
        assert "pinnrun: finished burgers-uniform-s" in (sweep_dir / ".submitit" / task / f"{task}_0_log.err").read_text()
    wait_for(lambda: cluster.command("squeue", "--noheader") == "", "the array's tasks to leave the queue")


def test_job_array_runs_to_the_end(slurm_cluster: Cluster, tmp_path: Path, tracking_uri: str) -> None:
    """Three seeds, one array of three one-core tasks, a sqlite store on the (shared) file system."""
    children, parent, _ = sweep(tmp_path, tracking_uri, *CPU_ARRAY, "seed=0,1,2", env=slurm_cluster.env)
    check_array(slurm_cluster, children, parent, tmp_path / "sweep", [0, 1, 2])


@pytest.mark.slow
def test_job_array_logs_to_the_tracking_server(slurm_cluster: Cluster, tracking_server: Server, tmp_path: Path) -> None:
    """Every task logs over HTTP to one PostgreSQL-backed server; artifacts go through it."""
    children, parent, _ = sweep(tmp_path, tracking_server.uri, *CPU_ARRAY, "seed=0,1,2", env=slurm_cluster.env)
    check_array(slurm_cluster, children, parent, tmp_path / "sweep", [0, 1, 2])
    client = MlflowClient(tracking_uri=tracking_server.uri)
    assert all(client.get_run(run_id).info.artifact_uri.startswith("mlflow-artifacts:") for run_id in children["run_id"])
    summary = client.download_artifacts(parent["run_id"], "summary.csv", str(tmp_path))
    assert pd.read_csv(summary)["n"].tolist() == [3]


def run_status(uri: str, run_id: str) -> str:
    return MlflowClient(tracking_uri=uri).get_run(run_id).info.status


def task_state(cluster: Cluster, task: str) -> str:
    """SLURM's state of an array task (PENDING, RUNNING, COMPLETING, ...)."""
    return cluster.command("squeue", "--noheader", "--jobs", task, "--format=%T").strip()


# A budget long enough to be signalled mid-training (2000 Adam steps, logged every 50).
LONG = ["optimizer.steps=2000", "train.log_every=50", "train.eval_every=50", "resume=auto"]
STOPS = {"scontrol-requeue": (("scontrol", "requeue"), "SIGTERM"),
         "time-limit-signal": (("scancel", "--signal=USR2"), "SIGUSR2")}


@pytest.mark.slow
@pytest.mark.parametrize("stop", list(STOPS))
def test_a_requeued_task_continues_its_run(slurm_cluster: Cluster, tmp_path: Path, tracking_uri: str, stop: str) -> None:
    """A two-task array; on task 0, `scontrol requeue` (SIGTERM, as for preemption) or the signal
    SLURM sends `signal_delay_s` ahead of the time limit (USR2, after which submitit requeues the
    job itself): the task checkpoints, its run ends KILLED, SLURM runs the task again and resume=auto continues the same
    run to FINISHED, with the metrics of an uninterrupted run. SLURM holds a requeued job for two
    minutes before it may start again; the test lets it start at once."""
    command, signal_name = STOPS[stop]
    reference_uri = f"sqlite:///{tmp_path / 'reference.db'}"
    reference = run_cli([*TINY, *LONG, "threads=1", f"tracking.uri={reference_uri}", f"hydra.run.dir={tmp_path / 'reference'}"],
                        cwd=tmp_path, timeout=300)
    assert reference.returncode == 0, reference.stderr[-3000:]
    sweep_dir = tmp_path / "sweep"
    with background_cli(["--multirun", f"hydra.sweep.dir={sweep_dir}", f"tracking.uri={tracking_uri}", *TINY, *CPU_ARRAY,
                         *LONG, "seed=0,1"], tmp_path, slurm_cluster.env) as launcher:
        run_id = wait_for(lambda: training_run(tracking_uri, 0), "task 0's run to log its first loss")
        task = array_tasks(sweep_dir)[0]
        slurm_cluster.command(*command, task)
        wait_for(lambda: run_status(tracking_uri, run_id) == "KILLED", "the run to end KILLED")
        wait_for(lambda: task_state(slurm_cluster, task) == "PENDING", "SLURM to requeue the task")
        slurm_cluster.command("scontrol", "update", f"JobId={task}", "StartTime=now")
        launcher.wait(timeout=300)
    assert launcher.returncode == 0, (tmp_path / "stderr.txt").read_text()[-3000:]
    children, parent = sweep_runs(sweep_dir, tracking_uri)
    assert len(children) == 2 and run_id in set(children["run_id"]) and set(children["status"]) == {"FINISHED"}
    assert (parent["status"], parent["metrics.sweep/n_ok"], parent["metrics.sweep/n_failed"]) == ("FINISHED", 2, 0)
    log = (sweep_dir / ".submitit" / task / f"{task}_0_log.err").read_text()
    assert f"pinnrun: interrupted: stopped by {signal_name} at step" in log and "pinnrun: finished" in log
    check_same_metrics(tracking_uri, run_id, reference_uri)


def check_same_metrics(uri: str, run_id: str, reference_uri: str) -> None:
    """The resumed run's final metrics and loss history equal those of the uninterrupted run (CPU).
    The step it stopped on is not logged again after the resume, so histories are compared where
    both have a value."""
    resumed_client, reference_client = MlflowClient(tracking_uri=uri), MlflowClient(tracking_uri=reference_uri)
    (reference,) = reference_client.search_runs([reference_client.get_experiment_by_name("burgers").experiment_id])
    resumed = resumed_client.get_run(run_id)
    for key in ("final/l2_rel", "final/steps", "l2_rel_best"):
        assert resumed.data.metrics[key] == reference.data.metrics[key], key
    history = {m.step: m.value for m in resumed_client.get_metric_history(run_id, "loss/total")}
    expected = {m.step: m.value for m in reference_client.get_metric_history(reference.info.run_id, "loss/total")}
    assert len(history) >= len(expected) - 1 and all(expected[step] == value for step, value in history.items())
