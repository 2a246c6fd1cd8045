"""Self-scaled BFGS (SSBFGS): BFGS on the inverse Hessian scaled by 1 / tau_k before each update.

tau_k = min(1, 1 / b_k), b_k = -a_k s_k^T g_k / (y_k^T s_k), phi_k = 1: the scaling of Al-Baali
(1998, "Numerical experience with a class of self-scaling quasi-Newton algorithms", J. Optim.
Theory Appl. 96) that Urban, Stefanou & Pons (J. Comput. Phys. 2025, arXiv 2405.04230) use, their
eq. (11) ("SSBFGS_AB" in their code), and Kiyani et al. (2025, arXiv 2501.16371) after them.
Scaling shrinks H when the last step found more curvature than H predicted (b_k > 1), which keeps
the eigenvalues of the approximation from overshooting on the stiff directions of a PINN loss.
`optimizer=ssbfgs` alone; `optimizer=adam_ssbfgs` after Adam, with the blocks `adam:` and `ssbfgs:`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pinnrun.optim.quasi_newton import AdamQuasiNewton, AdamQuasiNewtonConfig, QuasiNewton, QuasiNewtonConfig, QuasiNewtonPhase


class SSBFGSPhase(QuasiNewtonPhase):
    name = "ssbfgs"

    def scaling(self, b: float, h: float, n: int) -> tuple[float, float]:
        return min(1.0, 1.0 / b), 1.0


class SSBFGS(QuasiNewton):
    method = SSBFGSPhase


@dataclass
class AdamSSBFGSConfig(AdamQuasiNewtonConfig):
    ssbfgs: QuasiNewtonConfig = field(default_factory=QuasiNewtonConfig)


class AdamSSBFGS(AdamQuasiNewton):
    Config = AdamSSBFGSConfig
    method = SSBFGSPhase
