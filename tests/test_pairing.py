"""pinnrun-compare --baseline on stores of synthetic runs whose metrics are known: pairing by seed and
config (never by order), the paired numbers against hand-computable statistics, what is left out."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd
import pytest
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient
from scipy import stats

from pinnrun import compare, paired, tracking
from pinnrun.pairing import context_label

BASE = [1e-3, 4e-4, 2e-3, 7e-4, 5e-4]
D = {"sapinn": [-0.3, -0.1, -0.4, 0.2, -0.5], "lra": [0.4, 0.1, 0.3, 0.5, 0.2]}
SCHEME_PARAMS = {"uniform": {}, "sapinn": {"weighting.lr": "0.005", "weighting.eps": "1e-08"}, "lra": {"weighting.every": "10"}}


def add_run(client: MlflowClient, weighting: str, seed: int, value: Optional[float], status: str = "FINISHED",
            steps: int = 200, problem: str = "oscillator", hashes: Optional[dict] = None, **tags: str) -> str:
    """A run as pinnrun records it: group tags, the config as params (with per-run bookkeeping), start hashes."""
    run = client.create_run(tracking.experiment_id_for(client, problem), run_name=f"{problem}-{weighting}-s{seed}",
                            tags={"problem": problem, "weighting": weighting, "seed": str(seed),
                                  **(hashes or {"init_params_hash": f"p{seed}", "init_points_hash": f"x{seed}"}), **tags})
    params = {"seed": str(seed), "optimizer.steps": str(steps), "weighting._target_": f"pinnrun.weighting.{weighting}",
              "output.dir": f"/tmp/outputs/{run.info.run_id}", "train.log_every": "10" if seed % 2 else "50",
              "problem.n.pde": "128", **SCHEME_PARAMS[weighting]}
    client.log_batch(run.info.run_id, params=[Param(k, v) for k, v in params.items()])
    if value is not None:
        client.log_batch(run.info.run_id, metrics=[Metric("final/l2_rel", value, 0, steps),
                                                   Metric("phase/adam/l2_rel", 2 * value, 0, steps)])
    client.set_terminated(run.info.run_id, status=status)
    return run.info.run_id


def fill(uri: str, order: list[tuple[str, int]]) -> None:
    client = MlflowClient(tracking_uri=uri)
    for weighting, seed in order:
        value = BASE[seed] if weighting == "uniform" else BASE[seed] * math.exp(D[weighting][seed])
        add_run(client, weighting, seed, value)


ALL = [(w, s) for w in ("uniform", "sapinn", "lra") for s in range(5)]


def cli(uri: str, *args: str, capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    try:
        code = compare.main(["--tracking-uri", uri, *args])
    except SystemExit as exc:  # argparse's own usage errors
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def table_of(uri: str, tmp_path: Path, capsys: pytest.CaptureFixture, *args: str) -> tuple[pd.DataFrame, str]:
    path = tmp_path / "paired.csv"
    code, out, err = cli(uri, "--baseline", "weighting=uniform", "--csv", str(path), *args, capsys=capsys)
    assert code == 0, err
    assert out.startswith("Paired by seed")
    return pd.read_csv(path).set_index("option"), err


def test_numbers_match_an_independent_computation(tracking_uri: str, tmp_path: Path, capsys) -> None:
    fill(tracking_uri, ALL)
    table, _ = table_of(tracking_uri, tmp_path, capsys)
    assert list(pd.read_csv(tmp_path / "paired.csv").columns[:15]) == [
        "problem", "group", "option", "baseline", "metric", "n_pairs", "n_failed", "ratio", "ci_low", "ci_high",
        "p_value", "p_holm", "wins", "seeds_needed", "verdict"]
    sapinn, lra = table.loc["sapinn"], table.loc["lra"]
    assert (sapinn["n_pairs"], sapinn["n_failed"], sapinn["wins"]) == (5, 0, "4/5")
    assert sapinn["ratio"] == pytest.approx(math.exp(-0.22), rel=1e-9)
    assert (sapinn["ci_low"], sapinn["ci_high"]) == pytest.approx((0.5686, 1.1326), abs=1e-4)
    assert sapinn["p_value"] == pytest.approx(6 / 32)  # exact signed-rank, counted by hand
    d_lra = np.array(D["lra"])
    t = stats.ttest_1samp(d_lra, 0).confidence_interval(0.95)
    assert lra["ratio"] == pytest.approx(math.exp(d_lra.mean())) and lra["wins"] == "0/5"
    assert (lra["ci_low"], lra["ci_high"]) == pytest.approx((math.exp(t.low), math.exp(t.high)))
    assert lra["p_value"] == pytest.approx(2 / 32)
    # Holm over the two options: 2/32 -> 2 * 2/32 = 0.125; 6/32 -> max(0.125, 6/32)
    assert (lra["p_holm"], sapinn["p_holm"]) == pytest.approx((0.125, 6 / 32))
    sd = float(np.std(D["sapinn"], ddof=1))
    assert sapinn["seeds_needed"] == paired.seeds_needed(-0.22, sd, alpha=0.05 / 2)
    assert sapinn["verdict"] == f"no detectable difference (about {int(sapinn['seeds_needed'])} seeds would tell)"
    assert set(table["baseline"]) == {"uniform"} and set(table["metric"]) == {"final/l2_rel"}


def test_shuffled_store_gives_the_same_table(tracking_uri: str, tmp_path: Path, capsys) -> None:
    fill(tracking_uri, ALL)
    first, _ = table_of(tracking_uri, tmp_path, capsys)
    other = tmp_path / "other.db"
    other.write_bytes(Path(tracking_uri.removeprefix("sqlite:///")).read_bytes())
    shuffled_uri = f"sqlite:///{tmp_path / 'shuffled.db'}"
    Path(shuffled_uri.removeprefix("sqlite:///")).write_bytes(other.read_bytes())
    client = MlflowClient(tracking_uri=shuffled_uri)
    for run in client.search_runs([e.experiment_id for e in client.search_experiments()]):
        client.delete_run(run.info.run_id)
    order = [ALL[i] for i in np.random.default_rng(3).permutation(len(ALL))]
    fill(shuffled_uri, order)
    second, _ = table_of(shuffled_uri, tmp_path, capsys)
    pd.testing.assert_frame_equal(first.sort_index(), second.sort_index())


def test_unpaired_failed_and_mismatched_runs_are_reported_not_used(tracking_uri: str, tmp_path: Path, capsys) -> None:
    fill(tracking_uri, [(w, s) for w, s in ALL if (w, s) != ("lra", 4)])
    client = MlflowClient(tracking_uri=tracking_uri)
    add_run(client, "lra", 4, None, status="FAILED")
    add_run(client, "sapinn", 7, 1e-3)  # no uniform run at seed 7
    add_run(client, "uniform", 9, 1e-3)
    add_run(client, "sapinn", 9, 5e-4, hashes={"init_params_hash": "other", "init_points_hash": "x9"})
    table, err = table_of(tracking_uri, tmp_path, capsys)
    sapinn, lra = table.loc["sapinn"], table.loc["lra"]
    assert (sapinn["n_pairs"], sapinn["n_unpaired"], sapinn["n_failed"]) == (5, 2, 0)
    assert sapinn["ratio"] == pytest.approx(math.exp(-0.22), rel=1e-9)  # the stray runs changed nothing
    assert (lra["n_pairs"], lra["n_failed"]) == (4, 1)
    assert lra["ratio"] == pytest.approx(math.exp(np.mean(D["lra"][:4])))
    assert "seed 7" in err and "no finished partner; unpaired, left out" in err
    assert "seed 9" in err and "init_params_hash differ" in err
    assert "seed 4" in err and "FAILED" in err and "1 pair(s) lost to FAILED/KILLED/non-finite runs" in err


def test_budgets_make_separate_rows_and_other_metrics_compare(tracking_uri: str, tmp_path: Path, capsys) -> None:
    fill(tracking_uri, [(w, s) for w, s in ALL if w != "lra"])
    client = MlflowClient(tracking_uri=tracking_uri)
    add_run(client, "uniform", 0, 1e-2, steps=50)
    add_run(client, "sapinn", 0, 2e-2, steps=50)
    table, _ = table_of(tracking_uri, tmp_path, capsys)
    rows = table.reset_index().set_index("context")
    assert rows.loc["optimizer.steps=200", "n_pairs"] == 5
    short = rows.loc["optimizer.steps=50"]
    assert short["n_pairs"] == 1 and short["verdict"] == "fewer than 2 pairs (1)" and short["ratio"] == pytest.approx(2.0)
    adam, _ = table_of(tracking_uri, tmp_path, capsys, "--metric", "phase/adam/l2_rel")
    assert adam.reset_index().set_index("context").loc["optimizer.steps=200", "ratio"] == pytest.approx(math.exp(-0.22))


def test_json_table_and_figures(tracking_uri: str, tmp_path: Path, capsys) -> None:
    fill(tracking_uri, ALL)
    code, out, err = cli(tracking_uri, "--baseline", "weighting=uniform", "--json", str(tmp_path / "t.json"),
                         "--plot", str(tmp_path / "figs"), "--effect", "1.4", capsys=capsys)
    assert code == 0, err
    records = {r["option"]: r for r in json.loads((tmp_path / "t.json").read_text())}
    assert records["sapinn"]["seeds_needed"] == paired.seeds_needed(math.log(1.4), float(np.std(D["sapinn"], ddof=1)),
                                                                    alpha=0.05 / 2)
    row = next(line for line in out.splitlines() if line.startswith("| oscillator") and "sapinn" in line)
    assert "0.803 [0.569, 1.13]" in row
    for name in ("paired_seeds.png", "forest.png"):
        assert (tmp_path / "figs" / name).stat().st_size > 10_000


def test_a_sweep_gets_its_paired_table_in_the_parent_run(tracking_uri: str, tmp_path: Path, capsys) -> None:
    client = MlflowClient(tracking_uri=tracking_uri)
    parent = client.create_run(tracking.experiment_id_for(client, "oscillator"), tags={"sweep_role": "parent", "sweep_id": "S"})
    client.set_terminated(parent.info.run_id)
    for weighting, seed in ALL:
        value = BASE[seed] if weighting == "uniform" else BASE[seed] * math.exp(D[weighting][seed])
        add_run(client, weighting, seed, value, sweep_id="S", **{"mlflow.parentRunId": parent.info.run_id})
    code, _, err = cli(tracking_uri, "--sweep", "S", "--baseline", "weighting=uniform", capsys=capsys)
    assert code == 0 and f"parent run {parent.info.run_id}" in err
    folder = "compare/weighting=uniform-final_l2_rel"
    files = {Path(a.path).name for a in client.list_artifacts(parent.info.run_id, folder)}
    assert {"table.md", "table.csv", "table.json", "figures"} <= files


@pytest.mark.parametrize(("args", "message"), [
    (["--baseline", "weighting=unifrom"], "--baseline weighting=unifrom: no selected run has it (weighting options present: lra, sapinn, uniform)"),
    (["--baseline", "colour=red"], "group key 'colour'"),
    (["--baseline", "weighting"], "expected GROUP=OPTION"),
    (["--baseline", "problem=oscillator"], "paired within a problem"),
    (["--baseline", "weighting=uniform", "--metric", "final/l2"], "--metric 'final/l2': no selected run logged it"),
    (["--baseline", "weighting=uniform", "--effect", "1"], "--effect=1.0: must be a ratio > 0 other than 1"),
    (["--baseline", "weighting=uniform", "--tag", "weighting=uniform"], "no other weighting option to compare"),
])
def test_bad_input_is_one_line_and_exit_2(tracking_uri: str, args: list[str], message: str, capsys) -> None:
    fill(tracking_uri, ALL)
    code, out, err = cli(tracking_uri, *args, capsys=capsys)
    assert code == 2 and out == ""
    assert err.startswith("pinnrun-compare: error:") and message in err and err.count("\n") == 1


def test_a_mistyped_store_is_refused_and_not_created(tmp_path: Path, capsys) -> None:
    missing = tmp_path / "typo.db"
    code, out, err = cli(f"sqlite:///{missing}", "--baseline", "weighting=uniform", capsys=capsys)
    assert code == 2 and out == "" and f"no store at {missing}" in err and err.count("\n") == 1
    assert not missing.exists()


SCHEMES = ("uniform", "lra", "gradnorm", "gradnorm_terms", "ntk", "rba", "causal", "sapinn", "sapinn_gp")


def test_every_scheme_starts_from_the_same_network_and_points_at_a_seed(make_cfg, tmp_path: Path) -> None:
    """SA-PINN's U(0,1) start, GP-SA's subsets and gradnorm's passes draw from their own streams:
    the network and the points of a seed do not depend on the scheme."""
    from pinnrun.engine import run

    for seed in (3, 4):
        for scheme in SCHEMES:
            run(make_cfg(f"weighting={scheme}", f"seed={seed}", "problem.n.pde=256", "output.plots=false",
                         "output.checkpoint=false", "output.prediction=false"))
    runs = tracking.search_runs(f"sqlite:///{tmp_path / 'mlflow.db'}", ["burgers"])
    starts = runs.groupby("tags.seed")[["tags.init_params_hash", "tags.init_points_hash"]].nunique()
    assert starts.to_dict("list") == {"tags.init_params_hash": [1, 1], "tags.init_points_hash": [1, 1]}
    first = runs.groupby("tags.seed")[["tags.init_params_hash", "tags.init_points_hash"]].first()
    assert (first.loc["3"] != first.loc["4"]).all()  # the hashes see the seed
    assert runs["tags.weighting"].nunique() == len(SCHEMES) and len(runs) == 2 * len(SCHEMES)


def test_comparing_models_pairs_on_the_points_hash_only(tracking_uri: str, tmp_path: Path, capsys) -> None:
    """Two networks never share init_params_hash, so `--baseline model=mlp` (Wang et al.'s M3 against
    M1) pairs runs whose points agree and still leaves out a seed whose points differ."""
    client = MlflowClient(tracking_uri=tracking_uri)
    for seed in range(5):
        for model, value in (("mlp", BASE[seed]), ("modified_mlp", BASE[seed] * math.exp(D["sapinn"][seed]))):
            points = "moved" if (seed, model) == (4, "modified_mlp") else f"x{seed}"
            run_id = add_run(client, "uniform", seed, value, hashes={"init_params_hash": f"{model}{seed}", "init_points_hash": points},
                             model=model)
            client.log_param(run_id, "model._target_", f"pinnrun.models.{model}")
    path = tmp_path / "models.csv"
    code, _, err = cli(tracking_uri, "--baseline", "model=mlp", "--csv", str(path), capsys=capsys)
    assert code == 0, err
    row = pd.read_csv(path).set_index("option").loc["modified_mlp"]
    assert (row["n_pairs"], row["n_unpaired"]) == (4, 1)
    assert row["ratio"] == pytest.approx(math.exp(np.mean(D["sapinn"][:4])), rel=1e-9)
    assert "seed 4" in err and "init_points_hash differ" in err and "init_params_hash" not in err


def test_context_names_a_groups_option_and_skips_keys_a_run_does_not_have() -> None:
    """A run of the plain MLP has no model.gate_first: its context reads `model=mlp`, not
    `model._target_=pinnrun.models.mlp.MLP, model.gate_first=nan`."""
    keys = ["params.model._target_", "params.model.gate_first", "params.optimizer.steps"]
    plain = pd.Series({"params.model._target_": "pinnrun.models.mlp.MLP", "params.model.gate_first": np.nan,
                       "params.optimizer.steps": "200", "tags.model": "mlp"})
    gated = pd.Series({"params.model._target_": "pinnrun.models.modified_mlp.ModifiedMLP", "params.model.gate_first": "True",
                       "params.optimizer.steps": "200"})
    assert context_label(plain, keys) == "model=mlp, optimizer.steps=200"
    assert context_label(gated, keys) == "model._target_=pinnrun.models.modified_mlp.ModifiedMLP, model.gate_first=True, optimizer.steps=200"
