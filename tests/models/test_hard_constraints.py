"""Hard constraints: the Burgers ansatz satisfies IC and BC to machine precision for any network,
and problems without an ansatz refuse the option. (That its terms leave the loss is tested in a
real run: tests/samplers/test_adaptive_run.py.)"""

from __future__ import annotations

import math

import pytest
import torch

from pinnrun.config import ConfigError
from pinnrun.models.embedding import FourierConfig
from pinnrun.models.mlp import MLP, MLPConfig
from pinnrun.models.modified_mlp import ModifiedMLP
from pinnrun.problems.burgers import Burgers, BurgersConfig


class BurgersWithoutAnsatz(Burgers):
    def ansatz(self) -> None:
        return None


@pytest.mark.parametrize("network", [MLP, ModifiedMLP])
def test_burgers_ansatz_satisfies_ic_and_bc_exactly(network) -> None:
    torch.manual_seed(3)
    cfg = network.Config(depth=3, width=16, hard_constraints=True, fourier=FourierConfig(features=4, sigma=3.0))
    model = network(cfg, Burgers(BurgersConfig())).double()
    x = torch.linspace(-1, 1, 101, dtype=torch.float64)
    t = torch.linspace(0, 1, 101, dtype=torch.float64)
    initial = model(torch.stack([x, torch.zeros_like(x)], dim=1)).squeeze(-1)
    torch.testing.assert_close(initial, -torch.sin(math.pi * x), rtol=0, atol=1e-15)
    for side in (-1.0, 1.0):
        assert model(torch.stack([torch.full_like(t, side), t], dim=1)).abs().max() <= 1e-15
    interior = model(torch.tensor([[0.3, 0.5]], dtype=torch.float64)).detach()
    assert abs(interior.item() + math.sin(0.3 * math.pi)) > 1e-6  # the network does act inside


def test_problem_without_ansatz_refuses_in_one_line() -> None:
    with pytest.raises(ConfigError) as error:
        MLP(MLPConfig(hard_constraints=True), BurgersWithoutAnsatz(BurgersConfig()))
    assert str(error.value) == "model.hard_constraints=true: problem 'burgers' has no hard-constraint ansatz"
