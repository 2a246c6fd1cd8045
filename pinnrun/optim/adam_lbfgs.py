"""Adam then L-BFGS: the schedule of Raissi et al. (2019) and McClenny & Braga-Neto (2023)."""

from __future__ import annotations

from dataclasses import dataclass, field

from pinnrun.optim.adam import AdamConfig, AdamPhase
from pinnrun.optim.base import Phase, Plan
from pinnrun.optim.lbfgs import LBFGSConfig, LBFGSPhase


@dataclass
class AdamLBFGSConfig:
    adam: AdamConfig = field(default_factory=AdamConfig)
    lbfgs: LBFGSConfig = field(default_factory=LBFGSConfig)

    def validate(self, prefix: str) -> None:
        self.adam.validate(f"{prefix}.adam")
        self.lbfgs.validate(f"{prefix}.lbfgs")


class AdamLBFGS(Plan):
    Config = AdamLBFGSConfig

    def __init__(self, cfg: AdamLBFGSConfig):
        self.cfg = cfg

    def phases(self) -> list[Phase]:
        return [AdamPhase(self.cfg.adam), LBFGSPhase(self.cfg.lbfgs)]
