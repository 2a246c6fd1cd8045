"""Compare option sets side by side over seeds: final relative L2 error, mean +- std.

    python scripts/compare_options.py --common "problem=burgers optimizer=adam optimizer.steps=3000" \
        "sampler=random" "sampler=rad sampler.resample_every=500" --seeds 0 1 2

Each option set (a string of Hydra overrides) runs once per seed through `pinnrun.engine.run`
with tracking and checkpoints off, on one CPU thread; one line per run, then a summary per set.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import tempfile

import torch
from hydra import compose, initialize_config_dir

from pinnrun.cli import config_dir
from pinnrun.engine import run

QUIET = ["tracking.enabled=false", "output.checkpoint=false", "output.plots=false", "output.prediction=false",
         "train.progress=false"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("option_sets", nargs="+", help="Hydra overrides per option set, one quoted string each")
    parser.add_argument("--common", default="", help="overrides shared by every run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    torch.set_num_threads(1)
    summary = {}
    for option_set in args.option_sets:
        errors = []
        for seed in args.seeds:
            with tempfile.TemporaryDirectory() as out, initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
                overrides = QUIET + [f"output.dir={out}", f"seed={seed}"] + shlex.split(args.common) + shlex.split(option_set)
                final = run(compose("config", overrides=overrides))
            errors.append(final["final/l2_rel"])
            print(json.dumps({"set": option_set, "seed": seed, **final}), flush=True)
        summary[option_set] = (statistics.mean(errors), statistics.stdev(errors) if len(errors) > 1 else 0.0)
    for option_set, (mean, std) in summary.items():
        print(f"{mean:.3e} +- {std:.3e}  {option_set}")


if __name__ == "__main__":
    main()
