"""Adam's learning-rate schedules against hand-computed values, through the real torch optimizer."""

from __future__ import annotations

import math

import pytest
import torch

from pinnrun.config import ConfigError
from pinnrun.optim.adam import AdamConfig, AdamPhase, lr_factor


def squared_norm_closure(w: torch.nn.Parameter):
    """The closure a phase calls: loss = ||w||^2, its gradient in w.grad, and its diagnostics."""

    def closure():
        w.grad = None
        loss = (w**2).sum()
        loss.backward()
        return loss, {"loss/total": loss.detach()}

    return closure


def lrs_after(cfg: AdamConfig, steps: int) -> list[float]:
    """The learning rate the optimizer holds after each of `steps` steps on a toy loss."""
    w = torch.nn.Parameter(torch.tensor([1.0]))
    phase = AdamPhase(cfg)
    phase.start([w])
    closure = squared_norm_closure(w)
    seen = []
    for _ in range(steps):
        phase.advance(closure, 1)
        seen.append(phase.lr())
    return seen


@pytest.mark.parametrize(
    "schedule, expected",
    [
        ("none", [0.1, 0.1, 0.1, 0.1, 0.1]),
        # exponential: 0.1 * 0.5^(k/2), k = 1..5
        ("exponential", [0.1 * 0.5**0.5, 0.05, 0.1 * 0.5**1.5, 0.025, 0.1 * 0.5**2.5]),
        # step: 0.1 * 0.5^floor(k/2)
        ("step", [0.1, 0.05, 0.05, 0.025, 0.025]),
        # cosine over 4 steps: 0.1 * (1 + cos(pi k/4)) / 2, held at 0 after the end
        ("cosine", [0.1 * (1 + math.cos(math.pi / 4)) / 2, 0.05, 0.1 * (1 + math.cos(3 * math.pi / 4)) / 2, 0.0, 0.0]),
    ],
)
def test_learning_rate_schedules_match_hand_values(schedule: str, expected: list[float]) -> None:
    cfg = AdamConfig(steps=4, lr=0.1, schedule=schedule, decay_rate=0.5, decay_steps=2)
    assert lrs_after(cfg, 5) == pytest.approx(expected, abs=1e-15)
    assert lr_factor(cfg, 0) == 1.0


def test_adam_rows_carry_the_loss_it_stepped_on_and_the_weight_moves_by_lr() -> None:
    """First Adam step moves each weight by lr * sign(grad) (bias-corrected m/sqrt(v) = +-1)."""
    w = torch.nn.Parameter(torch.tensor([2.0, -3.0]))
    phase = AdamPhase(AdamConfig(steps=1, lr=0.01))
    phase.start([w])
    rows = phase.advance(squared_norm_closure(w), 1)
    assert len(rows) == 1 and float(rows[0]["loss/total"]) == 13.0
    torch.testing.assert_close(w.detach(), torch.tensor([1.99, -2.99]), rtol=0, atol=1e-7)
    assert phase.finished() and phase.adaptive


@pytest.mark.parametrize(
    "field, value, message",
    [("schedule", "linear", "schedule='linear': not one of none, exponential, step, cosine"),
     ("lr", 0.0, "lr=0.0: must be > 0"),
     ("betas", [0.9, 1.0], "betas=[0.9, 1.0]: must be two numbers in [0, 1)")],
)
def test_bad_adam_settings_are_refused_with_the_key(field: str, value, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        AdamConfig(**{field: value}).validate("optimizer")


def two_steps(cfg: AdamConfig, gradients: tuple[float, float]) -> list[float]:
    """w after each of two steps on loss = g_k * w (gradient g_k at step k), from w = 0, float64."""
    w = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    phase = AdamPhase(cfg)
    phase.start([w])
    seen = []
    for g in gradients:
        def closure(g: float = g):
            w.grad = None
            loss = (g * w).sum()
            loss.backward()
            return loss, {"loss/total": loss.detach()}
        phase.advance(closure, 1)
        seen.append(float(w.detach()))
    return seen


@pytest.mark.parametrize("mode", ["torch", "keras"])
def test_epsilon_mode_matches_each_frameworks_update_by_hand(mode: str) -> None:
    """Two steps with gradients 1e-6 then 3e-6, lr 1e-3, betas (0.9, 0.999), eps 1e-7. torch:
    w -= lr m_hat / (sqrt(v_hat) + eps); TF/Keras: w -= lr sqrt(1 - b2^t) / (1 - b1^t) m / (sqrt(v) + eps).
    The gradients sit near eps, so the two rules differ by a factor of about 4 at step one."""
    lr, b1, b2, eps, grads = 1e-3, 0.9, 0.999, 1e-7, (1e-6, 3e-6)
    m = v = w = 0.0
    expected = []
    for t, g in enumerate(grads, start=1):
        m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
        if mode == "torch":
            w -= lr * (m / (1 - b1**t)) / (math.sqrt(v / (1 - b2**t)) + eps)
        else:
            w -= lr * math.sqrt(1 - b2**t) / (1 - b1**t) * m / (math.sqrt(v) + eps)
        expected.append(w)
    got = two_steps(AdamConfig(lr=lr, betas=[b1, b2], eps=eps, eps_mode=mode), grads)
    assert got == pytest.approx(expected, rel=1e-12)
    assert (expected[0] > -0.3e-3) == (mode == "keras")  # keras: about 0.24 lr; torch: about 0.91 lr


def test_unknown_epsilon_mode_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="optimizer.eps_mode='tf': not one of torch, keras"):
        AdamConfig(eps_mode="tf").validate("optimizer")
