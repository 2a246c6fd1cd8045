"""Adam steps/s of every backend a user could pick, each in a worker process of its own.

The contenders: pinnrun autograd, jet and jet + torch.compile, with engine.allocator=tuned (the
default) and =system; DeepXDE with its pytorch, tensorflow.compat.v1 (its default), tensorflow
(TF2) and jax backends; and a plain JAX reference step (the whole Adam step jitted, derivatives
forward-over-reverse), with glibc's default malloc and with MALLOC_MMAP_THRESHOLD_ /
MALLOC_TRIM_THRESHOLD_ at 1 GiB. Each runs scripts/benchmark_worker.py in its own interpreter
and environment; the driver starts them one at a time, warms each up (compilation and jit
included there, and timed), then in every repeat asks each worker in turn, the order rotated
by one per repeat, for the ms per step and page faults per step of `steps` Adam steps. The
1-minute load average is recorded before every repeat. Ratios are medians of per-repeat ratios
(one repeat's samples saw the same machine load). At each thread count all contenders are
measured; the workers are restarted for the next count.

Used by scripts/benchmark.py (its Adam-steps section); the arithmetic is in pure functions,
tested on hand numbers in tests/test_benchmark_race.py.
"""

from __future__ import annotations

import json
import os
import platform
import select
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

WORKER = Path(__file__).with_name("benchmark_worker.py")
DEFAULT_ENGINE = "pinnrun autograd"
"""pinnrun's default configuration: engine.derivatives=autograd, compile off, allocator tuned."""
COMPILED = "pinnrun jet+compile"
TF_FLOOR = "deepxde tensorflow"
"""The worker that replays the floor's products on TensorFlow's kernels (TF2 has eager TensorFlow)."""
GIB = str(1 << 30)
REPLY_TIMEOUT_S = 1800.0
TARGETS = (("deepxde tensorflow.compat.v1", 1.5), ("deepxde pytorch", 2.0))
"""Speed-up targets at one thread: DeepXDE's default backend (TensorFlow) and its PyTorch backend."""
SPREAD_TARGET = 0.10


@dataclass(frozen=True)
class Contender:
    """One worker: which worker kind, in which environment, with which arguments and variables."""

    name: str
    kind: str  # pinnrun | deepxde | jax (benchmark_worker.py's first argument)
    venv: str  # pinnrun | deepxde | jax
    arguments: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)

    @property
    def peer(self) -> bool:
        return self.kind != "pinnrun"


def contenders(skip_deepxde: bool = False, skip_jax: bool = False) -> list[Contender]:
    """Every contender of the race, pinnrun's first."""
    engines = {"autograd": ("--derivatives", "autograd"), "jet": ("--derivatives", "jet"),
               "jet+compile": ("--derivatives", "jet", "--compile")}
    chosen = [Contender(f"pinnrun {engine}{'' if allocator == 'tuned' else ', system malloc'}", "pinnrun", "pinnrun",
                        (*arguments, "--allocator", allocator))
              for allocator in ("tuned", "system") for engine, arguments in engines.items()]
    if not skip_deepxde:
        chosen += [Contender(f"deepxde {backend}", "deepxde", "deepxde", env={"DDE_BACKEND": backend})
                   for backend in ("pytorch", "tensorflow.compat.v1", "tensorflow")]
    if not skip_jax:
        chosen.append(Contender("deepxde jax", "deepxde", "jax", env={"DDE_BACKEND": "jax"}))
        chosen.append(Contender("jax reference", "jax", "jax"))
        chosen.append(Contender("jax reference, malloc 1 GiB", "jax", "jax",
                                env={"MALLOC_MMAP_THRESHOLD_": GIB, "MALLOC_TRIM_THRESHOLD_": GIB}))
    return chosen


def thread_env(threads: int) -> dict[str, str]:
    """Every backend's thread settings at `threads` (the worker also pins itself to that many CPUs)."""
    n = str(threads)
    eigen = "true" if threads > 1 else "false"
    return {"OMP_NUM_THREADS": n, "MKL_NUM_THREADS": n, "OPENBLAS_NUM_THREADS": n, "TF_NUM_INTRAOP_THREADS": n,
            "TF_NUM_INTEROP_THREADS": n, "XLA_FLAGS": f"--xla_cpu_multi_thread_eigen={eigen} intra_op_parallelism_threads={n}"}


CLEARED = ("DDE_BACKEND", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_ARENA_MAX", "PYTHONPATH", "XLA_FLAGS")
"""Variables the driver's own environment must not pass on to a worker."""


class WorkerFailed(RuntimeError):
    """A worker that did not start or answered a request with an error."""


class Worker:
    """A running scripts/benchmark_worker.py, spoken to in JSON lines."""

    def __init__(self, contender: Contender, python: Path, threads: int, points: Sequence[int], log_dir: Path):
        self.contender = contender
        env = {k: v for k, v in os.environ.items() if k not in CLEARED}
        env.update({"TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1", **thread_env(threads), **contender.env})
        pde, ic, bc = points
        command = [str(python), str(WORKER), contender.kind, "--threads", str(threads), "--pde", str(pde), "--ic", str(ic),
                   "--bc", str(bc), *contender.arguments]
        self.log = log_dir / f"{contender.name.replace(' ', '_').replace(',', '')}-{threads}.log"
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log.open("w"),
                                        env=env, text=True, bufsize=1)
        self.ready = self.read()

    def read(self) -> dict[str, Any]:
        stdout = self.process.stdout
        if not select.select([stdout], [], [], REPLY_TIMEOUT_S)[0]:
            self.process.kill()
            raise WorkerFailed(f"{self.contender.name}: no reply in {REPLY_TIMEOUT_S:.0f} s")
        line = stdout.readline()
        if not line:
            self.process.wait()
            raise WorkerFailed(f"{self.contender.name}: exited with {self.process.returncode}: {self.log_tail()}")
        reply = json.loads(line)
        if "error" in reply:
            raise WorkerFailed(f"{self.contender.name}: {reply['error']}")
        return reply

    def ask(self, command: str, **fields: Any) -> dict[str, Any]:
        self.process.stdin.write(json.dumps({"cmd": command, **fields}) + "\n")
        self.process.stdin.flush()
        return self.read()

    def log_tail(self, lines: int = 5) -> str:
        return " | ".join(self.log.read_text(errors="replace").strip().splitlines()[-lines:])

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                self.process.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
                self.process.stdin.close()
                self.process.wait(timeout=60)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def spread(samples: Sequence[float]) -> float:
    """(max - min) / median over the repeats."""
    return (max(samples) - min(samples)) / median(samples)


def speedup(base_ms: Sequence[float], ms: Sequence[float]) -> float:
    """How many times faster `ms` is than `base_ms`: the median of the per-repeat ratios base/ms."""
    if len(base_ms) != len(ms):
        raise ValueError(f"{len(base_ms)} base samples against {len(ms)}: the ratios pair repeats")
    return median([b / m for b, m in zip(base_ms, ms)])


def summarise(samples: Mapping[str, Sequence[float]], peers: Sequence[str], floor_ms: Optional[float] = None) -> dict[str, Any]:
    """Medians, spreads, the fastest peer (lowest median ms among `peers`) and every contender's
    speed-up over it and over each peer, and the multiple of the floor (when measured)."""
    medians = {name: median(s) for name, s in samples.items()}
    present = [p for p in peers if p in samples]
    fastest = min(present, key=medians.__getitem__) if present else None
    result: dict[str, Any] = {"ms_per_step": medians, "spread": {name: spread(s) for name, s in samples.items()},
                              "fastest_peer": fastest,
                              "speedup_vs": {peer: {name: speedup(samples[peer], s) for name, s in samples.items()} for peer in present}}
    result["speedup_vs_fastest_peer"] = result["speedup_vs"][fastest] if fastest else {}
    if floor_ms:
        result["x_floor"] = {name: ms / floor_ms for name, ms in medians.items()}
    return result


def target_lines(summary: Mapping[str, Any], pinnrun: Sequence[str]) -> list[dict[str, Any]]:
    """The issue's targets on one thread count's summary: pinnrun's default engine and its best
    engine (lowest median) against DeepXDE-TensorFlow (>= 1.5x) and DeepXDE-PyTorch (>= 2x), and
    the compiled jet step's spread across repeats (< 10 %)."""
    medians = summary["ms_per_step"]
    engines = [name for name in pinnrun if name in medians]
    lines: list[dict[str, Any]] = []
    if not engines:
        return lines
    best = min(engines, key=medians.__getitem__)
    for who in dict.fromkeys((DEFAULT_ENGINE, best)):
        if who not in medians:
            continue
        for peer, target in TARGETS:
            if peer in summary["speedup_vs"]:
                value = summary["speedup_vs"][peer][who]
                lines.append({"what": f"{who} vs {peer}", "value": value, "target": f">= {target}x", "met": value >= target})
    if COMPILED in summary["spread"]:
        value = summary["spread"][COMPILED]
        lines.append({"what": f"{COMPILED} spread across repeats", "value": value, "target": f"< {SPREAD_TARGET:.0%}",
                      "met": value < SPREAD_TARGET})
    return lines


def rotated(names: Sequence[str], repeat: int) -> list[str]:
    """The measuring order of one repeat: the list rotated by one per repeat."""
    if not names:
        return []
    k = repeat % len(names)
    return list(names[k:]) + list(names[:k])


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def one_thread_count(chosen: Sequence[Contender], pythons: Mapping[str, Path], threads: int, args: Any, log_dir: Path) -> dict[str, Any]:
    """All contenders at `threads`: start, warm up, interleaved repeats, the floor, stop."""
    workers: dict[str, Worker] = {}
    failures: dict[str, str] = {}
    record: dict[str, Any] = {"ready": {}, "warmup_s": {}, "samples_ms": {}, "minor_faults_per_step": {},
                              "major_faults_per_step": {}, "load_average": [], "order": [], "failures": failures}
    points = (args.points, args.ic, args.bc)
    try:
        for contender in chosen:
            try:
                workers[contender.name] = Worker(contender, pythons[contender.venv], threads, points, log_dir)
            except (WorkerFailed, json.JSONDecodeError) as error:
                failures[contender.name] = str(error)
                print(f"  {contender.name}: failed to start: {error}", flush=True)
                continue
            ready = workers[contender.name].ready
            record["ready"][contender.name] = ready
            print(f"  {contender.name}: {ready['params']} parameters, built in {ready['build_s']:.1f} s, "
                  f"{ready['details']}", flush=True)
        for name, worker in list(workers.items()):
            try:
                record["warmup_s"][name] = worker.ask("warmup", steps=args.warmup)["seconds"]
                print(f"  warm-up {name}: {record['warmup_s'][name]:.1f} s for {args.warmup} steps", flush=True)
            except WorkerFailed as error:
                failures[name] = str(error)
                workers.pop(name).close()
        for key in ("samples_ms", "minor_faults_per_step", "major_faults_per_step"):
            record[key] = {name: [] for name in workers}
        for repeat in range(args.repeats):
            record["load_average"].append(os.getloadavg())
            order = rotated(list(workers), repeat)
            record["order"].append(order)
            for name in order:
                try:
                    reply = workers[name].ask("time", steps=args.steps)
                except WorkerFailed as error:
                    failures[name] = str(error)
                    workers.pop(name).close()
                    for key in ("samples_ms", "minor_faults_per_step", "major_faults_per_step"):
                        record[key].pop(name)
                    continue
                record["samples_ms"][name].append(reply["ms_per_step"])
                record["minor_faults_per_step"][name].append(reply["minor_faults_per_step"])
                record["major_faults_per_step"][name].append(reply["major_faults_per_step"])
            print(f"  repeat {repeat + 1} (load {record['load_average'][-1][0]:.2f}): "
                  + ", ".join(f"{n} {s[-1]:.1f}" for n, s in record["samples_ms"].items() if s), flush=True)
        record["final_loss"] = {name: worker.ask("loss")["loss"] for name, worker in workers.items()}
        print("  loss after the race: " + ", ".join(f"{n} {v:.3g}" for n, v in record["final_loss"].items()), flush=True)
        if COMPILED in workers and args.floor_repeats:
            record["floor"] = workers[COMPILED].ask("floor", repeats=args.floor_repeats)
            print(f"  floor: {record['floor']['products']} matrix products, {record['floor']['ms']:.2f} ms", flush=True)
            if TF_FLOOR in workers:
                record["floor_tensorflow"] = workers[TF_FLOOR].ask("floor", repeats=args.floor_repeats,
                                                                   products=record["floor"]["factors"])
                print(f"  the same products on TensorFlow's kernels: {record['floor_tensorflow']['ms']:.2f} ms", flush=True)
    finally:
        for worker in workers.values():
            worker.close()
    samples = {name: s for name, s in record["samples_ms"].items() if s}
    peers = [c.name for c in chosen if c.peer]
    record["summary"] = summarise(samples, peers, record.get("floor", {}).get("ms"))
    record["summary"]["minor_faults_per_step"] = {n: median(f) for n, f in record["minor_faults_per_step"].items() if f}
    record["summary"]["major_faults_per_step"] = {n: median(f) for n, f in record["major_faults_per_step"].items() if f}
    record["targets"] = target_lines(record["summary"], [c.name for c in chosen if not c.peer])
    return record


def race(args: Any, pythons: Mapping[str, Path]) -> dict[str, Any]:
    """The race at every thread count in `args.threads`."""
    chosen = contenders(args.skip_deepxde, args.skip_jax)
    result: dict[str, Any] = {"cpu": cpu_model(), "cpus": os.cpu_count(), "platform": platform.platform(),
                              "contenders": [{"name": c.name, "kind": c.kind, "venv": str(pythons[c.venv]),
                                              "arguments": list(c.arguments), "env": dict(c.env)} for c in chosen],
                              "steps": args.steps, "repeats": args.repeats, "warmup": args.warmup,
                              "points": {"pde": args.points, "ic": args.ic, "bc": args.bc}, "threads": {}}
    with tempfile.TemporaryDirectory() as logs:
        for threads in args.threads:
            print(f"Adam steps, {threads} thread(s):", flush=True)
            started = time.perf_counter()
            result["threads"][str(threads)] = one_thread_count(chosen, pythons, threads, args, Path(logs))
            result["threads"][str(threads)]["wall_s"] = time.perf_counter() - started
    return result


def report(result: Mapping[str, Any]) -> str:
    """The race's tables, one per thread count, and the target lines."""
    lines: list[str] = []
    for threads, record in result["threads"].items():
        summary = record["summary"]
        fastest = summary["fastest_peer"]
        columns = [p for p in ("deepxde pytorch", "deepxde tensorflow.compat.v1") if p in summary["speedup_vs"]]
        head = ["contender", "ms/step", "spread", "minflt/step", "majflt/step", f"x fastest peer ({fastest})"]
        head += [f"x {p}" for p in columns] + (["x floor"] if "x_floor" in summary else [])
        rows = [head]
        for name, ms in summary["ms_per_step"].items():
            row = [name, f"{ms:.2f}", f"{summary['spread'][name]:.1%}", f"{summary['minor_faults_per_step'][name]:.0f}",
                   f"{summary['major_faults_per_step'][name]:.0f}",
                   f"{summary['speedup_vs_fastest_peer'][name]:.2f}x" if fastest else "-"]
            row += [f"{summary['speedup_vs'][p][name]:.2f}x" for p in columns]
            row += [f"{summary['x_floor'][name]:.1f}"] if "x_floor" in summary else []
            rows.append(row)
        widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
        loads = [load[0] for load in record["load_average"]]
        lines.append(f"{threads} thread(s); load average (1 min) before the repeats {min(loads, default=0):.2f}-"
                     f"{max(loads, default=0):.2f}")
        lines += ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)) for row in rows]
        if "floor" in record:
            floor = record["floor"]
            lines.append(f"floor: the {floor['products']} matrix products of one {COMPILED} step alone, {floor['ms']:.2f} ms "
                         f"({floor['gflop']:.3f} GFLOP, {floor['gflop_per_s']:.1f} GFLOP/s)")
        if "floor_tensorflow" in record:
            lines.append(f"the same products on TensorFlow's kernels (one tf.function): {record['floor_tensorflow']['ms']:.2f} ms")
        for target in record["targets"]:
            value = f"{target['value']:.1%}" if "spread" in target["what"] else f"{target['value']:.2f}x"
            lines.append(f"target: {target['what']} = {value} ({target['target']}): {'met' if target['met'] else 'missed'}")
        for name, error in record["failures"].items():
            lines.append(f"failed: {name}: {error}")
        lines.append("")
    return "\n".join(lines)

