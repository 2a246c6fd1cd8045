"""Sweep bookkeeping: every job of a `pinnrun --multirun` is tagged so MLflow can group it, and one
parent run per sweep holds the sweep's summary.

`SweepCallback` (a Hydra callback, registered in conf/config.yaml under `hydra.callbacks`) runs in
the process that launches the sweep: at the start it draws a sweep id, opens the parent MLflow run
and writes both into `<hydra.sweep.dir>/sweep.json`; each job (in any process or node that sees the
sweep directory) reads that file and tags its run with `sweep_id` and `mlflow.parentRunId`, the
MLflow convention for nested runs. At the end the callback summarises the sweep's runs (the same
table `pinnrun-compare` prints, grouped by the swept keys) into the parent run and closes it. A
sweep that stops on an exception closes its parent as FAILED, with the summary of what did run.

Each job also writes its outcome (finished, or why not) to `<hydra.sweep.dir>/jobs/<num>.json`: a
job refused by its config has no MLflow run to count, and jobs may run in other processes, so the
launching process counts these files at the end. A sweep with any job that did not finish ends its
parent FAILED with a `failed_jobs` tag, says how many on stderr and exits with status 1.
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
JOBS_DIR = "jobs"  # <sweep dir>/jobs/<job num>.json: each job's outcome
FINISHED = "FINISHED"
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


def record_job_outcome(status: str, message: str = "") -> None:
    """In a sweep job: write its outcome (FINISHED, or REJECTED / FAILED / KILLED with the one-line
    reason) where the launching process counts it. Outside a sweep, nothing."""
    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return
    hydra_cfg = HydraConfig.get()
    jobs = Path(str(hydra_cfg.sweep.dir)) / JOBS_DIR
    jobs.mkdir(parents=True, exist_ok=True)
    (jobs / f"{hydra_cfg.job.num}.json").write_text(json.dumps({"status": status, "message": message}))


def job_outcomes(sweep_dir: Path) -> list[dict[str, str]]:
    """The outcomes the sweep's jobs recorded, in job order."""
    files = sorted((sweep_dir / JOBS_DIR).glob("*.json"), key=lambda path: int(path.stem))
    return [json.loads(path.read_text()) for path in files]


def failure_line(sweep_id: str, outcomes: list[dict[str, str]]) -> Optional[str]:
    """One line saying how many of the sweep's jobs did not finish, by status, with the first
    reason; None when every job finished."""
    failed = [outcome for outcome in outcomes if outcome["status"] != FINISHED]
    if not failed:
        return None
    counts: dict[str, int] = {}
    for outcome in failed:
        counts[outcome["status"]] = counts.get(outcome["status"], 0) + 1
    by_status = ", ".join(f"{n} {status.lower()}" for status, n in sorted(counts.items()))
    return f"sweep {sweep_id}: {len(failed)} of {len(outcomes)} jobs did not finish ({by_status}); first: {failed[0]['message']}"


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
        outcomes = job_outcomes(self.sweep_dir)
        failure = failure_line(str(self.sweep_id), outcomes)
        if self.parent is None:
            print(f"pinnrun: sweep {self.sweep_id} done (tracking off: no run counts, nothing to compare); "
                  f"outputs in {self.sweep_dir}", file=sys.stderr)
        failed = sum(outcome["status"] != FINISHED for outcome in outcomes)
        self.finish("FAILED" if failure else FINISHED, {"failed_jobs": str(failed), "jobs": str(len(outcomes))})
        if failure:
            print(f"pinnrun: error: {failure}", file=sys.stderr)
            sys.exit(1)

    def finish(self, status: str, tags: Optional[dict[str, str]] = None) -> None:
        """Write the summary of the sweep's runs into the parent, tag it with `tags` (the job
        counts) and end it with `status`."""
        if self.parent is None:
            return
        from pinnrun import compare, report, tracking

        runs = tracking.search_runs(self.parent.uri, filter_string=f"tags.sweep_id = '{self.sweep_id}'")
        children = runs[runs["run_id"] != self.parent.run_id]
        summary = compare.summarize(children, self.group_by)
        tracking.end_sweep_run(self.parent, status, compare.sweep_metrics(children), tags or {},
                               {"summary.md": compare.render(summary, "markdown"),
                                "summary.csv": compare.render(summary, "csv")})
        uri, experiment_id, _ = tracking.run_location(self.parent.uri, self.parent.run_id)
        statuses = {str(key): int(n) for key, n in children["status"].value_counts().items()}
        print(report.sweep_summary(str(self.sweep_id), self.sweep_dir, statuses, self.tracking_uri, (uri, experiment_id)),
              file=sys.stderr)
        self.parent = None
