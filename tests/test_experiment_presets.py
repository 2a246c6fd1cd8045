"""Every preset in conf/experiment composes and validates; each has a `_quick` variant whose budget
fits a 2-core CPU. The presets name options from the problem, weighting, sampler and model issues,
so this test passes once those are merged."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest
from omegaconf import DictConfig, OmegaConf

from pinnrun.cli import config_dir
from pinnrun.engine import validate

PRESET_DIR = Path(config_dir()) / "experiment"
PRESETS = sorted(path.stem for path in PRESET_DIR.glob("*.yaml"))
FULL = [name for name in PRESETS if not name.endswith("_quick")]


def total_steps(cfg: DictConfig) -> int:
    """Optimizer steps of the composed config, over all phases."""
    optimizer = cfg.optimizer
    return sum(optimizer[phase].steps for phase in ("adam", "lbfgs") if phase in optimizer) or optimizer.steps


@pytest.mark.parametrize("name", PRESETS)
def test_preset_composes_and_validates(make_cfg: Callable[..., DictConfig], name: str) -> None:
    cfg = make_cfg(f"+experiment={name}", quick=False)
    validate(cfg)
    assert "SCIENCE.md" in (PRESET_DIR / f"{name}.yaml").read_text() or name.endswith("_quick")


@pytest.mark.parametrize("name", FULL)
def test_quick_variant_keeps_the_setting_on_a_cpu_budget(make_cfg: Callable[..., DictConfig], name: str) -> None:
    full, quick = make_cfg(f"+experiment={name}", quick=False), make_cfg(f"+experiment={name}_quick", quick=False)
    assert total_steps(quick) <= min(5000, total_steps(full))
    assert quick.problem.n.pde <= 2000 if "pde" in quick.problem.n else True
    assert quick.problem._target_ == full.problem._target_ and quick.weighting._target_ == full.weighting._target_
    assert quick.model._target_ == full.model._target_ and quick.sampler._target_ == full.sampler._target_


def test_three_mode_race_is_a_sweep_over_weightings_and_seeds() -> None:
    params = OmegaConf.load(PRESET_DIR / "three_mode_race.yaml").hydra.sweeper.params
    assert params.weighting.split(",") == ["uniform", "gradnorm", "sapinn"]
    assert params.seed.split(",") == ["0", "1", "2", "3", "4"]
