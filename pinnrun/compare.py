"""`pinnrun-compare`: one table (and figures) comparing runs across schemes, problems and seeds.

Runs come from any MLflow tracking URI (through pinnrun.tracking), selected by experiment, sweep
id, tags or an MLflow filter string, and are grouped by configurable keys (default problem x
weighting, the tags every pinnrun run carries). Per group: final rel-L2 mean +- sample std,
median, n, best, and mean training time and steps. Only FINISHED runs that logged the metric are
averaged; failed or killed runs are counted in their own column and listed, as are finished runs
missing the metric, so nothing drops out silently.

    pinnrun-compare --experiment burgers --format markdown --plot figures/
    pinnrun-compare --sweep 20261125-180000-a1b2c3 --group-by weighting,optimizer.lr --log
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Mapping, NoReturn, Optional, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from pinnrun.config import ConfigError  # noqa: E402

METRIC = "final/l2_rel"
CURVE = "l2_rel"
DEFAULT_GROUP_BY = ("problem", "weighting")
FORMATS = ("markdown", "csv", "latex")
FAILED = ("FAILED", "KILLED")


def group_columns(runs: pd.DataFrame, keys: Sequence[str]) -> list[str]:
    """The table column behind each group key: a tag of that name, else a param (a config key)."""
    columns = []
    for key in keys:
        for column in (f"tags.{key}", f"params.{key}"):
            if column in runs.columns:
                columns.append(column)
                break
        else:
            if not runs.empty:
                raise ConfigError(f"group key {key!r}: no run has a tag or param of that name")
            columns.append(f"tags.{key}")
    return columns


def outcome(runs: pd.DataFrame, metric: str = METRIC) -> pd.Series:
    """Each run's standing: ok (finished with the metric), failed (FAILED/KILLED), missing
    (finished without the metric) or running (anything else: still running, scheduled)."""
    value = runs[f"metrics.{metric}"] if f"metrics.{metric}" in runs.columns else pd.Series(np.nan, index=runs.index)
    finished = runs["status"] == "FINISHED"
    return pd.Series(np.select([finished & value.notna(), runs["status"].isin(FAILED), finished],
                               ["ok", "failed", "missing"], "running"), index=runs.index)


def summarize(runs: pd.DataFrame, group_by: Sequence[str] = DEFAULT_GROUP_BY, metric: str = METRIC) -> pd.DataFrame:
    """One row per group: n, failed, missing, running, mean, std (ddof=1), median, best of the
    metric over the group's ok runs, and their mean final/time_s and final/steps."""
    names = [key.removeprefix("override/") for key in group_by]
    columns = group_columns(runs, group_by)
    stats = ["n", "failed", "missing", "running", "mean", "std", "median", "best", "time_s", "steps"]
    if runs.empty:
        return pd.DataFrame(columns=[*names, *stats])
    frame = runs.assign(_outcome=outcome(runs, metric), **{name: runs[c].fillna("-").astype(str) for name, c in zip(names, columns)})
    rows = []
    for key, group in frame.groupby(names, sort=True):
        ok = group[group["_outcome"] == "ok"]
        values = ok[f"metrics.{metric}"].astype(float) if len(ok) else pd.Series(dtype=float)
        counts = group["_outcome"].value_counts()
        rows.append({**dict(zip(names, key if isinstance(key, tuple) else (key,))),
                     "n": len(ok), "failed": int(counts.get("failed", 0)), "missing": int(counts.get("missing", 0)),
                     "running": int(counts.get("running", 0)), "mean": values.mean(), "std": values.std(ddof=1),
                     "median": values.median(), "best": values.min(),
                     "time_s": column_mean(ok, "metrics.final/time_s"), "steps": column_mean(ok, "metrics.final/steps")})
    return pd.DataFrame(rows, columns=[*names, *stats])


def column_mean(runs: pd.DataFrame, column: str) -> float:
    """Mean of a column over the runs that have it (NaN when none do)."""
    return float(runs[column].astype(float).mean()) if column in runs.columns and len(runs) else float("nan")


def sweep_metrics(runs: pd.DataFrame, metric: str = METRIC) -> dict[str, float]:
    """Counts and the best / median metric of a whole sweep, for its parent run."""
    states = outcome(runs, metric) if not runs.empty else pd.Series(dtype=str)
    values = runs.loc[states == "ok", f"metrics.{metric}"].astype(float) if (states == "ok").any() else pd.Series(dtype=float)
    counts = {f"sweep/n_{state}": float((states == state).sum()) for state in ("ok", "failed", "missing", "running")}
    best = {"sweep/best_l2_rel": float(values.min()), "sweep/median_l2_rel": float(values.median())} if len(values) else {}
    return {"sweep/n_runs": float(len(runs)), **counts, **best}


def render(table: pd.DataFrame, fmt: str) -> str:
    """The summary as markdown or LaTeX (mean +- std in one column, 3 significant digits) or CSV (raw)."""
    if fmt == "csv":
        return table.to_csv(index=False)
    if fmt not in FORMATS:
        raise ConfigError(f"--format={fmt!r}: not one of {', '.join(FORMATS)}")
    latex = fmt == "latex"
    pm = r" $\pm$ " if latex else " ± "
    shown = table.drop(columns=["mean", "std", "median", "best", "time_s", "steps"])
    if latex:
        shown = shown.apply(lambda column: column.map(lambda v: str(v).replace("_", r"\_")))
    shown[f"rel-L2 mean{pm}std"] = [f"{sci(m)}{pm}{sci(s)}" for m, s in zip(table["mean"], table["std"])]
    shown["median"] = table["median"].map(sci)
    shown["best"] = table["best"].map(sci)
    shown["time_s"] = table["time_s"].map(lambda v: "-" if pd.isna(v) else f"{v:.1f}")
    shown["steps"] = table["steps"].map(lambda v: "-" if pd.isna(v) else f"{v:.0f}")
    if latex:
        return shown.to_latex(index=False, escape=False, column_format="l" * len(shown.columns))
    return shown.to_markdown(index=False, disable_numparse=True) + "\n"


def sci(value: float) -> str:
    """3 significant digits in scientific notation; '-' for a missing value."""
    return "-" if pd.isna(value) else f"{value:.2e}"


def run_notes(runs: pd.DataFrame, metric: str = METRIC) -> list[str]:
    """One line per run that is not averaged in: failed or killed (with its error), finished
    without the metric, or not finished."""
    states = outcome(runs, metric)
    notes = []
    for (_, run), state in zip(runs.iterrows(), states):
        if state == "ok":
            continue
        label = f"run {run['run_id'][:8]} ({run['run_name']}, {run['experiment']})"
        if state == "failed":
            error = run.get("tags.error")
            notes.append(f"{label}: {run['status']}, not averaged" + (f": {error}" if isinstance(error, str) else ""))
        elif state == "missing":
            notes.append(f"{label}: FINISHED without metric {metric}, not averaged")
        else:
            notes.append(f"{label}: {run['status']}, not averaged")
    return notes


def group_labels(runs: pd.DataFrame, group_by: Sequence[str]) -> pd.Series:
    """'burgers / sapinn'-style label of each run's group."""
    columns = group_columns(runs, group_by)
    return runs[columns].fillna("-").astype(str).agg(" / ".join, axis=1)


def plot_final(runs: pd.DataFrame, labels: pd.Series, metric: str, path: Path) -> None:
    """Final rel-L2 per group: a box over seeds with every run as a jittered point (log scale);
    the tick labels carry n and the failed count."""
    ok = outcome(runs, metric) == "ok"
    groups = sorted(labels.unique())
    data = [runs.loc[ok & (labels == g), f"metrics.{metric}"].astype(float).to_numpy() for g in groups]
    failed = {g: int(((labels == g) & (outcome(runs, metric) == "failed")).sum()) for g in groups}
    fig, ax = plt.subplots(figsize=(max(5.0, 1.3 * len(groups) + 2), 4))
    ax.boxplot([d if len(d) else [np.nan] for d in data], showfliers=False)
    rng = np.random.default_rng(0)
    for i, values in enumerate(data, start=1):
        ax.scatter(i + rng.uniform(-0.12, 0.12, len(values)), values, s=14, alpha=0.75, zorder=3)
    ax.set_xticks(range(1, len(groups) + 1),
                  [f"{g}\nn={len(d)}" + (f", {failed[g]} failed" if failed[g] else "") for g, d in zip(groups, data)],
                  rotation=20, ha="right", fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel(f"{metric} (relative L2)")
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_curves(history: pd.DataFrame, labels: pd.Series, x: str, path: Path, points: int = 200) -> None:
    """rel-L2 against `x` (step or time_s) per group: the median over runs and a min-max band,
    each run interpolated (in log10) onto a shared grid and left blank beyond its own range."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for group in sorted(labels.unique()):
        runs = labels.index[labels == group]
        curves = [history[history["run_id"] == run_id].sort_values(x) for run_id in runs]
        curves = [c for c in curves if len(c)]
        if not curves:
            continue
        grid = np.linspace(min(c[x].min() for c in curves), max(c[x].max() for c in curves), points)
        logs = np.stack([np.interp(grid, c[x], np.log10(c["value"].clip(lower=1e-300)), left=np.nan, right=np.nan)
                         for c in curves])
        valid = np.isfinite(logs).any(axis=0)
        grid, logs = grid[valid], logs[:, valid]
        line, = ax.plot(grid, 10 ** np.nanmedian(logs, axis=0), label=f"{group} (n={len(curves)})")
        ax.fill_between(grid, 10 ** np.nanmin(logs, axis=0), 10 ** np.nanmax(logs, axis=0), color=line.get_color(),
                        alpha=0.2)
    ax.set_yscale("log")
    ax.set_xlabel("step" if x == "step" else "wall-clock since run start (s)")
    ax.set_ylabel("relative L2 error")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_figures(runs: pd.DataFrame, group_by: Sequence[str], metric: str, uri: Optional[str],
                  directory: Path) -> list[Path]:
    """Box/strip plot of the final metric and rel-L2 vs step and vs wall-clock with bands over seeds."""
    from pinnrun import tracking

    directory.mkdir(parents=True, exist_ok=True)
    ok = runs[outcome(runs, metric) == "ok"].set_index("run_id", drop=False)
    labels = group_labels(ok, group_by)
    paths = [directory / "final_l2_rel.png", directory / "l2_rel_vs_step.png", directory / "l2_rel_vs_time.png"]
    plot_final(runs, group_labels(runs, group_by), metric, paths[0])
    history = tracking.metric_history(uri, dict(zip(ok["run_id"], ok["start_time"])), CURVE)
    plot_curves(history, labels, "step", paths[1])
    plot_curves(history, labels, "time_s", paths[2])
    return paths


def filter_string(sweep: Optional[str], tags: Sequence[str], extra: Optional[str]) -> str:
    """An MLflow filter combining the sweep id, KEY=VALUE tag conditions and a raw filter."""
    clauses = [f"tags.sweep_id = '{sweep}'"] if sweep else []
    for tag in tags:
        key, sep, value = tag.partition("=")
        if not sep or not key or "'" in value:
            raise ConfigError(f"--tag {tag!r}: expected KEY=VALUE (no quotes in VALUE)")
        clauses.append(f"tags.`{key}` = '{value}'")
    if extra:
        clauses.append(extra)
    return " and ".join(clauses)


class OneLineParser(argparse.ArgumentParser):
    """argparse with usage errors as one line and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"pinnrun-compare: error: {message}\n")


def parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="pinnrun-compare", description="Compare pinnrun runs: final rel-L2 per group, over seeds.")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: the local store, as pinnrun uses)")
    p.add_argument("--experiment", action="append", default=[], help="experiment name (repeatable; default: all)")
    p.add_argument("--sweep", help="a sweep id (the sweep_id tag of its runs)")
    p.add_argument("--tag", action="append", default=[], help="KEY=VALUE tag condition (repeatable)")
    p.add_argument("--filter", help="an MLflow filter string, e.g. \"params.`optimizer.lr` = '0.001'\"")
    p.add_argument("--group-by", default=",".join(DEFAULT_GROUP_BY), help="comma-separated tag or param keys")
    p.add_argument("--metric", default=METRIC, help=f"the final metric to compare (default {METRIC})")
    p.add_argument("--format", default="markdown", choices=FORMATS)
    p.add_argument("--plot", type=Path, metavar="DIR", help="write figures into DIR")
    p.add_argument("--log", action="store_true", help="log the table and figures as an MLflow run of their own")
    p.add_argument("--log-experiment", default="pinnrun-compare", help="experiment of the --log run")
    return p


def compare(args: argparse.Namespace) -> str:
    """Select, summarise, plot and (optionally) log; returns the table in the chosen format."""
    from pinnrun import tracking

    group_by = [key.strip() for key in args.group_by.split(",") if key.strip()]
    selection = filter_string(args.sweep, args.tag, args.filter)
    runs = tracking.search_runs(args.tracking_uri, args.experiment, selection)
    runs = runs[runs.get("tags.pinnrun_role", pd.Series("run", index=runs.index)).fillna("run") == "run"]
    runs = runs[runs.get("tags.sweep_role", pd.Series("", index=runs.index)).fillna("") != "parent"]
    if runs.empty:
        raise ConfigError(f"no runs match (experiments: {', '.join(args.experiment) or 'all'}; filter: {selection or 'none'})")
    table = summarize(runs, group_by, args.metric)
    for note in run_notes(runs, args.metric):
        print(f"pinnrun-compare: {note}", file=sys.stderr)
    if args.plot:
        for path in write_figures(runs, group_by, args.metric, args.tracking_uri, args.plot):
            print(f"pinnrun-compare: wrote {path}", file=sys.stderr)
    if args.log:
        log_run(args, runs, table, group_by, selection)
    return render(table, args.format)


def log_run(args: argparse.Namespace, runs: pd.DataFrame, table: pd.DataFrame, group_by: Sequence[str],
            selection: str) -> None:
    """Tables in every format and the figures, recorded as a run in --log-experiment."""
    from pinnrun import tracking

    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        for fmt, suffix in zip(FORMATS, ("md", "csv", "tex")):
            (directory / f"table.{suffix}").write_text(render(table, fmt))
        write_figures(runs, group_by, args.metric, args.tracking_uri, directory / "figures")
        params: Mapping[str, object] = {"experiments": ",".join(args.experiment) or "all", "filter": selection or "none",
                                        "group_by": ",".join(group_by), "metric": args.metric, "n_runs": len(runs)}
        run_id = tracking.log_comparison(args.tracking_uri, args.log_experiment, "compare", params, directory)
    print(f"pinnrun-compare: logged as run {run_id} in experiment {args.log_experiment!r}", file=sys.stderr)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of `pinnrun-compare`; bad input is one line on stderr and exit status 2."""
    args = parser().parse_args(argv)
    try:
        sys.stdout.write(compare(args))
    except ConfigError as exc:
        print(f"pinnrun-compare: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
