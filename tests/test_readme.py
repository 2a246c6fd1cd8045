"""The README's promises that a newcomer relies on first: a quick start of exactly two commands,
both Makefile targets that set up the environment themselves, and the PATH question answered."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_quick_start_is_two_self_contained_make_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    quick = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```\n(.*?)```", quick, flags=re.S).group(1)
    commands = [line.split("#", 1)[0].strip() for line in block.splitlines() if line.strip()]
    assert commands == ["make run", "make test"]
    makefile = (ROOT / "Makefile").read_text()
    for target in ("run", "test"):
        assert re.search(rf"^{target}: setup$", makefile, flags=re.M), target
    assert ".venv/bin/pinnrun" in quick and "source .venv/bin/activate" in quick and "mlflow ui" in quick


def test_make_clean_removes_what_runs_leave_and_git_ignores_it() -> None:
    clean = re.search(r"^clean:\n\t(.*)$", (ROOT / "Makefile").read_text(), flags=re.M).group(1).split()
    ignored = (ROOT / ".gitignore").read_text().split()
    for leftover in ("outputs", "multirun", "mlruns", "mlflow.db", "mlflow.lock"):
        assert leftover in clean and (leftover in ignored or f"{leftover}/" in ignored), leftover
