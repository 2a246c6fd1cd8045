"""The `pinnrun` command: Hydra composes the config, `run` does the work.

Configuration errors print one line (`pinnrun: error: ...`) and exit with status 2; set
`PINNRUN_DEBUG=1` (or `hydra.verbose=true`) for the full traceback.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path
from typing import Optional

import hydra
from omegaconf import DictConfig

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


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="config")
def hydra_main(cfg: DictConfig) -> Optional[float]:
    """Run one job; the returned final rel-L2 is the objective Hydra sweepers minimise."""
    from pinnrun.engine import run

    try:
        return run(cfg)["final/l2_rel"]
    except ConfigError as exc:
        if os.environ.get("PINNRUN_DEBUG"):
            raise
        print(f"pinnrun: error: {exc}", file=sys.stderr)
        sys.exit(2)


def main() -> None:
    hydra_main()


if __name__ == "__main__":
    main()
