"""pinnrun-compare on a store of synthetic runs with known metrics, created through MLflow."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from pinnrun import compare, tracking

UNIFORM = [0.1, 0.2, 0.4]
SAPINN = [0.01, 0.03]


def add_run(client: MlflowClient, experiment: str, weighting: str, status: str = "FINISHED",
            final: float | None = None, curve: tuple[float, ...] = (), **tags: str) -> str:
    """A run tagged like pinnrun's: problem/weighting/seed tags, final metrics and an l2_rel history."""
    problem = experiment
    eid = tracking.experiment_id_for(client, experiment)
    run = client.create_run(eid, run_name=f"{problem}-{weighting}", tags={"problem": problem, "weighting": weighting, **tags})
    run_id = run.info.run_id
    start = run.info.start_time
    metrics = [Metric("l2_rel", value, start + 1000 * (i + 1), 10 * (i + 1)) for i, value in enumerate(curve)]
    if final is not None:
        metrics += [Metric("final/l2_rel", final, start, 30), Metric("final/time_s", 2.0, start, 30),
                    Metric("final/steps", 30.0, start, 30)]
    if metrics:
        client.log_batch(run_id, metrics=metrics)
    client.log_param(run_id, "optimizer.lr", "0.001" if weighting == "uniform" else "0.01")
    client.set_terminated(run_id, status=status)
    return run_id


@pytest.fixture
def store(tracking_uri: str) -> str:
    """burgers/uniform: 3 finished (0.1, 0.2, 0.4), 1 failed that had logged 1e-4, 1 finished
    without final/l2_rel; burgers/sapinn: 2 finished in sweep S1; wave/uniform: 1 finished."""
    client = MlflowClient(tracking_uri=tracking_uri)
    for value in UNIFORM:
        add_run(client, "burgers", "uniform", final=value, curve=(1.0, 0.5, value))
    add_run(client, "burgers", "uniform", status="FAILED", final=1e-4, error="NonFiniteLossError: loss became non-finite")
    add_run(client, "burgers", "uniform", curve=(1.0,))
    for value in SAPINN:
        add_run(client, "burgers", "sapinn", final=value, curve=(0.5, 0.1, value), sweep_id="S1")
    add_run(client, "wave", "uniform", final=0.5, curve=(0.9, 0.7, 0.5))
    return tracking_uri


def cli(store: str, *args: str, capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    code = compare.main(["--tracking-uri", store, *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_summary_matches_independent_statistics_and_leaves_failed_runs_out(store: str) -> None:
    runs = tracking.search_runs(store, ["burgers"])
    table = compare.summarize(runs).set_index(["problem", "weighting"])
    uniform = table.loc[("burgers", "uniform")]
    assert (uniform["n"], uniform["failed"], uniform["missing"], uniform["running"]) == (3, 1, 1, 0)
    assert uniform["mean"] == pytest.approx(np.mean(UNIFORM))
    assert uniform["std"] == pytest.approx(np.std(UNIFORM, ddof=1))
    assert uniform["median"] == pytest.approx(np.median(UNIFORM))
    assert uniform["best"] == pytest.approx(min(UNIFORM))  # not the failed run's 1e-4
    assert (uniform["time_s"], uniform["steps"]) == (pytest.approx(2.0), pytest.approx(30.0))
    sapinn = table.loc[("burgers", "sapinn")]
    assert (sapinn["n"], sapinn["failed"]) == (2, 0)
    assert sapinn["mean"] == pytest.approx(np.mean(SAPINN))


def test_csv_output_selects_by_sweep_tag_and_filter(store: str, capsys: pytest.CaptureFixture) -> None:
    code, out, _ = cli(store, "--format", "csv", capsys=capsys)
    table = pd.read_csv(io.StringIO(out))
    assert code == 0 and sorted(zip(table["problem"], table["weighting"])) == [
        ("burgers", "sapinn"), ("burgers", "uniform"), ("wave", "uniform")]
    for selection in (["--sweep", "S1"], ["--tag", "weighting=sapinn"]):
        code, out, _ = cli(store, "--experiment", "burgers", "--format", "csv", *selection, capsys=capsys)
        table = pd.read_csv(io.StringIO(out))
        assert code == 0 and list(table["weighting"]) == ["sapinn"] and list(table["n"]) == [2]
    code, out, _ = cli(store, "--format", "csv", "--filter", "metrics.`final/l2_rel` < 0.05", capsys=capsys)
    table = pd.read_csv(io.StringIO(out)).set_index("weighting")  # the failed run logged 1e-4: shown, not averaged
    assert (table.loc["sapinn", "n"], table.loc["uniform", "n"], table.loc["uniform", "failed"]) == (2, 0, 1)
    assert np.isnan(table.loc["uniform", "mean"])
    code, out, _ = cli(store, "--format", "csv", "--group-by", "optimizer.lr", capsys=capsys)
    table = pd.read_csv(io.StringIO(out))
    assert dict(zip(table["optimizer.lr"].astype(str), table["n"])) == {"0.001": 4, "0.01": 2}


def test_markdown_and_latex_tables_and_notes_on_left_out_runs(store: str, capsys: pytest.CaptureFixture) -> None:
    code, out, err = cli(store, "--experiment", "burgers", capsys=capsys)
    assert code == 0
    row = next(line for line in out.splitlines() if "uniform" in line)
    assert f"{np.mean(UNIFORM):.2e} ± {np.std(UNIFORM, ddof=1):.2e}" in row
    assert "FAILED, not averaged: NonFiniteLossError" in err
    assert "FINISHED without metric final/l2_rel" in err
    code, out, _ = cli(store, "--experiment", "burgers", "--format", "latex", capsys=capsys)
    assert code == 0 and r"\begin{tabular}" in out and r"$\pm$" in out and "sapinn" in out


def test_plots_are_written_and_the_comparison_can_be_logged(store: str, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture) -> None:
    code, _, _ = cli(store, "--experiment", "burgers", "--plot", str(tmp_path / "figs"), "--log", capsys=capsys)
    assert code == 0
    for name in ("final_l2_rel.png", "l2_rel_vs_step.png", "l2_rel_vs_time.png"):
        assert (tmp_path / "figs" / name).stat().st_size > 10_000
    logged = tracking.search_runs(store, ["pinnrun-compare"])
    assert len(logged) == 1 and logged["status"].iloc[0] == "FINISHED"
    files = {f.path for f in MlflowClient(tracking_uri=store).list_artifacts(logged["run_id"].iloc[0])}
    assert {"table.md", "table.csv", "table.tex", "figures"} <= files
    code, out, _ = cli(store, "--format", "csv", capsys=capsys)  # the comparison run is not compared
    assert code == 0 and "pinnrun-compare" not in out and pd.read_csv(io.StringIO(out))["n"].sum() == 6


@pytest.mark.parametrize("args, message", [
    (["--experiment", "nope"], "experiment 'nope': not in"),
    (["--format", "html"], "argument --format: invalid choice"),
    (["--filter", "metrics.x <<< 1"], "filter 'metrics.x <<< 1'"),
    (["--group-by", "colour"], "group key 'colour'"),
    (["--tag", "weighting"], "expected KEY=VALUE"),
    (["--sweep", "no-such-sweep"], "no runs match"),
])
def test_bad_input_is_one_line_and_exit_2(store: str, args: list[str], message: str,
                                          capsys: pytest.CaptureFixture) -> None:
    try:
        code, out, err = cli(store, *args, capsys=capsys)
    except SystemExit as exc:  # argparse's own errors
        code, captured = exc.code, capsys.readouterr()
        out, err = captured.out, captured.err
    assert code == 2 and out == ""
    assert err.startswith("pinnrun-compare: error:") and message in err and err.count("\n") == 1


def test_a_group_that_pools_different_configs_is_named(store: str, capsys: pytest.CaptureFixture) -> None:
    client = MlflowClient(tracking_uri=store)
    run_id = add_run(client, "burgers", "uniform", final=0.3)
    client.log_param(run_id, "optimizer.steps", "6000")  # the other uniform runs have no such key: 250-step sweep runs
    code, _, err = cli(store, "--experiment", "burgers", capsys=capsys)
    assert code == 0
    assert "group burgers / uniform pools runs that differ in optimizer.steps" in err
    assert "group burgers / sapinn" not in err


def test_an_infinite_final_metric_counts_as_failed(store: str) -> None:
    client = MlflowClient(tracking_uri=store)
    add_run(client, "burgers", "sapinn", final=float("inf"))
    table = compare.summarize(tracking.search_runs(store, ["burgers"])).set_index(["problem", "weighting"])
    assert (table.loc[("burgers", "sapinn"), "n"], table.loc[("burgers", "sapinn"), "failed"]) == (2, 1)
    assert table.loc[("burgers", "sapinn"), "mean"] == pytest.approx(np.mean(SAPINN))


def test_the_median_curve_spans_only_the_range_every_run_reaches() -> None:
    import matplotlib.pyplot as plt

    history = pd.DataFrame({"run_id": ["a"] * 3 + ["b"] * 3, "step": [0, 10, 20, 5, 15, 40],
                            "value": [1.0, 0.1, 0.01, 0.5, 0.05, 0.001], "time_s": 0.0})
    fig, ax = plt.subplots()
    compare.draw_curves(ax, history, pd.Series(["g", "g"], index=["a", "b"]), "step")
    median = next(line for line in ax.get_lines() if line.get_label().startswith("g (n=2)"))
    assert (median.get_xdata().min(), median.get_xdata().max()) == (5, 20)
    at_10 = np.interp(10, median.get_xdata(), median.get_ydata())
    assert at_10 == pytest.approx(10 ** np.median([np.log10(0.1), np.interp(10, [5, 15], np.log10([0.5, 0.05]))]), rel=1e-3)
    plt.close(fig)
