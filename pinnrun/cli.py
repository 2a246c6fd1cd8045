"""The `pinnrun` command: Hydra composes the config, `run` does the work.

Configuration errors print one line (`pinnrun: error: ...`) and exit with status 2; a run that
trained but could not record everything in its tracking store exits 3 with one line naming its
output directory (`pinnrun-sync <dir>` pushes the rest later). Set `PINNRUN_DEBUG=1` (or
`hydra.verbose=true`) for the full traceback.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import sys
import warnings
from pathlib import Path
from typing import Iterator, Optional, Sequence

import hydra
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from pinnrun.config import ConfigError, nearest_existing, register_schemas, unwritable


def config_dir() -> str:
    """The shipped config: `pinnrun/conf` in an installed wheel, `conf/` beside the package in a checkout."""
    package = Path(__file__).resolve().parent
    shipped = package / "conf"
    return str(shipped if shipped.is_dir() else package.parent / "conf")


FRESH: dict[str, str] = {}  # base -> the directory fresh_directory created for it in this process


def fresh_directory(base: str) -> str:
    """`base`, else `base-2`, `base-3`, ...: the first that did not exist, created here. mkdir is
    atomic, so two runs (or sweeps) started in the same second never share an output directory.
    The same base gives the same answer within one process, however often Hydra resolves it."""
    key = os.path.abspath(base)
    if key not in FRESH:
        Path(base).parent.mkdir(parents=True, exist_ok=True)
        for suffix in ("", *(f"-{n}" for n in range(2, 10_000))):
            try:
                Path(base + suffix).mkdir()
            except FileExistsError:
                continue
            FRESH[key] = base + suffix
            break
    return FRESH[key]


register_schemas()
OmegaConf.register_new_resolver("pinnrun.fresh_dir", fresh_directory, replace=True)
# conf/hydra/launcher/*.yaml set pinnrun's defaults for the launcher plugins' schemas of the same
# name; Hydra 1.3 merges them as intended but warns that the matching is deprecated.
warnings.filterwarnings("ignore", message=r"\n'hydra/launcher/\w+' is validated against ConfigStore schema", category=UserWarning)


def exit_status(exc: BaseException) -> tuple[str, int]:
    """The label and exit code of an error pinnrun reports in one line, without a traceback:
    2 a config error, 130 interrupted, 3 trained but the tracking store did not take everything,
    1 any other failure of the run."""
    from pinnrun.tracking import TrackingIncomplete

    if isinstance(exc, ConfigError):
        return "error", 2
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted", 130
    return "failed", 3 if isinstance(exc, TrackingIncomplete) else 1


JOB_STATUS = {"error": "REJECTED", "failed": "FAILED", "interrupted": "KILLED"}  # exit_status label -> a sweep job's outcome


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="config")
def hydra_main(cfg: DictConfig) -> Optional[float]:
    """Run one job; the returned final rel-L2 is the objective Hydra sweepers minimise.

    In a sweep, a job whose run failed returns NaN so that the sweep carries on. A job stopped by a
    signal exits as a single run does (status 130, no result): a scheduler that requeues it (SLURM)
    runs it again, and a sweep on this machine stops with it."""
    from pinnrun.engine import NonFiniteLossError, run
    from pinnrun.runtime import RunInterrupted, pass_on
    from pinnrun.sweep import FINISHED, record_job_outcome
    from pinnrun.tracking import TrackingIncomplete

    try:
        final = run(cfg)["final/l2_rel"]
    except (ConfigError, NonFiniteLossError, TrackingIncomplete, KeyboardInterrupt) as exc:
        if os.environ.get("PINNRUN_DEBUG"):
            raise
        label, code = exit_status(exc)
        message = str(exc) or "stopped at once by a second signal (the last checkpoint is the last periodic one)"
        print(f"pinnrun: {label}: {message}", file=sys.stderr)
        if isinstance(exc, ConfigError):
            remove_unused_output_dir()
        record_job_outcome(JOB_STATUS[label], f"{label}: {message}")
        if isinstance(exc, RunInterrupted):
            pass_on(exc.signum)  # a launcher's handler may exit here: submitit's requeues the job
        if HydraConfig.get().mode == RunMode.MULTIRUN and not isinstance(exc, KeyboardInterrupt):
            return math.nan  # the sweep carries on (and counts this job); the run itself is marked FAILED
        sys.exit(code)  # a stopped job leaves no result: a scheduler that requeues it runs it again, a sweep here stops
    record_job_outcome(FINISHED)
    return final


def remove_unused_output_dir() -> None:
    """After a configuration error, remove the job's output directory if it holds only what Hydra
    wrote before the job started (`.hydra/` and the job's log), and the parents that leaves empty
    below the working directory: a typo leaves no `outputs/<date>/<time>/` behind. A directory with
    anything else in it, the working directory and those above it are kept."""
    hydra_cfg = HydraConfig.get()
    out = Path(hydra_cfg.runtime.output_dir).absolute()
    cwd = Path.cwd().absolute()
    hydra_files = {str(hydra_cfg.output_subdir), f"{hydra_cfg.job.name}.log"}
    if out == cwd or out in cwd.parents or not out.is_dir() or any(path.name not in hydra_files for path in out.iterdir()):
        return
    shutil.rmtree(out)
    for parent in out.parents:
        if parent == cwd or cwd not in parent.parents or any(parent.iterdir()):
            break
        parent.rmdir()


SWEEP_FLAGS = ("--multirun", "-m")


def precheck(args: list[str]) -> Optional[str]:
    """Compose the config the way Hydra will, and turn a composition error into one line.

    Hydra prints composition errors over several lines with its search path; users get one line
    naming the bad override and what is allowed. Under `--multirun` every value of every swept key
    is composed (with the other keys at their first value) and its values checked, so a typo
    anywhere in a sweep stops it before the launcher starts or any MLflow run exists. Other Hydra
    flags (`--cfg`, `--help`, ...) are left to Hydra.
    """
    multirun = any(arg in SWEEP_FLAGS for arg in args)
    overrides = [arg for arg in args if arg not in SWEEP_FLAGS]
    if any(arg.startswith("-") for arg in overrides):
        return None
    unusable = unwritable_run_dir(overrides, "hydra.sweep.dir" if multirun else "hydra.run.dir")
    if unusable:
        return unusable
    if multirun:
        from pinnrun.engine import check_values  # imports torch, which a sweep's jobs import anyway
    try:
        with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
            for variant in sweep_variants(overrides) if multirun else [overrides]:
                cfg = compose("config", overrides=variant)
                if multirun:  # a single run checks its values itself; the device is checked where a job lands
                    check_values(cfg)
    except (HydraException, OmegaConfBaseException, yaml.YAMLError) as exc:
        return describe_compose_error(exc, overrides)
    except ConfigError as exc:
        return str(exc)
    return None


def unwritable_run_dir(overrides: Sequence[str], key: str) -> Optional[str]:
    """One line when the job's directory cannot be created: the `key=<dir>` of the command line,
    else the default under the working directory (a read-only one). Hydra creates it before the
    job starts, and would fail with a traceback."""
    value = next((arg.split("=", 1)[1] for arg in overrides if arg.startswith(f"{key}=")), None)
    start = nearest_existing(Path((value or "").split("${", 1)[0] or "."))
    reason = "not a directory" if not start.is_dir() else unwritable(start)
    if not reason:
        return None
    if value is None:
        return f"working directory {start}: not writable ({reason}), and Hydra's outputs go there; run from a writable directory or set {key}"
    return f"{key}={value!r}: cannot create it ({reason} at {start})"


def sweep_variants(overrides: Sequence[str]) -> Iterator[list[str]]:
    """Single-run override lists that between them use every value of every choice or range sweep
    (`a,b`, `range(5)`): the first values together, then each further value of one key alone.
    Sweeps that cannot be listed without the sweeper (`glob`, `interval`) keep their default here."""
    fixed: list[str] = []
    swept: list[tuple[str, list[str]]] = []
    for override in OverridesParser.create().parse_overrides(list(overrides)):
        if not override.is_sweep_override():
            fixed.append(override.input_line)
            continue
        try:
            swept.append((override.get_key_element(), list(override.sweep_string_iterator())))
        except HydraException:
            continue
    first = [f"{key}={values[0]}" for key, values in swept if values]
    yield fixed + first
    for index, (key, values) in enumerate(swept):
        for value in values[1:]:
            yield fixed + [*first[:index], f"{key}={value}", *first[index + 1:]]


def describe_compose_error(exc: Exception, overrides: Sequence[str] = ()) -> str:
    """One line for a Hydra/OmegaConf/YAML composition error (and the error that caused it);
    `overrides` are the command line's, to name the value of an override Hydra does not quote."""
    text = f"{exc}\n{exc.__cause__ or ''}"
    missing = re.search(r"Could not find '([^']+)/([^']+)'", text)
    if missing:
        group, option = missing.groups()
        available = re.findall(r"^\t(\S+)$", text.split("Available options", 1)[-1], flags=re.M)
        allowed = ", ".join(available) if available else "see pinnrun --help"
        prefix = "+experiment" if group == "experiment" else group
        return f"{prefix}={option}: no such option; available: {allowed}"
    value = re.search(r"Value '(.*?)'.*?(?:could not be converted to|is not a valid) (\w+)", text)
    key = re.search(r"full_key: (\S+)", text)
    if value and key:
        return f"{key.group(1)}={value.group(1)!r}: expected {value.group(2).lower()}"
    override = re.search(r"Could not override '([^']+)'", text)
    append = re.search(r"To append to your config use (\S+)", text)
    if override and append and key and key.group(1).startswith(override.group(1) + "."):  # the key exists, its new entry not
        return f"{override.group(1)}: new entries of a mapping are added with '+': {append.group(1)}"
    if override and (Path(config_dir()) / override.group(1)).is_dir():  # a group outside the defaults list
        group = override.group(1)
        value = next((arg.split("=", 1)[1] for arg in overrides if arg.startswith(f"{group}=")), "<option>")
        return f"{group}={value}: {group} has no default, so it is added with '+': +{group}={value}"
    if override:
        return f"{override.group(1)}: unknown key (check the spelling with pinnrun --cfg job)"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return " ".join(lines[:2]) if lines else type(exc).__name__


def main() -> None:
    problem = precheck(sys.argv[1:])
    if problem is not None:
        print(f"pinnrun: error: {problem}", file=sys.stderr)
        sys.exit(2)
    hydra_main()


if __name__ == "__main__":
    main()
