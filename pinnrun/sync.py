"""The `pinnrun-sync <dir>` command: push what a run's tracking store did not take.

A run whose store was away at the end writes the calls it could not make (metrics, tags, params,
artifact uploads and its final status) to `<dir>/tracking_pending.json`; this sends them to the
store named there and sets the run's status, so the run no longer shows as RUNNING. Exit status 0
when everything arrived, 1 when the store still refused some (the file keeps the rest), 2 when
there is nothing to push or the store does not answer.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

from pinnrun.config import ConfigError


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="pinnrun-sync", description=__doc__.splitlines()[0])
    parser.add_argument("directories", nargs="+", type=Path, help="run output directories holding tracking_pending.json")
    args = parser.parse_args(argv)
    from pinnrun.tracking import TrackingIncomplete, push_pending

    status = 0
    for directory in args.directories:
        try:
            print(f"pinnrun-sync: {push_pending(directory)}", file=sys.stderr)
        except ConfigError as exc:
            print(f"pinnrun-sync: error: {exc}", file=sys.stderr)
            status = max(status, 2)
        except TrackingIncomplete as exc:
            print(f"pinnrun-sync: failed: {exc}", file=sys.stderr)
            status = max(status, 1)
    return status


if __name__ == "__main__":
    sys.exit(main())
