"""Where an Adam step's time goes: pinnrun's engines (torch.profiler) and DeepXDE's TensorFlow
backend (TF's own per-op step statistics), on the benchmark workload (Burgers, 8 x 20 tanh, 10k +
100 + 200 points, float32, one thread).

    python scripts/profile_step.py --steps 30 --json docs/profile_step.json
    python scripts/profile_step.py --deepxde-venv /path/to/venv-with-deepxde-and-tensorflow

Each contender's step is split into: matrix products (torch mm/addmm/bmm, TF MatMul), elementwise
and reduction kernels (aten ops, inductor's fused C++ kernels with kernel profiling on, TF's other
ops), and the rest of the step's wall-clock (autograd bookkeeping, dispatch, Python, the allocator:
what no kernel accounts for). Minor page faults per step come from getrusage. The matrix-product
share is the floor a faster step cannot go under without fewer or faster products.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from peer_venvs import DEEPXDE_PACKAGES, venv_python  # noqa: E402  scripts/peer_venvs.py, beside this script

MATMUL_TORCH = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm")
MATMUL_TF = ("MatMul", "BatchMatMulV2", "_FusedMatMul", "_MklMatMul", "_MklFusedMatMul", "_MklNativeFusedMatMul")


def minor_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def split(kernels: dict[str, float], matmul_names: tuple[str, ...], wall_ms: float, profiled_ms: float, steps: int) -> dict[str, Any]:
    """Per-step milliseconds by category from per-op self times (ms over all `steps` of the
    profiled pass, whose own step time `profiled_ms` includes the profiler's per-op cost)."""
    matmul = sum(ms for name, ms in kernels.items() if name in matmul_names) / steps
    other = sum(ms for name, ms in kernels.items() if name not in matmul_names) / steps
    top = sorted(((ms / steps, name) for name, ms in kernels.items()), reverse=True)[:12]
    return {"step_ms": wall_ms, "profiled_step_ms": profiled_ms, "matmul_ms": matmul, "other_kernels_ms": other,
            "unaccounted_ms": profiled_ms - matmul - other, "top_ops_ms": [[name, round(ms, 3)] for ms, name in top]}


def one_thread_variant(points: int, *overrides: str) -> Any:
    """A built pinnrun Burgers run at one thread that trains on with `step_ms(k)` (benchmark.py's)."""
    import torch

    from benchmark import PinnrunVariant

    torch.set_num_threads(1)
    return PinnrunVariant(Path(tempfile.mkdtemp()), f"problem.n.pde={points}", "threads=1", *overrides)


def in_fresh_process(call: str, env: Optional[dict[str, str]] = None) -> dict[str, Any]:
    """The JSON result of `profile_step.<call>` run in a new interpreter: the allocator setting and
    inductor's cache are per process."""
    out = subprocess.run([sys.executable, "-c", f"import sys, json; sys.path.insert(0, {str(HERE)!r}); import profile_step as p; "
                          f"print(json.dumps(p.{call}))"], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def profile_pinnrun(overrides: list[str], steps: int, points: int) -> dict[str, Any]:
    """torch.profiler over `steps` Adam steps of the real loop, after a warm-up (and compile)."""
    import torch._inductor.config as inductor_config
    from torch.profiler import ProfilerActivity, profile

    inductor_config.cpp.enable_kernel_profile = True  # name inductor's fused kernels in the profile
    variant = one_thread_variant(points, *overrides)
    variant.step_ms(10)
    faults = minor_faults()
    wall_ms = variant.step_ms(steps)
    faults = (minor_faults() - faults) / steps
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        profiled_ms = variant.step_ms(steps)
    kernels: dict[str, float] = {}
    for event in prof.key_averages():
        is_kernel = event.key.startswith(("aten::", "cpp_fused", "graph_")) and event.self_cpu_time_total > 0
        if is_kernel and event.key not in ("aten::empty", "aten::empty_strided", "aten::as_strided", "aten::view"):
            kernels[event.key] = event.self_cpu_time_total / 1e3
    allocation = sum(e.self_cpu_time_total for e in prof.key_averages() if e.key in ("aten::empty", "aten::empty_strided")) / 1e3
    result = split(kernels, MATMUL_TORCH, wall_ms, profiled_ms, steps)
    result.update({"faults_per_step": faults, "tensor_allocation_ms": allocation / steps,
                   "note": "step_ms: an unprofiled pass; the categories come from a second, profiled pass"})
    return result


def profile_deepxde_tf(steps: int, points: int) -> dict[str, Any]:
    """DeepXDE (tensorflow.compat.v1): per-op times from session.run's FULL_TRACE step stats."""
    import deepxde as dde
    import numpy as np
    import tensorflow as tf

    from deepxde_burgers import burgers_data

    dde.config.set_random_seed(0)
    model = dde.Model(burgers_data(dde, points), dde.nn.FNN([2] + [20] * 8 + [1], "tanh", "Glorot normal"))
    model.compile("adam", lr=1e-3)
    model.train(iterations=10, display_every=10, verbose=0)
    faults, start = minor_faults(), time.perf_counter()
    model.train(iterations=steps, display_every=steps, verbose=0)
    wall_ms = 1e3 * (time.perf_counter() - start) / steps
    faults = (minor_faults() - faults) / steps
    train_state = model.train_state
    feed = model.net.feed_dict(True, train_state.X_train, train_state.y_train, train_state.train_aux_vars)
    options = tf.compat.v1.RunOptions(trace_level=tf.compat.v1.RunOptions.FULL_TRACE)
    kernels: dict[str, float] = {}
    start = time.perf_counter()
    for _ in range(steps):
        metadata = tf.compat.v1.RunMetadata()
        model.sess.run(model.train_step, feed_dict=feed, options=options, run_metadata=metadata)
        for device in metadata.step_stats.dev_stats:
            for node in device.node_stats:
                op = node.timeline_label.split(" = ")[-1].split("(")[0] if " = " in node.timeline_label else node.node_name
                kernels[op] = kernels.get(op, 0.0) + node.op_end_rel_micros / 1e3
    result = split(kernels, MATMUL_TF, wall_ms, 1e3 * (time.perf_counter() - start) / steps, steps)
    result.update({"faults_per_step": faults, "parameters": int(np.sum([np.prod(v.shape) for v in tf.compat.v1.trainable_variables()])),
                   "note": "step_ms: an untraced pass; the categories come from a traced pass (FULL_TRACE)"})
    return result


def compiled_step_ms(allocator: str, steps: int, points: int, repeats: int = 3) -> dict[str, Any]:
    """ms per jet + compile Adam step in this process: compile time, then `repeats` timings."""
    variant = one_thread_variant(points, "engine.derivatives=jet", "engine.compile=true", f"engine.allocator={allocator}")
    start = time.perf_counter()
    variant.step_ms(5)
    compile_s = time.perf_counter() - start
    faults = minor_faults()
    samples = [variant.step_ms(steps) for _ in range(repeats)]
    return {"compile_s": compile_s, "ms": samples, "faults_per_step": (minor_faults() - faults) / (steps * repeats)}


def compile_stability(launches: int, steps: int, points: int) -> dict[str, Any]:
    """The jet + compile step in fresh processes, interleaved: inductor's cache empty (a new
    TORCHINDUCTOR_CACHE_DIR) or warm (one directory every launch reuses), each allocator."""
    warm = Path(tempfile.mkdtemp(prefix="inductor-warm-"))
    configs = [(cache, allocator) for cache in ("fresh", "warm") for allocator in ("tuned", "system")]
    results: dict[str, list] = {f"{cache} cache, {allocator} malloc": [] for cache, allocator in configs}
    for launch in range(launches):
        for cache, allocator in configs:
            cache_dir = warm if cache == "warm" else Path(tempfile.mkdtemp(prefix="inductor-fresh-"))
            env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(cache_dir), "OMP_NUM_THREADS": "1"}
            row = in_fresh_process(f"compiled_step_ms({allocator!r}, {steps}, {points})", env)
            results[f"{cache} cache, {allocator} malloc"].append(row)
            print(f"launch {launch} {cache} cache, {allocator} malloc: compile {row['compile_s']:.1f} s, "
                  f"ms/step {', '.join(f'{m:.1f}' for m in row['ms'])}, faults/step {row['faults_per_step']:.0f}", flush=True)
    summary = {}
    for name, rows in results.items():
        medians = [statistics.median_high(row["ms"]) for row in rows]
        summary[name] = {"median_ms_per_launch": medians, "spread": (max(medians) - min(medians)) / statistics.median_high(medians)}
    return {"launches": results, "summary": summary}


def deepxde_subprocess(venv: Path, steps: int, points: int) -> dict[str, Any]:
    env = {**os.environ, "DDE_BACKEND": "tensorflow.compat.v1", "OMP_NUM_THREADS": "1", "TF_NUM_INTRAOP_THREADS": "1",
           "TF_NUM_INTEROP_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    out = subprocess.run([str(venv_python(venv, DEEPXDE_PACKAGES)), __file__, "--only-deepxde-tf", "--steps", str(steps), "--points", str(points)],
                         env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--points", type=int, default=10_000)
    parser.add_argument("--deepxde-venv", type=Path, help="DeepXDE's environment (created from scripts/peer_venvs.py when missing); "
                        "without it DeepXDE is not profiled")
    parser.add_argument("--only-deepxde-tf", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--compile-launches", type=int, default=0,
                        help="also time the jet + compile step in this many launches per cache state and allocator")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.only_deepxde_tf:
        print(json.dumps(profile_deepxde_tf(args.steps, args.points)))
        return
    if args.compile_launches:
        stability = compile_stability(args.compile_launches, args.steps, args.points)
        for name, row in stability["summary"].items():
            print(f"{name}: median ms/step per launch {', '.join(f'{m:.1f}' for m in row['median_ms_per_launch'])}; spread {row['spread']:.0%}")
        if args.json:
            args.json.with_name(args.json.stem + "_compile.json").write_text(json.dumps(stability, indent=1))
    contenders = {"pinnrun autograd": [], "pinnrun jet": ["engine.derivatives=jet"],
                  "pinnrun jet+compile": ["engine.derivatives=jet", "engine.compile=true"],
                  "pinnrun jet+compile, system malloc": ["engine.derivatives=jet", "engine.compile=true", "engine.allocator=system"]}
    results: dict[str, Any] = {"load_average_start": os.getloadavg()}
    for name, overrides in contenders.items():  # each in its own process: the allocator setting is per process
        results[name] = in_fresh_process(f"profile_pinnrun({overrides!r}, {args.steps}, {args.points})")
        print(name, {k: v for k, v in results[name].items() if k != "top_ops_ms"}, flush=True)
    if args.deepxde_venv:
        results["deepxde tensorflow.compat.v1"] = deepxde_subprocess(args.deepxde_venv, args.steps, args.points)
        print("deepxde tf", {k: v for k, v in results["deepxde tensorflow.compat.v1"].items() if k != "top_ops_ms"}, flush=True)
    results["load_average_end"] = os.getloadavg()
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
