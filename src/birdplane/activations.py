"""The activations a hidden layer can use: one record each.

An `Activation` holds what every path needs: the torch.nn module that `build_model` puts into the
net (autograd, evaluation), an in-place forward for the fused and batched SGD steps, and
grad * activation'(z) written with the activation's output h (autograd's own backward kernels: one
pass instead of three elementwise ops). Adding one is one `register(Activation(...))`;
params.yaml's `activation:` accepts every registered name.

Importing this module does not import torch (the config validates names against it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

Tensor = "torch.Tensor"


@dataclass(frozen=True)
class Activation:
    name: str
    module: str  # the torch.nn class, e.g. "Tanh"
    forward_: Callable[[Tensor], Tensor]  # in place: z -> act(z)
    backward: Callable[[Tensor, Tensor], Tensor]  # (grad, h = act(z)) -> grad * act'(z)


ACTIVATIONS: dict[str, Activation] = {}


def register(activation: Activation) -> Activation:
    ACTIVATIONS[activation.name] = activation
    return activation


def by_module(module) -> Activation:
    """The activation whose torch.nn module `module` is (KeyError if none)."""
    name = type(module).__name__
    for activation in ACTIVATIONS.values():
        if activation.module == name:
            return activation
    raise KeyError(name)


def _aten():
    import torch

    return torch.ops.aten


register(
    Activation("tanh", "Tanh", lambda z: z.tanh_(), lambda grad, h: _aten().tanh_backward(grad, h))
)
register(
    Activation(
        "relu", "ReLU", lambda z: z.relu_(), lambda grad, h: _aten().threshold_backward(grad, h, 0)
    )
)
register(
    Activation(
        "sigmoid",
        "Sigmoid",
        lambda z: z.sigmoid_(),
        lambda grad, h: _aten().sigmoid_backward(grad, h),
    )
)
