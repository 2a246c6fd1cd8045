"""A strong-Wolfe line search on a scalar function of the step length, for the dense quasi-Newton phases.

The search is scipy's, in the order scipy's BFGS (`_line_search_wolfe12`) runs it and in which Urban,
Stefanou & Pons (J. Comput. Phys. 2025, arXiv 2405.04230) ran theirs: MINPACK-2's `dcsrch`
(More & Thuente 1994, `scalar_search_wolfe1`), and when it fails the bracketing-and-zoom search
of Nocedal & Wright (2006, Alg. 3.5-3.6, `scalar_search_wolfe2`). Both take phi(a) and phi'(a)
as Python callables, so the parameters, gradients and the inverse Hessian stay tensors on the
run's device; only two scalars per evaluation cross to the host. Unlike torch's `_strong_wolfe`
(torch/optim/lbfgs.py), which returns its best bracket point when it runs out of evaluations,
scipy's searches return None when no step satisfies the conditions, which is the
`line_search_failed` stop reason. The step satisfies, for 0 < c1 < c2 < 1,

    phi(a) <= phi(0) + c1 a phi'(0)       (sufficient decrease)
    |phi'(a)| <= c2 |phi'(0)|             (strong curvature)

These scipy functions live in `scipy.optimize._linesearch` (scipy's public `line_search` wraps
the second one for numpy vectors); tests/optim/test_line_search.py checks the conditions on the
steps they return, so a change in them fails there first.
"""

from __future__ import annotations

import warnings
from typing import Callable, Optional

from scipy.optimize._linesearch import LineSearchWarning, scalar_search_wolfe1, scalar_search_wolfe2

STEP_BOUNDS = (1e-100, 1e100)  # the bounds scipy's BFGS gives dcsrch (no cap in practice)

PhiWithSlope = Callable[[float], tuple[float, float]]
"""phi(a) and phi'(a) = grad f(x + a p) . p from one evaluation of the objective at x + a p."""


def strong_wolfe(phi: PhiWithSlope, phi0: float, slope0: float, previous_phi0: float, c1: float, c2: float) -> Optional[float]:
    """A step length satisfying the strong Wolfe conditions along a descent direction (slope0 < 0),
    or None when neither search finds one. `previous_phi0`, the objective before the last step,
    sets the first trial step as scipy does: min(1, 2.02 (phi0 - previous_phi0) / slope0)."""
    seen: dict[float, tuple[float, float]] = {}

    def at(a: float) -> tuple[float, float]:
        if a not in seen:
            seen[a] = phi(a)
        return seen[a]

    def value(a: float) -> float:
        return at(a)[0]

    def slope(a: float) -> float:
        return at(a)[1]

    amin, amax = STEP_BOUNDS
    step, _, _ = scalar_search_wolfe1(value, slope, phi0, previous_phi0, slope0, c1=c1, c2=c2, amin=amin, amax=amax)
    if step is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", LineSearchWarning)
            step, *_ = scalar_search_wolfe2(value, slope, phi0, previous_phi0, slope0, c1=c1, c2=c2, amax=amax)
    return None if step is None else float(step)
