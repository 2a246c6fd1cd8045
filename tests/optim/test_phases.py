"""Phases inside the real training loop: what is logged per iteration, when weights may ascend,
how a NaN in L-BFGS ends, and that the loop does not sync with the device every step."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import pytest
import torch

import pinnrun
from pinnrun.checkpoint import Progress
from pinnrun.engine import build, train, validate
from pinnrun.runtime import StopOnSignal
from pinnrun.tracking import MemoryTracker
from pinnrun.weighting.uniform import Uniform

SMALL = ["train.progress=false", "train.eval_every=1000", "problem.n.pde=200", "problem.eval_grid=[32,16]", "problem.quadrature_nodes=200", "output.plots=false",
         "output.prediction=false", "output.checkpoint=false", "device=cpu"]


class AscentRecorder(Uniform):
    """Uniform weighting that records the `ascent` flag of every after_step call."""

    def __init__(self, *args):
        super().__init__(*args)
        self.flags: list[bool] = []

    def after_step(self, ascent: bool) -> None:
        self.flags.append(ascent)


class NaNAfter(Uniform):
    """Uniform weighting whose loss turns NaN after `limit` evaluations from step `start` on."""

    def __init__(self, *args, start: int, limit: int):
        super().__init__(*args)
        self.start, self.limit, self.evaluations = start, limit, 0

    def loss(self, residuals, points, step):
        loss, diagnostics = super().loss(residuals, points, step)
        self.evaluations += step >= self.start
        return (loss * math.nan if self.evaluations > self.limit else loss), diagnostics


def train_with(make_cfg, tmp_path: Path, *overrides: str, weighting=None):
    cfg = make_cfg(*SMALL, *overrides, quick=False)
    parts = build(cfg, validate(cfg))
    if weighting is not None:
        parts.weighting = weighting(parts.weighting.cfg, parts.problem, parts.model)
    tracker = MemoryTracker()
    final = train(parts, cfg, tracker, tmp_path, Progress(), StopOnSignal())
    return parts, tracker, final


def test_every_lbfgs_iteration_is_logged_with_its_step(make_cfg, tmp_path: Path) -> None:
    parts, tracker, final = train_with(
        make_cfg, tmp_path, "optimizer=adam_lbfgs", "optimizer.adam.steps=6", "optimizer.lbfgs.steps=8",
        "optimizer.lbfgs.tolerance_change=1e-30", "train.log_every=5",
    )
    assert final["final/steps"] == 14.0
    lbfgs_steps = [step for step, row in tracker.metrics.items() if "lbfgs/evaluations" in row]
    assert lbfgs_steps == list(range(7, 15))
    for step in lbfgs_steps:
        assert {"loss/total", "mse/pde", "mse/ic", "mse/bc"} <= tracker.metrics[step].keys()
    losses = [tracker.metrics[step]["loss/total"] for step in lbfgs_steps]
    assert all(b <= a for a, b in zip(losses, losses[1:]))
    assert {k: v for k, v in tracker.tags.items() if k.startswith("stop_reason/")} == {
        "stop_reason/adam": "max_steps", "stop_reason/lbfgs": "max_iterations"}


def test_weights_ascend_only_in_adam_phases(make_cfg, tmp_path: Path) -> None:
    parts, _, _ = train_with(
        make_cfg, tmp_path, "optimizer=adam_lbfgs", "optimizer.adam.steps=5", "optimizer.lbfgs.steps=4",
        "optimizer.lbfgs.tolerance_change=1e-30", "train.log_every=2", weighting=AscentRecorder,
    )
    flags = parts.weighting.flags
    assert flags[:5] == [True] * 5 and flags[5:] and not any(flags[5:])


def test_nan_in_lbfgs_ends_the_phase_and_the_run_finishes_with_the_best_weights(make_cfg, tmp_path: Path) -> None:
    parts, tracker, final = train_with(
        make_cfg, tmp_path, "optimizer=adam_lbfgs", "optimizer.adam.steps=4", "optimizer.lbfgs.steps=50",
        "optimizer.lbfgs.tolerance_change=1e-30", "train.log_every=100",
        weighting=lambda cfg, constants, model: NaNAfter(cfg, constants, model, start=4, limit=6),
    )
    assert tracker.tags["stop_reason/lbfgs"] == "non_finite_loss"
    assert all(torch.isfinite(p).all() for p in parts.model.parameters())
    assert math.isfinite(final["final/l2_rel"]) and 4 < final["final/steps"] < 54


PACKAGE_DIR = str(Path(pinnrun.__file__).parent) + os.sep


def host_syncs_from_pinnrun(monkeypatch) -> list[str]:
    """Record Tensor -> Python conversions (the host syncs on a GPU) made by pinnrun's own code:
    files under the imported package's directory, not any path that merely contains "pinnrun"
    (in a clone named pinnrun, torch's files in .venv do)."""
    calls: list[str] = []
    for name in ("item", "tolist", "__float__", "__bool__", "__int__"):
        original = getattr(torch.Tensor, name)

        def counting(self, *args, _original=original, _name=name):
            caller = sys._getframe(1).f_code.co_filename
            if caller.startswith(PACKAGE_DIR):
                calls.append(f"{_name} in {caller}")
            return _original(self, *args)

        monkeypatch.setattr(torch.Tensor, name, counting)
    return calls


@pytest.mark.parametrize("derivatives", ["autograd", "jet"])
def test_adam_steps_do_not_sync_with_the_device_between_log_steps(make_cfg, tmp_path: Path, monkeypatch, derivatives) -> None:
    calls = host_syncs_from_pinnrun(monkeypatch)
    counts = []
    for steps in (3, 12):
        calls.clear()
        train_with(make_cfg, tmp_path, "optimizer=adam", f"optimizer.steps={steps}", f"train.log_every={steps}",
                   f"train.eval_every={steps}", f"engine.derivatives={derivatives}")
        counts.append(len(calls))
    assert counts[0] == counts[1], calls


@pytest.mark.parametrize("derivatives", ["autograd", "jet"])
def test_float64_end_to_end(make_cfg, tmp_path: Path, derivatives: str) -> None:
    parts, tracker, final = train_with(
        make_cfg, tmp_path, "dtype=float64", f"engine.derivatives={derivatives}", "optimizer=adam_lbfgs",
        "optimizer.adam.steps=5", "optimizer.lbfgs.steps=5", "train.log_every=5",
    )
    assert all(p.dtype == torch.float64 for p in parts.model.parameters())
    assert parts.phases[1].optimizer.state[next(parts.model.parameters())]["d"].dtype == torch.float64
    assert math.isfinite(final["final/l2_rel"])
