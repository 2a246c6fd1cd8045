"""Allen-Cahn equation with periodic boundaries (Raissi et al. 2019; McClenny & Braga-Neto 2023).

    u_t - D u_xx + R u^3 - R u = 0,  x in [-1, 1] periodic (u and u_x), t in [0, 1],
    u(x, 0) = x^2 cos(pi x),  D = 1e-4, R = 5.

Not the other "Allen-Cahn" of some tools (D = 1e-3, u(+-1, t) = -1). No closed form: the reference
is computed here with a Fourier pseudo-spectral method in x and ETDRK4 in t (Cox & Matthews 2002,
eqs. 26-29) with the phi functions evaluated by contour integrals (Kassam & Trefethen 2005, sec. 4),
and cached on disk keyed by the parameters and the solver settings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, List

import numpy as np
import torch
from torch import Tensor

from pinnrun.config import ConfigError, require_positive
from pinnrun.derivatives import Fields
from pinnrun.problems import cache
from pinnrun.problems.base import Ansatz, Box, Evaluation, Problem, ProblemConfig, Term, paired_difference, shifted

SOLVER_VERSION = 1  # bump when the solver changes what it computes: old cache entries stop matching


@dataclass
class AllenCahnConfig(ProblemConfig):
    diffusion: float = 1.0e-4  # D
    reaction: float = 5.0  # R
    n: Dict[str, int] = field(default_factory=lambda: {"pde": 20000, "ic": 512, "bc": 100, "bc_x": 100})
    eval_grid: List[int] = field(default_factory=lambda: [512, 201])  # x, t, as the classic data set
    modes: int = 512  # Fourier points in x (even)
    dt: float = 5.0e-4  # largest ETDRK4 step (dt vs dt/2 agree to 1e-12); shortened to hit every output time
    contour_points: int = 32  # points on the contour for the phi functions (Kassam & Trefethen use 32)

    def validate(self, prefix: str) -> None:
        super().validate(prefix)
        require_positive(f"{prefix}.diffusion", self.diffusion)
        require_positive(f"{prefix}.reaction", self.reaction)
        require_positive(f"{prefix}.dt", self.dt)
        require_positive(f"{prefix}.contour_points", self.contour_points)
        if self.modes < 4 or self.modes % 2:
            raise ConfigError(f"{prefix}.modes={self.modes!r}: must be an even number >= 4")


def initial_condition(x: Tensor) -> Tensor:
    """u(x, 0) = x^2 cos(pi x)."""
    return x**2 * torch.cos(math.pi * x)


class AllenCahn(Problem):
    """Allen-Cahn: fronts sharpen to width ~ sqrt(D / R) and plateaus sit at u = +-1."""

    name = "allen_cahn"
    input_names = ("x", "t")
    Config = AllenCahnConfig

    def domain(self) -> Box:
        return ((-1.0, 1.0), (0.0, 1.0))

    def build_terms(self) -> dict[str, Term]:
        d, r = self.cfg.diffusion, self.cfg.reaction

        def pde(f: Fields) -> Tensor:
            return f["t"] - d * f["xx"] + r * f.u**3 - r * f.u

        left = (((-1.0, -1.0), (0.0, 1.0)),)
        to_right = shifted(0, 2.0)
        return {
            "pde": Term((self.bounds,), pde, ("t", "xx")),
            "ic": Term((((-1.0, 1.0), (0.0, 0.0)),), lambda f: f.u - initial_condition(f.coord("x"))),
            "bc": Term(left, lambda f: paired_difference(f.u), partner=to_right),
            "bc_x": Term(left, lambda f: paired_difference(f["x"]), ("x",), partner=to_right),
        }

    def ansatz(self) -> Ansatz:
        """u = x^2 cos(pi x) + t N(x, t): the initial condition holds (periodicity needs a periodic
        embedding of x, a model choice)."""

        def transform(inputs: Tensor, net: Tensor) -> Tensor:
            x, t = inputs[:, 0:1], inputs[:, 1:2]
            return initial_condition(x) + t * net

        return Ansatz(transform, satisfies=("ic",))

    def evaluation(self) -> Evaluation:
        nx, nt = self.cfg.eval_grid
        x, times = self.grid_axes((nx, nt))
        snapshots = self.spectral_solution(times)
        u = fourier_interpolate(snapshots, x)  # (nt, nx)
        inputs = self.grid((nx, nt))
        return Evaluation(inputs, u.T.ravel(), (nx, nt))

    def spectral_solution(self, times: np.ndarray) -> np.ndarray:
        """u on the Fourier grid x_j = -1 + 2 j / modes at `times` (nt, modes), from the disk cache
        when it holds this exact computation."""
        cfg = self.cfg
        key = {"problem": self.name, "solver_version": SOLVER_VERSION, "diffusion": cfg.diffusion,
               "reaction": cfg.reaction, "initial_condition": "x^2 cos(pi x)", "modes": cfg.modes, "dt": cfg.dt,
               "contour_points": cfg.contour_points, "times": [float(t) for t in times]}
        arrays = cache.cached(self.name, key, lambda: {"u": solve_allen_cahn(cfg.diffusion, cfg.reaction, cfg.modes,
                                                                             times, cfg.dt, cfg.contour_points)})
        return arrays["u"]


def etdrk4_coefficients(linear: np.ndarray, h: float, contour_points: int) -> dict[str, np.ndarray]:
    """ETDRK4 coefficients for a diagonal linear operator (Kassam & Trefethen 2005, eq. 2.5 and
    the contour-integral evaluation of sec. 4: means over points on a circle of radius 1 around
    each h L, which avoid the cancellation of the closed forms near h L = 0). L is real, so the
    upper half circle and the real part suffice."""
    roots = np.exp(1j * np.pi * (np.arange(1, contour_points + 1) - 0.5) / contour_points)
    lr = h * linear[:, None] + roots[None, :]
    exp_lr = np.exp(lr)
    return {
        "E": np.exp(h * linear),
        "E2": np.exp(h * linear / 2),
        "Q": h * np.real(np.mean((np.exp(lr / 2) - 1) / lr, axis=1)),
        "f1": h * np.real(np.mean((-4 - lr + exp_lr * (4 - 3 * lr + lr**2)) / lr**3, axis=1)),
        "f2": h * np.real(np.mean((2 + lr + exp_lr * (-2 + lr)) / lr**3, axis=1)),
        "f3": h * np.real(np.mean((-4 - 3 * lr - lr**2 + exp_lr * (4 - lr)) / lr**3, axis=1)),
    }


def solve_allen_cahn(
    diffusion: float, reaction: float, modes: int, times: np.ndarray, dt: float, contour_points: int = 32
) -> np.ndarray:
    """u_t = D u_xx + R (u - u^3) on the periodic grid x_j = -1 + 2 j / modes, u(x, 0) = x^2 cos(pi x),
    at the given increasing `times` starting at 0; returns (len(times), modes).

    Pseudo-spectral: the linear part L = -D k^2 (k = pi m on a period of 2) is integrated exactly
    in Fourier space, the nonlinearity N(u) = R (u - u^3) is formed on the grid. Each interval
    between output times takes the fewest equal steps of length <= dt, so every output time is
    hit exactly (one coefficient set per distinct step length).
    """
    times = np.asarray(times, dtype=np.float64)
    if times[0] != 0.0 or np.any(np.diff(times) <= 0):
        raise ValueError("times must start at 0 and increase")
    x = -1.0 + 2.0 * np.arange(modes) / modes
    k = np.pi * np.arange(modes // 2 + 1)
    linear = -diffusion * k**2

    def nonlinear(v: np.ndarray) -> np.ndarray:
        u = np.fft.irfft(v, n=modes)
        return np.fft.rfft(reaction * (u - u**3))

    v = np.fft.rfft(x**2 * np.cos(np.pi * x))
    out = np.empty((times.size, modes))
    out[0] = np.fft.irfft(v, n=modes)
    coefficients: dict[float, dict[str, np.ndarray]] = {}
    for index, interval in enumerate(np.diff(times), start=1):
        steps = max(1, math.ceil(interval / dt - 1e-9))
        h = float(interval / steps)
        if h not in coefficients:
            coefficients[h] = etdrk4_coefficients(linear, h, contour_points)
        c = coefficients[h]
        for _ in range(steps):
            nv = nonlinear(v)
            a = c["E2"] * v + c["Q"] * nv
            na = nonlinear(a)
            b = c["E2"] * v + c["Q"] * na
            nb = nonlinear(b)
            cc = c["E2"] * a + c["Q"] * (2 * nb - nv)
            nc = nonlinear(cc)
            v = c["E"] * v + nv * c["f1"] + 2 * (na + nb) * c["f2"] + nc * c["f3"]
        out[index] = np.fft.irfft(v, n=modes)
    return out


def fourier_interpolate(values: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The trigonometric interpolant of grid values (..., modes) on x_j = -1 + 2 j / modes,
    evaluated at arbitrary x (period 2); the Nyquist mode is split evenly (real interpolant)."""
    modes = values.shape[-1]
    coeffs = np.fft.rfft(values, axis=-1) / modes
    weights = np.full(modes // 2 + 1, 2.0)
    weights[0] = 1.0
    weights[-1] = 1.0
    phase = np.exp(1j * np.pi * np.outer(np.arange(modes // 2 + 1), x + 1.0))  # (modes/2+1, len(x))
    return np.real((coeffs * weights) @ phase)
