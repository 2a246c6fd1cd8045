"""Memory a run needs, estimated before its large allocations.

A run too big for the machine (or its GPU) would otherwise be killed by the OOM killer, or stop
on a CUDA out-of-memory error, some time after it started, leaving a RUNNING or FAILED run behind.
`check_fits` refuses it first, in one line naming the part that needs the most. The estimate is
deliberately simple (an upper-bound style count, not a measurement):

- collocation: points x input channels x derivative channels x hidden units per point, times
  ACTIVATION_COPIES for what autograd keeps per unit (activations, their derivatives, the
  graph of the nested derivatives) -- the issue's "points x inputs x derivative channels x width";
- evaluation grid: the reference inputs, solution and prediction as float64 on the host, the
  inputs on the device and one evaluation batch's activations;
- optimizer state: what each phase holds per parameter (a dense quasi-Newton matrix is n^2).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Optional, Sequence

import torch
from torch import nn

from pinnrun.config import ConfigError
from pinnrun.optim.base import Phase
from pinnrun.problems.base import Problem

ACTIVATION_COPIES = 4  # per hidden unit and derivative channel: pre-activation, activation, two backward buffers
HEADROOM = 0.9  # the share of the available memory a run may plan to use
GIB = 2**30


def hidden_units(model: nn.Module) -> int:
    """Units a point passes through: the outputs of every linear layer (width x depth for an MLP)."""
    return sum(layer.out_features for layer in model.modules() if isinstance(layer, nn.Linear))


def run_needs(problem: Problem, model: nn.Module, counts: Mapping[str, int], phases: Sequence[Phase],
              dtype: torch.dtype, eval_batch: int) -> dict[str, int]:
    """Bytes per part of the run: collocation, evaluation grid (evaluated `eval_batch` points at a
    time), optimizer state."""
    unit = torch.empty((), dtype=dtype).element_size()
    hidden, inputs = hidden_units(model), len(problem.input_names)
    collocation = sum(counts[name] * (2 if term.partner else 1) * inputs * (1 + len(term.derivatives))
                      for name, term in problem.terms.items()) * hidden * unit * ACTIVATION_COPIES
    grid = math.prod(problem.cfg.eval_grid) if problem.cfg.eval_grid else 0
    evaluation = grid * (inputs + 2) * 8 + grid * inputs * unit + min(grid, eval_batch) * hidden * unit
    n_params = sum(p.numel() for p in model.parameters())
    optimizer = sum(phase.state_bytes(n_params, dtype) for phase in phases)
    return {"collocation points (points x inputs x derivative channels x hidden units)": collocation,
            f"evaluation grid ({grid} points)": evaluation,
            f"optimizer state ({n_params} parameters)": optimizer}


def available_bytes(device: torch.device) -> Optional[int]:
    """Free memory where the run computes: the GPU's free memory, else the host's MemAvailable;
    None where it cannot be read (then nothing is refused)."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    if device.type != "cpu":
        return None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def check_fits(needs: Mapping[str, int], available: Optional[int], device: torch.device) -> None:
    """Refuse (ConfigError) a run whose estimated memory exceeds HEADROOM of what is available,
    naming the biggest part and what to lower."""
    total = sum(needs.values())
    if available is None or total <= HEADROOM * available:
        return
    part, size = max(needs.items(), key=lambda item: item[1])
    raise ConfigError(f"memory: this run needs about {total / GIB:.1f} GiB, {device.type} has {available / GIB:.1f} GiB "
                      f"available; the biggest part is the {part} at {size / GIB:.1f} GiB: lower problem.n / sampler.n, "
                      "model.width or depth, problem.eval_grid, or use a limited-memory optimizer")
