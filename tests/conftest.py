"""Shared fixtures: a composed config with small budgets, outputs and tracking under tmp_path."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable, Sequence

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from pinnrun.cli import config_dir

QUICK = ["optimizer=adam", "optimizer.steps=20", "train.log_every=10", "train.eval_every=10", "train.progress=false"]


@pytest.fixture
def make_cfg(tmp_path: Path) -> Callable[..., DictConfig]:
    """Compose the real config with `overrides`, writing into tmp_path (no Hydra run directory)."""

    def make(*overrides: str, quick: bool = True) -> DictConfig:
        base = [f"output.dir={tmp_path / 'out'}", f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}"]
        with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
            return compose("config", overrides=base + (QUICK if quick else []) + list(overrides))

    return make


def run_cli(args: Sequence[str], cwd: Path, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    """The real `pinnrun` entry point in a subprocess (python -m pinnrun.cli)."""
    return subprocess.run([sys.executable, "-m", "pinnrun.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


@pytest.fixture(scope="session")
def empty_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow sqlite store with its schema created once per session (creating it takes seconds)."""
    from mlflow.tracking import MlflowClient

    path = tmp_path_factory.mktemp("store") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def tracking_uri(tmp_path: Path, empty_store: Path) -> str:
    """A fresh MLflow store for this test (a copy of the session's empty one) as a sqlite URI."""
    path = tmp_path / "mlflow.db"
    shutil.copyfile(empty_store, path)
    return f"sqlite:///{path}"
