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
import contextlib
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator, Mapping, NoReturn, Optional, Sequence

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
    """Each run's standing: ok (finished with a finite metric), failed (FAILED/KILLED, or finished
    with an infinite metric: MLflow's sqlite store keeps +-inf as +-float max), missing (finished
    without the metric, or with NaN, which reads back as absent) or running (anything else: still
    running, scheduled)."""
    value = runs[f"metrics.{metric}"].astype(float) if f"metrics.{metric}" in runs.columns else pd.Series(np.nan, index=runs.index)
    finished = runs["status"] == "FINISHED"
    finite = value.abs() < np.finfo(float).max  # False for NaN, inf and the store's stand-in for inf
    return pd.Series(np.select([finished & finite, runs["status"].isin(FAILED) | (finished & value.notna()), finished],
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
        elif run["status"] == "RUNNING" and stale_for(run) is not None:
            notes.append(f"{label}: RUNNING but no heartbeat for {stale_for(run):.0f} s (killed?), not averaged; "
                         "end it as KILLED with pinnrun-sync --mark-stale")
        else:
            notes.append(f"{label}: {run['status']}, not averaged")
    return notes


def stale_for(run: pd.Series) -> Optional[float]:
    """Seconds since a RUNNING run's last heartbeat when that is over tracking.STALE_AFTER_S, else None."""
    from pinnrun import tracking

    tags = {tracking.HEARTBEAT_TAG: run.get(f"tags.{tracking.HEARTBEAT_TAG}")}
    age = tracking.heartbeat_age(tags, run.get("start_time"), time.time())
    return age if age >= tracking.STALE_AFTER_S else None


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


def plot_curves(history: pd.DataFrame, labels: pd.Series, x: str, path: Path) -> None:
    """rel-L2 against `x` (step or time_s) per group, saved as a figure (see draw_curves)."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    draw_curves(ax, history, labels, x)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def draw_curves(ax: plt.Axes, history: pd.DataFrame, labels: pd.Series, x: str, points: int = 200) -> None:
    """Every run as a thin line, and per group the median over runs with a min-max band on the
    range where every run of the group has data (each run interpolated in log10 onto a shared grid
    there; a median over whichever runs happen to reach a point would jump as runs drop out)."""
    for group in sorted(labels.unique()):
        runs = labels.index[labels == group]
        curves = [history[history["run_id"] == run_id].sort_values(x) for run_id in runs]
        curves = [c for c in curves if len(c)]
        if not curves:
            continue
        median, = ax.plot([], [], label=f"{group} (n={len(curves)})")
        for c in curves:
            ax.plot(c[x], c["value"], color=median.get_color(), lw=0.6, alpha=0.35)
        start, end = max(c[x].min() for c in curves), min(c[x].max() for c in curves)
        if start < end:
            grid = np.linspace(start, end, points)
            logs = np.stack([np.interp(grid, c[x], np.log10(c["value"].clip(lower=1e-300))) for c in curves])
            median.set_data(grid, 10 ** np.median(logs, axis=0))
            ax.fill_between(grid, 10 ** logs.min(axis=0), 10 ** logs.max(axis=0), color=median.get_color(), alpha=0.2)
    ax.set_yscale("log")
    ax.set_xlabel("step" if x == "step" else "wall-clock since run start (s)")
    ax.set_ylabel("relative L2 error")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)


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
    p = OneLineParser(prog="pinnrun-compare", description="Compare pinnrun runs: final rel-L2 per group over seeds, "
                      "or, with --baseline, every option against a baseline paired by seed.")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: the local store, as pinnrun uses); must exist")
    p.add_argument("--experiment", action="append", default=[], help="experiment name (repeatable; default: all)")
    p.add_argument("--sweep", help="a sweep id (the sweep_id tag of its runs)")
    p.add_argument("--tag", action="append", default=[], help="KEY=VALUE tag condition (repeatable)")
    p.add_argument("--filter", help="an MLflow filter string, e.g. \"params.`optimizer.lr` = '0.001'\"")
    p.add_argument("--group-by", default=",".join(DEFAULT_GROUP_BY), help="comma-separated tag or param keys")
    p.add_argument("--baseline", metavar="GROUP=OPTION",
                   help="pair runs by seed and config and compare every other option of GROUP with OPTION per problem "
                        "(e.g. weighting=uniform, optimizer=adam_lbfgs): ratio [95%% CI], Wilcoxon p, Holm p, seeds needed")
    p.add_argument("--effect", type=float, metavar="RATIO",
                   help="with --baseline: the ratio seeds_needed is computed for (default: each row's observed ratio)")
    p.add_argument("--metric", default=METRIC, help=f"the metric to compare (default {METRIC}; e.g. phase/adam/l2_rel)")
    p.add_argument("--format", default="markdown", choices=FORMATS, help="the table on stdout")
    p.add_argument("--csv", type=Path, metavar="FILE", help="also write the table as CSV")
    p.add_argument("--json", type=Path, metavar="FILE", help="also write the table as JSON (records)")
    p.add_argument("--plot", type=Path, metavar="DIR", help="write figures into DIR")
    p.add_argument("--log", action="store_true", help="log the table and figures as an MLflow run of their own")
    p.add_argument("--log-experiment", default="pinnrun-compare", help="experiment of the --log run")
    return p


def select_runs(args: argparse.Namespace, uri: str) -> tuple[pd.DataFrame, str]:
    """The training runs the arguments select (no comparison or sweep-parent runs) and the filter used."""
    from pinnrun import tracking

    selection = filter_string(args.sweep, args.tag, args.filter)
    runs = tracking.search_runs(uri, args.experiment, selection)
    runs = runs[runs.get("tags.pinnrun_role", pd.Series("run", index=runs.index)).fillna("run") == "run"]
    runs = runs[runs.get("tags.sweep_role", pd.Series("", index=runs.index)).fillna("") != "parent"]
    if runs.empty:
        raise ConfigError(f"no runs match (experiments: {', '.join(args.experiment) or 'all'}; filter: {selection or 'none'})")
    if f"metrics.{args.metric}" not in runs.columns:
        logged = sorted(c.removeprefix("metrics.") for c in runs.columns if c.startswith("metrics.final/") or c.startswith("metrics.phase/"))
        raise ConfigError(f"--metric {args.metric!r}: no selected run logged it (logged: {', '.join(logged) or 'none'})")
    return runs, selection


def mixed_configs(runs: pd.DataFrame, group_by: Sequence[str]) -> list[str]:
    """A warning per summary group whose runs differ in config keys other than the seed (e.g. two
    budgets pooled into one mean), naming the keys."""
    from pinnrun import pairing

    keys = pairing.key_columns(runs)
    warnings = []
    for label, group in runs.groupby(group_labels(runs, group_by)):
        differing = [c.removeprefix("params.") for c in pairing.varying(group, keys)]
        if differing:
            warnings.append(f"group {label} pools runs that differ in {', '.join(differing)}: add them to --group-by "
                            "or select one value with --filter")
    return warnings


def compare(args: argparse.Namespace) -> str:
    """Select, summarise (or pair against --baseline), plot, write and log; returns the stdout table."""
    from pinnrun import tracking

    uri = tracking.existing_store(args.tracking_uri)
    runs, selection = select_runs(args, uri)
    if args.baseline:
        return compare_paired(args, uri, runs, selection)
    group_by = [key.strip() for key in args.group_by.split(",") if key.strip()]
    table = summarize(runs, group_by, args.metric)
    for note in [*run_notes(runs, args.metric), *mixed_configs(runs, group_by)]:
        print(f"pinnrun-compare: {note}", file=sys.stderr)
    write_tables(args, lambda fmt: render(table, fmt))

    def figures(directory: Path) -> list[Path]:
        return write_figures(runs, group_by, args.metric, uri, directory)

    if args.plot:
        announce(figures(args.plot))
    if args.log:
        params = {"group_by": ",".join(group_by)}
        log_run(args, uri, len(runs), selection, params, {f"table.{suffix}": render(table, fmt) for fmt, suffix in
                                                          zip(FORMATS, ("md", "csv", "tex"))}, figures)
    return render(table, args.format)


def compare_paired(args: argparse.Namespace, uri: str, runs: pd.DataFrame, selection: str) -> str:
    """The --baseline table: every option of the group against the baseline, paired by seed and config."""
    from pinnrun import pairing

    baseline = pairing.Baseline.parse(args.baseline)
    if args.effect is not None and not (math.isfinite(args.effect) and args.effect > 0 and args.effect != 1):
        raise ConfigError(f"--effect={args.effect!r}: must be a ratio > 0 other than 1, e.g. 1.4 or 0.7")
    column = group_columns(runs, [baseline.group])[0]
    present = sorted(runs[column].dropna().astype(str).unique())
    if baseline.option not in present:
        raise ConfigError(f"--baseline {baseline}: no selected run has it ({baseline.group} options present: "
                          f"{', '.join(present) or 'none'})")
    table, rows = pairing.paired_table(runs, outcome(runs, args.metric), baseline, column, args.metric, args.effect)
    if table.empty:
        raise ConfigError(f"--baseline {baseline}: the selected runs have no other {baseline.group} option to compare")
    for row in rows:
        for note in row.notes:
            print(f"pinnrun-compare: {row.problem} {row.option} vs {baseline.option}: {note}", file=sys.stderr)
    for note in pairing.check_notes(table):
        print(f"pinnrun-compare: {note}", file=sys.stderr)
    write_tables(args, lambda fmt: pairing.render(table, fmt))

    def figures(directory: Path) -> list[Path]:
        directory.mkdir(parents=True, exist_ok=True)
        paths = [directory / "paired_seeds.png", directory / "forest.png"]
        pairing.plot_pairs(rows, baseline, args.metric, paths[0])
        pairing.plot_forest(table, rows, baseline, paths[1])
        return paths

    if args.plot:
        announce(figures(args.plot))
    files = {f"table.{suffix}": pairing.render(table, fmt) for fmt, suffix in
             (("markdown", "md"), ("csv", "csv"), ("json", "json"), ("latex", "tex"))}
    log_to_sweep_parent(uri, runs, baseline, args.metric, files, figures)
    if args.log:
        log_run(args, uri, len(runs), selection, {"baseline": str(baseline), "effect": args.effect}, files, figures)
    return pairing.render(table, args.format)


def write_tables(args: argparse.Namespace, rendered: Callable[[str], str]) -> None:
    """--csv and --json files of the table."""
    for path, fmt in ((args.csv, "csv"), (args.json, "json")):
        if path is None:
            continue
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(rendered(fmt))
        except OSError as exc:
            raise ConfigError(f"--{fmt} {str(path)!r}: cannot write it ({exc.strerror})") from None
        print(f"pinnrun-compare: wrote {path}", file=sys.stderr)


def announce(paths: Sequence[Path]) -> None:
    for path in paths:
        print(f"pinnrun-compare: wrote {path}", file=sys.stderr)


@contextlib.contextmanager
def report_directory(files: Mapping[str, str], figures: Callable[[Path], list[Path]]) -> Iterator[Path]:
    """A temporary directory holding the tables (name -> text) and the figures (under figures/), to upload."""
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        for name, text in files.items():
            (directory / name).write_text(text)
        figures(directory / "figures")
        yield directory


def log_to_sweep_parent(uri: str, runs: pd.DataFrame, baseline: object, metric: str, files: Mapping[str, str],
                        figures: Callable[[Path], list[Path]]) -> None:
    """When every compared run belongs to one sweep with a parent run, file the paired table and
    figures under that parent's `compare/` artifacts as well."""
    from pinnrun import tracking

    sweeps = runs.get("tags.sweep_id", pd.Series(dtype=object))
    parents = runs.get("tags.mlflow.parentRunId", pd.Series(dtype=object)).dropna().unique()
    if sweeps.isna().any() or sweeps.nunique() != 1 or len(parents) != 1:
        return
    name = f"compare/{baseline}-{metric.replace('/', '_')}"
    with report_directory(files, figures) as directory:
        tracking.log_artifacts_to(uri, str(parents[0]), directory, name)
    print(f"pinnrun-compare: logged to the sweep's parent run {parents[0]} under {name}", file=sys.stderr)


def log_run(args: argparse.Namespace, uri: str, n_runs: int, selection: str, extra: Mapping[str, object],
            files: Mapping[str, str], figures: Callable[[Path], list[Path]]) -> None:
    """Tables and figures recorded as a run in --log-experiment, the selection as its params."""
    from pinnrun import tracking

    with report_directory(files, figures) as directory:
        params: Mapping[str, object] = {"experiments": ",".join(args.experiment) or "all", "filter": selection or "none",
                                        "metric": args.metric, "n_runs": n_runs, **extra}
        run_id = tracking.log_comparison(uri, args.log_experiment, "compare", params, directory)
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
