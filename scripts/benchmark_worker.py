"""One contender of scripts/benchmark.py's Adam-step race, in a process of its own.

scripts/benchmark.py starts one worker per contender, each with its own interpreter (pinnrun's
environment, DeepXDE's, JAX's) and environment variables (DDE_BACKEND, thread counts, malloc
thresholds), so backends and process-wide allocator settings never mix:

    python scripts/benchmark_worker.py {pinnrun,deepxde,jax} [--derivatives jet --compile ...]

The problem is the same for every contender: Burgers u_t + u u_x - (0.01/pi) u_xx = 0 on
[-1, 1] x [0, 1], u(x, 0) = -sin(pi x), u(+-1, t) = 0; an 8 x 20 tanh MLP (Glorot normal),
float32, `--pde` collocation, `--ic` initial and `--bc` boundary points, Adam lr 1e-3, loss the sum
of the three mean squared residuals. A timed sample is `steps` Adam steps of the contender's own
training step, one host sync at the end, and nothing else: pinnrun's loop step (residuals,
weighting, backward, Adam), DeepXDE's `_train_sgd` step (`Model._train_step`, without the loss
evaluations `Model.train` adds at its start and end), the plain JAX step (one jitted function).

The protocol is JSON lines: the worker answers its start with one line (`ready`: parameter count,
versions, build seconds) and then reads one request per line from stdin and writes one reply per
line, on a copy of the original stdout; the libraries' own prints go to stderr.

    {"cmd": "warmup", "steps": 10}  -> {"seconds": 4.1}                 (compilation included)
    {"cmd": "time", "steps": 50}    -> {"ms_per_step": 41.2, "minor_faults_per_step": 3.1,
                                        "major_faults_per_step": 0.0, "minor_faults": 155, ...}
    {"cmd": "loss"}                 -> {"loss": 0.21}                   (the total loss now)
    {"cmd": "floor", "repeats": 20} -> the matrix products of one step timed alone (pinnrun), or
                                       those of "products" on TensorFlow's kernels (DeepXDE TF2)
    {"cmd": "quit"}

Faults are resource.getrusage(RUSAGE_SELF) ru_minflt / ru_majflt deltas over the sample (all of
the process's threads). Only the pinnrun contender imports pinnrun; the others need numpy, their
backend and (DeepXDE) scripts/deepxde_burgers.py beside this file.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from typing import Any, Callable, Optional, TextIO

import numpy as np

NU = 0.01 / np.pi
WIDTH, DEPTH = 20, 8


class Contender:
    """What every worker offers the driver."""

    params: int
    details: dict[str, Any]

    def steps(self, count: int) -> None:
        """`count` Adam steps, synchronised at the end."""
        raise NotImplementedError

    def loss(self) -> float:
        """The total loss at the current parameters (after the race: did every contender train?)."""
        raise NotImplementedError

    def floor(self, repeats: int, products: Optional[list] = None) -> dict[str, Any]:
        raise ValueError(f"{type(self).__name__} has no floor measurement (the pinnrun and DeepXDE tensorflow workers have)")


class Pinnrun(Contender):
    """pinnrun's Adam step as its training loop runs it (pinnrun.engine.train's closure and
    phase.advance), on the run `build` makes from the config."""

    def __init__(self, args: argparse.Namespace):
        import torch
        from hydra import compose, initialize_config_dir

        from pinnrun.cli import config_dir
        from pinnrun.engine import build, on_device, residual_function, validate

        self.out = tempfile.TemporaryDirectory()
        overrides = ["problem=burgers", "model=mlp", f"model.depth={DEPTH}", f"model.width={WIDTH}", "model.activation=tanh",
                     "model.init=glorot_normal", "model.normalize_inputs=false", "optimizer=adam", "optimizer.lr=1e-3",
                     f"optimizer.steps={10**9}", "dtype=float32", "device=cpu", f"threads={args.threads}", "seed=0",
                     f"problem.n.pde={args.pde}", f"problem.n.ic={args.ic}", f"problem.n.bc={args.bc}",
                     f"engine.derivatives={args.derivatives}", f"engine.compile={str(args.compile).lower()}",
                     f"engine.allocator={args.allocator}", "tracking.enabled=false", f"output.dir={self.out.name}"]
        with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
            cfg = compose("config", overrides=overrides)
        parts = build(cfg, validate(cfg))
        self.parts, self.torch = parts, torch
        self.points = on_device(parts.sampler.initial(), parts)
        parts.weighting.on_points(self.points)
        self.compute = residual_function(parts.problem, parts.model, cfg.engine)
        self.phase = parts.phases[0]
        self.phase.start(parts.model.parameters())
        self.step = 0
        self.params = sum(p.numel() for p in parts.model.parameters())
        from pinnrun.runtime import malloc_tuned

        self.details = {"torch_threads": torch.get_num_threads(), "malloc_tuned": malloc_tuned(),
                        "points": {name: len(p.x) for name, p in self.points.items()},
                        "initial_loss": self.initial_loss()}

    def loss(self) -> float:
        return self.initial_loss()

    def initial_loss(self) -> float:
        """Sum of the terms' mean squared residuals at the current parameters, by plain autograd (so
        that a compiled step compiles in the warm-up, where it is timed)."""
        from pinnrun.engine import residuals

        values = residuals(self.parts.problem, self.parts.model, self.points)
        return float(sum((r**2).mean() for r in values.values()))

    def closure(self) -> Any:
        model = self.parts.model
        model.zero_grad(set_to_none=True)
        loss, diagnostics = self.parts.weighting.objective(self.compute, self.points, self.step)
        loss.backward()
        return loss, diagnostics

    def steps(self, count: int) -> None:
        for _ in range(count):  # on the CPU each step has finished when it returns
            self.phase.advance(self.closure, 1)
            self.parts.weighting.after_step(ascent=self.phase.adaptive)
            self.step += 1

    def floor(self, repeats: int, products: Optional[list] = None) -> dict[str, Any]:
        """The matrix products of one step, timed alone: their shapes are read from a
        torch.profiler trace of one step (aten::mm, addmm, bmm, baddbmm, with record_shapes), then
        each product is replayed on float32 operands of those shapes and strides into preallocated
        outputs, all of one step's products per sample, one Python call each as in the step; the
        median sample is the floor."""
        torch = self.torch
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as trace:
            self.steps(1)
        calls, flops, shapes, factors = [], 0, {}, []
        for event in trace.events():
            if event.name not in MATRIX_OPS:
                continue
            dims = [list(d) for d in event.input_shapes]
            strides = [list(s) if isinstance(s, (list, tuple)) else [] for s in (event.structured_input_strides or [])]
            call, flop, layout, pair = replay(torch, event.name, dims, strides)
            calls.append(call)
            flops += flop
            factors.append(pair)
            shapes[f"{event.name} {layout}"] = shapes.get(f"{event.name} {layout}", 0) + 1
        samples = []
        for _ in range(repeats):
            started = time.perf_counter()
            for call in calls:
                call()
            samples.append(1e3 * (time.perf_counter() - started))
        ms = statistics.median(samples)
        return {"ms": ms, "samples_ms": samples, "products": len(calls), "gflop": flops / 1e9,
                "gflop_per_s": flops / 1e6 / ms if ms else None, "shapes": shapes, "factors": factors}


MATRIX_OPS = {"aten::mm": (0, 1), "aten::bmm": (0, 1), "aten::addmm": (1, 2), "aten::baddbmm": (1, 2)}
"""The profiler's matrix-product ops and which of their recorded inputs are the two factors."""


def replay(torch: Any, name: str, dims: list[list[int]], strides: list[list[int]]) -> tuple[Callable[[], Any], int, str, list]:
    """One recorded product as a call on fresh float32 operands of its shapes and strides (a
    transposed factor stays transposed), into a preallocated output; its flop count, layout and
    factors ([shape, transposed] of each, for replaying the same products elsewhere)."""

    def operand(i: int) -> Any:
        stride = strides[i] if i < len(strides) and len(strides[i]) == len(dims[i]) else None
        tensor = torch.empty_strided(dims[i], stride) if stride else torch.empty(dims[i])
        return tensor.normal_()

    first, second = MATRIX_OPS[name]
    a, b = operand(first), operand(second)
    out = torch.empty(*a.shape[:-1], b.shape[-1])
    flops = 2 * a.numel() * b.shape[-1]
    layout = " x ".join(f"{tuple(t.shape)}{'' if t.is_contiguous() else 'T'}" for t in (a, b))
    pair = [[list(t.shape), not t.is_contiguous()] for t in (a, b)]
    if first == 1:
        bias = operand(0)
        op = torch.addmm if name == "aten::addmm" else torch.baddbmm
        return (lambda: op(bias, a, b, out=out)), flops, layout, pair
    op = torch.mm if name == "aten::mm" else torch.bmm
    return (lambda: op(a, b, out=out)), flops, layout, pair


class DeepXDE(Contender):
    """DeepXDE's Burgers example with the backend DDE_BACKEND names: its FNN, its TimePDE data (the
    PDE residual is evaluated on all training points, pde + bc + ic, as DeepXDE does), its Adam."""

    def __init__(self, args: argparse.Namespace):
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        np.random.seed(0)  # DeepXDE's point sampling (set_random_seed would also make TF deterministic, and slower)
        import deepxde as dde

        from deepxde_burgers import burgers_data

        self.dde = dde
        self.backend = dde.backend.backend_name
        net = dde.nn.FNN([2] + [WIDTH] * DEPTH + [1], "tanh", "Glorot normal")
        self.model = dde.Model(burgers_data(dde, args.pde, args.bc, args.ic), net)
        self.model.compile("adam", lr=1e-3)
        self.model.train(iterations=0, verbose=0)  # initialises the session's variables (tf.compat.v1), sets the data
        self.params = self.count_params()
        state = self.model.train_state
        self.details = {"backend": self.backend, "xla_jit": dde.config.xla_jit, "float": dde.config.default_float(),
                        "training_rows": len(state.X_train), "loss_terms": len(self.model.data.bcs) + 1,
                        "initial_loss": float(np.sum(state.loss_train))}
        if self.backend == "jax":
            import jax

            self.block = jax.block_until_ready
        else:
            self.block = lambda value: value

    def floor(self, repeats: int, products: Optional[list] = None) -> dict[str, Any]:
        """The products pinnrun's floor measured (`products`: [shape, transposed] of both factors
        of each), on TensorFlow's kernels: one tf.function holding all of them (transposed factors
        as transpose_a/transpose_b), its inputs passed in so nothing is folded, every product
        returned so nothing is pruned. TF2 backend only (the others have no eager TensorFlow)."""
        if self.backend != "tensorflow" or not products:
            return super().floor(repeats, products)
        tf = self.dde.backend.tf

        def stored(shape: list[int], transposed: bool) -> Any:
            return tf.random.normal(shape[:-2] + shape[-2:][::-1] if transposed else shape)

        operands = [(stored(*a), stored(*b)) for a, b in products]
        flags = [(a[1], b[1]) for a, b in products]

        @tf.function
        def all_products(pairs: Any) -> Any:
            return [tf.linalg.matmul(x, y, transpose_a=ta, transpose_b=tb) for (x, y), (ta, tb) in zip(pairs, flags)]

        all_products(operands)
        samples = []
        for _ in range(repeats):
            started = time.perf_counter()
            all_products(operands)
            samples.append(1e3 * (time.perf_counter() - started))
        return {"ms": statistics.median(samples), "samples_ms": samples, "products": len(products)}

    def count_params(self) -> int:
        if self.backend == "pytorch":
            return sum(p.numel() for p in self.model.net.parameters())
        if self.backend == "tensorflow.compat.v1":
            return int(sum(np.prod(v.shape) for v in self.dde.backend.tf.trainable_variables()))
        if self.backend == "tensorflow":
            return int(sum(np.prod(v.shape) for v in self.model.net.trainable_variables))
        if self.backend == "jax":
            import jax

            return int(sum(np.prod(leaf.shape) for leaf in jax.tree_util.tree_leaves(self.model.params)))
        raise ValueError(f"DDE_BACKEND={self.backend!r}: not one of pytorch, tensorflow.compat.v1, tensorflow, jax")

    def loss(self) -> float:
        state = self.model.train_state
        return float(np.sum(self.model._outputs_losses(True, state.X_train, state.y_train, state.train_aux_vars)[1]))

    def steps(self, count: int) -> None:
        model, state = self.model, self.model.train_state
        for _ in range(count):  # deepxde/model.py _train_sgd, less its _test at display steps
            state.set_data_train(*model.data.train_next_batch(None))
            model._train_step(state.X_train, state.y_train, state.train_aux_vars)
            state.iteration += 1
            state.step += 1
        self.block(model.params if self.backend == "jax" else None)


class JaxReference(Contender):
    """A plain JAX step: the whole Adam step (loss, gradient, optax.adam update) is one jitted
    function; the residual's derivatives are forward-over-reverse per point (jax.jvp of
    jax.value_and_grad, vmapped), so one pass gives u, u_x, u_t and u_xx."""

    def __init__(self, args: argparse.Namespace):
        import jax
        import jax.numpy as jnp
        import optax

        self.jax = jax
        key = jax.random.PRNGKey(0)
        sizes = [2] + [WIDTH] * DEPTH + [1]
        init = jax.nn.initializers.glorot_normal()
        params = []
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            key, sub = jax.random.split(key)
            params.append((init(sub, (fan_in, fan_out), jnp.float32), jnp.zeros(fan_out, jnp.float32)))
        rng = np.random.default_rng(0)
        pde = np.stack([rng.uniform(-1, 1, args.pde), rng.uniform(0, 1, args.pde)], axis=1)
        ic = np.stack([rng.uniform(-1, 1, args.ic), np.zeros(args.ic)], axis=1)
        bc = np.stack([rng.choice([-1.0, 1.0], args.bc), rng.uniform(0, 1, args.bc)], axis=1)
        self.points = tuple(jnp.asarray(p, jnp.float32) for p in (pde, ic, bc))
        e_x = jnp.array([1.0, 0.0], jnp.float32)

        def net(p: Any, z: Any) -> Any:
            h = z
            for w, b in p[:-1]:
                h = jnp.tanh(h @ w + b)
            w, b = p[-1]
            return (h @ w + b)[0]

        def residual(p: Any, z: Any) -> Any:
            (u, grad), (_, grad_dx) = jax.jvp(lambda y: jax.value_and_grad(net, argnums=1)(p, y), (z,), (e_x,))
            return grad[1] + u * grad[0] - NU * grad_dx[0]

        def loss(p: Any, pde: Any, ic: Any, bc: Any) -> Any:
            r = jax.vmap(residual, (None, 0))(p, pde)
            u_ic = jax.vmap(net, (None, 0))(p, ic)
            u_bc = jax.vmap(net, (None, 0))(p, bc)
            return jnp.mean(r**2) + jnp.mean((u_ic + jnp.sin(jnp.pi * ic[:, 0])) ** 2) + jnp.mean(u_bc**2)

        optimizer = optax.adam(1e-3)

        def step(p: Any, state: Any, pde: Any, ic: Any, bc: Any) -> Any:
            value, grads = jax.value_and_grad(loss)(p, pde, ic, bc)
            updates, state = optimizer.update(grads, state, p)
            return optax.apply_updates(p, updates), state, value

        self.total_loss = jax.jit(loss)
        self.step = jax.jit(step, donate_argnums=(0, 1))
        self.params = int(sum(np.prod(leaf.shape) for leaf in jax.tree_util.tree_leaves(params)))
        self.details = {"points": {"pde": args.pde, "ic": args.ic, "bc": args.bc}, "devices": [str(d) for d in jax.devices()],
                        "initial_loss": float(loss(params, *self.points))}
        self.state = (params, optimizer.init(params))

    def loss(self) -> float:
        return float(self.total_loss(self.state[0], *self.points))

    def steps(self, count: int) -> None:
        params, state = self.state
        for _ in range(count):
            params, state, value = self.step(params, state, *self.points)
        self.jax.block_until_ready(value)
        self.state = (params, state)


KINDS = {"pinnrun": Pinnrun, "deepxde": DeepXDE, "jax": JaxReference}


def versions() -> dict[str, str]:
    """Python and the version of each backend this interpreter has loaded."""
    found = {"python": platform.python_version()}
    for module in ("torch", "tensorflow", "jax", "jaxlib", "optax", "deepxde", "numpy", "pinnrun"):
        if module in sys.modules:
            found[module] = str(getattr(sys.modules[module], "__version__", "?"))
    return found


def faults() -> tuple[int, int]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_minflt, usage.ru_majflt


def timed(contender: Contender, steps: int) -> dict[str, Any]:
    """ms per step and page faults per step over `steps` Adam steps."""
    minor, major = faults()
    started = time.perf_counter()
    contender.steps(steps)
    seconds = time.perf_counter() - started
    minor_after, major_after = faults()
    return {"ms_per_step": 1e3 * seconds / steps, "minor_faults": minor_after - minor, "major_faults": major_after - major,
            "minor_faults_per_step": (minor_after - minor) / steps, "major_faults_per_step": (major_after - major) / steps,
            "steps": steps}


def answer(contender: Contender, request: dict[str, Any]) -> Optional[dict[str, Any]]:
    """The reply to one request (None: stop)."""
    command = request.get("cmd")
    if command == "quit":
        return None
    if command == "warmup":
        started = time.perf_counter()
        contender.steps(int(request["steps"]))
        return {"seconds": time.perf_counter() - started}
    if command == "time":
        return timed(contender, int(request["steps"]))
    if command == "loss":
        return {"loss": contender.loss()}
    if command == "floor":
        return contender.floor(int(request.get("repeats", 20)), request.get("products"))
    raise ValueError(f"cmd={command!r}: not one of warmup, time, loss, floor, quit")


def serve(contender: Contender, requests: TextIO, replies: TextIO) -> None:
    """Answer requests line by line until `quit` or the end of input; an error is a reply, not an exit."""
    for line in requests:
        try:
            reply = answer(contender, json.loads(line))
        except Exception as error:  # noqa: BLE001 - the driver reports it with the contender's name
            reply = {"error": f"{type(error).__name__}: {error}"}
        if reply is None:
            return
        replies.write(json.dumps(reply) + "\n")
        replies.flush()


def pin_cpus(threads: int) -> list[int]:
    """Keep the process on its first `threads` allowed CPUs, so no library's thread pool uses more
    cores than the contender is given."""
    allowed = sorted(os.sched_getaffinity(0))
    chosen = allowed[:threads]
    os.sched_setaffinity(0, chosen)
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=sorted(KINDS))
    parser.add_argument("--pde", type=int, default=10000)
    parser.add_argument("--ic", type=int, default=100)
    parser.add_argument("--bc", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--derivatives", default="autograd", help="pinnrun: engine.derivatives")
    parser.add_argument("--compile", action="store_true", help="pinnrun: engine.compile=true")
    parser.add_argument("--allocator", default="tuned", help="pinnrun: engine.allocator")
    args = parser.parse_args()
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # library prints must not reach the protocol
    cpus = pin_cpus(args.threads)
    started = time.perf_counter()
    try:
        contender = KINDS[args.kind](args)
    except Exception as error:  # noqa: BLE001 - reported to the driver, which goes on without this contender
        replies.write(json.dumps({"error": f"{type(error).__name__}: {error}"}) + "\n")
        replies.flush()
        raise
    ready = {"ready": True, "params": contender.params, "build_s": time.perf_counter() - started, "versions": versions(),
             "cpus": cpus, "details": contender.details}
    replies.write(json.dumps(ready) + "\n")
    replies.flush()
    serve(contender, sys.stdin, replies)


if __name__ == "__main__":
    main()
