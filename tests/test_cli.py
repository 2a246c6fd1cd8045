"""The real `pinnrun` command in a subprocess: a short run, --help, --cfg, bad input."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np

from tests.conftest import QUICK, run_cli

ROOT = Path(__file__).resolve().parents[1]


def mlflow_runs(db: Path) -> list[tuple[str, str]]:
    """(name, status) of every run in a sqlite MLflow store."""
    with sqlite3.connect(db) as connection:
        return connection.execute("select name, status from runs").fetchall()


def test_short_run_end_to_end(tmp_path: Path) -> None:
    result = run_cli(["problem=burgers", "weighting=uniform", "seed=1", "device=cpu", *QUICK], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert mlflow_runs(tmp_path / "mlflow.db") == [("burgers-uniform-s1", "FINISHED")]
    run_dirs = list((tmp_path / "outputs").glob("*/*"))
    assert len(run_dirs) == 1
    out = run_dirs[0]
    assert {"config.yaml", "prediction.npz", "checkpoint.pt", "plots", ".hydra"} <= {p.name for p in out.iterdir()}
    assert np.load(out / "prediction.npz")["u_pred"].shape == (25600,)


def test_runs_started_in_the_same_second_get_their_own_directories(tmp_path: Path) -> None:
    """hydra.run.dir goes through fresh_directory: a second taken by another run gets a `-2` suffix."""
    from pinnrun.cli import fresh_directory

    base = str(tmp_path / "outputs" / "2026-12-02" / "01-02-03")
    Path(base).mkdir(parents=True)
    assert fresh_directory(base) == base + "-2" and Path(base + "-2").is_dir()
    assert fresh_directory(base) == base + "-2"  # the same answer however often Hydra resolves it
    assert fresh_directory(base + "/x") == base + "/x"


def test_help_lists_groups_and_options(tmp_path: Path) -> None:
    result = run_cli(["--help"], cwd=tmp_path)
    assert result.returncode == 0
    for line in ("problem: allen_cahn, burgers, diffusion, helmholtz, klein_gordon, oscillator, sharp, wave",
                 "weighting: causal, gradnorm, gradnorm_terms, lra, lra_authors, lra_authors_klein_gordon, ntk, rba, sapinn, sapinn_authors_allen_cahn, sapinn_authors_burgers, sapinn_authors_helmholtz, sapinn_gp, uniform", "optimizer: adam, adam_bfgs, adam_lbfgs, adam_lbfgs_rounds, adam_ssbfgs, adam_ssbroyden, bfgs, lbfgs, ssbfgs, ssbroyden",
                 "model: mlp, modified_mlp", "sampler: grid, halton, hammersley, lhs, rad, random, rar_d, rar_g, sobol"):
        assert line in result.stdout


def test_cfg_job_prints_composed_config(tmp_path: Path) -> None:
    result = run_cli(["--cfg", "job", "weighting=uniform", "seed=7"], cwd=tmp_path)
    assert result.returncode == 0
    assert "_target_: pinnrun.problems.burgers.Burgers" in result.stdout and "seed: 7" in result.stdout


def test_bad_value_one_line_no_run(tmp_path: Path) -> None:
    result = run_cli(["model.width=-3", *QUICK], cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == "pinnrun: error: model.width=-3: must be > 0"
    assert not (tmp_path / "mlflow.db").exists()


def test_unknown_option_names_the_choices(tmp_path: Path) -> None:
    result = run_cli(["weighting=unifrom"], cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == ("pinnrun: error: weighting=unifrom: no such option; "
                                     "available: causal, gradnorm, gradnorm_terms, lra, lra_authors, lra_authors_klein_gordon, ntk, rba, sapinn, sapinn_authors_allen_cahn, sapinn_authors_burgers, sapinn_authors_helmholtz, sapinn_gp, uniform")


def test_wheel_ships_config_and_runs_outside_checkout(tmp_path: Path) -> None:
    """A non-editable install carries conf/ inside the package and works from any directory."""
    wheel_dir, target = tmp_path / "wheel", tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheel_dir), str(ROOT)],
                   check=True, capture_output=True, timeout=300)
    wheel = next(wheel_dir.glob("pinnrun-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "pinnrun/conf/config.yaml" in names and "pinnrun/conf/problem/burgers.yaml" in names
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    probe = "import pinnrun.cli as c; print(c.__file__); print(c.config_dir())"
    located = subprocess.run(
        [sys.executable, "-c", probe], cwd=elsewhere, capture_output=True, text=True, env={"PYTHONPATH": str(target)}, timeout=120)
    assert located.stdout.splitlines() == [str(target / "pinnrun" / "cli.py"), str(target / "pinnrun" / "conf")]
    job = subprocess.run([sys.executable, "-m", "pinnrun.cli", "--cfg", "job"], cwd=elsewhere, capture_output=True, text=True,
                         env={"PYTHONPATH": str(target)}, timeout=120)
    assert job.returncode == 0, job.stderr
    assert "pinnrun.problems.burgers.Burgers" in job.stdout
