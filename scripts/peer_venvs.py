"""The virtual environments of the peers the benchmarks compare against, created on first use.

DeepXDE's TensorFlow backends, its JAX backend and JAX itself cannot share pinnrun's environment
(their numpy and CUDA pins conflict with torch's, and TensorFlow's with JAX's), so each lives in
an environment of its own: scripts/benchmark.py and scripts/benchmark_optimizers.py run them there
as subprocesses, pointed at an existing environment by a flag or creating it when it is missing.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Sequence

DEEPXDE_PACKAGES = ("deepxde==1.15.0", "tensorflow-cpu==2.15.1", "tensorflow-probability==0.23.0", "torch==2.13.0")
"""DeepXDE with its backends pytorch, tensorflow.compat.v1 (its default) and tensorflow (TF2,
which imports tensorflow_probability; 0.23 is the release built for TensorFlow 2.15)."""
JAX_PACKAGES = ("jax==0.10.2", "optax==0.2.8", "flax==0.12.8", "deepxde==1.15.0")
"""CPU JAX, optax for the plain JAX reference step, and DeepXDE's jax backend (its FNN is flax)."""


def venv_python(venv: Path, packages: Sequence[str]) -> Path:
    """The environment's interpreter, creating the environment with `packages` when it is missing."""
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"creating {venv} with {' '.join(packages)}", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", *packages], check=True)
    return python
