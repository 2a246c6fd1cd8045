"""The suite passes in a clone named `pinnrun` (what `git clone` gives), with its `.venv` inside.

There every installed package's path contains "/pinnrun/", so a test that tells pinnrun's own
frames by a path substring counts torch's too. CI clones elsewhere; this test recreates the layout:
the sources copied to `<tmp>/pinnrun/`, this environment's site-packages reached through
`<tmp>/pinnrun/.venv/site-packages` (a symlink, which Python does not resolve in file names), and
the path-sensitive test run there in a subprocess.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
SOURCES = ("pinnrun", "conf", "tests", "pyproject.toml")


def clone_named_pinnrun(tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the checkout at `<tmp>/pinnrun` and a site-packages path inside it."""
    clone = tmp_path / "pinnrun"
    clone.mkdir()
    for name in SOURCES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, clone / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(source, clone / name)
    packages = clone / ".venv" / "site-packages"
    packages.parent.mkdir()
    packages.symlink_to(Path(torch.__file__).resolve().parent.parent, target_is_directory=True)
    return clone, packages


def test_host_sync_test_passes_in_a_clone_named_pinnrun(tmp_path: Path) -> None:
    clone, packages = clone_named_pinnrun(tmp_path)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(clone), str(packages)])}
    probe = subprocess.run([sys.executable, "-c", "import torch, pinnrun; print(torch.__file__); print(pinnrun.__file__)"],
                           cwd=clone, env=env, capture_output=True, text=True, timeout=120, check=True)
    torch_file, pinnrun_file = probe.stdout.split()
    assert torch_file.startswith(str(packages)) and "/pinnrun/" in torch_file  # the layout that broke the test
    assert pinnrun_file == str(clone / "pinnrun" / "__init__.py")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/optim/test_phases.py",
         "-k", "do_not_sync and autograd"],
        cwd=clone, env=env, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "1 passed" in result.stdout
