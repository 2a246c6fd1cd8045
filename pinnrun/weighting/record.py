"""Per-point weights as MLflow artifacts: histograms, maps over the domain and the raw weights with
their coordinates (.npz), every `weighting.histogram_every` steps and at the end of a run."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np

from pinnrun import plots
from pinnrun.samplers.base import Points
from pinnrun.tracking import Tracker
from pinnrun.weighting.base import Weighting


class WeightRecorder:
    """Writes the weight artifacts of a per-point scheme (term-level schemes have none)."""

    def __init__(self, every: int, input_names: tuple[str, ...], directory: Path, tracker: Tracker):
        self.every = every
        self.input_names = input_names
        self.directory = directory
        self.tracker = tracker
        self.next = every
        self.last = -1

    def at_log_step(self, step: int, weighting: Weighting, points: Mapping[str, Points]) -> None:
        """Record when a histogram step has been reached (called at every log step)."""
        if self.every and step >= self.next:
            self.record(step, weighting, points)
            self.next = (step // self.every + 1) * self.every

    def record(self, step: int, weighting: Weighting, points: Mapping[str, Points]) -> None:
        """Histogram, map and .npz of the current weights, logged under `weights/`."""
        weights = {term: w.detach().double().cpu().numpy() for term, w in weighting.point_weights().items()}
        if not weights or step == self.last:
            return
        self.last = step
        coords = {term: points[term].x.detach().double().cpu().numpy() for term in weights}
        self.directory.mkdir(parents=True, exist_ok=True)
        stem = self.directory / f"step_{step:07d}"
        arrays = {}
        for term in weights:
            arrays.update({f"{term}/x": coords[term], f"{term}/ids": points[term].ids.cpu().numpy(), f"{term}/w": weights[term]})
        np.savez_compressed(f"{stem}.npz", input_names=np.array(self.input_names), **arrays)
        plots.plot_weight_histograms(weights, step, Path(f"{stem}_hist.png"))
        plots.plot_weight_map(coords, weights, self.input_names, step, Path(f"{stem}_map.png"))
        for path in [Path(f"{stem}{suffix}") for suffix in (".npz", "_hist.png", "_map.png")] + weighting.artifacts(stem):
            self.tracker.log_artifact(path, "weights")
