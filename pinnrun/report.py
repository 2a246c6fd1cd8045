"""What a run and a sweep tell the person who started them: progress while training, a closing
summary at the end.

On a terminal, training shows tqdm's bar (on stderr). When stdout is not a terminal (a batch job,
`make run > log`) there is no bar to watch, so progress also goes out as plain lines through the
`pinnrun` logger, which Hydra sends to stdout and the job's log file: one every `PROGRESS_PERCENT`
of the steps or every `PROGRESS_SECONDS`, whichever comes first. The closing summaries go to stderr.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Mapping, Optional, TextIO

from tqdm.auto import tqdm

from pinnrun.tracking import RUNS_VIEW_KEY

LOG = logging.getLogger("pinnrun")
PROGRESS_PERCENT = 10.0
PROGRESS_SECONDS = 60.0
UI_ADDRESS = "http://127.0.0.1:5000"  # where `mlflow ui` serves by default
ML_VIEW = "workflowType=machine_learning"  # MLflow 3's model-training view rather than GenAI's


class RunProgress:
    """The loop's progress display, with tqdm's interface (`update`, `set_postfix`, `close`):
    tqdm's bar when stderr is a terminal, plus plain log lines when stdout is not one."""

    def __init__(self, total: int, initial: int, name: str, enabled: bool, stdout: Optional[TextIO] = None) -> None:
        self.bar = tqdm(total=total, initial=initial, disable=None if enabled else True, dynamic_ncols=True, desc=name)
        self.lines = enabled and not is_terminal(stdout or sys.stdout)
        self.total, self.initial, self.step, self.name = total, initial, initial, name
        self.postfix: dict[str, Any] = {}
        self.started = self.written = time.monotonic()
        self.next_percent = next_threshold(100.0 * initial / max(total, 1))

    def update(self, steps: int) -> None:
        self.bar.update(steps)
        self.step += steps
        percent = 100.0 * self.step / max(self.total, 1)
        now = time.monotonic()
        if self.lines and (percent >= self.next_percent or now - self.written >= PROGRESS_SECONDS):
            LOG.info(self.line(now))
            self.written, self.next_percent = now, next_threshold(percent)

    def set_postfix(self, **values: Any) -> None:
        self.bar.set_postfix(**values)
        self.postfix = values

    def close(self) -> None:
        self.bar.close()

    def line(self, now: float) -> str:
        """`burgers: step 1200/6000 (20%), 45 s, about 180 s left, loss=1.2e-03 l2=3.4e-02`."""
        elapsed = now - self.started
        text = f"{self.name}: step {self.step}/{self.total} ({100.0 * self.step / max(self.total, 1):.0f}%), {elapsed:.0f} s"
        if self.step > self.initial:
            text += f", about {elapsed / (self.step - self.initial) * max(self.total - self.step, 0):.0f} s left"
        values = " ".join(f"{key}={value}" for key, value in self.postfix.items())
        return f"{text}, {values}" if values else text


def next_threshold(percent: float) -> float:
    """The next multiple of PROGRESS_PERCENT above `percent`."""
    return (percent // PROGRESS_PERCENT + 1) * PROGRESS_PERCENT


def is_terminal(stream: TextIO) -> bool:
    """Whether a stream is an interactive terminal (a closed or replaced stream is not)."""
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def command(name: str) -> str:
    """How to call one of this environment's commands: its bare name when that is what PATH
    finds, else its path (`.venv/bin/mlflow` before the environment is activated)."""
    path = Path(sys.executable).parent / name
    if not path.exists() or shutil.which(name) == str(path):
        return name
    return display_path(path)


def display_path(path: Path) -> str:
    """A path relative to the working directory when it lies below it, else absolute."""
    absolute = Path(os.path.abspath(path))
    try:
        return str(absolute.relative_to(Path.cwd()))
    except ValueError:
        return str(absolute)


def duration(seconds: float) -> str:
    """`42 s`, `4 min 52 s`, `1 h 03 min`."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def browse_hint(uri: str, experiment_id: str, run_id: Optional[str] = None) -> list[str]:
    """How to look at an experiment's runs table (pinnrun's view: final metrics and options, best
    first) and one run in MLflow's UI: the addresses on a tracking server; for a local store, the
    `mlflow ui` command for it first."""
    server = uri.rstrip("/") if uri.startswith(("http://", "https://")) else UI_ADDRESS
    lines = [] if server != UI_ADDRESS else [f"{command('mlflow')} ui --backend-store-uri {uri}   then open"]
    if experiment_id:
        page = f"{server}/#/experiments/{experiment_id}/runs"
        lines.append(f"{page}?viewStateShareKey={RUNS_VIEW_KEY}&{ML_VIEW}   (the runs table)")
        if run_id:
            lines.append(f"{page}/{run_id}?{ML_VIEW}   (this run)")
    return lines


def run_summary(run_name: str, final: Mapping[str, float], best: float, wall_s: Optional[float], out_dir: Path,
                experiment: str, location: Optional[tuple[str, str, str]]) -> str:
    """The closing lines of a finished run: result, output directory, MLflow run and how to see it.

    `location` is (tracking URI, experiment id, run id), None when tracking is off."""
    best = min(best, final["final/l2_rel"])
    since = f", {duration(wall_s)} since start" if wall_s is not None else ""
    lines = [f"pinnrun: finished {run_name}: rel-L2 {final['final/l2_rel']:.3e} (best {best:.3e}), "
             f"{final['final/steps']:.0f} steps, {duration(final['final/time_s'])} training{since}",
             f"  output: {display_path(out_dir)}"]
    if location is None:
        lines.append("  MLflow: off (tracking.enabled=false)")
    else:
        uri, experiment_id, run_id = location
        lines.append(f"  MLflow: experiment {experiment!r} (id {experiment_id}), run {run_id}, in {uri}")
        lines += indented("  browse: ", browse_hint(uri, experiment_id, run_id))
    return "\n".join(lines)


def sweep_summary(sweep_id: str, sweep_dir: Path, statuses: Mapping[str, int], tracking_uri: Optional[str],
                  location: tuple[str, str]) -> str:
    """The closing lines of a sweep: its runs by final status and the command that compares them.

    `statuses` counts the sweep's MLflow runs by status (FINISHED, FAILED, KILLED, ...),
    `tracking_uri` is the configured one (None: the default store) and `location` is (tracking
    URI, experiment id) of the sweep's parent run."""
    counts = ", ".join(f"{statuses[status]} {status.lower()}" for status in sorted(statuses)) or "no runs"
    store = f" --tracking-uri {location[0]}" if tracking_uri else ""
    return "\n".join([f"pinnrun: sweep {sweep_id}: {counts}; outputs in {display_path(sweep_dir)}",
                      f"  compare: {command('pinnrun-compare')}{store} --sweep {sweep_id}",
                      *indented("  browse:  ", browse_hint(*location))])


def indented(label: str, lines: list[str]) -> list[str]:
    """`label` before the first line, the others aligned under it."""
    return [(label if i == 0 else " " * len(label)) + line for i, line in enumerate(lines)]
