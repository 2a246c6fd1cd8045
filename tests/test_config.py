"""Every group option composes, validates and builds; bad values give one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pinnrun.cli import config_dir
from pinnrun.config import GROUPS, ConfigError
from pinnrun.engine import build, validate

OPTIONS = [(group, path.stem) for group in GROUPS for path in sorted(Path(config_dir(), group).glob("*.yaml"))]


def test_every_group_has_options() -> None:
    assert {group for group, _ in OPTIONS} == set(GROUPS)


PROBLEMS = [o for g, o in OPTIONS if g == "problem"]


def own_problem(group: str, option: str) -> list[str]:
    """An option named after a problem (weighting=lra_authors_klein_gordon: that code's term groups)
    builds with that problem; every other option with the default one."""
    owner = next((p for p in PROBLEMS if group != "problem" and option.endswith(f"_{p}")), None)
    return [f"problem={owner}", "problem.eval_grid=[16,16]"] if owner else []


@pytest.mark.parametrize(("group", "option"), OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_option_composes_and_builds(make_cfg, group: str, option: str) -> None:
    small_reference = [] if group == "problem" else ["problem.eval_grid=[16,8]"]
    cfg = make_cfg(f"{group}={option}", "device=cpu", *small_reference, *own_problem(group, option), quick=False)
    parts = build(cfg, validate(cfg))
    assert parts.problem.terms and parts.phases
    x = torch.as_tensor(parts.evaluation.inputs[:5], dtype=parts.dtype)
    assert parts.model(x).shape == (5, 1)


BAD_VALUES = [
    ("problem.nu=-1", "problem.nu=-1.0: must be > 0"),
    ("problem.nu=abc", "problem.nu='abc': expected float"),
    ("+problem.nuu=1", "problem.nuu: unknown key"),
    ("problem.n.pde=0", "problem.n.pde=0: must be > 0"),
    ("+problem.n.foo=3", "problem.n.foo: unknown term; burgers has pde, ic, bc"),
    ("model.depth=0", "model.depth=0: must be > 0"),
    ("model.activation=relu6", "model.activation='relu6': not one of tanh, sin, gelu, silu"),
    ("optimizer.adam.lr=0", "optimizer.adam.lr=0.0: must be > 0"),
    ("optimizer.lbfgs.line_search=armijo", "optimizer.lbfgs.line_search='armijo': not one of strong_wolfe, none"),
    ("train.log_every=0", "train.log_every=0: must be > 0"),
    ("dtype=float16", "dtype='float16': not one of float32, float64"),
    ("device=tpu", "device='tpu': not one of auto, cpu, cuda, cuda:N, mps"),
    ("sampler.resample_every=-5", "sampler.resample_every=-5: must be >= 0"),
    ("+sampler.n.pdee=5", "sampler.n.pdee: unknown term; burgers has pde, ic, bc"),
]


@pytest.mark.parametrize(("override", "message"), BAD_VALUES, ids=[o for o, _ in BAD_VALUES])
def test_bad_value_is_one_line_error(make_cfg, override: str, message: str) -> None:
    cfg = make_cfg(override, quick=False)
    with pytest.raises(ConfigError) as info:
        parts = build(cfg, validate(cfg))
        parts.sampler.initial()
    assert message in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_cuda_refused_without_cuda(make_cfg) -> None:
    with pytest.raises(ConfigError, match=r"device='cuda': CUDA is not available"):
        validate(make_cfg("device=cuda"))
