"""Sweeps through the real CLI (tiny budgets): joblib and submitit_local launchers, the sweep tags
every job carries, the parent run and its summary; the Optuna sweeper on the rel-L2 objective."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from tests.conftest import background_cli, run_cli, training_run, wait_for
from pinnrun import tracking
from pinnrun.sweep import override_tags, summary_group_by, swept_keys

TINY = ["optimizer=adam", "optimizer.steps=20", "train.log_every=10", "train.eval_every=10", "train.progress=false",
        "problem.n.pde=200", "problem.eval_grid=[32,10]", "output.plots=false", "output.checkpoint=false",
        "output.prediction=false"]


def sweep(tmp_path: Path, uri: str, *args: str, env: dict | None = None) -> tuple[pd.DataFrame, pd.Series, dict]:
    """Run `pinnrun --multirun` into tmp_path (with `env` added to the environment); the sweep's child
    runs, its parent run and sweep.json (with the command's stderr under "stderr")."""
    result = run_cli(["--multirun", f"hydra.sweep.dir={tmp_path / 'sweep'}", f"tracking.uri={uri}", *TINY, *args],
                     cwd=tmp_path, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    children, parent = sweep_runs(tmp_path / "sweep", uri)
    return children, parent, {**json.loads((tmp_path / "sweep" / "sweep.json").read_text()), "stderr": result.stderr}


def sweep_runs(sweep_dir: Path, uri: str) -> tuple[pd.DataFrame, pd.Series]:
    """The child runs and the parent run of the sweep in `sweep_dir` (from its sweep.json)."""
    info = json.loads((sweep_dir / "sweep.json").read_text())
    runs = tracking.search_runs(uri, filter_string=f"tags.sweep_id = '{info['sweep_id']}'")
    parent = runs[runs["run_id"] == info["parent_run_id"]]
    assert len(parent) == 1
    return runs[runs["run_id"] != info["parent_run_id"]], parent.iloc[0]


def test_override_tags_and_swept_keys() -> None:
    assert override_tags(["+experiment=sapinn_burgers_quick", "optimizer.lr=0.003", "seed=0,1"]) == {
        "override/experiment": "sapinn_burgers_quick", "override/optimizer.lr": "0.003"}
    config = OmegaConf.create({"hydra": {"overrides": {"task": ["weighting=uniform,sapinn", "seed=range(3)", "device=cpu"]},
                                         "sweeper": {"params": {"optimizer.steps": "10,20"}}}})
    assert swept_keys(config) == ["weighting", "seed", "optimizer.steps"]
    assert summary_group_by(swept_keys(config)) == ["problem", "weighting", "override/optimizer.steps"]


def test_joblib_sweep_tags_its_runs_and_fills_a_parent_run(tmp_path: Path, tracking_uri: str) -> None:
    children, parent, info = sweep(tmp_path, tracking_uri, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                                   "threads=1", "seed=0,1")
    assert sorted(children["tags.override/seed"]) == ["0", "1"]
    assert set(children["status"]) == {"FINISHED"} and children["metrics.final/l2_rel"].notna().all()
    assert set(children["tags.mlflow.parentRunId"]) == {info["parent_run_id"]}
    assert set(children["tags.torch_threads"]) == {"1"}
    assert set(children["tags.sweep_job"]) == {"0", "1"}
    assert parent["status"] == "FINISHED" and parent["tags.sweep_role"] == "parent"
    assert parent["params.launcher"] == "joblib" and parent["tags.swept"] == "seed"
    assert parent["metrics.sweep/n_ok"] == 2 and parent["metrics.sweep/n_failed"] == 0
    assert parent["metrics.sweep/best_l2_rel"] == pytest.approx(children["metrics.final/l2_rel"].min())
    summary = MlflowClient(tracking_uri=tracking_uri).download_artifacts(parent["run_id"], "summary.csv", str(tmp_path))
    table = pd.read_csv(summary)
    assert (table["problem"].tolist(), table["n"].tolist()) == (["burgers"], [2])
    assert table["mean"].iloc[0] == pytest.approx(children["metrics.final/l2_rel"].mean())
    closing = info["stderr"][info["stderr"].index(f"pinnrun: sweep {info['sweep_id']}: "):].splitlines()
    assert closing[0] == f"pinnrun: sweep {info['sweep_id']}: 2 finished; outputs in sweep"
    assert closing[1].endswith(f"pinnrun-compare --tracking-uri {tracking_uri} --sweep {info['sweep_id']}")
    assert info["stderr"].count("pinnrun: finished burgers-uniform-s") == 2  # each job's own summary


def test_startup_time_is_per_job_in_a_sequential_sweep(tmp_path: Path, tracking_uri: str) -> None:
    """Hydra's basic launcher runs the jobs one after another in one process: each job's
    `time/startup_s` is its own start to first step, not the process's age (which grows)."""
    children, _, _ = sweep(tmp_path, tracking_uri, "seed=0,1,2")
    startup = children.set_index("tags.sweep_job")["metrics.time/startup_s"].sort_index()
    assert startup["1"] < startup["0"] and startup["2"] < startup["0"], startup


def test_submitit_local_sweep(tmp_path: Path, tracking_uri: str) -> None:
    children, parent, _ = sweep(tmp_path, tracking_uri, "hydra/launcher=submitit_local", "threads=1", "seed=0,1")
    assert sorted(children["tags.override/seed"]) == ["0", "1"] and set(children["status"]) == {"FINISHED"}
    assert parent["params.launcher"] == "submitit_local" and parent["metrics.sweep/n_ok"] == 2
    job_folders = [p for p in (tmp_path / "sweep" / ".submitit").iterdir() if p.name.isdigit()]
    assert len(job_folders) == 2  # submitit ran two jobs, each with its own log folder


def test_slurm_launcher_submits_the_intended_job_array(tmp_path: Path, tracking_uri: str) -> None:
    """No cluster here: stand-in `srun` and `sbatch` commands capture the batch script and refuse it."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 1\n")
    (bin_dir / "sbatch").write_text('#!/bin/bash\ncp "${@: -1}" "$SBATCH_CAPTURE"\necho "sbatch: refused" >&2\nexit 1\n')
    for command in bin_dir.iterdir():
        command.chmod(0o755)
    script = tmp_path / "array.sh"
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "SBATCH_CAPTURE": str(script)}
    result = run_cli(["--multirun", f"hydra.sweep.dir={tmp_path / 'sweep'}", f"tracking.uri={tracking_uri}",
                      "hydra/launcher=submitit_slurm", "hydra.launcher.partition=gpu", "seed=0,1,2"], cwd=tmp_path, env=env)
    assert result.returncode != 0 and "sbatch: refused" in result.stderr
    lines = set(script.read_text().splitlines())
    assert {"#SBATCH --partition=gpu", "#SBATCH --gpus-per-task=1", "#SBATCH --cpus-per-task=4", "#SBATCH --time=240",
            "#SBATCH --array=0-2%3", "#SBATCH --mem=16GB", "#SBATCH --job-name=pinnrun"} <= lines
    assert any(line.startswith("#SBATCH --signal=") and line.endswith("@120") for line in lines)
    info = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
    parent = tracking.search_runs(tracking_uri).set_index("run_id").loc[info["parent_run_id"]]
    assert parent["status"] == "FAILED" and parent["metrics.sweep/n_runs"] == 0  # no job ran


def test_a_signal_stops_a_sequential_sweep_after_the_checkpoint(tmp_path: Path, tracking_uri: str) -> None:
    """Hydra's basic launcher: SIGTERM stops the running job as it stops a single run (checkpoint,
    KILLED, exit status 130) and the sweep with it: the next job does not start, the parent ends FAILED."""
    args = ["--multirun", f"hydra.sweep.dir={tmp_path / 'sweep'}", f"tracking.uri={tracking_uri}", *TINY,
            "optimizer.steps=2000", "train.log_every=50", "train.eval_every=50", "seed=0,1"]
    with background_cli(args, tmp_path) as sweeping:
        wait_for(lambda: training_run(tracking_uri, 0), "job 0's run to log its first loss")
        sweeping.send_signal(signal.SIGTERM)
        sweeping.wait(timeout=120)
    stderr = (tmp_path / "stderr.txt").read_text()
    assert sweeping.returncode == 130 and "pinnrun: interrupted: stopped by SIGTERM at step" in stderr, stderr[-3000:]
    children, parent = sweep_runs(tmp_path / "sweep", tracking_uri)
    assert children["status"].tolist() == ["KILLED"] and parent["status"] == "FAILED"
    assert (tmp_path / "sweep" / "0" / "checkpoint.pt").is_file()


@pytest.mark.parametrize("resumes", ["null,/nonexistent/checkpoint.pt", "/nonexistent/a.pt,/nonexistent/b.pt"],
                         ids=["one-of-two-rejected", "all-rejected"])
def test_a_sweep_with_failed_jobs_exits_non_zero_and_says_how_many(tmp_path: Path, tracking_uri: str, resumes: str) -> None:
    """Jobs refused by an error only the job can see: the sweep carries on, then exits 1 with one
    line counting them, and its parent run ends FAILED with the count as a tag."""
    result = run_cli(["--multirun", f"hydra.sweep.dir={tmp_path / 'sweep'}", f"tracking.uri={tracking_uri}", *TINY,
                      f"resume={resumes}"], cwd=tmp_path, timeout=600)
    rejected = resumes.count("nonexistent")
    info = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
    assert result.returncode == 1, result.stderr[-3000:]
    assert (f"pinnrun: error: sweep {info['sweep_id']}: {rejected} of 2 jobs did not finish ({rejected} rejected); "
            "first: error: resume='/nonexistent/") in result.stderr
    parent = tracking.search_runs(tracking_uri).set_index("run_id").loc[info["parent_run_id"]]
    assert parent["status"] == "FAILED"
    assert (parent["tags.failed_jobs"], parent["tags.jobs"]) == (str(rejected), "2")


@pytest.mark.slow
def test_a_sweep_stopped_by_an_error_closes_its_parent_as_failed(tmp_path: Path, tracking_uri: str) -> None:
    """An error only the job can see (a missing checkpoint: typos stop a sweep before it starts),
    raised out of the job (PINNRUN_DEBUG=1; otherwise the job fails and the sweep carries on)."""
    result = run_cli(["--multirun", f"hydra.sweep.dir={tmp_path / 'sweep'}", f"tracking.uri={tracking_uri}", *TINY,
                      "resume=null,/nonexistent/checkpoint.pt"], cwd=tmp_path, timeout=600, env={"PINNRUN_DEBUG": "1"})
    assert result.returncode != 0 and "resume='/nonexistent/checkpoint.pt': no such checkpoint file" in result.stderr
    info = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
    runs = tracking.search_runs(tracking_uri).set_index("run_id")
    parent = runs.loc[info["parent_run_id"]]
    assert parent["status"] == "FAILED" and parent["metrics.sweep/n_ok"] == 1 and len(runs) == 2


@pytest.mark.slow
def test_optuna_sweeper_minimises_final_rel_l2(tmp_path: Path, tracking_uri: str) -> None:
    children, parent, _ = sweep(tmp_path, tracking_uri, "hydra/sweeper=optuna", "hydra.sweeper.n_trials=2",
                                "hydra.sweeper.sampler.seed=0", "optimizer.lr=tag(log, interval(1e-4, 1e-2))")
    assert len(children) == 2 and children["tags.override/optimizer.lr"].nunique() == 2
    results = OmegaConf.load(tmp_path / "sweep" / "optimization_results.yaml")
    assert results.best_value == pytest.approx(children["metrics.final/l2_rel"].min())
    assert parent["tags.swept"] == "optimizer.lr" and parent["params.sweeper"] == "optuna"


def test_a_scheme_sweep_gives_paired_ratios_that_match_its_runs(tmp_path: Path, tracking_uri: str, capsys) -> None:
    """The compare issue's acceptance run, at a smaller budget: the --baseline table's ratios and
    intervals equal those computed here from the runs' final metrics."""
    import numpy as np
    from scipy import stats

    from pinnrun import compare

    children, _, info = sweep(tmp_path, tracking_uri, "problem=oscillator", "problem.eval_grid=[64]",
                              "weighting=uniform,sapinn,lra", "seed=0,1,2")
    assert children["tags.init_params_hash"].nunique() == 3 and children["tags.init_points_hash"].nunique() == 3
    assert compare.main(["--tracking-uri", tracking_uri, "--experiment", "oscillator", "--baseline", "weighting=uniform",
                         "--csv", str(tmp_path / "out.csv")]) == 0
    table = pd.read_csv(tmp_path / "out.csv").set_index("option")
    final = children.pivot(index="tags.seed", columns="tags.weighting", values="metrics.final/l2_rel")
    for option in ("sapinn", "lra"):
        d = np.log(final[option] / final["uniform"])
        interval = stats.ttest_1samp(d, 0).confidence_interval(0.95)
        row = table.loc[option]
        assert row["n_pairs"] == 3 and row["n_failed"] == 0
        assert row["ratio"] == pytest.approx(np.exp(d.mean()), rel=1e-9)
        assert (row["ci_low"], row["ci_high"]) == pytest.approx((np.exp(interval.low), np.exp(interval.high)), rel=1e-9)
        assert row["p_value"] == pytest.approx(stats.wilcoxon(d, method="exact").pvalue)
    assert f"parent run {info['parent_run_id']}" in capsys.readouterr().err
