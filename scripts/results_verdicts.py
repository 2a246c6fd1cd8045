"""Paired verdicts for the per-seed tables of docs/results.md whose runs' stores were not kept.

Each markdown table there whose header starts with `| seed |` holds one row per setting and one
column per seed. Every row other than the baseline and `shock ratio` is paired by seed with the
baseline, the table's `uniform...` row (or its first row where it has none, e.g. fixed points
against RAD), and summarised as pinnrun-compare --baseline does (pinnrun.paired: ratio with
its 95 % t-interval, exact Wilcoxon p, Holm over the table's rows, wins, seeds needed for 80 %
power, verdict). Runs at one seed share the network and the points, so the pairing is real.

    python scripts/results_verdicts.py [docs/results.md] [--effect 1.4]
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Iterator, Optional

import pandas as pd

from pinnrun import paired, pairing

NUMBER = re.compile(r"^\s*[0-9.]+e[-+][0-9]+\s*$")


def seed_tables(text: str) -> Iterator[tuple[str, dict[str, dict[str, float]]]]:
    """(section heading, {row label: {seed: value}}) of every `| seed |` table, in order."""
    heading, lines = "", text.splitlines()
    for index, line in enumerate(lines):
        if line.startswith("#"):
            heading = line.lstrip("# ").strip()
        if not line.startswith("| seed |") or (index and lines[index - 1].startswith("|")):
            continue
        seeds = [cell.strip() for cell in line.strip("|").split("|")][1:]
        rows: dict[str, dict[str, float]] = {}
        for row in lines[index + 2:]:
            if not row.startswith("|"):
                break
            cells = [cell.strip() for cell in row.strip().strip("|").split("|")]
            values = {seed: float(cell) for seed, cell in zip(seeds, cells[1:]) if seed.isdigit() and NUMBER.match(cell)}
            if values and cells[0] != "shock ratio":
                rows[cells[0]] = values
        yield heading, rows


def verdict_table(rows: dict[str, dict[str, float]], effect: Optional[float]) -> pd.DataFrame:
    """Every other row against the table's uniform row (or, with none, its first row), on the seeds both have."""
    baselines = [label for label in rows if label.startswith("uniform")] or list(rows)[:1]
    if len(baselines) != 1:
        raise ValueError(f"expected one uniform row, found {baselines}")
    base = rows[baselines[0]]
    options = {label: sorted(set(values) & set(base), key=int) for label, values in rows.items() if label != baselines[0]}
    compared = paired.compare_options({label: ([base[s] for s in seeds], [rows[label][s] for s in seeds])
                                       for label, seeds in options.items()}, effect)
    return pd.DataFrame([{
        "option": label, "baseline": baselines[0], "n_pairs": r.n_pairs,
        "ratio [95% CI]": pairing.interval(r.ratio, r.ci_low, r.ci_high), "p (Wilcoxon)": pairing.p_text(r.p_value),
        "p (Holm)": pairing.p_text(p_holm), "wins": f"{r.wins}/{r.n_pairs}",
        "seeds_needed": pairing.count_text(r.seeds_needed), "verdict": paired.verdict(r, p_holm)}
        for label, (r, p_holm) in compared.items()])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("path", nargs="?", type=Path, default=Path(__file__).parents[1] / "docs" / "results.md")
    p.add_argument("--effect", type=float, help="the ratio seeds_needed is computed for (default: the observed one)")
    args = p.parse_args()
    for heading, rows in seed_tables(args.path.read_text()):
        print(f"### {heading}\n\n{verdict_table(rows, args.effect).to_markdown(index=False, disable_numparse=True)}\n")


if __name__ == "__main__":
    main()
