"""DeepXDE's Burgers recipe (Adam, then L-BFGS) recording rel-L2 against training seconds.

Run by scripts/benchmark_optimizers.py inside the virtual environment it creates for DeepXDE,
TensorFlow (DeepXDE's default backend, tensorflow.compat.v1) and torch (DDE_BACKEND=pytorch),
never imported by pinnrun:

    .venv-deepxde/bin/python scripts/deepxde_burgers.py --reference ref.npz --out curve.json ...

The reference grid and u_ref come from pinnrun's Burgers (Cole-Hopf) through the .npz. The error is
checked every `--check-every` Adam steps or L-BFGS function evaluations; the time spent checking is
left out of the training seconds. DeepXDE's scipy L-BFGS-B calls back only through callbacks named
`VariableValue` (deepxde/model.py, `_train_tensorflow_compat_v1_scipy`), which print to their
`file`; the checker is that file. Inside L-BFGS-B the TensorFlow variables keep their old values
(each evaluation feeds the packed parameters instead), so the checker also wraps the interface's
`_make_eval_func` to keep the last parameters evaluated and feeds them to its prediction; training
itself is not changed.
"""

from __future__ import annotations

import argparse
import json
import os
import time

from typing import Any, Optional

import numpy as np


def burgers_data(dde: Any, n_pde: int, n_bc: int = 200, n_ic: int = 100) -> Any:
    """DeepXDE's Burgers example (u_t + u u_x = (0.01/pi) u_xx, u(x,0) = -sin(pi x), u(+-1,t) = 0) with
    the given point counts; also used by scripts/benchmark.py and scripts/benchmark_worker.py with
    every DeepXDE backend they measure (pytorch, tensorflow.compat.v1, tensorflow, jax)."""
    geomtime = dde.geometry.GeometryXTime(dde.geometry.Interval(-1, 1), dde.geometry.TimeDomain(0, 1))
    nu = 0.01 / np.pi

    def pde(x, y):
        u_x = dde.grad.jacobian(y, x, i=0, j=0)
        u_t = dde.grad.jacobian(y, x, i=0, j=1)
        u_xx = dde.grad.hessian(y, x, i=0, j=0)
        if dde.backend.backend_name == "jax":  # values come as (array, function) pairs there
            y, u_x, u_t, u_xx = y[0], u_x[0], u_t[0], u_xx[0]
        return u_t + y * u_x - nu * u_xx

    bc = dde.icbc.DirichletBC(geomtime, lambda x: 0, lambda _, on_boundary: on_boundary)
    ic = dde.icbc.IC(geomtime, lambda x: -np.sin(np.pi * x[:, 0:1]), lambda _, on_initial: on_initial)
    return dde.data.TimePDE(geomtime, pde, [bc, ic], num_domain=n_pde, num_boundary=n_bc, num_initial=n_ic)


class Checker:
    """rel-L2 of the model on the reference grid, timed apart; a file object for DeepXDE's print."""

    def __init__(self, model: Any, inputs: np.ndarray, u_ref: np.ndarray):
        self.model, self.inputs, self.u_ref = model, inputs, u_ref
        self.started, self.excluded = time.perf_counter(), 0.0
        self.curve: list[tuple[float, float]] = []
        self.optimizer: Optional[Any] = None
        self.latest: Optional[np.ndarray] = None
        if os.environ["DDE_BACKEND"] == "tensorflow.compat.v1":
            self.record_scipy_evaluations()

    def record_scipy_evaluations(self) -> None:
        """Keep the parameters of each L-BFGS-B evaluation (tensorflow.compat.v1 only)."""
        from deepxde.optimizers.tensorflow_compat_v1.scipy_optimizer import ScipyOptimizerInterface

        original = ScipyOptimizerInterface._make_eval_func

        def recording(interface, *args, **kwargs):
            evaluate = original(interface, *args, **kwargs)

            def eval_func(x):
                self.optimizer, self.latest = interface, x
                return evaluate(x)

            return eval_func

        ScipyOptimizerInterface._make_eval_func = recording

    def predict(self) -> np.ndarray:
        """The network on the grid at the parameters being evaluated (L-BFGS) or held (Adam)."""
        if self.latest is None:
            return self.model.predict(self.inputs)
        feed = self.model.net.feed_dict(False, self.inputs)
        for var, part in zip(self.optimizer._vars, self.optimizer._packing_slices):
            feed[var] = self.latest[part].reshape(var.shape)
        return self.model.sess.run(self.model.net.outputs, feed_dict=feed)

    def write(self, text: str) -> None:
        """DeepXDE prints the iteration and the (empty) variable list: nothing to keep."""

    def flush(self) -> None:
        start = time.perf_counter()
        u = self.predict()[:, 0].astype(np.float64)
        l2 = float(np.linalg.norm(u - self.u_ref) / np.linalg.norm(self.u_ref))
        self.curve.append((start - self.started - self.excluded, l2))
        self.excluded += time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference", required=True, help=".npz with inputs (x, t) and u_ref")
    parser.add_argument("--out", required=True, help="where to write the curve (JSON)")
    parser.add_argument("--depth", type=int, default=2)
    parser.add_argument("--width", type=int, default=20)
    parser.add_argument("--pde", type=int, default=2000)
    parser.add_argument("--bc", type=int, default=200)
    parser.add_argument("--ic", type=int, default=100)
    parser.add_argument("--adam", type=int, default=2000)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--lbfgs", type=int, default=5000, help="L-BFGS iterations at most")
    parser.add_argument("--check-every", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault("DDE_BACKEND", "tensorflow.compat.v1")
    import deepxde as dde

    dde.config.set_default_float("float64")
    dde.config.set_random_seed(args.seed)
    reference = np.load(args.reference)
    data = burgers_data(dde, args.pde, args.bc, args.ic)
    net = dde.nn.FNN([2] + [args.width] * args.depth + [1], "tanh", "Glorot normal")
    model = dde.Model(data, net)
    model.compile("adam", lr=args.lr)
    checker = Checker(model, reference["inputs"].astype(np.float64), reference["u_ref"])

    class VariableValue(dde.callbacks.VariableValue):  # the name DeepXDE's L-BFGS loop calls back
        def on_train_begin(self) -> None:
            checker.flush()

        def on_train_end(self) -> None:
            checker.flush()

    callback = VariableValue([], period=args.check_every)
    callback.file = checker
    model.train(iterations=args.adam, callbacks=[callback], display_every=args.check_every, verbose=0)
    adam_end = len(checker.curve)
    dde.optimizers.set_LBFGS_options(maxiter=args.lbfgs)
    if dde.backend.backend_name == "pytorch":  # torch's L-BFGS: one epoch per `check_every` iterations
        dde.optimizers.config.LBFGS_options.update(iter_per_step=args.check_every, fun_per_step=int(1.25 * args.check_every))
        callback.period = 1
    model.compile("L-BFGS")
    model.train(callbacks=[callback], display_every=args.check_every, verbose=0)
    with open(args.out, "w") as handle:
        json.dump({"curve": checker.curve, "adam_checks": adam_end, "deepxde": dde.__version__,
                   "backend": dde.backend.backend_name}, handle)


if __name__ == "__main__":
    main()
