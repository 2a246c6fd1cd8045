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


ONLY_ITS_OWN_SCHEME = {"sapinn_allen_cahn": "the paper's IC weights lam ~ 100 U(0,1) are SA-PINN settings"}


@pytest.mark.parametrize("name", [name for name in PRESETS if name.split("_quick")[0] not in ONLY_ITS_OWN_SCHEME])
@pytest.mark.parametrize("scheme", ["uniform", "lra", "gradnorm"])
def test_preset_takes_another_scheme_at_its_budget(make_cfg: Callable[..., DictConfig], name: str, scheme: str) -> None:
    """`+experiment=P weighting=uniform` is the equal-budget baseline: the preset sets no key that
    belongs to its own scheme, so the term-level and grad-norm schemes compose and validate with the
    same problem, model, points and optimizer."""
    own = make_cfg(f"+experiment={name}", quick=False)
    cfg = make_cfg(f"+experiment={name}", f"weighting={scheme}", quick=False)
    validate(cfg)
    assert cfg.weighting._target_ == OmegaConf.load(PRESET_DIR.parent / "weighting" / f"{scheme}.yaml")._target_
    assert all(cfg[group] == own[group] for group in ("problem", "model", "sampler", "optimizer"))


@pytest.mark.parametrize(("name", "expected"), [
    ("sapinn_burgers", {"mask": "polynomial", "c": 1.0, "q": 2.0, "lr": 5e-3,
                        "default_init": {"kind": "uniform", "scale": 1.0}}),
    ("sapinn_helmholtz", {"q": 2.0, "lr": 5e-3, "default_init": {"kind": "uniform", "scale": 1.0}}),
    ("gp_sapinn_wave", {"resample_every": 100, "q": 2.0, "lr": 5e-3}),
    ("lra_helmholtz", {"variant": "paper", "alpha": 0.9, "update_every": 10}),
    ("lra_klein_gordon", {"variant": "paper", "alpha": 0.9, "update_every": 10}),
])
def test_paper_preset_gets_the_papers_scheme_settings_from_the_scheme_defaults(
        make_cfg: Callable[..., DictConfig], name: str, expected: dict) -> None:
    """The presets leave the scheme's keys to conf/weighting/ (so they compare schemes); this pins the
    values the papers used, should a scheme's defaults change."""
    weighting = OmegaConf.to_container(make_cfg(f"+experiment={name}", quick=False).weighting)
    assert {key: weighting[key] for key in expected} == expected


def header_commands(name: str) -> list[list[str]]:
    """The overrides of every `pinnrun` command a preset's header prints. A `...` line continues the
    header's first command; a placeholder seed (`seed=S`) becomes seed 0, a sweep its first value
    (a `range(...)` becomes 0: any value of the sweep checks the rest of the command)."""
    commands: list[list[str]] = []
    for line in (PRESET_DIR / f"{name}.yaml").read_text().splitlines():
        words = line.lstrip("# ").split()
        if not words or words[0] not in ("pinnrun", "..."):
            continue
        overrides = []
        for word in words[1:]:
            if word.startswith("("):
                break
            if word.startswith(("--", "hydra/")):
                continue
            key, value = word.strip("'").split("=", 1)
            overrides.append(f"{key}={'0' if value == 'S' or value.startswith('range(') else value.split(',')[0]}")
        commands.append(overrides if words[0] == "pinnrun" else commands[0] + overrides)
    return commands


@pytest.mark.parametrize("name", PRESETS)
def test_every_command_in_a_presets_header_composes_and_validates(
        make_cfg: Callable[..., DictConfig], name: str) -> None:
    """The headers are the presets' documentation: each command they print must run as printed."""
    commands = header_commands(name)
    assert commands and all(f"+experiment={name}" in command for command in commands)
    for command in commands:
        validate(make_cfg(*command, quick=False))
