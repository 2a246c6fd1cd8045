"""What a run tells its user: progress lines when stdout is not a terminal, the closing summary of a
run and of a sweep, and the start-up time of each job of a sweep."""

from __future__ import annotations

import io
import logging
import re
import sqlite3
import time
from pathlib import Path

import pytest

from pinnrun import report
from pinnrun.runtime import JobClock, process_age
from tests.conftest import QUICK, run_cli
from tests.test_cli import mlflow_runs


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def progress_lines(caplog: pytest.LogCaptureFixture, stdout: io.StringIO, enabled: bool = True) -> list[str]:
    """Log lines of a 1000-step run advanced 100 steps at a time, with rel-L2 set halfway."""
    caplog.set_level(logging.INFO, logger="pinnrun")
    progress = report.RunProgress(1000, 0, "burgers", enabled, stdout=stdout)
    for step in range(100, 1001, 100):
        progress.update(100)
        if step == 500:
            progress.set_postfix(l2="3.00e-02")
    progress.close()
    return [record.getMessage() for record in caplog.records if record.name == "pinnrun"]


def test_progress_lines_every_ten_percent_when_stdout_is_not_a_terminal(caplog) -> None:
    lines = progress_lines(caplog, io.StringIO())
    assert [re.match(r"burgers: step (\d+)/1000 \((\d+)%\)", line).groups() for line in lines] == [
        (str(step), str(step // 10)) for step in range(100, 1001, 100)]
    assert "l2" not in lines[3] and lines[5].endswith("l2=3.00e-02") and "s left" in lines[0]


def test_no_progress_lines_on_a_terminal_or_when_progress_is_off(caplog) -> None:
    assert progress_lines(caplog, Terminal()) == []
    assert progress_lines(caplog, io.StringIO(), enabled=False) == []


def test_progress_line_after_a_quiet_minute(caplog, monkeypatch) -> None:
    caplog.set_level(logging.INFO, logger="pinnrun")
    progress = report.RunProgress(10000, 0, "wave", True, stdout=io.StringIO())
    progress.update(1)
    assert caplog.records == []
    monkeypatch.setattr(time, "monotonic", lambda: progress.written + report.PROGRESS_SECONDS)
    progress.update(1)
    assert [r.getMessage().split(",")[0] for r in caplog.records] == ["wave: step 2/10000 (0%)"]


def test_run_summary_names_result_output_and_mlflow_run(tmp_path: Path) -> None:
    final = {"final/l2_rel": 7.94e-4, "final/time_s": 280.0, "final/steps": 6000.0}
    text = report.run_summary("burgers-uniform-s0", final, 7.9e-4, 292.0, tmp_path / "out", "burgers",
                              (f"sqlite:///{tmp_path}/mlflow.db", "1", "abc123"))
    lines = text.splitlines()
    assert lines[0] == ("pinnrun: finished burgers-uniform-s0: rel-L2 7.940e-04 (best 7.900e-04), 6000 steps, "
                        "4 min 40 s training, 4 min 52 s since start")
    assert lines[1] == f"  output: {tmp_path / 'out'}"
    assert lines[2] == f"  MLflow: experiment 'burgers' (id 1), run abc123, in sqlite:///{tmp_path}/mlflow.db"
    assert re.fullmatch(rf"  browse: \S*mlflow ui --backend-store-uri sqlite:///{tmp_path}/mlflow.db   then open", lines[3])
    assert lines[4:] == [
        "          http://127.0.0.1:5000/#/experiments/1/runs?viewStateShareKey=pinnrun&workflowType=machine_learning   (the runs table)",
        "          http://127.0.0.1:5000/#/experiments/1/runs/abc123?workflowType=machine_learning   (this run)"]
    off = report.run_summary("x", final, 1.0, None, tmp_path, "burgers", None)
    assert off.splitlines()[-1] == "  MLflow: off (tracking.enabled=false)" and "since start" not in off


def test_browse_hint_on_a_tracking_server_is_its_address() -> None:
    assert report.browse_hint("http://host:5000/", "4") == [
        "http://host:5000/#/experiments/4/runs?viewStateShareKey=pinnrun&workflowType=machine_learning   (the runs table)"]


def test_cli_run_prints_progress_and_a_closing_summary(tmp_path: Path) -> None:
    result = run_cli(["seed=1", "device=cpu", *[a for a in QUICK if a != "train.progress=false"]], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "burgers: step 20/20 (100%)" in result.stdout  # stdout is a pipe here: plain lines
    summary = result.stderr[result.stderr.index("pinnrun: finished burgers-uniform-s1: rel-L2 "):].splitlines()
    (run_dir,) = (tmp_path / "outputs").glob("*/*")
    assert summary[1] == f"  output: {run_dir.relative_to(tmp_path)}"
    (run_id,) = [row[0] for row in mlflow_run_ids(tmp_path / "mlflow.db")]
    assert f"run {run_id}, in sqlite:///{tmp_path}/mlflow.db" in summary[2] and f"#/experiments/1/runs/{run_id}?" in summary[5]
    assert mlflow_runs(tmp_path / "mlflow.db") == [("burgers-uniform-s1", "FINISHED")]


def mlflow_run_ids(db: Path) -> list[tuple[str]]:
    with sqlite3.connect(db) as connection:
        return connection.execute("select run_uuid from runs").fetchall()


def test_job_clock_first_job_from_launch_later_jobs_from_their_start() -> None:
    clock = JobClock()
    assert clock.age() == pytest.approx(process_age(), abs=0.05)
    clock.start()
    assert clock.age() == pytest.approx(process_age(), abs=0.05)  # the first job's start-up includes the imports
    time.sleep(0.2)
    clock.start()
    assert clock.age() < 0.1  # a later job in the same process starts now
