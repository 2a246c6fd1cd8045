"""Second-order forward Taylor jets: input derivatives of a network with a first-order graph.

A jet carries, for a batch of points, a layer's value together with its partial derivatives with
respect to the network inputs (u, u_x, u_t, u_xx, u_xt, ...), and each layer maps a jet to a jet:
linear layers act on every component alike (the bias only on the value), elementwise activations
by the chain rule up to second order,

    s(v)_i  = s'(v) v_i,      s(v)_ij = s''(v) v_i v_j + s'(v) v_ij,

and products by Leibniz' rule. This is forward-mode Taylor-mode differentiation truncated at
order 2 (Griewank & Walther 2008, ch. 13). Unlike nested `autograd.grad(create_graph=True)`,
the loss it yields has a first-order autograd graph, so `torch.compile` can compile the residual
and its backward pass.

The engine walks a model's layers: `nn.Sequential`, `nn.Linear` and the activations with a rule
(`RULES`, or a module's own `jet_rule`) have exact jet rules; `multiply` and `add` combine jets for
gated models (the modified MLP's H = (1 - Z) U + Z V). Any other module or function (a model's
`network` when the model does not override `network_jet`, a hard-constraint ansatz) goes through
`apply_jvp`, which gets the same jet from forward-mode AD (`torch.func.jvp`, nested once for second
derivatives): correct for any differentiable function, but slower, and run eagerly (a graph break)
under torch.compile.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import torch
from torch import Tensor, nn
from torch.func import jvp

Key = tuple[int, ...]
"""A partial derivative as sorted input indices: (0,) is d/dx0, (0, 1) is d2/dx0 dx1."""

MAX_ORDER = 2


def canonical(key: str, input_names: Sequence[str]) -> Key:
    """The sorted index tuple of a derivative key such as "xt" (mixed partials commute)."""
    return tuple(sorted(input_names.index(letter) for letter in key))


@dataclass(frozen=True)
class Layout:
    """Which partials a jet carries, in stack order: first order, then second order."""

    first: tuple[int, ...]  # input indices i with d/dx_i carried
    second: tuple[Key, ...]  # (i, j) pairs, i <= j, with d2/dx_i dx_j carried

    @classmethod
    def for_keys(cls, keys: Iterable[Key]) -> "Layout":
        """The smallest layout that holds `keys` and the first-order partials they are built from."""
        keys = set(keys)
        if any(len(key) > MAX_ORDER for key in keys):
            raise ValueError(f"the jet engine computes derivatives up to order {MAX_ORDER}; use engine.derivatives=autograd")
        second = tuple(sorted(key for key in keys if len(key) == 2))
        first = tuple(sorted({i for key in keys for i in key}))
        return cls(first, second)

    @property
    def size(self) -> int:
        """Stack rows: the value, then one per carried partial."""
        return 1 + len(self.first) + len(self.second)

    def row(self, key: Key) -> int:
        """The stack row of a partial (0 is the value)."""
        if not key:
            return 0
        if len(key) == 1:
            return 1 + self.first.index(key[0])
        return 1 + len(self.first) + self.second.index(key)

    @property
    def pair_rows(self) -> tuple[list[int], list[int]]:
        """For each second-order (i, j): the first-order rows of i and j (offset past the value)."""
        return [self.first.index(i) for i, _ in self.second], [self.first.index(j) for _, j in self.second]

    def value_mask(self, like: Tensor) -> Tensor:
        """(rows, 1, 1) with 1 on the value row: adds a bias to the value only, without a copy."""
        mask = torch.zeros(self.size, 1, 1, dtype=like.dtype, device=like.device)
        mask[0] = 1
        return mask


@dataclass
class Jet:
    """A (rows, N, features) stack: row 0 the value, then the partials in `layout` order."""

    stack: Tensor
    layout: Layout

    @property
    def value(self) -> Tensor:
        return self.stack[0]

    def partial(self, key: Key) -> Tensor:
        return self.stack[self.layout.row(key)]


def input_jet(inputs: Tensor, layout: Layout) -> Jet:
    """The jet of the inputs themselves: d x / d x_i = e_i, second partials zero."""
    n, dim = inputs.shape
    eye = torch.eye(dim, dtype=inputs.dtype, device=inputs.device)
    rows = [inputs]
    rows += [eye[i].expand(n, dim) for i in layout.first]
    rows += [inputs.new_zeros(n, dim)] * len(layout.second)
    return Jet(torch.stack(rows), layout)


def affine(jet: Jet, weight: Tensor, bias: Tensor | None) -> Jet:
    """y = x W^T + b: every component through W, the bias on the value only."""
    out = torch.matmul(jet.stack, weight.t())
    if bias is None:
        return Jet(out, jet.layout)
    return Jet(out + jet.layout.value_mask(out) * bias, jet.layout)


def scale(jet: Jet, factor: Tensor, shift: Tensor) -> Jet:
    """y = factor * x + shift per feature (input normalisation)."""
    out = jet.stack * factor
    return Jet(torch.cat([(out[0] + shift).unsqueeze(0), out[1:]]), jet.layout)


def chain(jet: Jet, s0: Tensor, s1: Tensor, s2: Tensor) -> Jet:
    """An elementwise function given its value s0, first s1 and second s2 derivative at jet.value."""
    layout = jet.layout
    nf = len(layout.first)
    rows = [s0.unsqueeze(0), s1 * jet.stack[1 : 1 + nf]]
    if layout.second:
        products = torch.stack([jet.stack[1 + a] * jet.stack[1 + b] for a, b in zip(*layout.pair_rows)])
        rows.append(s2 * products + s1 * jet.stack[1 + nf :])
    return Jet(torch.cat(rows), layout)


def multiply(a: Jet, b: Jet) -> Jet:
    """The product a * b by Leibniz' rule: (ab)_i = a_i b + a b_i, (ab)_ij = a_ij b + a_i b_j + a_j b_i + a b_ij."""
    layout = a.layout
    nf = len(layout.first)
    a0, b0 = a.stack[0], b.stack[0]
    rows = [(a0 * b0).unsqueeze(0), a.stack[1 : 1 + nf] * b0 + a0 * b.stack[1 : 1 + nf]]
    if layout.second:
        cross = torch.stack([a.stack[1 + i] * b.stack[1 + j] + a.stack[1 + j] * b.stack[1 + i] for i, j in zip(*layout.pair_rows)])
        rows.append(a.stack[1 + nf :] * b0 + cross + a0 * b.stack[1 + nf :])
    return Jet(torch.cat(rows), layout)


def add(a: Jet, b: Jet) -> Jet:
    """a + b, componentwise."""
    return Jet(a.stack + b.stack, a.layout)


def tanh_rule(v: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    t = torch.tanh(v)
    d1 = 1 - t * t
    return t, d1, -2 * t * d1


def sin_rule(v: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    s = torch.sin(v)
    return s, torch.cos(v), -s


def silu_rule(v: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    s = torch.sigmoid(v)
    return v * s, s * (1 + v * (1 - s)), s * (1 - s) * (2 + v * (1 - 2 * s))


def gelu_rule(v: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Exact (erf) GELU: y = v Phi(v), y' = Phi + v phi, y'' = phi (2 - v^2)."""
    cdf = 0.5 * (1 + torch.erf(v / math.sqrt(2.0)))
    pdf = torch.exp(-0.5 * v * v) / math.sqrt(2 * math.pi)
    return v * cdf, cdf + v * pdf, pdf * (2 - v * v)


Rule = Callable[[Tensor], tuple[Tensor, Tensor, Tensor]]
"""An elementwise function's (s, s', s'') at v."""

RULES: dict[type, Rule] = {nn.Tanh: tanh_rule, nn.SiLU: silu_rule}


def activation_rule(module: nn.Module) -> Rule | None:
    """The jet rule of an elementwise module: torch's Tanh, SiLU and exact GELU, or any module
    that defines `jet_rule(v) -> (s, s', s'')` (pinnrun's own activations do); else None."""
    if hasattr(module, "jet_rule"):
        return module.jet_rule
    if isinstance(module, nn.GELU):
        return gelu_rule if module.approximate == "none" else None
    return RULES.get(type(module))


def propagate(module: nn.Module, jet: Jet) -> Jet:
    """A module applied to a jet: exact rules for Sequential, Linear and known activations,
    forward-mode AD (`apply_jvp`) for anything else."""
    if isinstance(module, nn.Sequential):
        for layer in module:
            jet = propagate(layer, jet)
        return jet
    if isinstance(module, nn.Linear):
        return affine(jet, module.weight, module.bias)
    rule = activation_rule(module)
    if rule is not None:
        return chain(jet, *rule(jet.value))
    return apply_jvp(module, jet)


@torch._disable_dynamo  # torch.compiler.disable, but importing dynamo (1.5 s) on first call, not at import
def apply_jvp(fn: Callable[..., Tensor], *jets: Jet) -> Jet:
    """y = fn(*values) with its jet by forward-mode AD, for functions without a jet rule.

    With tangents d_i of every argument, y_i = Df[d_i], and the mixed partial is the derivative
    of s -> Df(x + s d_j)[d_i] at s = 0 plus the first-order term: y_ij = D2f[d_i, d_j] + Df[d_ij].
    torch 2.13's compiler fails on torch.func.jvp here (an internal assert on tangent layouts),
    so this runs eagerly between compiled graphs.
    """
    layout = jets[0].layout
    primals = tuple(j.value.contiguous() for j in jets)

    def tangents(key: Key) -> tuple[Tensor, ...]:
        return tuple(j.partial(key).contiguous() for j in jets)

    rows = [fn(*primals)]
    rows += [jvp(fn, primals, tangents((i,)))[1] for i in layout.first]
    for i, j in layout.second:
        directional = lambda *p, i=i: jvp(fn, p, tangents((i,)))[1]  # noqa: E731 - Df(.)[d_i]
        rows.append(jvp(directional, primals, tangents((j,)))[1] + jvp(fn, primals, tangents((i, j)))[1])
    return Jet(torch.stack(rows), layout)
