"""Checkpoints: everything needed to continue or inspect a run, written atomically."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

SCHEMA_VERSION = 1


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write to a temporary file in the same directory, then rename: never a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(handle)
    try:
        torch.save({"schema_version": SCHEMA_VERSION, **payload}, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load with `weights_only=True` (no code runs from the file) and check its schema version."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    version = state.get("schema_version") if isinstance(state, dict) else None
    if version != SCHEMA_VERSION:
        raise ValueError(f"checkpoint {path}: schema version {version!r}, expected {SCHEMA_VERSION}")
    return state
