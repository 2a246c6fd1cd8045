"""The `pinnrun` command: Hydra composes the config, `run` does the work.

Configuration errors print one line (`pinnrun: error: ...`) and exit with status 2; set
`PINNRUN_DEBUG=1` (or `hydra.verbose=true`) for the full traceback.
"""

from __future__ import annotations

import math
import os
import re
import sys
import warnings
from pathlib import Path
from typing import Optional

import hydra
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException
from hydra.types import RunMode
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from pinnrun.config import ConfigError, register_schemas


def config_dir() -> str:
    """The shipped config: `pinnrun/conf` in an installed wheel, `conf/` beside the package in a checkout."""
    package = Path(__file__).resolve().parent
    shipped = package / "conf"
    return str(shipped if shipped.is_dir() else package.parent / "conf")


register_schemas()
# conf/hydra/launcher/*.yaml set pinnrun's defaults for the launcher plugins' schemas of the same
# name; Hydra 1.3 merges them as intended but warns that the matching is deprecated.
warnings.filterwarnings("ignore", message=r"\n'hydra/launcher/\w+' is validated against ConfigStore schema", category=UserWarning)


def exit_status(exc: BaseException) -> tuple[str, int]:
    """The label and exit code of an error pinnrun reports in one line, without a traceback."""
    if isinstance(exc, ConfigError):
        return "error", 2
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted", 130
    return "failed", 1


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="config")
def hydra_main(cfg: DictConfig) -> Optional[float]:
    """Run one job; the returned final rel-L2 is the objective Hydra sweepers minimise."""
    from pinnrun.engine import NonFiniteLossError, run
    from pinnrun.runtime import RunInterrupted

    try:
        return run(cfg)["final/l2_rel"]
    except (ConfigError, NonFiniteLossError, RunInterrupted) as exc:
        if os.environ.get("PINNRUN_DEBUG"):
            raise
        label, code = exit_status(exc)
        print(f"pinnrun: {label}: {exc}", file=sys.stderr)
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            return math.nan  # the sweep carries on; the run itself is marked FAILED or KILLED
        sys.exit(code)


def precheck(args: list[str]) -> Optional[str]:
    """Compose the config the way Hydra will, and turn a composition error into one line.

    Hydra prints composition errors over several lines with its search path; users get one line
    naming the bad override and what is allowed. Sweeps (`--multirun`) and Hydra's own flags are
    left to Hydra, which expands them.
    """
    if any(arg.startswith("-") for arg in args):
        return None
    try:
        with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
            compose("config", overrides=args)
    except (HydraException, OmegaConfBaseException, yaml.YAMLError) as exc:
        return describe_compose_error(exc)
    return None


def describe_compose_error(exc: Exception) -> str:
    """One line for a Hydra/OmegaConf/YAML composition error (and the error that caused it)."""
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
