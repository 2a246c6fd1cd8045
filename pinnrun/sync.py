"""The `pinnrun-sync <dir>` command: push what a run's tracking store did not take.

A run whose store was away at the end writes the calls it could not make (metrics, tags, params,
artifact uploads and its final status) to `<dir>/tracking_pending.json`; this sends them to the
store named there and sets the run's status, so the run no longer shows as RUNNING. Exit status 0
when everything arrived, 1 when the store still refused some (the file keeps the rest), 2 when
there is nothing to push or the store does not answer.

`pinnrun-sync --mark-stale [--tracking-uri URI] [--older-than S]` ends as KILLED every RUNNING
run whose heartbeat (a tag set at every log step) is older than S seconds (default 600): a
process killed by SIGKILL, the OOM killer or a lost node cannot mark itself.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

from pinnrun.config import ConfigError


def main(argv: Optional[Sequence[str]] = None) -> int:
    from pinnrun.tracking import STALE_AFTER_S, TrackingIncomplete, mark_stale, push_pending

    parser = argparse.ArgumentParser(prog="pinnrun-sync", description=__doc__.splitlines()[0])
    parser.add_argument("directories", nargs="*", type=Path, help="run output directories holding tracking_pending.json")
    parser.add_argument("--mark-stale", action="store_true",
                        help="end as KILLED every RUNNING run without a heartbeat for --older-than seconds (killed processes)")
    parser.add_argument("--older-than", type=float, default=STALE_AFTER_S, help="seconds without a heartbeat (default %(default)s)")
    parser.add_argument("--tracking-uri", default=None, help="the store for --mark-stale (default: MLflow's default)")
    args = parser.parse_args(argv)
    if not args.directories and not args.mark_stale:
        parser.error("give run directories to push, or --mark-stale")
    if args.mark_stale:
        try:
            marked = mark_stale(args.tracking_uri, args.older_than)
        except ConfigError as exc:
            print(f"pinnrun-sync: error: {exc}", file=sys.stderr)
            return 2
        print(f"pinnrun-sync: marked {len(marked)} stale run(s) KILLED" + (f": {', '.join(marked)}" if marked else ""),
              file=sys.stderr)
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
