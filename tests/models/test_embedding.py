"""Input embeddings: periodic coordinates give exactly periodic u and derivatives; Fourier
features are [cos(zB), sin(zB)] with B fixed by the seed."""

from __future__ import annotations

import math

import pytest
import torch

from pinnrun.derivatives import autograd_fields
from pinnrun.models.base import ModelConfig
from pinnrun.models.embedding import FourierConfig, InputEmbedding
from pinnrun.models.mlp import MLP, MLPConfig
from pinnrun.models.modified_mlp import ModifiedMLP
from pinnrun.problems.burgers import Burgers, BurgersConfig

BURGERS = Burgers(BurgersConfig())


@pytest.mark.parametrize("network", [MLP, ModifiedMLP])
@pytest.mark.parametrize("features", [0, 8])
def test_periodic_embedding_is_exactly_periodic(network, features: int) -> None:
    """u, u_x, u_xx and u_t agree at x = -1 and x = 1 (period 2) to float64 rounding (relative
    1e-12: u_xx reaches ~100 with sigma = 2 features), for a random network; without the
    embedding they do not."""
    torch.manual_seed(1)
    cfg = network.Config(depth=3, width=16, periodic=["x"], fourier=FourierConfig(features=features, sigma=2.0))
    model = network(cfg, BURGERS).double()
    t = torch.linspace(0, 1, 9, dtype=torch.float64)
    left = torch.stack([torch.full_like(t, -1.0), t], dim=1)
    right = torch.stack([torch.full_like(t, 1.0), t], dim=1)
    fl, fr = (autograd_fields(model, p, ("x", "t"), ("x", "xx", "t")) for p in (left, right))
    for key in ("x", "xx", "t"):
        torch.testing.assert_close(fl[key], fr[key], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(fl.u, fr.u, rtol=0, atol=1e-12)
    assert fl["x"].abs().max() > 1e-3  # the derivative is not trivially zero
    plain = network(network.Config(depth=3, width=16), BURGERS).double()
    assert (plain(left) - plain(right)).abs().max() > 1e-3


def test_periodic_embedding_values() -> None:
    embedding = InputEmbedding(BURGERS, "unit", ["x"], FourierConfig())
    inputs = torch.tensor([[0.5, 0.25], [-1.0, 1.0]], dtype=torch.float32)
    expected = torch.tensor([[-0.5, math.cos(1.5 * math.pi), math.sin(1.5 * math.pi)], [1.0, 1.0, 0.0]])
    torch.testing.assert_close(embedding(inputs), expected, atol=1e-6, rtol=0)  # [t in [-1, 1], cos, sin of pi (x + 1)]


def test_fourier_features_are_cos_sin_of_a_seeded_projection() -> None:
    cfg = FourierConfig(features=5, sigma=3.0)
    torch.manual_seed(7)
    a = InputEmbedding(BURGERS, "unit", [], cfg)
    torch.manual_seed(7)
    b = InputEmbedding(BURGERS, "unit", [], cfg)
    torch.manual_seed(8)
    c = InputEmbedding(BURGERS, "unit", [], cfg)
    assert torch.equal(a.fourier, b.fourier) and not torch.equal(a.fourier, c.fourier)
    assert a.fourier.shape == (2, 5) and a.out_features == 10
    inputs = torch.tensor([[0.0, 0.5], [1.0, 0.0]])
    z = torch.tensor([[0.0, 0.0], [1.0, -1.0]])
    projected = z @ a.fourier
    torch.testing.assert_close(a(inputs), torch.cat([projected.cos(), projected.sin()], dim=1))


def test_fourier_features_are_fixed_unless_trainable() -> None:
    fixed = MLP(MLPConfig(depth=1, width=4, fourier=FourierConfig(features=3)), BURGERS)
    trainable = MLP(MLPConfig(depth=1, width=4, fourier=FourierConfig(features=3, trainable=True)), BURGERS)
    assert not any(p is fixed.embedding.fourier for p in fixed.parameters())
    assert "embedding.fourier" in fixed.state_dict()
    assert any(p is trainable.embedding.fourier for p in trainable.parameters())


def test_normalisation_maps_the_domain_to_the_unit_box_or_is_skipped() -> None:
    corners = torch.tensor([[-1.0, 0.0], [1.0, 1.0], [0.0, 0.5]])
    on = InputEmbedding(BURGERS, "unit", [], FourierConfig())
    off = InputEmbedding(BURGERS, None, [], FourierConfig())
    torch.testing.assert_close(on(corners), torch.tensor([[-1.0, -1.0], [1.0, 1.0], [0.0, 0.0]]))
    torch.testing.assert_close(off(corners), corners)
    assert ModelConfig().periodic == []


def test_standard_scaling_matches_the_moments_of_a_large_uniform_draw() -> None:
    """`standard` is (x - mean) / std of the uniform law on the domain: the authors' code of Wang et
    al. 2021 estimates both from 1e5 uniform points, so a draw standardised by its own moments and
    one scaled by the embedding agree to the sampling error (~1e-2 at 1e5 points)."""
    generator = torch.Generator().manual_seed(0)
    draw = torch.rand(100_000, 2, generator=generator, dtype=torch.float64) * torch.tensor([2.0, 1.0]) - torch.tensor([1.0, 0.0])
    scaled = InputEmbedding(BURGERS, "standard", [], FourierConfig()).double()(draw)
    by_moments = (draw - draw.mean(0)) / draw.std(0)
    assert (scaled - by_moments).abs().max() < 2e-2
    corners = torch.tensor([[-1.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
    torch.testing.assert_close(InputEmbedding(BURGERS, "standard", [], FourierConfig()).double()(corners),
                               torch.tensor([[-1.0, -1.0], [1.0, 1.0]], dtype=torch.float64) * 3.0**0.5)
