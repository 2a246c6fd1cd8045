"""The `engine` group of keys: choices are checked and impossible combinations refused in one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from pinnrun.config import ConfigError
from pinnrun.engine import validate
from tests.conftest import run_cli


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["engine.derivatives=forward"], "engine.derivatives='forward': not one of autograd, jet"),
        (["engine.compile=true"], "engine.compile=true needs engine.derivatives=jet"),
        (["engine.cuda_graphs=true", "device=cpu"], "engine.cuda_graphs=true: CUDA graphs need a CUDA device, this run is on cpu"),
    ],
)
def test_engine_settings_are_checked_before_anything_runs(make_cfg, overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError) as error:
        validate(make_cfg(*overrides))
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


def test_jet_with_compile_is_accepted(make_cfg) -> None:
    validate(make_cfg("engine.derivatives=jet", "engine.compile=true"))


def test_cuda_graphs_on_cpu_is_a_one_line_error_from_the_command(tmp_path: Path) -> None:
    result = run_cli(["engine.cuda_graphs=true", "device=cpu", f"hydra.run.dir={tmp_path}"], cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == "pinnrun: error: engine.cuda_graphs=true: CUDA graphs need a CUDA device, this run is on cpu"
