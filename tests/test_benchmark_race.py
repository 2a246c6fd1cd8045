"""scripts/backend_race.py and scripts/benchmark_worker.py: the worker protocol on a tiny pinnrun
problem, and the race's medians, ratios and target lines on hand numbers (no timed assertions)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


race = load("backend_race")


def test_a_pinnrun_worker_times_steps_and_counts_faults(tmp_path):
    contender = race.Contender("pinnrun jet", "pinnrun", "pinnrun", ("--derivatives", "jet", "--allocator", "system"))
    worker = race.Worker(contender, Path(sys.executable), threads=1, points=(64, 8, 8), log_dir=tmp_path)
    try:
        assert worker.ready["params"] == 2 * 20 + 20 + 7 * (20 * 20 + 20) + 20 + 1  # 8 x 20 tanh, one output
        assert worker.ready["details"]["points"] == {"pde": 64, "ic": 8, "bc": 8}
        assert worker.ready["cpus"] and len(worker.ready["cpus"]) == 1
        assert worker.ask("warmup", steps=1)["seconds"] > 0
        reply = worker.ask("time", steps=2)
        assert reply["ms_per_step"] > 0 and reply["steps"] == 2
        assert isinstance(reply["minor_faults"], int) and reply["minor_faults"] >= 0
        assert isinstance(reply["major_faults"], int)
        assert reply["minor_faults_per_step"] == reply["minor_faults"] / 2
        assert worker.ask("loss")["loss"] < worker.ready["details"]["initial_loss"]  # it trains
        with pytest.raises(race.WorkerFailed, match="not one of warmup, time, loss, floor, quit"):
            worker.ask("sprint")
        assert worker.ask("time", steps=1)["ms_per_step"] > 0  # an error reply leaves the worker serving
    finally:
        worker.close()
    assert worker.process.returncode == 0


def test_a_worker_that_cannot_start_names_the_contender_and_its_error(tmp_path):
    contender = race.Contender("tortoise", "tortoise", "pinnrun")
    with pytest.raises(race.WorkerFailed, match=r"tortoise: exited with 2: .*invalid choice: 'tortoise'"):
        race.Worker(contender, Path(sys.executable), threads=1, points=(16, 4, 4), log_dir=tmp_path)


def test_ratios_are_medians_of_per_repeat_ratios():
    # repeat 2 ran under load for both: its ratio (2.0) is the same as the quiet ones'
    peer, mine = [40.0, 80.0, 42.0], [20.0, 40.0, 20.0]
    assert race.speedup(peer, mine) == pytest.approx(2.0)  # ratios 2.0, 2.0, 2.1
    assert race.speedup(peer, mine) != pytest.approx(race.median(peer) / race.median(mine))  # 42/20 = 2.1
    assert race.spread([10.0, 11.0, 12.0]) == pytest.approx(2 / 11)
    with pytest.raises(ValueError, match="pair repeats"):
        race.speedup([1.0, 2.0], [1.0])


def test_the_fastest_peer_is_the_lowest_median_among_peers_only():
    samples = {"pinnrun autograd": [30.0, 33.0, 30.0], "pinnrun jet+compile": [10.0, 10.5, 11.0],
               "deepxde pytorch": [60.0, 66.0, 60.0], "deepxde tensorflow.compat.v1": [45.0, 45.0, 50.0]}
    summary = race.summarise(samples, ["deepxde pytorch", "deepxde tensorflow.compat.v1", "jax reference"], floor_ms=5.0)
    assert summary["fastest_peer"] == "deepxde tensorflow.compat.v1"  # pinnrun's faster engine is no peer; absent peers ignored
    assert summary["speedup_vs_fastest_peer"]["pinnrun autograd"] == pytest.approx(1.5)  # 45/30, 45/33, 50/30
    assert summary["speedup_vs"]["deepxde pytorch"]["pinnrun autograd"] == pytest.approx(2.0)
    assert summary["speedup_vs_fastest_peer"]["deepxde tensorflow.compat.v1"] == 1.0
    assert summary["x_floor"]["pinnrun jet+compile"] == pytest.approx(10.5 / 5.0)
    assert summary["spread"]["pinnrun jet+compile"] == pytest.approx(1.0 / 10.5)
    lines = {line["what"]: line for line in race.target_lines(summary, ["pinnrun autograd", "pinnrun jet+compile"])}
    assert lines["pinnrun autograd vs deepxde tensorflow.compat.v1"]["met"]  # 1.5 >= 1.5
    assert lines["pinnrun autograd vs deepxde pytorch"]["met"]  # 2.0 >= 2
    assert lines["pinnrun jet+compile vs deepxde pytorch"]["value"] == pytest.approx(6.0)
    assert lines["pinnrun jet+compile spread across repeats"]["met"]  # 9.5 % < 10 %


def test_a_missed_target_reads_missed():
    samples = {"pinnrun autograd": [40.0, 40.0], "deepxde pytorch": [60.0, 60.0]}
    (line,) = race.target_lines(race.summarise(samples, ["deepxde pytorch"]), ["pinnrun autograd"])
    assert line["value"] == pytest.approx(1.5) and not line["met"]


def test_every_repeat_rotates_the_order_by_one():
    names = ["a", "b", "c"]
    assert [race.rotated(names, r) for r in range(4)] == [["a", "b", "c"], ["b", "c", "a"], ["c", "a", "b"], ["a", "b", "c"]]


def test_contenders_keep_backends_and_allocators_apart():
    every = {c.name: c for c in race.contenders()}
    assert every["deepxde tensorflow.compat.v1"].env == {"DDE_BACKEND": "tensorflow.compat.v1"}
    assert every["jax reference, malloc 1 GiB"].env["MALLOC_MMAP_THRESHOLD_"] == str(1 << 30)
    assert "--allocator" in every["pinnrun jet+compile, system malloc"].arguments
    assert not any(c.peer for c in every.values() if c.name.startswith("pinnrun"))
    assert all(c.venv != "jax" for c in race.contenders(skip_jax=True))
    assert all(c.kind == "pinnrun" for c in race.contenders(skip_deepxde=True, skip_jax=True))
    assert race.thread_env(2)["XLA_FLAGS"].endswith("intra_op_parallelism_threads=2")
