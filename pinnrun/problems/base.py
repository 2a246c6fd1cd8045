"""The problem interface: an immutable description of a PDE and its reference solution."""

from __future__ import annotations

import copy
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Callable, ClassVar, Dict, Iterable, List, Optional

import numpy as np
import torch
from torch import Tensor

from pinnrun.config import ConfigError, require_positive
from pinnrun.derivatives import Fields, check_derivative_keys

Box = tuple[tuple[float, float], ...]
"""An axis-aligned box, one (low, high) pair per input; low == high fixes that coordinate."""


@dataclass(frozen=True)
class Term:
    """One loss term: where its points live, which derivatives it needs, its residual.

    A term with a `partner` (a periodic condition) compares each point with its image: the fields
    are evaluated at the N points followed by their N partners, and the residual returns N values,
    e.g. `paired_difference(f.u)` for u(-1, t) - u(1, t).
    """

    region: tuple[Box, ...]
    residual: Callable[[Fields], Tensor]
    derivatives: tuple[str, ...] = ()
    partner: Optional[Callable[[Tensor], Tensor]] = None

    def __post_init__(self) -> None:
        if not self.region or any(not all(len(pair) == 2 and pair[0] <= pair[1] for pair in box) for box in self.region):
            raise ValueError(f"Term.region={self.region!r}: must be a tuple of boxes of (low, high) pairs")

    def field_inputs(self, x: Tensor) -> Tensor:
        """Where the residual's fields are evaluated: the points, then their partners if any."""
        return x if self.partner is None else torch.cat([x, self.partner(x)])


def paired_difference(values: Tensor) -> Tensor:
    """First half minus second half: a field at the points minus the same field at their partners."""
    first, second = values.chunk(2)
    return first - second


def shifted(axis: int, shift: float) -> Callable[[Tensor], Tensor]:
    """A partner map that moves coordinate `axis` by `shift` (a period), for periodic terms."""

    def image(x: Tensor) -> Tensor:
        moved = x.clone()
        moved[:, axis] = moved[:, axis] + shift
        return moved

    return image


@dataclass(frozen=True)
class Ansatz:
    """A hard-constraint output transform u = transform(inputs, network output) (Lagaris et al. 1998)
    and the terms it satisfies exactly, which then drop out of the loss."""

    transform: Callable[[Tensor, Tensor], Tensor]
    satisfies: tuple[str, ...]


@dataclass(frozen=True)
class Evaluation:
    """The reference solution on the evaluation grid (inputs in C order of `shape`)."""

    inputs: np.ndarray  # (N, d), columns in the problem's input order
    u_ref: np.ndarray  # (N,)
    shape: tuple[int, ...]  # grid points per input; N == prod(shape)


@dataclass
class ProblemConfig:
    """Options every problem has: point counts and term constants per term, the evaluation grid."""

    n: Dict[str, int] = field(default_factory=dict)  # points per loss term
    weights: Dict[str, float] = field(default_factory=dict)  # term constants c_i, applied under any weighting
    eval_grid: List[int] = field(default_factory=list)  # evaluation grid points per input
    eval_bounds: List[List[float]] = field(default_factory=list)  # [first, last] node per input; empty: the domain

    def validate(self, prefix: str) -> None:
        for term, count in self.n.items():
            require_positive(f"{prefix}.n.{term}", count)
        for term, weight in self.weights.items():
            if not (weight >= 0 and math.isfinite(weight)):
                raise ConfigError(f"{prefix}.weights.{term}={weight!r}: must be a finite number >= 0")
        for count in self.eval_grid:
            require_positive(f"{prefix}.eval_grid", count)
        for axis in self.eval_bounds:
            if len(axis) != 2 or not all(math.isfinite(v) for v in axis) or axis[0] > axis[1]:
                raise ConfigError(f"{prefix}.eval_bounds={[list(a) for a in self.eval_bounds]}: each input needs [first, last] with first <= last")


class Problem(ABC):
    """A PDE on a box domain with named loss terms and a reference solution.

    Subclasses set `name`, `input_names`, `bounds` and `Config`, and build `terms` in `__init__`;
    instances are not changed after construction.
    """

    name: ClassVar[str]
    input_names: ClassVar[tuple[str, ...]]
    Config: ClassVar[type[ProblemConfig]]

    def __init__(self, cfg: ProblemConfig):
        self.cfg = cfg
        self.bounds: Box = self.domain()
        self.terms: dict[str, Term] = self.build_terms()
        self._check_term_options()
        for term in self.terms.values():
            check_derivative_keys(term.derivatives, self.input_names)

    @abstractmethod
    def domain(self) -> Box:
        """The full domain box, in input order."""

    @abstractmethod
    def build_terms(self) -> dict[str, Term]:
        """The loss terms by name."""

    @abstractmethod
    def evaluation(self) -> Evaluation:
        """The reference solution on the evaluation grid."""

    def ansatz(self) -> Optional[Ansatz]:
        """The problem's hard-constraint ansatz, or None when it has none."""
        return None

    def extra_metrics(self, model: torch.nn.Module) -> dict[str, float]:
        """Problem-specific diagnostics logged at each evaluation (e.g. `sharp/centre_outer_ratio`);
        none by default."""
        return {}

    def without_terms(self, dropped: Iterable[str]) -> Problem:
        """A copy whose loss has no `dropped` terms (those a hard-constraint ansatz satisfies)."""
        dropped = set(dropped)
        if not dropped:
            return self
        view = copy.copy(self)
        view.terms = {name: term for name, term in self.terms.items() if name not in dropped}
        return view

    def counts(self) -> dict[str, int]:
        """Points per term (the problem's defaults)."""
        return dict(self.cfg.n)

    def term_weights(self) -> dict[str, float]:
        """Term constants c_i; terms without an entry weigh 1."""
        return {name: float(self.cfg.weights.get(name, 1.0)) for name in self.terms}

    def grid_axes(self, shape: tuple[int, ...]) -> list[np.ndarray]:
        """The evaluation grid's nodes per input: `shape` points from the first to the last node of
        `eval_bounds` (default: the domain). The papers' grids need it: Raissi's Burgers data stops at
        t = 0.99 and AC.mat's x grid at 1 - 2/512."""
        bounds = [tuple(axis) for axis in self.cfg.eval_bounds] or self.bounds
        return [np.linspace(lo, hi, count) for (lo, hi), count in zip(bounds, shape)]

    def grid(self, shape: tuple[int, ...]) -> np.ndarray:
        """A tensor-product grid over the evaluation bounds, (prod(shape), d), in C order."""
        axes = self.grid_axes(shape)
        mesh = np.meshgrid(*axes, indexing="ij")
        return np.stack([m.ravel() for m in mesh], axis=1)

    def _check_term_options(self) -> None:
        for option in ("n", "weights"):
            unknown = sorted(set(getattr(self.cfg, option)) - set(self.terms))
            if unknown:
                raise ConfigError(f"problem.{option}.{unknown[0]}: unknown term; {self.name} has {', '.join(self.terms)}")
        missing = [term for term in self.terms if term not in self.cfg.n]
        if missing:
            raise ConfigError(f"problem.n.{missing[0]}: missing point count for term {missing[0]!r}")
        if len(self.cfg.eval_grid) != len(self.input_names):
            raise ConfigError(
                f"problem.eval_grid={list(self.cfg.eval_grid)}: needs one count per input {self.input_names}"
            )
        inside = all(lo - 1e-12 <= first and last <= hi + 1e-12 for (first, last), (lo, hi) in zip(self.cfg.eval_bounds, self.bounds))
        if self.cfg.eval_bounds and (len(self.cfg.eval_bounds) != len(self.input_names) or not inside):
            raise ConfigError(
                f"problem.eval_bounds={[list(a) for a in self.cfg.eval_bounds]}: needs one [first, last] per input "
                f"{self.input_names}, inside the domain {list(map(list, self.bounds))}"
            )


class AnalyticProblem(Problem):
    """A problem whose reference is a closed-form solution evaluated at any points."""

    @abstractmethod
    def solution(self, inputs: np.ndarray) -> np.ndarray:
        """The exact solution at inputs (N, d) -> (N,)."""

    def evaluation(self) -> Evaluation:
        shape = tuple(self.cfg.eval_grid)
        inputs = self.grid(shape)
        return Evaluation(inputs, self.solution(inputs), shape)


class ClosedFormProblem(AnalyticProblem):
    """An analytic problem whose solution is written with torch operations, so autograd can
    differentiate the reference itself (its PDE residual is tested) and terms can use it for
    boundary data and forcing."""

    @abstractmethod
    def exact(self, inputs: Tensor) -> Tensor:
        """The exact solution at inputs (N, d) -> (N,), in the inputs' dtype and device."""

    def solution(self, inputs: np.ndarray) -> np.ndarray:
        return self.exact(torch.as_tensor(inputs, dtype=torch.float64)).numpy()
