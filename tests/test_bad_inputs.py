"""The bad-input catalogue: each command line gives its one-line error, exit 2, no traceback, and
no MLflow run. Cases run the real entry point (`pinnrun.cli.main`) in-process for speed."""

from __future__ import annotations

import http.server
import shutil
import sqlite3
import sys
import threading
from pathlib import Path

import pytest
import torch

from pinnrun import cli

FAST = ["train.progress=false", "problem.eval_grid=[8,4]"]

CATALOGUE = [
    (["weighting=sapin"], "weighting=sapin: no such option; available: "),
    (["problem=burger"], "problem=burger: no such option; available: "),
    (["+experiment=no_such_preset"], "+experiment=no_such_preset: no such option"),
    (["experiment=sapinn_burgers"], "experiment=sapinn_burgers: experiment has no default, so it is added with '+': +experiment=sapinn_burgers"),
    (["learning_rate=3"], "learning_rate: unknown key"),
    (["model.widht=3"], "model.widht: unknown key"),
    (["+model.widht=3"], "model.widht: unknown key; allowed keys: "),
    (["weighting=sapinn", "weighting.init={pde:{kind:constant,scale:100.0}}"],
     "weighting.init: new entries of a mapping are added with '+': +weighting.init={pde:"),
    (["weighting=sapinn", "weighting.eps=0"], "weighting.eps=0.0: must be > 0"),
    (["problem.nu=abc"], "problem.nu='abc': expected float"),
    (["model.depth=2.5"], "model.depth='2.5': expected integer"),
    (["seed=abc"], "seed='abc': expected integer"),
    (["train.log_every=x"], "train.log_every='x': expected integer"),
    (["problem.n.pde=0"], "problem.n.pde=0: must be > 0"),
    (["problem.n.bc=-5"], "problem.n.bc=-5: must be > 0"),
    (["+problem.n.foo=3"], "problem.n.foo: unknown term; burgers has pde, ic, bc"),
    (["problem.weights.ic=-1"], "problem.weights.ic=-1.0: must be a finite number >= 0"),
    (["+sampler.n.pde=-1"], "sampler.n.pde=-1: must be > 0"),
    (["sampler.resample_every=-1"], "sampler.resample_every=-1: must be >= 0"),
    (["optimizer=adam", "optimizer.steps=0"], "optimizer.steps=0: must be > 0"),
    (["optimizer=adam", "optimizer.lr=0"], "optimizer.lr=0.0: must be > 0"),
    (["optimizer.adam.lr=-1e-3"], "optimizer.adam.lr=-0.001: must be > 0"),
    (["optimizer=adam", "optimizer.schedule=linear"], "optimizer.schedule='linear': not one of none, exponential, step, cosine"),
    (["optimizer.lbfgs.line_search=armijo"], "optimizer.lbfgs.line_search='armijo': not one of strong_wolfe, none"),
    (["train.log_every=0"], "train.log_every=0: must be > 0"),
    (["train.eval_every=-1"], "train.eval_every=-1: must be > 0"),
    (["train.checkpoint_every=-10"], "train.checkpoint_every=-10: must be >= 0"),
    (["problem=sharp", "model.hard_constraints=true", "problem.eval_grid=[8]"],
     "model.hard_constraints=true: problem 'sharp' has no hard-constraint ansatz"),
    (["model.activation=relu"], "model.activation='relu': not one of tanh, sin, gelu, silu"),
    (["dtype=float16"], "dtype='float16': not one of float32, float64"),
    (["device=tpu"], "device='tpu': not one of auto, cpu, cuda, cuda:N, mps"),
    (["tracking.uri=http://127.0.0.1:9", "tracking.timeout_s=2"], "tracking.uri='http://127.0.0.1:9': tracking server unreachable"),
    (["output.dir=/proc/pinnrun-out"], "output.dir='/proc/pinnrun-out': not writable"),
    (["resume=/nonexistent/checkpoint.pt"], "resume='/nonexistent/checkpoint.pt': no such checkpoint file"),
    (["tracking.uri=sqlite:////nonexistent/dir/mlflow.db"], "tracking.uri='sqlite:////nonexistent/dir/mlflow.db': directory /nonexistent/dir does not exist"),
    (["tracking.uri=sqlite:///no_such_dir/mlflow.db"], "tracking.uri='sqlite:///no_such_dir/mlflow.db': directory no_such_dir does not exist"),
    (["tracking.uri=sqlite:////proc/mlflow.db"], "tracking.uri='sqlite:////proc/mlflow.db': directory /proc is not writable"),
    (["tracking.uri=file:///tmp/mlruns"], "tracking.uri='file:///tmp/mlruns': a file store is not supported; use sqlite:///"),
    (["tracking.uri=mlruns"], "tracking.uri='mlruns': a file store is not supported"),
    (["tracking.uri=s3://bucket/runs"], "tracking.uri='s3://bucket/runs': unknown scheme 's3'; use one of sqlite, http, https"),
    (["hydra.run.dir=/proc/pinnrun/out"], "hydra.run.dir='/proc/pinnrun/out': cannot create it"),
    (["problem.n.pde=2000000000"], "memory: this run needs about "),
    (["problem.n.pde=2000000000"], "the biggest part is the collocation points (points x inputs x derivative channels"),
    (["problem.eval_grid=[1000000000,1000]"], "the biggest part is the evaluation grid (1000000000000 points)"),
    (["optimizer=bfgs", "optimizer.max_dense_params=100000000", "model.width=3000", "model.depth=3"],
     "the biggest part is the optimizer state (18018001 parameters)"),
    (["optimizer=adam", "optimizer.lr=nan"], "optimizer.lr=nan: must be a finite number"),
    (["optimizer.lbfgs.tolerance_grad=inf"], "optimizer.lbfgs.tolerance_grad=inf: must be a finite number"),
    (["problem.nu=nan"], "problem.nu=nan: must be a finite number"),
    (["problem.nu=-inf"], "problem.nu=-inf: must be a finite number"),
    (["problem.nu=1e400"], "problem.nu=inf: must be a finite number"),
    (["tracking.timeout_s=inf"], "tracking.timeout_s=inf: must be a finite number"),
    (["weighting=sapinn", "weighting.eps=nan"], "weighting.eps=nan: must be a finite number"),
    (["problem.nu=1e39"], "problem.nu=1e+39: beyond the range of float32 (largest 3.4e+38)"),
    (["seed=99999999999999999999"], "seed=99999999999999999999: does not fit a 64-bit integer"),
    (["problem.eval_grid=[99999999999999999999,4]"], "problem.eval_grid[0]=99999999999999999999: does not fit a 64-bit integer"),
]
if not torch.cuda.is_available():
    CATALOGUE += [
        (["device=cuda"], "device='cuda': CUDA is not available on this machine"),
        (["device=cuda:7"], "device='cuda:7': CUDA is not available on this machine"),
    ]


def run_main(args: list[str], cwd: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> tuple[int, str]:
    """`pinnrun ARGS` in-process from `cwd`; returns (exit code, stderr)."""
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "argv", ["pinnrun", *args])
    try:
        cli.main()
        code = 0
    except SystemExit as exit_info:
        code = int(exit_info.code or 0)
    return code, capsys.readouterr().err


def assert_one_line_error(code: int, stderr: str, expected: str, store: Path) -> None:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert code == 2, stderr
    assert len(lines) == 1 and lines[0].startswith("pinnrun: error: "), stderr
    assert expected in lines[0]
    if store.exists():
        with sqlite3.connect(store) as connection:
            assert connection.execute("select count(*) from runs").fetchone() == (0,)


@pytest.mark.parametrize(("args", "expected"), CATALOGUE, ids=[" ".join(a) for a, _ in CATALOGUE])
def test_catalogue(args: list[str], expected: str, tmp_path: Path, monkeypatch, capsys) -> None:
    code, stderr = run_main([*FAST, *args], tmp_path, monkeypatch, capsys)
    assert_one_line_error(code, stderr, expected, tmp_path / "mlflow.db")
    assert sorted(p.name for p in tmp_path.iterdir()) in ([], ["mlflow.db"], ["mlflow.db", "mlflow.lock"]), "left behind"


SWEEP_CATALOGUE = [
    (["weighting=uniform,sapin"], "weighting=sapin: no such option; available: "),
    (["seed=0,x"], "seed='x': expected integer"),
    (["model.width=8,-3"], "model.width=-3: must be > 0"),
    (["problem=burgers,helmholtz", "model.widht=3,4"], "model.widht: unknown key"),
    (["experiment=sapinn_burgers_quick,rad_burgers_quick"], "experiment=sapinn_burgers_quick,rad_burgers_quick: experiment has no default"),
    (["+experiment=sapinn_burgers_quick,nope"], "+experiment=nope: no such option"),
    (["hydra/launcher=joblib", "optimizer=adam", "optimizer.steps=range(0,3)"], "optimizer.steps=0: must be > 0"),
    (["optimizer=adam", "optimizer.lr=0.001,nan"], "optimizer.lr=nan: must be a finite number"),
]


@pytest.mark.parametrize(("args", "expected"), SWEEP_CATALOGUE, ids=[" ".join(a) for a, _ in SWEEP_CATALOGUE])
def test_sweep_typo_stops_before_the_launcher(args: list[str], expected: str, tmp_path: Path, monkeypatch, capsys) -> None:
    """A bad value anywhere in a sweep: one line, exit 2, no sweep directory, no MLflow store or run."""
    code, stderr = run_main(["--multirun", *FAST, *args], tmp_path, monkeypatch, capsys)
    assert_one_line_error(code, stderr, expected, tmp_path / "mlflow.db")
    assert list(tmp_path.iterdir()) == []


def test_catalogue_is_large_enough() -> None:
    assert len(CATALOGUE) >= 25


def test_yaml_syntax_error_in_a_config(tmp_path: Path, monkeypatch, capsys) -> None:
    extra = tmp_path / "extra_conf" / "model"
    extra.mkdir(parents=True)
    (extra / "broken.yaml").write_text("_target_: pinnrun.models.mlp.MLP\ndepth: [1, 2\n")
    code, stderr = run_main([f"hydra.searchpath=[file://{tmp_path / 'extra_conf'}]", "model=broken", *FAST],
                            tmp_path, monkeypatch, capsys)
    assert_one_line_error(code, stderr, "while parsing a flow sequence", tmp_path / "mlflow.db")


def test_corrupt_checkpoint(tmp_path: Path, monkeypatch, capsys) -> None:
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    code, stderr = run_main([f"resume={bad}", *FAST], tmp_path, monkeypatch, capsys)
    assert_one_line_error(code, stderr, f"resume='{bad}': unreadable checkpoint", tmp_path / "mlflow.db")


def test_checkpoint_of_another_schema_version(tmp_path: Path, monkeypatch, capsys) -> None:
    other = tmp_path / "other.pt"
    torch.save({"schema_version": 99}, other)
    code, stderr = run_main([f"resume={other}", *FAST], tmp_path, monkeypatch, capsys)
    assert_one_line_error(code, stderr, "checkpoint schema version 99, expected 1", tmp_path / "mlflow.db")


def first_run(tmp_path: Path, monkeypatch, capsys, *args: str, cwd: Path | None = None) -> Path:
    """A two-step run into tmp_path/first (from `cwd`, default tmp_path) whose checkpoint the test resumes."""
    out = tmp_path / "first"
    code, stderr = run_main(["optimizer=adam", "optimizer.steps=2", "train.log_every=1", f"output.dir={out}", *FAST, *args],
                            cwd or tmp_path, monkeypatch, capsys)
    assert code == 0, stderr
    return out


@pytest.mark.parametrize(("changed", "expected"), [
    (["model.width=8"], "model.width (5 -> 8)"),
    (["weighting=sapinn"], "weighting._target_ ('pinnrun.weighting.uniform.Uniform' -> 'pinnrun.weighting.sapinn.SelfAdaptive')"),
    (["problem.n.pde=300", "seed=3"], "problem.n.pde ("),
], ids=["width", "scheme", "points-and-seed"])
def test_resume_refuses_a_config_that_changes_the_run(changed: list[str], expected: str, tmp_path: Path, monkeypatch,
                                                      capsys) -> None:
    """Every differing key is listed, before any run starts; a longer budget is allowed."""
    first = first_run(tmp_path, monkeypatch, capsys, "model.width=5", "tracking.enabled=false")
    code, stderr = run_main(["optimizer=adam", "optimizer.steps=2", "model.width=5", f"resume={first}", *FAST, *changed],
                            tmp_path, monkeypatch, capsys)
    assert_one_line_error(code, stderr, "resume: this config changes what the checkpoint trained: ", tmp_path / "mlflow.db")
    assert expected in stderr and ("seed (0 -> 3)" in stderr) == ("seed=3" in changed)
    code, stderr = run_main(["optimizer=adam", "optimizer.steps=4", "model.width=5", f"resume={first}", "tracking.enabled=false",
                             f"output.dir={tmp_path / 'longer'}", *FAST], tmp_path, monkeypatch, capsys)
    assert code == 0, stderr


@pytest.mark.parametrize("payload", [{"schema_version": 1, "model": {}}, torch.zeros(3), {"state_dict": {}}],
                         ids=["partial", "a-tensor", "another-programs-dict"])
def test_a_torch_file_that_is_not_a_pinnrun_checkpoint(payload, tmp_path: Path, monkeypatch, capsys) -> None:
    other = tmp_path / "other.pt"
    torch.save(payload, other)
    code, stderr = run_main([f"resume={other}", *FAST], tmp_path, monkeypatch, capsys)
    assert_one_line_error(code, stderr, f"resume='{other}': not a pinnrun checkpoint", tmp_path / "mlflow.db")


def test_a_checkpoint_whose_run_is_in_another_store(tmp_path: Path, empty_store: Path, monkeypatch, capsys) -> None:
    """Recorded in store a, resumed against store b: one line saying so, then tracking.new_run=true continues."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    shutil.copyfile(empty_store, tmp_path / "b" / "mlflow.db")
    first = first_run(tmp_path, monkeypatch, capsys, cwd=tmp_path / "a")
    code, stderr = run_main(["optimizer=adam", "optimizer.steps=4", f"resume={first}", *FAST], tmp_path / "b", monkeypatch, capsys)
    assert_one_line_error(code, stderr, "resume: the checkpoint's MLflow run ", tmp_path / "b" / "mlflow.db")
    assert f"is not in sqlite:///{tmp_path / 'b' / 'mlflow.db'}; set tracking.uri" in stderr and "tracking.new_run=true" in stderr
    code, stderr = run_main(["optimizer=adam", "optimizer.steps=4", f"resume={first}", "tracking.new_run=true",
                             f"output.dir={tmp_path / 'continued'}", *FAST], tmp_path / "b", monkeypatch, capsys)
    assert code == 0, stderr
    with sqlite3.connect(tmp_path / "b" / "mlflow.db") as connection:
        assert connection.execute("select status from runs").fetchall() == [("FINISHED",)]


def test_a_read_only_working_directory(monkeypatch, capsys) -> None:
    """Hydra's outputs/ and the default sqlite store live in the working directory: /proc takes neither."""
    code, stderr = run_main([*FAST], Path("/proc"), monkeypatch, capsys)
    assert_one_line_error(code, stderr, "working directory /proc: not writable (", Path("/proc/mlflow.db"))
    assert "run from a writable directory or set hydra.run.dir" in stderr


class NotMlflow(http.server.BaseHTTPRequestHandler):
    """An HTTP server that is not MLflow: 404 for /health (`status=404`) or 200 and a web page for everything."""

    status = 404

    def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
        self.send_response(self.status)
        self.end_headers()
        self.wfile.write(b"<html>a web page</html>")

    do_POST = do_GET

    def log_message(self, *args) -> None:
        pass


@pytest.mark.parametrize(("status", "expected"), [(404, "not an MLflow tracking server (GET /health: HTTP 404"),
                                                  (200, "the store failed (")], ids=["no-health", "a-web-page"])
def test_an_http_server_that_is_not_mlflow(status: int, expected: str, tmp_path: Path, monkeypatch, capsys) -> None:
    handler = type("Handler", (NotMlflow,), {"status": status})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    try:
        code, stderr = run_main([f"tracking.uri=http://127.0.0.1:{server.server_address[1]}", *FAST], tmp_path, monkeypatch, capsys)
    finally:
        server.shutdown()
        server.server_close()
    assert_one_line_error(code, stderr, expected, tmp_path / "mlflow.db")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("uri", "expected"), [
    ("sqlite:///{tmp}/typo/mlflow.db", "directory {tmp}/typo does not exist"),
    ("sqlite:///{tmp}/mlflow.db", "no store at {tmp}/mlflow.db (pinnrun-compare reads stores, never creates one)"),
    ("file://{tmp}/mlruns", "a file store is not supported"),
    ("{tmp}/mlruns", "a file store is not supported"),
    ("ftp://host/store", "unknown scheme 'ftp'"),
], ids=["missing-dir", "missing-file", "file-uri", "bare-path", "unknown-scheme"])
def test_compare_refuses_a_store_it_cannot_read_and_creates_none(uri: str, expected: str, tmp_path: Path, capsys) -> None:
    from pinnrun import compare

    code = compare.main(["--tracking-uri", uri.format(tmp=tmp_path)])
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("pinnrun-compare: error: ")
    assert expected.format(tmp=tmp_path) in lines[0]
    assert list(tmp_path.iterdir()) == []
