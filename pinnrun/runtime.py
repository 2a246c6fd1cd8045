"""Where and how a run computes: device, dtype and seeding."""

from __future__ import annotations

import random
import re

import numpy as np
import torch

from pinnrun.config import ConfigError

DTYPES = {"float32": torch.float32, "float64": torch.float64}
DEVICE_CHOICES = "auto, cpu, cuda, cuda:N, mps"


def resolve_device(name: str) -> torch.device:
    """The torch device for `device=...`, refusing one this machine does not have."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "mps":
        if not torch.backends.mps.is_available():
            raise ConfigError("device='mps': MPS is not available on this machine; use device=cpu or device=auto")
        return torch.device("mps")
    match = re.fullmatch(r"cuda(?::(\d+))?", name)
    if match is None:
        raise ConfigError(f"device={name!r}: not one of {DEVICE_CHOICES}")
    if not torch.cuda.is_available():
        raise ConfigError(f"device={name!r}: CUDA is not available on this machine; use device=cpu or device=auto")
    index = int(match.group(1) or 0)
    if index >= torch.cuda.device_count():
        raise ConfigError(f"device={name!r}: this machine has {torch.cuda.device_count()} CUDA device(s), cuda:0..cuda:{torch.cuda.device_count() - 1}")
    return torch.device("cuda", index)


def check_cuda_graphs(enabled: bool, device: torch.device) -> None:
    """Refuse `engine.cuda_graphs=true`: graphs need CUDA, and the captured step (static buffers,
    capturable Adam) is not shipped until it has been verified on a GPU."""
    if not enabled:
        return
    if device.type != "cuda":
        raise ConfigError(f"engine.cuda_graphs=true: CUDA graphs need a CUDA device, this run is on {device.type}")
    raise ConfigError("engine.cuda_graphs=true: the CUDA-graph step is not available in this version; run without it")


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's global generators (model initialisation uses torch's)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
