"""Checkpoints: everything needed to continue a run exactly, written atomically, loaded safely.

A checkpoint holds the model, every optimizer phase (with its optimizer state), the weighting
scheme's state (SA weights, moving averages, ...), the sampler's points, ids and generator, the
global RNG states, the loop's progress (step, cadences, best error, metric history), the MLflow
run id and the resolved config. It is loaded with `weights_only=True`, so no code runs from it.
"""

from __future__ import annotations

import math
import os
import random
import re
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from pinnrun.config import ConfigError, TrackingConfig

if TYPE_CHECKING:
    from pinnrun.engine import Parts

SCHEMA_VERSION = 1
CHECKPOINT = "checkpoint.pt"
PAYLOAD_KEYS = ("problem", "model", "phases", "weighting", "sampler", "rng", "progress", "config")
# What a resumed run must share with its checkpoint: the problem, network, points and scheme being
# trained, its seed and precision, and the optimizer's phases. The budget (optimizer.*.steps), the
# other optimizer settings, the cadences (train.*), outputs, tracking, device and threads may change.
RUN_DEFINING = ("problem", "model", "sampler", "weighting", "seed", "dtype", "optimizer._target_")


@dataclass
class Progress:
    """Where the training loop stands, besides the parts' own state."""

    step: int = 0
    best: float = math.inf
    next_log: int = 0
    next_eval: int = 0
    next_checkpoint: int = 0
    history: list = field(default_factory=list)
    run_id: Optional[str] = None


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
    """Load with `weights_only=True` and check that it is a pinnrun checkpoint of this schema."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises pickle, zip and runtime errors for damaged files
        raise ConfigError(f"resume={str(path)!r}: unreadable checkpoint ({type(exc).__name__})") from None
    if not isinstance(state, dict) or "schema_version" not in state:
        raise ConfigError(f"resume={str(path)!r}: not a pinnrun checkpoint (a torch file without pinnrun's schema_version)")
    if state["schema_version"] != SCHEMA_VERSION:
        raise ConfigError(f"resume={str(path)!r}: checkpoint schema version {state['schema_version']!r}, expected {SCHEMA_VERSION}")
    missing = [key for key in PAYLOAD_KEYS if key not in state]
    if missing:
        raise ConfigError(f"resume={str(path)!r}: not a pinnrun checkpoint (missing {', '.join(missing)})")
    return state


def check_same_run(state: dict[str, Any], cfg: DictConfig) -> None:
    """Refuse to continue a checkpoint under a config that changes what is trained (RUN_DEFINING):
    its state would be loaded into another problem, network, point set or scheme (a KeyError or,
    worse, a run that silently means something else). Lists every differing key."""
    from pinnrun.tracking import flatten

    saved = OmegaConf.create(state["config"])
    differing = []
    for key in RUN_DEFINING:
        before, after = OmegaConf.select(saved, key), OmegaConf.select(cfg, key)
        before, after = (flatten({key: OmegaConf.to_container(v, resolve=True) if isinstance(v, DictConfig) else v})
                         for v in (before, after))
        differing += [f"{name} ({before.get(name)!r} -> {after.get(name)!r})" for name in sorted(before.keys() | after.keys())
                      if before.get(name) != after.get(name)]
    if differing:
        raise ConfigError(f"resume: this config changes what the checkpoint trained: {'; '.join(differing)} "
                          "(only the budget, optimizer settings, train.*, output.*, tracking.*, device and threads may change)")


def checkpoint_payload(parts: Parts, cfg: DictConfig, progress: Progress) -> dict[str, Any]:
    """The state of a run at a step boundary."""
    py_version, py_state, py_gauss = random.getstate()
    _, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    return {
        "problem": parts.problem.name,
        "model": parts.model.state_dict(),
        "phases": [{"name": phase.name, **phase.state_dict()} for phase in parts.phases],
        "weighting": parts.weighting.state_dict(),
        "sampler": parts.sampler.state_dict(),
        "rng": {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": [torch.from_numpy(np_keys.astype(np.int64)), int(np_pos), int(np_has_gauss), float(np_gauss)],
            "python": [py_version, list(py_state), py_gauss],
        },
        "progress": asdict(progress),
        "config": OmegaConf.to_yaml(cfg, resolve=True),
    }


def restore(parts: Parts, state: dict[str, Any]) -> Progress:
    """Put a checkpoint's state into freshly built parts; refuse one made for another run shape."""
    if state["problem"] != parts.problem.name:
        raise ConfigError(f"resume: checkpoint is for problem {state['problem']!r}, this run is {parts.problem.name!r}")
    try:
        parts.model.load_state_dict(state["model"])
    except RuntimeError as exc:
        detail = str(exc).splitlines()[1].strip() if len(str(exc).splitlines()) > 1 else str(exc)
        raise ConfigError(f"resume: checkpoint model does not match this model config ({detail})") from None
    saved_phases = [saved["name"] for saved in state["phases"]]
    if saved_phases != [phase.name for phase in parts.phases]:
        raise ConfigError(f"resume: checkpoint phases {saved_phases} differ from this optimizer's {[p.name for p in parts.phases]}")
    for phase, saved in zip(parts.phases, state["phases"]):
        if saved["optimizer"] is not None:
            phase.start(parts.model.parameters())
        phase.load_state_dict(saved)
    parts.weighting.load_state_dict(state["weighting"])
    parts.sampler.load_state_dict(state["sampler"])
    restore_rng(state["rng"])
    return Progress(**state["progress"])


def restore_rng(rng: dict[str, Any]) -> None:
    """Global torch, CUDA, numpy and Python RNG states as they were at the checkpoint."""
    torch.set_rng_state(rng["torch"])
    if rng["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    keys, pos, has_gauss, gauss = rng["numpy"]
    np.random.set_state(("MT19937", keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, state, gauss_next = rng["python"]
    random.setstate((version, tuple(state), gauss_next))


def find_checkpoint(resume: str, tracking: TrackingConfig, out_dir: Path) -> Optional[dict[str, Any]]:
    """`resume=` names a checkpoint file, a run directory holding one, or an MLflow run id; `auto`
    continues from the output directory's own checkpoint when there is one (a requeued SLURM job
    runs again in the same directory) and starts afresh otherwise."""
    if resume == "auto":
        own = out_dir / CHECKPOINT
        return load_checkpoint(own) if own.is_file() else None
    if re.fullmatch(r"[0-9a-f]{32}", resume):
        from pinnrun.tracking import download_artifact

        downloaded = download_artifact(tracking, resume, CHECKPOINT, out_dir / "resumed")
        if downloaded is None:
            raise ConfigError(f"resume={resume!r}: no MLflow run with that id has a {CHECKPOINT} in {tracking.uri or 'the default store'}")
        return load_checkpoint(downloaded)
    path = Path(resume)
    if path.is_dir():
        path = path / CHECKPOINT
    if not path.is_file():
        raise ConfigError(f"resume={resume!r}: no such checkpoint file (give a checkpoint path, its run directory or an MLflow run id)")
    return load_checkpoint(path)
