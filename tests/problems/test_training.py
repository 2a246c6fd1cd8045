"""Every problem trains end to end through the real CLI (tiny budget), and, marked slow, its
default configuration reaches the uniform-weighting baseline stated in the README."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pytest

from tests.conftest import QUICK, run_cli

PROBLEMS = ["burgers", "allen_cahn", "helmholtz", "wave", "klein_gordon", "oscillator", "diffusion", "sharp"]
# Small point sets keep each smoke run to a few seconds; the evaluation grid stays the default.
SMALL = {
    "burgers": ["problem.n.pde=500"],
    "allen_cahn": ["problem.n.pde=500"],
    "helmholtz": ["problem.n.pde=500"],
    "wave": ["problem.n.pde=500"],
    "klein_gordon": ["problem.n.pde=500"],
    "oscillator": [],
    "diffusion": ["problem.n.pde=500"],
    "sharp": [],
}


def finished_run(tmp_path: Path, problem: str):
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(problem)
    (run,) = client.search_runs([experiment.experiment_id])
    return run


@pytest.mark.parametrize("problem", PROBLEMS)
def test_cli_trains_each_problem(problem, tmp_path):
    out = tmp_path / "out"
    args = [f"problem={problem}", *QUICK, *SMALL[problem], f"output.dir={out}", "output.plots=false",
            "output.checkpoint=false", f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}"]
    result = run_cli(args, tmp_path, env={"PINNRUN_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-2000:]

    run = finished_run(tmp_path, problem)
    assert run.info.status == "FINISHED"
    terms = {key.split("/", 1)[1] for key in run.data.metrics if key.startswith("mse/")}
    expected = {"loss/total", "l2_rel", "l2_rel_best", "lr", "time/step_ms", "final/l2_rel", "final/time_s", "final/steps"}
    expected |= {f"{kind}/{term}" for kind in ("loss", "mse") for term in terms}
    if problem == "sharp":
        expected |= {"sharp/centre_outer_ratio", "sharp/centre_outer_ratio_grid"}
    assert terms and expected <= set(run.data.metrics)
    assert np.isfinite(run.data.metrics["final/l2_rel"]) and run.data.metrics["final/steps"] == 20

    with np.load(out / "prediction.npz") as prediction:
        shape = tuple(prediction["shape"])
        assert prediction["u_pred"].shape == prediction["u_ref"].shape == (int(np.prod(shape)),)
        assert prediction["inputs"].shape[0] == int(np.prod(shape))
        relative = np.linalg.norm(prediction["u_pred"] - prediction["u_ref"]) / np.linalg.norm(prediction["u_ref"])
        assert relative == pytest.approx(run.data.metrics["final/l2_rel"], rel=1e-5)


# Uniform-weighting baselines of the default configurations (model mlp 8x20, sampler random,
# optimizer adam_lbfgs 3000 + 3000, seed 0, float32): the bound is about 2.5x the rel-L2 measured
# with `nice -n 10 pinnrun problem=<name>` on a 2-core CPU (value and wall time in the comment).
BASELINES = {
    "burgers": 2.0e-3,  # measured 7.94e-4, 24 min (SA-PINN paper's PINN: 6.7e-4 with 10k + 10k steps)
    "diffusion": 1.0e-3,  # measured 3.69e-4, 6.4 min
    "helmholtz": 0.3,  # measured 0.145, 37 min (Wang, Teng & Perdikaris 2021's PINN: 0.140)
    "klein_gordon": 0.2,  # measured 8.71e-2, 37 min (Wang, Teng & Perdikaris 2021's PINN: 0.179)
    "oscillator": 3.0e-2,  # measured 1.26e-2, 2.0 min
    "sharp": 1.0e-3,  # measured 2.14e-4 (centre/outer ratio 1.63 at the samples), 0.5 min
    "wave": 0.75,  # measured 0.548, 35 min: uniform weighting fails here (SA-PINN paper's PINN: 0.45)
}


@pytest.mark.slow
@pytest.mark.parametrize("problem", sorted(BASELINES))
def test_default_configuration_reaches_its_baseline(problem, make_cfg):
    from pinnrun.engine import run

    cfg = make_cfg(f"problem={problem}", "train.progress=false", "output.plots=false", quick=False)
    assert run(cfg)["final/l2_rel"] <= BASELINES[problem]
