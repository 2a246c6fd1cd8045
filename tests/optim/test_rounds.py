"""Rounds (Wu et al. 2023): Adam + L-BFGS, then rounds of (new points -> fresh Adam -> fresh L-BFGS)."""

from __future__ import annotations

import pytest
import torch
from mlflow.tracking import MlflowClient

from pinnrun.config import ConfigError, parse_option
from pinnrun.engine import run
from pinnrun.optim.adam import AdamPhase
from pinnrun.optim.lbfgs import LBFGSPhase


def test_the_schedule_is_the_first_pair_then_named_rounds_that_open_with_new_points(make_cfg) -> None:
    plan = parse_option("optimizer", make_cfg("optimizer=adam_lbfgs_rounds", "optimizer.rounds=12", quick=False).optimizer).build()
    phases = plan.phases()
    assert [type(p) for p in phases] == [AdamPhase, LBFGSPhase] * 13
    assert [p.name for p in phases[:4]] + [phases[-1].name] == ["adam", "lbfgs", "round01/adam", "round01/lbfgs", "round12/lbfgs"]
    assert [p.starts_round for p in phases] == [False, False] + [True, False] * 12
    assert phases[2].steps == 1000 and phases[0].steps == 15000
    assert phases[2] is not phases[4] and phases[2].cfg is phases[4].cfg  # fresh optimizer state every round
    with pytest.raises(ConfigError, match="optimizer.rounds=-1: must be >= 0"):
        parse_option("optimizer", make_cfg("optimizer=adam_lbfgs_rounds", "optimizer.rounds=-1", quick=False).optimizer).build()


def test_a_round_redraws_once_at_its_first_step_and_the_clock_never_does(make_cfg) -> None:
    """Sampler.update with resample_every=0: only round_start redraws (resample_terms only)."""
    cfg = make_cfg("sampler=random", "sampler.resample_every=0", "problem.n.pde=50")
    sampler = parse_option("sampler", cfg.sampler).build(parse_option("problem", cfg.problem).build(), torch.Generator().manual_seed(0))
    first = sampler.initial()["pde"].x.clone()
    assert sampler.update(1000, None, round_start=False) is None
    changed = sampler.update(1000, None, round_start=True)
    assert set(changed) == {"pde"} and len(changed["pde"]) == 50 and not torch.equal(changed["pde"].x, first)


def test_rad_rounds_in_a_real_run_resample_once_per_round(make_cfg, tmp_path) -> None:
    """Three rounds after the first pair: RAD redraws exactly at the first step of each round (one
    point-cloud snapshot per round, at the step where the round began), and every phase logs its own
    phase/<name>/steps."""
    cfg = make_cfg("+experiment=rad_burgers_wu_quick", "problem.n.pde=60", "sampler.pool=300", "problem.eval_grid=[16,8]",
                   "problem.eval_bounds=[[-1.0,1.0],[0.0,0.99]]", "optimizer.adam.steps=4", "optimizer.lbfgs.steps=3",
                   "optimizer.rounds=3", "optimizer.round.adam.steps=2", "optimizer.round.lbfgs.steps=2",
                   "model.width=8", "output.checkpoint=false", "output.prediction=false", "train.progress=false",
                   "train.log_every=2", "train.eval_every=2", quick=False)
    run(cfg)
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    (found,) = client.search_runs([client.get_experiment_by_name("burgers").experiment_id])
    metrics = found.data.metrics
    phases = ["adam", "lbfgs"] + [f"round{k}/{name}" for k in (1, 2, 3) for name in ("adam", "lbfgs")]
    steps = [int(metrics[f"phase/{name}/steps"]) for name in phases]
    starts = [sum(steps[:i]) for i in (2, 4, 6)]
    snapshots = [f.path for f in client.list_artifacts(found.info.run_id, "plots/points")]
    assert snapshots == [f"plots/points/points_{step:07d}.png" for step in starts]
    assert steps[0] == 4 and all(s == 2 for s in steps[2::2])
