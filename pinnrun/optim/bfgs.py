"""BFGS (Broyden 1970, Fletcher 1970, Goldfarb 1970, Shanno 1970) on the full inverse Hessian.

The self-scaled Broyden family of pinnrun.optim.quasi_newton with tau_k = 1 and phi_k = 1:
H_{k+1} = (I - rho s y^T) H_k (I - rho y s^T) + rho s s^T, rho = 1 / y^T s (Nocedal & Wright 2006,
eq. 6.17; Urban, Stefanou & Pons 2025, Sec. 2, the method their scipy-based runs call "BFGS").
`optimizer=bfgs` runs it alone; `optimizer=adam_bfgs` after Adam, with the blocks `adam:` and `bfgs:`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pinnrun.optim.quasi_newton import AdamQuasiNewton, AdamQuasiNewtonConfig, QuasiNewton, QuasiNewtonConfig, QuasiNewtonPhase


class BFGSPhase(QuasiNewtonPhase):
    name = "bfgs"

    def scaling(self, b: float, h: float, n: int) -> tuple[float, float]:
        return 1.0, 1.0


class BFGS(QuasiNewton):
    method = BFGSPhase


@dataclass
class AdamBFGSConfig(AdamQuasiNewtonConfig):
    bfgs: QuasiNewtonConfig = field(default_factory=QuasiNewtonConfig)


class AdamBFGS(AdamQuasiNewton):
    Config = AdamBFGSConfig
    method = BFGSPhase
