"""MLP and modified MLP: shapes and dtypes, the modified MLP's equations on a hand-sized case,
initialisation schemes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pinnrun.config import ConfigError, parse_option
from pinnrun.models.mlp import MLP, MLPConfig
from pinnrun.models.modified_mlp import ModifiedMLP
from pinnrun.problems.burgers import Burgers, BurgersConfig

BURGERS = Burgers(BurgersConfig())


@pytest.mark.parametrize("name", ["mlp", "modified_mlp"])
@pytest.mark.parametrize("dtype, activation, embedding", [
    (torch.float32, "tanh", []),
    (torch.float64, "sin", ["model.periodic=[x]"]),
    (torch.float32, "gelu", ["model.fourier.features=6"]),
    (torch.float64, "silu", ["model.periodic=[x]", "model.fourier.features=6", "model.fourier.trainable=true"]),
    (torch.float64, "tanh", ["model.fourier.features=6"]),
    (torch.float32, "sin", ["model.periodic=[x]", "model.fourier.features=6"]),
])
def test_output_shape_and_dtype(make_cfg, name: str, dtype: torch.dtype, activation: str, embedding: list[str]) -> None:
    """Every activation and embedding, both networks, float32 and float64 (each pairing once)."""
    cfg = make_cfg(f"model={name}", "model.depth=3", "model.width=7", f"model.activation={activation}", *embedding)
    model = parse_option("model", cfg.model).build(BURGERS).to(dtype=dtype)
    inputs = torch.rand(11, 2, dtype=dtype) * torch.tensor([2.0, 1.0], dtype=dtype) - torch.tensor([1.0, 0.0], dtype=dtype)
    out = model(inputs)
    assert out.shape == (11, 1) and out.dtype == dtype and torch.isfinite(out).all()
    out.sum().backward()
    assert all(p.grad is not None and p.grad.dtype == dtype for p in model.parameters())


@pytest.mark.parametrize("gate_first", [True, False])
def test_modified_mlp_matches_its_equations_by_hand(gate_first: bool) -> None:
    """Wang, Teng & Perdikaris 2021: U = act(X W_u + b_u), V = act(X W_v + b_v), Z_k = act(H_k W_k + b_k),
    H_{k+1} = (1 - Z_k) U + Z_k V, u = H W + b, recomputed in numpy from the layer weights (depth 3,
    width 3, inputs normalised to [-1, 1]). With gate_first (the authors' code) H_0 = X and all three
    hidden layers are gates; without, H_1 = act(X W_1 + b_1) and two are."""
    torch.manual_seed(0)
    model = ModifiedMLP(ModifiedMLP.Config(depth=3, width=3, activation="tanh", gate_first=gate_first), BURGERS).double()
    for p in model.parameters():  # non-zero biases, so a bias mix-up shows
        torch.nn.init.uniform_(p, -1.0, 1.0)
    inputs = np.array([[-1.0, 0.0], [0.25, 0.5], [0.9, 1.0]])
    w = {name: p.detach().numpy() for name, p in model.named_parameters()}

    def dense(x: np.ndarray, layer: str) -> np.ndarray:
        return x @ w[f"{layer}.weight"].T + w[f"{layer}.bias"]

    x = np.stack([inputs[:, 0], 2.0 * inputs[:, 1] - 1.0], axis=1)  # x in [-1, 1] already; t from [0, 1]
    u, v = np.tanh(dense(x, "encoder_u")), np.tanh(dense(x, "encoder_v"))
    z = np.tanh(dense(x, "first"))
    h = (1.0 - z) * u + z * v if gate_first else z
    for k in range(2):
        z = np.tanh(dense(h, f"gates.{k}"))
        h = (1.0 - z) * u + z * v
    expected = dense(h, "output")
    np.testing.assert_allclose(model(torch.from_numpy(inputs)).detach().numpy(), expected, rtol=1e-13, atol=1e-14)
    assert sum(p.numel() for p in model.parameters()) == 3 * (2 * 3 + 3) + 2 * (3 * 3 + 3) + 3 + 1
    assert [tuple(m.shape) for m in model.layer_weights()] == [(3, 2), (3, 3), (3, 3), (1, 3)]


def test_modified_mlp_encoder_biases_are_random_by_default_as_in_the_authors_code() -> None:
    """Helmholtz2D_model_tf.py:52-56 draws the encoder biases like weights, N(0, 2 / (1 + width));
    `encoder_bias: zeros` keeps them at zero. Hidden-layer biases start at zero either way."""
    torch.manual_seed(0)
    random = ModifiedMLP(ModifiedMLP.Config(depth=2, width=400), BURGERS)
    zeros = ModifiedMLP(ModifiedMLP.Config(depth=2, width=400, encoder_bias="zeros"), BURGERS)
    for encoder in (random.encoder_u, random.encoder_v):
        assert abs(float(encoder.bias.detach().std()) / math.sqrt(2.0 / 401) - 1.0) < 0.15
    assert all(float(b.abs().max()) == 0.0 for b in (zeros.encoder_u.bias, zeros.encoder_v.bias, random.first.bias))


@pytest.mark.parametrize("init, check", [
    ("glorot_uniform", lambda w, fan_in, fan_out: w.abs().max() <= math.sqrt(6.0 / (fan_in + fan_out))),
    ("glorot_normal", lambda w, fan_in, fan_out: abs(w.std() / math.sqrt(2.0 / (fan_in + fan_out)) - 1) < 0.05),
    ("kaiming_normal", lambda w, fan_in, fan_out: abs(w.std() / math.sqrt(2.0 / fan_in) - 1) < 0.05),
])
def test_initialisation_schemes(init: str, check) -> None:
    """Weight spread per scheme on 400-wide layers (160k weights: the std estimate is within ~0.2%),
    biases zero."""
    torch.manual_seed(0)
    model = MLP(MLPConfig(depth=2, width=400, init=init), BURGERS)
    hidden = model.body[2]
    assert check(hidden.weight.detach(), 400, 400)
    assert all((layer.bias == 0).all() for layer in model.body if isinstance(layer, torch.nn.Linear))


def test_bad_model_options_are_refused_in_one_line(make_cfg) -> None:
    for overrides, message in [
        (["model.activation=relu"], "model.activation='relu': not one of tanh, sin, gelu, silu"),
        (["model.fourier.sigma=0"], "model.fourier.sigma=0.0: must be > 0"),
        (["model.periodic=[x,x]"], "names an input twice"),
    ]:
        with pytest.raises(ConfigError, match=message) as error:
            parse_option("model", make_cfg(*overrides).model)
        assert "\n" not in str(error.value)
    with pytest.raises(ConfigError, match="model.periodic: 'y' is not an input of burgers"):
        parse_option("model", make_cfg("model=modified_mlp", "model.periodic=[y]").model).build(BURGERS)
