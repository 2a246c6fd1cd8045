"""Input derivatives of the network output, as the residual functions ask for them.

A residual sees a `Fields` object: the output `u`, the input coordinates and the derivatives it
declared (`"x"` for u_x, `"xx"` for u_xx, `"xt"` for u_xt). The engine computes exactly those,
so a residual never triggers work it did not declare.

Two engines compute them (`engine.derivatives`): `autograd` (nested reverse mode, any order) and
`jet` (a forward Taylor jet up to order 2, pinnrun.jet), whose first-order graph torch.compile
can compile. Both give the same Fields.
"""

from __future__ import annotations

from typing import Callable, Iterable, Mapping, Protocol

import torch
from torch import Tensor

from pinnrun import jet


class Fields:
    """The network output at a batch of points, with its coordinates and declared derivatives."""

    def __init__(self, inputs: Tensor, input_names: tuple[str, ...], u: Tensor, derivatives: Mapping[str, Tensor]):
        self.inputs = inputs
        self.input_names = input_names
        self.u = u
        self._derivatives = dict(derivatives)

    def __getitem__(self, key: str) -> Tensor:
        """The derivative named by its input letters, e.g. `f["xx"]` is d2u/dx2."""
        try:
            return self._derivatives[key]
        except KeyError:
            raise KeyError(f"derivative {key!r} was not declared by this term (declared: {sorted(self._derivatives)})") from None

    def coord(self, name: str) -> Tensor:
        """The coordinate column `name` of the inputs, shape (N,)."""
        return self.inputs[:, self.input_names.index(name)]


def check_derivative_keys(keys: Iterable[str], input_names: tuple[str, ...]) -> None:
    """Reject a derivative key that uses a letter which is not an input name."""
    for key in keys:
        if not key or any(letter not in input_names for letter in key):
            raise ValueError(f"derivative {key!r}: each letter must be one of the inputs {input_names}")


def autograd_fields(
    model: Callable[[Tensor], Tensor], inputs: Tensor, input_names: tuple[str, ...], needed: Iterable[str]
) -> Fields:
    """Evaluate the model and the requested derivatives by nested reverse-mode autograd.

    Derivatives are built up letter by letter: `"xt"` is d/dt of `"x"`; each gradient call gives
    every first derivative of its parent at once, so `"x"`, `"t"` cost one call together.
    """
    needed = tuple(dict.fromkeys(needed))
    check_derivative_keys(needed, input_names)
    x = inputs.detach().requires_grad_(bool(needed))
    u = model(x).squeeze(-1)
    derivatives: dict[str, Tensor] = {}
    gradients: dict[str, Tensor] = {}

    def derivative(key: str) -> Tensor:
        if key in derivatives:
            return derivatives[key]
        parent_key = key[:-1]
        if parent_key not in gradients:
            parent = derivative(parent_key) if parent_key else u
            gradients[parent_key] = torch.autograd.grad(parent.sum(), x, create_graph=True)[0]
        derivatives[key] = gradients[parent_key][:, input_names.index(key[-1])]
        return derivatives[key]

    for key in needed:
        derivative(key)
    return Fields(x, input_names, u, derivatives)


class JetModel(Protocol):
    def forward_jet(self, inputs: jet.Jet) -> jet.Jet: ...


def jet_fields(model: JetModel, inputs: Tensor, input_names: tuple[str, ...], needed: Iterable[str]) -> Fields:
    """Evaluate the model and the requested derivatives (order <= 2) in one forward Taylor-jet pass."""
    needed = tuple(dict.fromkeys(needed))
    check_derivative_keys(needed, input_names)
    keys = {key: jet.canonical(key, input_names) for key in needed}
    layout = jet.Layout.for_keys(keys.values())
    out = model.forward_jet(jet.input_jet(inputs, layout))
    derivatives = {key: out.partial(index).squeeze(-1) for key, index in keys.items()}
    return Fields(inputs, input_names, out.value.squeeze(-1), derivatives)


FieldsFunction = Callable[..., Fields]
ENGINES: dict[str, FieldsFunction] = {"autograd": autograd_fields, "jet": jet_fields}
"""`engine.derivatives` choices: (model, inputs, input_names, needed) -> Fields."""
