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


def set_threads(threads: int) -> None:
    """Cap torch's intra-op threads (0 keeps its default), so parallel sweep workers do not
    oversubscribe the cores: n workers x 1 thread on n cores rather than n x n."""
    if threads > 0:
        torch.set_num_threads(threads)


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's global generators (model initialisation uses torch's)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
