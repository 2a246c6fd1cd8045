"""Self-scaled Broyden (SSBroyden): a member of the Broyden family and a scaling chosen per step.

From b_k, h_k (pinnrun.optim.quasi_newton) and a_k = b_k h_k - 1 (>= 0 for positive definite H),
the "wide interval" choice of Al-Baali & Khalfan (2005, "A wide interval for efficient
self-scaling quasi-Newton algorithms", Optim. Methods Softw. 20) as Urban, Stefanou & Pons
(J. Comput. Phys. 2025, arXiv 2405.04230) give it in their eqs. (13)-(23) ("SSBroyden2" in their
code) and Kiyani et al. (2025, arXiv 2501.16371) use it:

    rho_k^- = min(1, h_k (1 - sqrt(a_k / (1 + a_k))))
    theta_k^- = (rho_k^- - 1) / a_k,    theta_k^+ = 1 / rho_k^-
    theta_k = max(theta_k^-, min(theta_k^+, (1 - b_k) / b_k))
    sigma_k = 1 + a_k theta_k,          rho_k^+ = min(1, 1 / b_k)
    tau_k = min(rho_k^+ sigma_k^(1/(1-n)), sigma_k)     if theta_k <= 0
    tau_k = rho_k^+ min(sigma_k^(1/(1-n)), 1 / theta_k)  if theta_k > 0
    phi_k = (1 - theta_k) / (1 + a_k theta_k)

theta_k is the Broyden parameter of the Hessian form (0: BFGS, 1: DFP) and phi_k its inverse-form
counterpart. When a_k = 0 (s_k parallel to H_k y_k) v_k = 0 and every member of the family gives
the same matrix; the formulas divide by a_k there, so a_k <= 1e-12 takes theta_k = 0 (BFGS,
tau_k = rho_k^+), our choice. `optimizer=ssbroyden` alone; `optimizer=adam_ssbroyden` after Adam,
with the blocks `adam:` and `ssbroyden:`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from pinnrun.optim.quasi_newton import AdamQuasiNewton, AdamQuasiNewtonConfig, QuasiNewton, QuasiNewtonConfig, QuasiNewtonPhase

PARALLEL = 1e-12  # a_k at or below: s_k parallel to H_k y_k, all members of the family coincide


def ssbroyden_scaling(b: float, h: float, n: int) -> tuple[float, float]:
    """(tau_k, phi_k) of the wide-interval self-scaled Broyden update for n parameters."""
    a = b * h - 1.0
    rho_plus = min(1.0, 1.0 / b)
    if a <= PARALLEL:
        return rho_plus, 1.0
    rho_minus = min(1.0, h * (1.0 - math.sqrt(a / (1.0 + a))))
    theta = max((rho_minus - 1.0) / a, min(1.0 / rho_minus, (1.0 - b) / b))
    sigma = 1.0 + a * theta
    sigma_root = abs(sigma) ** (1.0 / (1 - n)) if n > 1 else 1.0  # the (n-1)-th root; one parameter has none
    tau = min(rho_plus * sigma_root, sigma) if theta <= 0 else rho_plus * min(sigma_root, 1.0 / theta)
    return tau, (1.0 - theta) / (1.0 + a * theta)


class SSBroydenPhase(QuasiNewtonPhase):
    name = "ssbroyden"

    def scaling(self, b: float, h: float, n: int) -> tuple[float, float]:
        return ssbroyden_scaling(b, h, n)


class SSBroyden(QuasiNewton):
    method = SSBroydenPhase


@dataclass
class AdamSSBroydenConfig(AdamQuasiNewtonConfig):
    ssbroyden: QuasiNewtonConfig = field(default_factory=QuasiNewtonConfig)


class AdamSSBroyden(AdamQuasiNewton):
    Config = AdamSSBroydenConfig
    method = SSBroydenPhase
