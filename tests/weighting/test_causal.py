"""Causal training: chunk weights on a hand-made residual, the causal loss, composition with a
term-level scheme, and the refusals."""

from __future__ import annotations

import math

import pytest
import torch

from pinnrun.config import ConfigError, parse_node
from pinnrun.samplers.base import Points
from pinnrun.weighting.causal import Causal, chunk_weights
from pinnrun.weighting.gradnorm_terms import GradNormTerms
from tests.weighting.test_gradnorm import burgers, small_mlp

T = [0.1, 0.2, 0.3, 0.6, 0.9]
R = [1.0, 1.0, 2.0, 1.0, 3.0]


def causal(problem=None, **cfg) -> Causal:
    problem = problem or burgers()
    return Causal(parse_node("weighting", Causal.Config, cfg), problem, small_mlp(problem))


def inputs() -> tuple[dict[str, torch.Tensor], dict[str, Points]]:
    x = torch.tensor([[0.0, t] for t in T], dtype=torch.float64)
    residuals = {"pde": torch.tensor(R, dtype=torch.float64), "ic": torch.tensor([0.5], dtype=torch.float64),
                 "bc": torch.tensor([0.0], dtype=torch.float64)}
    points = {"pde": Points(x, torch.arange(5)), "ic": Points(torch.zeros(1, 2), torch.arange(1)),
              "bc": Points(torch.zeros(1, 2), torch.arange(1))}
    return residuals, points


def test_chunk_weights_by_hand() -> None:
    assert chunk_weights(torch.tensor([1.0, 4.0, 1.0, 9.0]), 0.5).tolist() == pytest.approx(
        [1.0, math.exp(-0.5), math.exp(-2.5), math.exp(-3.0)])


@pytest.mark.parametrize(("chunks", "expected"), [
    # 4 chunks: t 0.1, 0.2 | 0.3 | 0.6 | 0.9 -> L = 1, 4, 1, 9; w = 1, e^-1, e^-5, e^-6
    (4, (1 + math.exp(-1) * 4 + math.exp(-5) * 1 + math.exp(-6) * 9) / 4),
    # 5 chunks: 0.1 | 0.2, 0.3 | (empty) | 0.6 | 0.9 -> L = 1, 2.5, -, 1, 9; mean over the 4 filled
    (5, (1 + math.exp(-1) * 2.5 + math.exp(-3.5) * 1 + math.exp(-4.5) * 9) / 4),
])
def test_causal_loss_on_a_hand_made_residual(chunks: int, expected: float) -> None:
    scheme = causal(chunks=chunks, eps=1.0)
    residuals, points = inputs()
    loss, diagnostics = scheme.loss(residuals, points, step=0)
    assert float(diagnostics["loss/pde"]) == pytest.approx(expected, rel=1e-12)
    assert float(loss.detach()) == pytest.approx(expected + 0.25, rel=1e-12)
    assert float(scheme.metrics()["causal/w_last"]) == pytest.approx(math.exp(-6 if chunks == 4 else -4.5))
    weights = scheme.point_weights()["pde"]
    assert float((weights * residuals["pde"].square()).mean()) == pytest.approx(expected, rel=1e-12)
    assert not weights.requires_grad


def test_under_gradnorm_terms_the_term_weights_see_the_causal_loss() -> None:
    problem = burgers()
    model = small_mlp(problem)
    scheme = Causal(parse_node("weighting", Causal.Config, {"chunks": 4, "term_scheme": "gradnorm_terms",
                                                            "term_settings": {"momentum": 0.0}}), problem, model)
    assert isinstance(scheme.inner, GradNormTerms) and scheme.inner.cfg.momentum == 0.0
    x = torch.tensor([[0.2, t] for t in T], dtype=torch.float64)
    pde = model(x).squeeze(-1)  # a residual with a graph to the network
    residuals = {"pde": pde, "ic": model(x[:1]).squeeze(-1), "bc": model(x[:1]).squeeze(-1) * 0.5}
    points = {"pde": Points(x, torch.arange(5)), "ic": Points(x[:1], torch.arange(1)), "bc": Points(x[:1], torch.arange(1))}
    loss, _ = scheme.loss(residuals, points, step=0)
    p = scheme.point_weights()["pde"]
    params = list(model.parameters())
    norms = {t: torch.sqrt(sum(g.square().sum() for g in torch.autograd.grad(v, params, retain_graph=True)))
             for t, v in {"pde": (p * pde.square()).mean(), "ic": residuals["ic"].square().mean(),
                          "bc": residuals["bc"].square().mean()}.items()}
    total = sum(norms.values())
    assert {t: float(w) for t, w in scheme.inner.w.items()} == pytest.approx({t: float(total / n) for t, n in norms.items()})
    assert "gradnorm_terms/pde" in scheme.metrics()


def test_refusals_are_one_line() -> None:
    from pinnrun.problems.helmholtz import Helmholtz

    helmholtz = Helmholtz(parse_node("problem", Helmholtz.Config, {}))
    with pytest.raises(ConfigError, match="weighting=causal: problem helmholtz has no time input 't' \\(inputs: x, y\\)"):
        causal(helmholtz)
    with pytest.raises(ConfigError, match="weighting.term_scheme='sapinn': not a term-level scheme that composes; "
                                          "one of uniform, gradnorm_terms, lra"):
        parse_node("weighting", Causal.Config, {"term_scheme": "sapinn"})
    with pytest.raises(ConfigError, match="weighting.term_settings.update_every=0: must be > 0"):
        parse_node("weighting", Causal.Config, {"term_scheme": "lra", "term_settings": {"update_every": 0}})
