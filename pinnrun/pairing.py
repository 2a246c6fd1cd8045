"""`pinnrun-compare --baseline GROUP=OPTION`: runs paired by seed and config, one verdict per option.

Two runs pair when they share the problem, the seed and every config key outside the compared
group (model, points, optimizer, budget, dtype, ...) and differ in the group's option. Pinnrun runs
of one seed start from the same network and points whatever the scheme (the engine tags each run
with hashes of both); a pair whose hashes differ is reported and left out (comparing models, only
the points' hash must agree). Runs are matched by
these keys only, never by their order in the store, and a run without a partner is listed as
unpaired and left out. Keys that only decide what is logged or where (output, tracking, cadences
of logs, evaluations and checkpoints) do not enter the key. Runs of one problem whose other
config keys vary (e.g. two budgets) make separate rows, labelled by a `context` column.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from pinnrun import paired
from pinnrun.config import ConfigError

BOOKKEEPING = ("output", "tracking", "resume", "train.progress", "train.log_every", "train.eval_every",
               "train.checkpoint_every")
"""Config keys (and key prefixes) that change what is logged or where, never what is trained."""
HASH_TAGS = ("tags.init_params_hash", "tags.init_points_hash")


def checked_hashes(group: str) -> tuple[str, ...]:
    """The start hashes a pair must share: both, except that comparing models changes the network
    by construction (e.g. Wang et al.'s M3 against M1), so then only the points must agree."""
    return HASH_TAGS[1:] if group == "model" else HASH_TAGS
COLUMNS = ["problem", "group", "option", "baseline", "metric", "n_pairs", "n_failed", "ratio", "ci_low", "ci_high",
           "p_value", "p_holm", "wins", "seeds_needed", "verdict", "context", "n_unpaired", "boot_low", "boot_high"]
"""The paired table's columns: the compare issue's fifteen, then the context and the checks."""


@dataclass(frozen=True)
class Baseline:
    """The option every other option of `group` is compared against."""

    group: str
    option: str

    @classmethod
    def parse(cls, text: str) -> Baseline:
        group, sep, option = text.partition("=")
        if not sep or not group.strip() or not option.strip():
            raise ConfigError(f"--baseline {text!r}: expected GROUP=OPTION, e.g. weighting=uniform")
        if group.strip() == "problem":
            raise ConfigError(f"--baseline {text!r}: runs are paired within a problem; compare another group")
        return cls(group.strip(), option.strip())

    def __str__(self) -> str:
        return f"{self.group}={self.option}"


@dataclass
class Row:
    """One option against the baseline in one problem and context: its pairs and what was left out."""

    problem: str
    context: str
    option: str
    seeds: list[str] = field(default_factory=list)
    base: list[float] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    failed: int = 0
    unpaired: int = 0
    notes: list[str] = field(default_factory=list)


def excluded(name: str, group: Optional[str] = None) -> bool:
    """A config key outside the pairing key: bookkeeping, and the compared group's own keys."""
    return any(name == prefix or name.startswith(f"{prefix}.") for prefix in (*BOOKKEEPING, *([group] if group else [])))


def key_columns(runs: pd.DataFrame, group: Optional[str] = None) -> list[str]:
    """The params columns that define what a run trains: every logged config key but bookkeeping
    and (when given) the compared group's."""
    return sorted(c for c in runs.columns if c.startswith("params.") and not excluded(c.removeprefix("params."), group))


def varying(runs: pd.DataFrame, columns: Sequence[str]) -> list[str]:
    """The columns, the seed aside, that take more than one value (a missing value counts as one) among the runs."""
    return [c for c in columns if c != "params.seed" and runs[c].nunique(dropna=False) > 1]


def seed_column(runs: pd.DataFrame) -> pd.Series:
    """Each run's seed: the `seed` param, else the `seed` tag."""
    for column in ("params.seed", "tags.seed"):
        if column in runs.columns:
            return runs[column].fillna("-").astype(str)
    raise ConfigError("no selected run carries a seed (param or tag): runs cannot be paired")


def context_labels(runs: pd.DataFrame, columns: Sequence[str]) -> pd.Series:
    """Per run, 'key=value, ...' of the key columns (seed aside) that vary within its problem; '' when none do."""
    labels = pd.Series("", index=runs.index)
    for _, problem_runs in runs.groupby("_problem"):
        keys = varying(problem_runs, columns)
        if keys:
            labels[problem_runs.index] = problem_runs.apply(lambda run: context_label(run, keys), axis=1)
    return labels


def context_label(run: pd.Series, keys: Sequence[str]) -> str:
    """'key=value, ...' for one run: a group's `_target_` by the option's name (its tag), and keys the
    run does not have (another option's settings) left out."""
    parts = []
    for column in keys:
        value, name = run[column], column.removeprefix("params.")
        group = name.removesuffix("._target_")
        if pd.isna(value):
            continue
        option = run.get(f"tags.{group}") if name.endswith("._target_") else None
        parts.append(f"{group}={option}" if isinstance(option, str) else f"{name}={value}")
    return ", ".join(parts)


def describe(run: pd.Series) -> str:
    return f"run {run['run_id'][:8]} ({run['run_name']})"


def pair_rows(runs: pd.DataFrame, states: pd.Series, baseline: Baseline, option_column: str,
              metric: str) -> list[Row]:
    """Every (problem, context, option) row with its pairs, failures and unpaired runs."""
    frame = runs.assign(_problem=runs["tags.problem"].fillna("-").astype(str) if "tags.problem" in runs else "-",
                        _option=runs[option_column].fillna("-").astype(str), _state=states)
    columns = key_columns(frame, baseline.group)
    frame["_seed"] = seed_column(frame)
    frame["_key"] = frame[columns].fillna("-").astype(str).agg("\x1f".join, axis=1) if columns else frame["_seed"]
    frame["_context"] = context_labels(frame, columns)
    rows = []
    for (problem, context), group in frame.groupby(["_problem", "_context"], sort=True):
        base = group[group["_option"] == baseline.option]
        for option in sorted(set(group["_option"]) - {baseline.option}):
            row = Row(str(problem), str(context), option)
            for key, runs_of_key in pd.concat([base, group[group["_option"] == option]]).groupby("_key", sort=True):
                add_key(row, runs_of_key, baseline.option, metric, checked_hashes(baseline.group))
            rows.append(row)
    return rows


def add_key(row: Row, runs: pd.DataFrame, baseline_option: str, metric: str, hashes: tuple[str, ...]) -> None:
    """Pair the baseline's and the option's run of one key (seed + config), or say why not."""
    sides = {side: runs[(runs["_option"] == baseline_option) == (side == "baseline")] for side in ("baseline", "option")}
    ok = {side: part[part["_state"] == "ok"] for side, part in sides.items()}
    seed = str(runs["_seed"].iloc[0])
    if all(len(part) == 1 for part in ok.values()):
        b, o = ok["baseline"].iloc[0], ok["option"].iloc[0]
        mismatch = [t.removeprefix("tags.") for t in hashes if isinstance(b.get(t), str) and isinstance(o.get(t), str)
                    and b[t] != o[t]]
        if mismatch:
            row.unpaired += 1
            row.notes.append(f"seed {seed}: {describe(b)} and {describe(o)} share the config but not the start "
                             f"({', '.join(mismatch)} differ); left out")
            return
        row.seeds.append(seed)
        row.base.append(float(b[f"metrics.{metric}"]))
        row.values.append(float(o[f"metrics.{metric}"]))
        return
    duplicated = [side for side, part in ok.items() if len(part) > 1]
    failed = [run for part in sides.values() for _, run in part[part["_state"] == "failed"].iterrows()]
    if duplicated:
        row.unpaired += 1
        names = ", ".join(describe(run) for side in duplicated for _, run in ok[side].iterrows())
        row.notes.append(f"seed {seed}: several finished runs of one config ({names}): ambiguous, left out")
    elif failed:
        row.failed += 1
        row.notes.append(f"seed {seed}: " + ", ".join(f"{describe(run)} {run['status']}" + (
            "" if run["status"] in ("FAILED", "KILLED") else f" with non-finite {metric}") for run in failed)
                         + "; pair left out of the statistics")
    else:
        row.unpaired += 1
        present = [f"{describe(run)} ({side}, {run['_state']})" for side, part in sides.items() for _, run in part.iterrows()]
        row.notes.append(f"seed {seed}: {', '.join(present)} has no finished partner; unpaired, left out")


def paired_table(runs: pd.DataFrame, states: pd.Series, baseline: Baseline, option_column: str, metric: str,
                 effect: Optional[float] = None) -> tuple[pd.DataFrame, list[Row]]:
    """The paired table (COLUMNS), one row per option, problem and context, and the rows' pairs."""
    rows = pair_rows(runs, states, baseline, option_column, metric)
    compared: dict[int, tuple[paired.PairedResult, float]] = {}
    for cell in {(row.problem, row.context) for row in rows}:  # Holm over the options of one problem and context
        compared.update(paired.compare_options({i: (row.base, row.values) for i, row in enumerate(rows)
                                                if (row.problem, row.context) == cell}, effect))
    results, p_holm = [compared[i][0] for i in range(len(rows))], [compared[i][1] for i in range(len(rows))]
    records = [{"problem": row.problem, "group": baseline.group, "option": row.option, "baseline": baseline.option,
                "metric": metric, "n_pairs": res.n_pairs, "n_failed": row.failed, "ratio": res.ratio,
                "ci_low": res.ci_low, "ci_high": res.ci_high, "p_value": res.p_value, "p_holm": p,
                "wins": f"{res.wins}/{res.n_pairs}", "seeds_needed": res.seeds_needed,
                "verdict": paired.verdict(res, p), "context": row.context, "n_unpaired": row.unpaired,
                "boot_low": res.boot_low, "boot_high": res.boot_high}
               for row, res, p in zip(rows, results, p_holm)]
    return pd.DataFrame(records, columns=COLUMNS), rows


def check_notes(table: pd.DataFrame) -> list[str]:
    """Where the bootstrap interval disagrees with the t-interval about the ratio 1 (the t-interval's
    normality is then in doubt), where the t-interval and the verdict's signed-rank test disagree
    (a few pairs all one way: the exact test cannot go below 2 / 2^n), and where pairs were lost."""
    notes = []
    for _, r in table.iterrows():
        label = f"{r['problem']}{' [' + r['context'] + ']' if r['context'] else ''}: {r['option']} vs {r['baseline']}"
        t_has_one = r["ci_low"] <= 1 <= r["ci_high"]
        if paired.intervals_disagree(r["ci_low"], r["ci_high"], r["boot_low"], r["boot_high"]):
            notes.append(f"{label}: the bootstrap interval [{r['boot_low']:.3g}, {r['boot_high']:.3g}] "
                         f"{'excludes' if t_has_one else 'includes'} 1, the t-interval does not agree")
        if not t_has_one and r["verdict"].startswith("no detectable"):
            notes.append(f"{label}: the t-interval [{r['ci_low']:.3g}, {r['ci_high']:.3g}] excludes 1 but the Holm-adjusted "
                         f"signed-rank p is {r['p_holm']:.3g} (the exact test's smallest p with {r['n_pairs']} pairs is "
                         f"{2 / 2 ** r['n_pairs']:.3g}): the verdict waits for more seeds")
        if t_has_one and r["verdict"] in ("better", "worse"):
            notes.append(f"{label}: {r['verdict']} by the signed-rank test (Holm p {r['p_holm']:.3g}, wins {r['wins']}) "
                         f"while the t-interval [{r['ci_low']:.3g}, {r['ci_high']:.3g}] includes 1: most pairs lean one way, "
                         "a few far the other")
        if r["n_failed"]:
            notes.append(f"{label}: {r['n_failed']} pair(s) lost to FAILED/KILLED/non-finite runs, excluded from the statistics")
    return notes


def render(table: pd.DataFrame, fmt: str) -> str:
    """The paired table for people (markdown or LaTeX: ratio [CI] in one column) or scripts (CSV, JSON: raw)."""
    if fmt == "csv":
        return table.to_csv(index=False)
    if fmt == "json":
        return table.to_json(orient="records", indent=2) + "\n"
    shown = pd.DataFrame({
        "problem": table["problem"], **({"context": table["context"]} if table["context"].astype(bool).any() else {}),
        "option": table["option"], "baseline": table["baseline"], "n_pairs": table["n_pairs"], "n_failed": table["n_failed"],
        "ratio [95% CI]": [interval(r, lo, hi) for r, lo, hi in zip(table["ratio"], table["ci_low"], table["ci_high"])],
        "p (Wilcoxon)": table["p_value"].map(p_text), "p (Holm)": table["p_holm"].map(p_text), "wins": table["wins"],
        "seeds_needed": table["seeds_needed"].map(count_text), "verdict": table["verdict"]})
    if fmt == "latex":
        return shown.apply(lambda c: c.map(lambda v: str(v).replace("_", r"\_"))).to_latex(index=False)
    metric = table["metric"].iloc[0] if len(table) else ""
    group = table["group"].iloc[0] if len(table) else ""
    head = (f"Paired by seed: each {group} option / the baseline, geometric mean of {metric} ratios "
            "(below 1: the option's is lower)\n\n")
    return head + shown.to_markdown(index=False, disable_numparse=True) + "\n"


def interval(ratio: float, low: float, high: float) -> str:
    if not math.isfinite(ratio):
        return "-"
    return f"{ratio:.3g}" if not math.isfinite(low) else f"{ratio:.3g} [{low:.3g}, {high:.3g}]"


def p_text(p: float) -> str:
    return "-" if not math.isfinite(p) else f"{p:.3g}"


def count_text(n: float) -> str:
    return "-" if math.isnan(n) else ("inf" if math.isinf(n) else f"{n:.0f}")


def row_label(row: Row, baseline: Baseline) -> str:
    return f"{row.problem}{' [' + row.context + ']' if row.context else ''}\n{row.option} vs {baseline.option}"


def plot_pairs(rows: Sequence[Row], baseline: Baseline, metric: str, path: Path) -> None:
    """One panel per row: a line per seed from the baseline's metric to the option's (log scale)."""
    n = max(len(rows), 1)
    cols = min(n, 4)
    fig, axes = plt.subplots(math.ceil(n / cols), cols, figsize=(2.6 * cols + 0.8, 3.2 * math.ceil(n / cols)),
                             squeeze=False, sharey=False)
    for ax, row in zip(axes.flat, rows):
        for seed, b, v in zip(row.seeds, row.base, row.values):
            ax.plot([0, 1], [b, v], marker="o", color="tab:green" if v < b else "tab:red", alpha=0.7)
            ax.annotate(seed, (1, v), xytext=(4, 0), textcoords="offset points", fontsize=7, va="center")
        ax.set_xticks([0, 1], [baseline.option, row.option], fontsize=8)
        ax.set_xlim(-0.3, 1.4)
        ax.set_yscale("log")
        ax.set_title(row_label(row, baseline).replace("\n", ": "), fontsize=8)
        ax.grid(True, which="both", alpha=0.3)
    for ax in list(axes.flat)[len(rows):]:
        ax.set_visible(False)
    axes[0, 0].set_ylabel(metric)
    fig.suptitle("paired by seed (green: the option is lower)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_forest(table: pd.DataFrame, rows: Sequence[Row], baseline: Baseline, path: Path) -> None:
    """The geometric-mean ratio of every row with its 95 % t-interval, on a log axis around 1."""
    fig, ax = plt.subplots(figsize=(7, 0.55 * max(len(rows), 1) + 1.4))
    y = np.arange(len(rows))[::-1]
    for position, (_, r) in zip(y, table.iterrows()):
        if not math.isfinite(r["ratio"]):
            continue
        color = {"better": "tab:green", "worse": "tab:red"}.get(r["verdict"], "tab:gray")
        if math.isfinite(r["ci_low"]):
            ax.plot([r["ci_low"], r["ci_high"]], [position, position], color=color, lw=2)
        ax.plot(r["ratio"], position, "o", color=color)
        ax.annotate(f"n={r['n_pairs']}, Holm p={p_text(r['p_holm'])}", (r["ratio"], position), xytext=(0, 6),
                    textcoords="offset points", fontsize=7, ha="center")
    ax.axvline(1.0, color="black", lw=0.8, ls="--")
    ax.set_yticks(y, [row_label(row, baseline).replace("\n", ": ") for row in rows], fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel(f"{table['metric'].iloc[0] if len(table) else ''}: option / {baseline} (geometric mean, 95% CI)")
    ax.grid(True, which="both", axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
