"""Shared fixtures: a composed config with small budgets, outputs and tracking under tmp_path; the
PostgreSQL-backed tracking server of scripts/tracking_server.sh on loopback; the real CLI in a
subprocess, in the foreground or in the background while a test watches its runs."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from glob import glob
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence, TypeVar

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from pinnrun.cli import config_dir

ROOT = Path(__file__).resolve().parents[1]
T = TypeVar("T")
QUICK = ["optimizer=adam", "optimizer.steps=20", "train.log_every=10", "train.eval_every=10", "train.progress=false"]


@pytest.fixture
def make_cfg(tmp_path: Path) -> Callable[..., DictConfig]:
    """Compose the real config with `overrides`, writing into tmp_path (no Hydra run directory)."""

    def make(*overrides: str, quick: bool = True) -> DictConfig:
        base = [f"output.dir={tmp_path / 'out'}", f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}"]
        with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
            return compose("config", overrides=base + (QUICK if quick else []) + list(overrides))

    return make


@contextlib.contextmanager
def background_cli(args: Sequence[str], cwd: Path, env: dict | None = None) -> Iterator[subprocess.Popen]:
    """The real `pinnrun` entry point running in the background, its stderr in cwd/stderr.txt;
    killed on leaving the block if it is still running."""
    with open(cwd / "stderr.txt", "w") as stderr:
        process = subprocess.Popen([sys.executable, "-m", "pinnrun.cli", *args], cwd=cwd, stdout=subprocess.DEVNULL,
                                   stderr=stderr, env={**os.environ, **(env or {})})
        try:
            yield process
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


def wait_for(condition: Callable[[], Optional[T]], what: str, timeout_s: float = 240) -> T:
    """Poll until `condition` returns something truthy, and return it; fail naming `what`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def training_run(uri: str, job: int) -> Optional[str]:
    """The id of sweep job `job`'s run once it is RUNNING and has logged its first loss, else None."""
    from pinnrun import tracking

    runs = tracking.search_runs(uri, filter_string=f"attributes.status = 'RUNNING' and tags.sweep_job = '{job}' "
                                                   "and metrics.`loss/total` > 0")
    return str(runs["run_id"].iloc[0]) if len(runs) else None


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


def postgres_server_binaries() -> bool:
    """initdb and pg_ctl on PATH or in a Debian/Ubuntu /usr/lib/postgresql/<version>/bin."""
    on_path = shutil.which("initdb") and shutil.which("pg_ctl")
    return bool(on_path or glob("/usr/lib/postgresql/*/bin/pg_ctl"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    uri: str
    artifacts: Path


def script(name: str, command: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess:
    """`scripts/<name> <command>` with `env`, its output captured."""
    return subprocess.run([str(ROOT / "scripts" / name), command], env=env, capture_output=True, text=True, timeout=timeout)


def alive(pid: int) -> bool:
    """Running, not merely a zombie waiting for init to reap it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.fixture(scope="module")
def tracking_server() -> Iterator[Server]:
    """Started by scripts/tracking_server.sh; stopped by it and removed afterwards, also when anything
    failed. Skips where PostgreSQL's server binaries are not installed."""
    if not postgres_server_binaries():
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not installed: apt-get install postgresql (.ci/run does)")
    base = Path(tempfile.mkdtemp(prefix="pinnrun-tracking-"))
    base.chmod(0o755)  # as root, PostgreSQL runs as another user that must reach the state directory
    state, mlflow_port = base / "server", free_port()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "PINNRUN_SERVER_DIR": str(state), "PG_PORT": str(free_port()), "MLFLOW_PORT": str(mlflow_port),
           "MLFLOW_WORKERS": "1", "START_TIMEOUT_S": "150"}
    if os.geteuid() == 0:
        env["PG_RUN_AS"] = "postgres" if "postgres" in {p.pw_name for p in pwd.getpwall()} else "nobody"
    started: list[int] = []
    try:
        start = script("tracking_server.sh", "start", env, timeout=240)
        for pid_file in (state / "mlflow.pid", state / "pgdata" / "postmaster.pid"):
            if pid_file.exists():
                started.append(int(pid_file.read_text().split()[0]))
        logs = "".join(f"\n--- {log.name}\n{log.read_text()[-3000:]}" for log in sorted(state.glob("logs/*.log")))
        assert start.returncode == 0, f"start failed:\n{start.stdout}{start.stderr}{logs}"
        status = script("tracking_server.sh", "status", env)
        assert status.returncode == 0, status.stdout + status.stderr
        yield Server(f"http://127.0.0.1:{mlflow_port}", state / "artifacts")
    finally:
        stop = script("tracking_server.sh", "stop", env)
        left = [pid for pid in started if alive(pid)]
        for pid in left:
            os.kill(pid, signal.SIGKILL)
        stopped = script("tracking_server.sh", "status", env).returncode
        shutil.rmtree(base, ignore_errors=True)
    assert stop.returncode == 0, stop.stdout + stop.stderr
    assert not left, f"processes left running after stop: {left}"
    assert stopped == 3, "status should report the stack stopped"
