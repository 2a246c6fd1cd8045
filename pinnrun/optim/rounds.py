"""Rounds: Adam then L-BFGS, then `rounds` times (new points -> Adam -> L-BFGS).

Wu et al. 2023 (CMAME 403, 115671, sec. 3 and Algorithm 1) train residual-based adaptive sampling
this way: each round the sampler redraws its points from the current residual, and the optimizers
start afresh on them (lu-group/pinn-sampling, src/burgers/RAD.py:43-64: 15k Adam steps and L-BFGS,
then 100 rounds of RAD resampling, 1k Adam steps and L-BFGS, each `model.compile` a new optimizer;
L-BFGS at most 1000 iterations, :6). The schedule is the optimizer's, as a list of phases: the
first phase of every later round opens the round (`Phase.starts_round`), which the training loop
passes to `Sampler.update`, so neither the loop nor the samplers know about rounds. Phases are named
`adam`, `lbfgs`, then `round001/adam`, `round001/lbfgs`, ...: each logs its own `phase/<name>/*`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pinnrun.config import ConfigError
from pinnrun.optim.adam import AdamPhase
from pinnrun.optim.adam_lbfgs import AdamLBFGSConfig
from pinnrun.optim.base import Phase, Plan
from pinnrun.optim.lbfgs import LBFGSPhase


@dataclass
class RoundsConfig(AdamLBFGSConfig):
    rounds: int = 100  # rounds after the first Adam + L-BFGS (Wu et al.: 100)
    round: AdamLBFGSConfig = field(default_factory=AdamLBFGSConfig)  # each later round's Adam and L-BFGS

    def validate(self, prefix: str) -> None:
        super().validate(prefix)
        if self.rounds < 0:
            raise ConfigError(f"{prefix}.rounds={self.rounds}: must be >= 0 (0: Adam and L-BFGS once)")
        self.round.validate(f"{prefix}.round")


class Rounds(Plan):
    """`optimizer=adam_lbfgs_rounds`: the first Adam + L-BFGS, then rounds that each open with new points."""

    Config = RoundsConfig

    def __init__(self, cfg: RoundsConfig):
        self.cfg = cfg

    def phases(self) -> list[Phase]:
        phases: list[Phase] = [AdamPhase(self.cfg.adam), LBFGSPhase(self.cfg.lbfgs)]
        width = len(str(self.cfg.rounds))
        for k in range(1, self.cfg.rounds + 1):
            adam, lbfgs = AdamPhase(self.cfg.round.adam), LBFGSPhase(self.cfg.round.lbfgs)
            adam.name, lbfgs.name = f"round{k:0{width}d}/adam", f"round{k:0{width}d}/lbfgs"
            adam.starts_round = True
            phases += [adam, lbfgs]
        return phases
