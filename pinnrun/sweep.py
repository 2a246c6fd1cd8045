"""Sweep bookkeeping: every job of a `pinnrun --multirun` is tagged so MLflow can group it, and one
parent run per sweep holds the sweep's summary.

`SweepCallback` (a Hydra callback, registered in conf/config.yaml under `hydra.callbacks`) runs in
the process that launches the sweep: at the start it draws a sweep id, opens the parent MLflow run
and writes both into `<hydra.sweep.dir>/sweep.json`; each job (in any process or node that sees the
sweep directory) reads that file and tags its run with `sweep_id` and `mlflow.parentRunId`, the
MLflow convention for nested runs. At the end the callback summarises the sweep's runs (the same
table `pinnrun-compare` prints, grouped by the swept keys) into the parent run and closes it. A
sweep that stops on an exception closes its parent as FAILED, with the summary of what did run.
"""

from __future__ import annotations

import atexit
import json
import secrets
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence

from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from pinnrun.config import GROUPS, TrackingConfig

if TYPE_CHECKING:
    from pinnrun.tracking import SweepRun

SWEEP_FILE = "sweep.json"
SWEEP_EXPERIMENT = "pinnrun-sweeps"  # the parent's experiment when the sweep spans problems
UNGROUPED_KEYS = ("seed",)  # swept keys the summary averages over rather than groups by


def parse_overrides(overrides: Sequence[str]) -> list[tuple[str, str, bool]]:
    """(key, value as written, is a sweep) of each command-line override; `+`/`~` prefixes dropped
    and the value of a sweep (a,b / range(...)) left empty."""
    parsed = OverridesParser.create().parse_overrides(list(overrides))
    return [(o.key_or_group, "" if o.is_sweep_override() else o.get_value_element_as_str(), o.is_sweep_override())
            for o in parsed]


def override_tags(overrides: Sequence[str]) -> dict[str, str]:
    """`override/<key>` -> value for the fixed (non-sweep) overrides, e.g. override/optimizer.lr = 0.003."""
    return {f"override/{key}": value for key, value, is_sweep in parse_overrides(overrides) if not is_sweep}


def tag_for_key(key: str) -> str:
    """The run tag that carries a swept key: group choices are tagged by name, others as overrides."""
    return key if key in GROUPS else f"override/{key}"


def sweep_tags() -> dict[str, str]:
    """Tags for the current Hydra job: its overrides and config choices; in a sweep also
    `sweep_id`, `sweep_job` and, when the sweep has a parent run, `mlflow.parentRunId`."""
    if not HydraConfig.initialized():
        return {}
    hydra_cfg = HydraConfig.get()
    tags = override_tags(hydra_cfg.overrides.task)
    tags.update({group: str(choice) for group, choice in hydra_cfg.runtime.choices.items()
                 if choice is not None and not group.startswith("hydra/") and group not in GROUPS})
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return tags
    sweep_dir = Path(str(hydra_cfg.sweep.dir))
    info = read_sweep_file(sweep_dir)
    tags["sweep_id"] = info.get("sweep_id") or str(sweep_dir)
    tags["sweep_job"] = str(hydra_cfg.job.num)
    if info.get("parent_run_id"):
        tags["mlflow.parentRunId"] = info["parent_run_id"]
    return tags


def read_sweep_file(sweep_dir: Path) -> dict[str, str]:
    """The sweep's id and parent run, or {} where the launching process wrote none (e.g. a remote
    node without the sweep directory: jobs then use the sweep directory as their sweep id)."""
    path = sweep_dir / SWEEP_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def new_sweep_id() -> str:
    """A short, sortable, unique id: launch time plus random hex."""
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"


def swept_keys(config: DictConfig) -> list[str]:
    """Keys that vary across the sweep: command-line sweeps (a,b / range / choice) and the
    sweeper's `params` (presets and the Optuna search space)."""
    keys = [key for key, _, is_sweep in parse_overrides(config.hydra.overrides.task) if is_sweep]
    params = OmegaConf.select(config, "hydra.sweeper.params") or {}
    return list(dict.fromkeys([*keys, *(str(key).lstrip("+~") for key in params)]))


def summary_group_by(swept: Sequence[str]) -> list[str]:
    """The parent's summary groups by problem x weighting and every other swept key but the seed."""
    extra = [tag_for_key(key) for key in swept if key not in UNGROUPED_KEYS and key not in ("problem", "weighting")]
    return ["problem", "weighting", *extra]


class SweepCallback(Callback):
    """Opens the sweep's parent MLflow run before the jobs launch and fills and closes it after."""

    def __init__(self) -> None:
        self.sweep_id: Optional[str] = None
        self.parent: Optional["SweepRun"] = None
        self.group_by: list[str] = []
        self.sweep_dir = Path("multirun")
        self.tracking_uri: Optional[str] = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from pinnrun import tracking

        sweep_dir = Path(str(config.hydra.sweep.dir)).absolute()
        sweep_dir.mkdir(parents=True, exist_ok=True)
        self.sweep_id = new_sweep_id()
        swept = swept_keys(config)
        self.group_by = summary_group_by(swept)
        track = TrackingConfig(**OmegaConf.to_container(config.tracking, resolve=True))
        self.sweep_dir, self.tracking_uri = sweep_dir, track.uri
        info = {"sweep_id": self.sweep_id, "sweep_dir": str(sweep_dir)}
        if track.enabled:
            problem_swept = "problem" in swept
            experiment = track.experiment or (SWEEP_EXPERIMENT if problem_swept else str(config.hydra.runtime.choices.problem))
            overrides = list(config.hydra.overrides.task)
            self.parent = tracking.start_sweep_run(
                track, experiment, f"sweep-{self.sweep_id}",
                tags={"sweep_id": self.sweep_id, "sweep_role": "parent", "swept": ",".join(swept),
                      "sweep_dir": str(sweep_dir), **override_tags(overrides)},
                params={"overrides": " ".join(overrides), "launcher": config.hydra.runtime.choices.get("hydra/launcher"),
                        "sweeper": config.hydra.runtime.choices.get("hydra/sweeper")},
            )
            info["parent_run_id"] = self.parent.run_id
        (sweep_dir / SWEEP_FILE).write_text(json.dumps(info, indent=2))
        atexit.register(self.finish, "FAILED")

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        atexit.unregister(self.finish)
        if self.parent is None:
            print(f"pinnrun: sweep {self.sweep_id} done (tracking off: no run counts, nothing to compare); "
                  f"outputs in {self.sweep_dir}", file=sys.stderr)
        self.finish("FINISHED")

    def finish(self, status: str) -> None:
        """Write the summary of the sweep's runs into the parent and end it with `status`."""
        if self.parent is None:
            return
        from pinnrun import compare, report, tracking

        runs = tracking.search_runs(self.parent.uri, filter_string=f"tags.sweep_id = '{self.sweep_id}'")
        children = runs[runs["run_id"] != self.parent.run_id]
        summary = compare.summarize(children, self.group_by)
        tracking.end_sweep_run(self.parent, status, compare.sweep_metrics(children),
                               {"summary.md": compare.render(summary, "markdown"),
                                "summary.csv": compare.render(summary, "csv")})
        uri, experiment_id, _ = tracking.run_location(self.parent.uri, self.parent.run_id)
        statuses = {str(key): int(n) for key, n in children["status"].value_counts().items()}
        print(report.sweep_summary(str(self.sweep_id), self.sweep_dir, statuses, self.tracking_uri, (uri, experiment_id)),
              file=sys.stderr)
        self.parent = None
