"""Faults during a run: NaN, SIGTERM/SIGINT with checkpoint and exact resume, a tracking store that
goes away, and many runs writing to one sqlite store at once."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Callable, Iterator

import pytest
import torch
from mlflow.tracking import MlflowClient

from pinnrun import compare, sync, tracking
from pinnrun.checkpoint import load_checkpoint
from pinnrun.config import ConfigError
from pinnrun.engine import NonFiniteLossError, run
from pinnrun.runtime import RunInterrupted, pass_on
from pinnrun.tracking import PENDING_FILE, RETRY_CAP_S, RETRY_FIRST_S, MlflowTracker, end_run
from pinnrun.weighting.sapinn_gp import SelfAdaptiveGP
from pinnrun.weighting.uniform import Uniform
from tests.test_bad_inputs import run_main

BUDGET = ["optimizer=adam_lbfgs", "optimizer.adam.steps=30", "optimizer.lbfgs.steps=20", "train.log_every=10",
          "train.eval_every=10", "train.progress=false", "problem.n.pde=256", "problem.eval_grid=[32,16]", "device=cpu"]


def the_run(tmp_path: Path):
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (record,) = client.search_runs([client.get_experiment_by_name("burgers").experiment_id])
    return client, record


def scheme_class(overrides: list[str]) -> type:
    """The weighting class whose `after_step` the signal rides on."""
    return SelfAdaptiveGP if "weighting=sapinn_gp" in overrides else Uniform


def at_step(monkeypatch: pytest.MonkeyPatch, step: int, action: Callable[[], None], scheme: type = Uniform) -> None:
    """Do `action` in this process right after the given number of optimizer steps."""
    calls = {"n": 0}
    original = scheme.after_step

    def after_step(self, ascent: bool) -> None:
        original(self, ascent)
        calls["n"] += 1
        if calls["n"] == step:
            action()

    monkeypatch.setattr(scheme, "after_step", after_step)


def signal_at_step(monkeypatch: pytest.MonkeyPatch, step: int, signum: int, scheme: type = Uniform, times: int = 1) -> None:
    """Deliver a real signal (`times` times in a row) to this process after the given number of optimizer steps."""

    def deliver() -> None:
        for _ in range(times):
            os.kill(os.getpid(), signum)

    at_step(monkeypatch, step, deliver, scheme)


def assert_trained_with_tracking_pending(code: int, stderr: str, out: Path) -> None:
    """Exit 3 and one line naming the run directory, every file there, and the calls the store did not take."""
    lines = [line for line in stderr.splitlines() if line.startswith("pinnrun:")]
    assert code == 3 and "Traceback" not in stderr, stderr
    assert len(lines) == 1 and lines[0].startswith("pinnrun: failed: the tracking store ") and f"files are in {out};" in lines[0]
    assert {"config.yaml", "prediction.npz", "checkpoint.pt", "plots", PENDING_FILE} <= {p.name for p in out.iterdir()}
    assert load_checkpoint(out / "checkpoint.pt")["progress"]["step"] == 50


def test_nan_fails_the_run_and_keeps_the_last_good_checkpoint(make_cfg, tmp_path: Path, monkeypatch) -> None:
    original = Uniform.loss

    def poisoned(self, residuals, points, step):
        loss, diagnostics = original(self, residuals, points, step)
        if step >= 25:
            diagnostics["mse/pde"] = diagnostics["mse/pde"] * float("nan")
            return loss * float("nan"), {**diagnostics, "loss/total": loss.detach() * float("nan")}
        return loss, diagnostics

    monkeypatch.setattr(Uniform, "loss", poisoned)
    with pytest.raises(NonFiniteLossError, match="non-finite at step 30 \\(terms: pde"):
        run(make_cfg(*BUDGET, "train.checkpoint_every=10", quick=False))
    _, record = the_run(tmp_path)
    assert record.info.status == "FAILED"
    assert record.data.tags["failed_step"] == "30" and "pde" in record.data.tags["failed_terms"]
    checkpoint = load_checkpoint(tmp_path / "out" / "checkpoint.pt")
    assert checkpoint["progress"]["step"] == 20
    assert all(torch.isfinite(p).all() for p in checkpoint["model"].values())


@pytest.mark.parametrize(
    ("stop_step", "signum", "scheme"),
    [(15, signal.SIGTERM, []), (32, signal.SIGINT, []), (31, signal.SIGINT, []), (15, signal.SIGUSR2, []),
     (15, signal.SIGTERM, ["weighting=sapinn_gp", "weighting.resample_every=10"])],
    ids=["adam-sigterm", "lbfgs-sigint", "lbfgs-sigint-on-a-log-step-mid-phase", "adam-sigusr2-time-limit",
         "sapinn_gp-resampling"],
)
def test_interrupt_then_resume_matches_uninterrupted(make_cfg, tmp_path: Path, monkeypatch, stop_step: int, signum: int,
                                                     scheme: list[str]) -> None:
    """Model, optimizers, SA weights and their optimizer, GP, sampler points and generator all come back."""
    reference = run(make_cfg(*BUDGET, *scheme, "tracking.enabled=false", f"output.dir={tmp_path / 'reference'}", quick=False))

    with monkeypatch.context() as patch:
        signal_at_step(patch, stop_step, signum, scheme_class(scheme))
        with pytest.raises(RunInterrupted, match=f"stopped by {signal.Signals(signum).name}"):
            run(make_cfg(*BUDGET, *scheme, quick=False))
    client, record = the_run(tmp_path)
    assert record.info.status == "KILLED"
    saved = load_checkpoint(tmp_path / "out" / "checkpoint.pt")
    assert saved["progress"]["run_id"] == record.info.run_id and saved["progress"]["step"] > 0

    resumed = run(make_cfg(*BUDGET, *scheme, f"resume={tmp_path / 'out' / 'checkpoint.pt'}", quick=False))
    client, again = the_run(tmp_path)
    assert again.info.run_id == record.info.run_id and again.info.status == "FINISHED"
    assert resumed["final/l2_rel"] == reference["final/l2_rel"]
    assert resumed["final/steps"] == reference["final/steps"]
    steps = [m.step for m in client.get_metric_history(record.info.run_id, "loss/total")]
    assert steps == sorted(set(steps))


def test_a_launchers_handler_gets_the_signal_once_the_run_has_stopped(make_cfg, tmp_path: Path, monkeypatch) -> None:
    """submitit's way: its USR2 handler, installed before the run, requeues the job. pinnrun holds
    the signal until its checkpoint is written and the run is KILLED, then passes it on; Python's
    default SIGINT handler is not called (the run has already stopped)."""
    received = []

    def launcher_handler(signum: int, frame) -> None:
        received.append((signum, the_run(tmp_path)[1].info.status, load_checkpoint(tmp_path / "out" / "checkpoint.pt")["progress"]["step"]))

    previous = signal.signal(signal.SIGUSR2, launcher_handler)
    try:
        with monkeypatch.context() as patch:
            signal_at_step(patch, 1, signal.SIGUSR2)
            with pytest.raises(RunInterrupted) as stopped:
                run(make_cfg(*BUDGET, quick=False))
        assert received == [] and signal.getsignal(signal.SIGUSR2) is launcher_handler
        pass_on(stopped.value.signum)
        pass_on(signal.SIGINT)  # Python's default handler: would raise KeyboardInterrupt if called
    finally:
        signal.signal(signal.SIGUSR2, previous)
    (signum, status, checkpoint_step), = received
    assert (signum, status) == (signal.SIGUSR2, "KILLED")
    assert checkpoint_step > 0 and f"stopped by SIGUSR2 at step {checkpoint_step};" in str(stopped.value)
    carried = pickle.loads(pickle.dumps(stopped.value))  # as a launcher carries it out of a worker process
    assert (str(carried), carried.signum) == (str(stopped.value), signal.SIGUSR2)


def test_a_second_ctrl_c_exits_130_without_a_traceback(tmp_path: Path, monkeypatch, capsys) -> None:
    """Two SIGINTs within one step through the real entry point: the second stops at once, with one
    line, exit status 130, and the MLflow run KILLED."""
    signal_at_step(monkeypatch, 5, signal.SIGINT, times=2)
    code, stderr = run_main([*BUDGET, "output.plots=false"], tmp_path, monkeypatch, capsys)
    lines = [line for line in stderr.splitlines() if line.startswith("pinnrun:")]
    assert code == 130 and "Traceback" not in stderr, stderr
    assert lines == ["pinnrun: interrupted: stopped at once by a second signal (the last checkpoint is the last periodic one)"]
    _, record = the_run(tmp_path)
    assert record.info.status == "KILLED"


def test_resume_by_run_id(make_cfg, tmp_path: Path, monkeypatch) -> None:
    with monkeypatch.context() as patch:
        signal_at_step(patch, 12, signal.SIGTERM)
        with pytest.raises(RunInterrupted):
            run(make_cfg(*BUDGET, quick=False))
    _, record = the_run(tmp_path)
    run(make_cfg(*BUDGET, f"resume={record.info.run_id}", f"output.dir={tmp_path / 'second'}", quick=False))
    _, again = the_run(tmp_path)
    assert again.info.status == "FINISHED" and again.data.metrics["final/steps"] > 30  # L-BFGS may stop early on tolerance


def test_resume_auto_continues_in_the_same_directory(make_cfg, tmp_path: Path, monkeypatch) -> None:
    """What a requeued SLURM job does: the same command, the same output directory."""
    fresh = run(make_cfg(*BUDGET, "resume=auto", "train.checkpoint_every=10", "tracking.enabled=false",
                         f"output.dir={tmp_path / 'fresh'}", quick=False))
    with monkeypatch.context() as patch:
        signal_at_step(patch, 12, signal.SIGTERM)
        with pytest.raises(RunInterrupted):
            run(make_cfg(*BUDGET, "resume=auto", "train.checkpoint_every=10", quick=False))
    requeued = run(make_cfg(*BUDGET, "resume=auto", "train.checkpoint_every=10", quick=False))
    _, record = the_run(tmp_path)
    assert record.info.status == "FINISHED"
    assert requeued["final/l2_rel"] == fresh["final/l2_rel"]


class FlakyClient:
    """An MLflow client whose store is away for the first `failures` calls of any kind."""

    def __init__(self, failures: int):
        self.failures = failures
        self.calls: list[tuple] = []

    def attempt(self, *call) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionError("store away")
        self.calls.append(call)

    def log_batch(self, run_id, metrics=(), params=(), tags=(), **kwargs):
        self.attempt("batch", [(m.key, m.step) for m in metrics], {p.key: p.value for p in params}, {t.key: t.value for t in tags})

    def log_artifact(self, run_id, path, artifact_path=None):
        self.attempt("artifact", Path(path).name, artifact_path)

    def set_terminated(self, run_id, status):
        self.attempt("status", status)


class Clock:
    """A clock the test moves by hand: backoff without waiting."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_every_kind_of_call_waits_while_the_store_is_away_and_arrives_in_order(tmp_path: Path) -> None:
    client, clock = FlakyClient(failures=1), Clock()
    tracker = MlflowTracker(client, "run", clock=clock)
    (tmp_path / "checkpoint.pt").write_bytes(b"x")
    tracker.log_params({"lr": 0.001})
    tracker.set_tags({"stop_reason/adam": "max_steps"})
    tracker.log_artifact(tmp_path / "checkpoint.pt")
    tracker.log_artifact(tmp_path / "checkpoint.pt")  # a newer periodic checkpoint: uploaded once
    tracker.log_metrics({"a": 1.0}, step=1)
    assert client.calls == [] and len(tracker.pending) == 4
    clock.now = RETRY_FIRST_S
    tracker.log_metrics({"a": 2.0}, step=2)
    assert client.calls == [("batch", [], {"lr": "0.001"}, {}), ("batch", [], {}, {"stop_reason/adam": "max_steps"}),
                            ("artifact", "checkpoint.pt", None), ("batch", [("a", 1)], {}, {}), ("batch", [("a", 2)], {}, {})]
    assert not tracker.pending and tracker.delay == 0


def test_a_flaky_store_costs_one_try_per_backoff_not_one_per_log_step() -> None:
    client, clock = FlakyClient(failures=100), Clock()
    tracker = MlflowTracker(client, "run", clock=clock)
    for step in range(10):  # ten log steps within the first backoff: one try
        tracker.log_metrics({"a": float(step)}, step=step)
    assert client.failures == 99 and len(tracker.pending) == 10
    delays = []
    for _ in range(8):
        clock.now = tracker.retry_at
        tracker.log_metrics({"a": 0.0}, step=99)
        delays.append(tracker.delay)
    assert delays == [4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0, 60.0] and client.failures == 91
    assert RETRY_FIRST_S == 2.0 and RETRY_CAP_S == 60.0


def test_a_call_the_store_refuses_for_good_is_dropped_not_blocking_the_rest() -> None:
    """A malformed call (MLflow's INVALID_PARAMETER_VALUE) would fail on every retry: it is dropped
    with a warning, and the calls behind it still arrive."""
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

    class Refusing(FlakyClient):
        def log_batch(self, run_id, metrics=(), params=(), tags=(), **kwargs):
            if tags:
                raise MlflowException("tag value too long", error_code=INVALID_PARAMETER_VALUE)
            super().log_batch(run_id, metrics, params, tags)

    client = Refusing(failures=0)
    tracker = MlflowTracker(client, "run", clock=Clock())
    tracker.set_tags({"note": "x" * 10_000})
    tracker.log_metrics({"a": 1.0}, step=1)
    assert client.calls == [("batch", [("a", 1)], {}, {})] and not tracker.pending and tracker.delay == 0


def test_what_never_arrives_is_written_for_pinnrun_sync(tmp_path: Path) -> None:
    """The store is away at the end: calls and status go to tracking_pending.json, and the line says where."""
    client = FlakyClient(failures=100)
    tracker = MlflowTracker(client, "run", "http://127.0.0.1:9", clock=Clock())
    tracker.log_metrics({"a": 1.0}, step=1)
    message = end_run(tracker, "FINISHED", tmp_path)
    record = json.loads((tmp_path / PENDING_FILE).read_text())
    assert record["run_id"] == "run" and record["status"] == "FINISHED" and record["uri"] == "http://127.0.0.1:9"
    assert [call["kind"] for call in record["calls"]] == ["metrics"]
    assert f"the run's files are in {tmp_path}" in message and f"pinnrun-sync {tmp_path}" in message
    client.failures = 0
    assert end_run(tracker, "FINISHED", tmp_path) is None and not (tmp_path / PENDING_FILE).exists()
    assert client.calls[-1] == ("status", "FINISHED")


class LoopbackServer:
    """A real `mlflow server` on a free loopback port, over a sqlite store and an artifact folder
    that outlive it: the test starts it, kills it (SIGKILL, the whole process group) and restarts it."""

    def __init__(self, base: Path, store: Path):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.base, self.store = base, store
        self.uri = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        command = [str(Path(sys.executable).parent / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{self.store}",
                   "--artifacts-destination", str(self.base / "artifacts"), "--host", "127.0.0.1", "--port", str(self.port),
                   "--workers", "1"]
        log = open(self.base / "server.log", "ab")
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        for _ in range(600):
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"mlflow server did not start: {(self.base / 'server.log').read_text()[-2000:]}")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


@pytest.fixture
def mlflow_server(tmp_path: Path, empty_store: Path, monkeypatch) -> Iterator[LoopbackServer]:
    """Killed at the end whatever happened; HTTP calls fail fast (no retries) once it is down."""
    (tmp_path / "server").mkdir()
    shutil.copyfile(empty_store, tmp_path / "server" / "mlflow.db")
    server = LoopbackServer(tmp_path / "server", tmp_path / "server" / "mlflow.db")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    server.start()
    try:
        yield server
    finally:
        server.kill()


def test_a_store_gone_before_a_phase_ends_loses_nothing(tmp_path: Path, monkeypatch, capsys) -> None:
    """Every store call (metrics, tags, artifacts, status) fails from step 15 on, as with a store
    that went away or filled up: the run trains to the end, writes every file (checkpoint first),
    exits 3 with one line naming its directory; pinnrun-sync later pushes the rest."""
    away = {"on": False}

    def refuse(original):
        def call(*args, **kwargs):
            if away["on"]:
                raise ConnectionError("store away")
            return original(*args, **kwargs)
        return call

    for name in ("log_batch", "log_artifact", "log_artifacts", "set_terminated"):
        monkeypatch.setattr(MlflowClient, name, refuse(getattr(MlflowClient, name)))
    at_step(monkeypatch, 15, lambda: away.update(on=True))
    out = tmp_path / "out"
    code, stderr = run_main([*BUDGET, f"output.dir={out}"], tmp_path, monkeypatch, capsys)
    assert_trained_with_tracking_pending(code, stderr, out)
    client, record = the_run(tmp_path)
    assert record.info.status == "RUNNING" and "stop_reason/adam" not in record.data.tags

    away["on"] = False
    assert sync.main([str(out)]) == 0 and not (out / PENDING_FILE).exists()
    _, record = the_run(tmp_path)
    assert record.info.status == "FINISHED" and record.data.tags["stop_reason/adam"] == "max_steps"
    assert record.data.metrics["final/steps"] == 50
    steps = [m.step for m in client.get_metric_history(record.info.run_id, "loss/total")]
    assert steps == sorted(set(steps)) and steps[-1] == 50
    assert {"checkpoint.pt", "plots"} <= {a.path for a in client.list_artifacts(record.info.run_id)}
    assert sync.main([str(out)]) == 2  # nothing left to push


@pytest.mark.slow
def test_a_server_gone_before_a_phase_ends_loses_nothing(tmp_path: Path, mlflow_server: LoopbackServer, monkeypatch,
                                                         capsys) -> None:
    """The issue's worst case: the server dies mid-Adam, before the phase-end tags. The run trains
    to the end, writes every file, exits 3 with one line naming its directory; with the server
    back, pinnrun-sync pushes the rest and the run is FINISHED with all its metrics and files."""
    out = tmp_path / "out"
    at_step(monkeypatch, 15, mlflow_server.kill)
    code, stderr = run_main([*BUDGET, f"tracking.uri={mlflow_server.uri}", f"output.dir={out}"], tmp_path, monkeypatch, capsys)
    assert_trained_with_tracking_pending(code, stderr, out)

    mlflow_server.start()
    assert sync.main([str(out)]) == 0
    assert not (out / PENDING_FILE).exists()
    client = MlflowClient(mlflow_server.uri)
    (record,) = client.search_runs([client.get_experiment_by_name("burgers").experiment_id])
    assert record.info.status == "FINISHED" and record.data.tags["stop_reason/adam"] == "max_steps"
    assert record.data.metrics["final/steps"] == 50 and record.data.params["seed"] == "0"
    steps = [m.step for m in client.get_metric_history(record.info.run_id, "loss/total")]
    assert steps == sorted(set(steps)) and steps[0] == 10 and steps[-1] == 50
    assert {"config.yaml", "prediction.npz", "checkpoint.pt", "plots"} <= {a.path for a in client.list_artifacts(record.info.run_id)}


def test_a_killed_run_is_shown_stale_marked_and_resumed_without_logging_steps_twice(make_cfg, tmp_path: Path,
                                                                                     tracking_uri: str, monkeypatch,
                                                                                     capsys) -> None:
    """SIGKILL (what the OOM killer or a lost node does) leaves the run RUNNING: resuming it while
    its heartbeat is fresh is refused, pinnrun-compare shows it as stale once the heartbeat is old,
    pinnrun-sync --mark-stale ends it KILLED with a reason, and the resumed run, which restarts
    from the last periodic checkpoint, does not log the steps the killed process logged again."""
    out, db = tmp_path / "out", tmp_path / "mlflow.db"
    args = ["optimizer=adam", "train.log_every=10", "train.eval_every=10", "train.checkpoint_every=20", "train.progress=false",
            "problem.n.pde=256", "problem.eval_grid=[32,16]", "output.plots=false", "device=cpu"]
    proc = subprocess.Popen([sys.executable, "-m", "pinnrun.cli", *args, "optimizer.steps=100000", f"output.dir={out}",
                             f"tracking.uri={tracking_uri}"], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(3000):
            with sqlite3.connect(db) as connection:
                logged = connection.execute("select max(step) from metrics where key = 'loss/total'").fetchone()[0]
                beat = connection.execute("select count(*) from tags where key = 'heartbeat'").fetchone()[0]
            if logged and logged >= 30 and beat and (out / "checkpoint.pt").is_file():
                break
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    client, record = the_run(tmp_path)
    assert record.info.status == "RUNNING" and "heartbeat" in record.data.tags
    resume = [*args, "optimizer.steps=300", f"resume={out}"]
    with pytest.raises(ConfigError, match=f"resume: MLflow run {record.info.run_id} is RUNNING with a heartbeat"):
        run(make_cfg(*resume, quick=False))

    monkeypatch.setattr(tracking, "STALE_AFTER_S", 0.0)
    assert compare.main(["--tracking-uri", tracking_uri, "--metric", "loss/total"]) == 0
    assert f"run {record.info.run_id[:8]} (burgers-uniform-s0, burgers): RUNNING but no heartbeat for " in capsys.readouterr().err
    assert sync.main(["--mark-stale", "--tracking-uri", tracking_uri]) == 0
    _, record = the_run(tmp_path)
    assert record.info.status == "KILLED" and "no heartbeat for" in record.data.tags["killed_reason"]

    run(make_cfg(*resume, quick=False))
    _, record = the_run(tmp_path)
    steps = [m.step for m in client.get_metric_history(record.info.run_id, "loss/total")]
    assert record.info.status == "FINISHED" and steps == sorted(set(steps)) and steps[-1] == 300



def test_parallel_runs_share_one_sqlite_store(tmp_path: Path) -> None:
    """8 runs launched at once against the default sqlite store all finish and are all recorded."""
    args = ["optimizer=adam", "optimizer.steps=4", "train.log_every=2", "train.eval_every=2", "train.progress=false",
            "problem.n.pde=64", "problem.eval_grid=[16,8]", "output.plots=false", "device=cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-m", "pinnrun.cli", *args, f"seed={seed}", f"output.dir={tmp_path / str(seed)}"],
                              cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for seed in range(8)]
    errors = [proc.communicate(timeout=600)[1] for proc in procs]
    assert [proc.returncode for proc in procs] == [0] * 8, errors
    with sqlite3.connect(tmp_path / "mlflow.db") as connection:
        rows = connection.execute("select name, status from runs").fetchall()
        metrics = connection.execute("select count(*) from metrics where key = 'final/l2_rel'").fetchone()
    assert sorted(rows) == sorted((f"burgers-uniform-s{seed}", "FINISHED") for seed in range(8))
    assert metrics == (8,)
