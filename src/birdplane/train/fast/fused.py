"""A fused SGD step for the lecture's MLPs: the same math as autograd + torch.optim.SGD, fewer
passes over memory.

Autograd writes each weight gradient to a buffer (6.3 MB for the 3072x512 layer), and SGD then
reads weights and gradient and writes the weights again. Here the gradient of a layer is added
straight into its weights with one `addmm_` (W <- W - lr * delta^T a), so the big matrix streams
through memory once per step for the update instead of three times, and no gradient buffers
exist. Weight decay folds into the same call (beta = 1 - lr * weight_decay); dropout draws its
mask exactly as nn.Dropout does on CPU. birdplane.train.loop (autograd + torch.optim.SGD) is the
reference; a test checks that both give the same weights to float tolerance.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from birdplane.activations import ACTIVATIONS, by_module
from birdplane.losses import HEADS, LOSSES


# `steps`: minibatches per block. The first layer's two big products then run with 256 rows
# instead of 64 (a larger product runs closer to the CPU's peak) for a Gram correction that grows
# with the block (B(B-1)/2 products of 64 x 3072 x 64); 4 was the best block on 2 CPU cores and on
# a GPU inside the epoch's CUDA graph (measured: docs/performance.md).
GRAM_BLOCK = 4
# the correction's cost against the products shrinks with the layer's width: blocks of 4 made
# 256 units 20 % and 384 units 10 % slower, 512 units faster (single model and 3 batched models)
GRAM_MIN_UNITS = 512


def gram_block(units: int) -> int:
    """Minibatches per call of a blocked step: GRAM_BLOCK for a first layer of `units` wide enough
    to gain from it (on CPU and on CUDA alike), else 1."""
    return GRAM_BLOCK if units >= GRAM_MIN_UNITS else 1


MinibatchStep = Callable[
    [torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]
]


def gram_steps(
    w: torch.Tensor,
    x: torch.Tensor,
    y: torch.Tensor,
    lr: float,
    weight_decay: float,
    batch_size: int,
    step: MinibatchStep,
) -> torch.Tensor:
    """The block of FusedMLP.steps (see there for the formulas): w is the first layer's weights
    (units x features) and x the block's rows (rows x features), or both with a leading dim of K
    models (birdplane.train.fast.batched). step(xt, y, z) runs one minibatch given its transposed inputs,
    its labels and its first-layer product W_j x_j^T, updates everything but w, and returns the
    head's outputs and the first layer's delta (units x batch). Returns all outputs, in order."""
    mm = torch.bmm if w.dim() == 3 else torch.mm
    add_product_ = torch.Tensor.baddbmm_ if w.dim() == 3 else torch.Tensor.addmm_
    a = 1 - lr * weight_decay
    xt = x.transpose(-2, -1)
    rows = x.shape[-2]
    z_all = mm(w, xt)  # units x rows: every minibatch against W_0
    deltas = torch.empty_like(z_all)  # delta_i * a^-(i+1), side by side
    outputs = []
    for j, o in enumerate(range(0, rows, batch_size)):
        e = min(o + batch_size, rows)
        z = z_all[..., o:e]
        if o:
            add_product_(z, deltas[..., :o], mm(x[..., :o, :], xt[..., o:e]), alpha=-lr)
        if a != 1:
            z.mul_(a**j)
        out, delta = step(xt[..., o:e], y[..., o:e], z)
        deltas[..., o:e] = delta
        if a != 1:
            deltas[..., o:e].mul_(a ** -(j + 1))
        outputs.append(out)
    scale = a ** (j + 1)
    add_product_(w, deltas, x, beta=scale, alpha=-lr * scale)
    return torch.cat(outputs, dim=-2)


def fuse(model: nn.Module, loss: str, weight_decay: float = 0.0) -> FusedMLP | None:
    """FusedMLP steps for this model, or None where it cannot train it (not a build_model mlp)."""
    try:
        return FusedMLP(model, loss, weight_decay)
    except (TypeError, KeyError):
        return None


class FusedMLP:
    """Training steps for a `build_model` mlp: Flatten, (Linear, activation, Dropout?)*, Linear, head."""

    def __init__(self, model: nn.Sequential, loss: str, weight_decay: float = 0.0):
        layers = list(model)
        if not isinstance(layers[0], nn.Flatten):
            raise TypeError("expected a model from birdplane.models.build_model")
        body, head = layers[1:-1], layers[-1]
        self.linears: list[nn.Linear] = [m for m in body if isinstance(m, nn.Linear)]
        self.activations: list[str] = [
            by_module(m).name for m in body if not isinstance(m, (nn.Linear, nn.Dropout))
        ]
        self.dropout: list[float] = [0.0] * len(self.activations)
        for i, m in enumerate(body):
            if isinstance(m, nn.Dropout):
                if i == 0 or isinstance(body[i - 1], (nn.Linear, nn.Dropout)):
                    raise TypeError("expected Dropout right after an activation")
                self.dropout[sum(isinstance(b, nn.Linear) for b in body[:i]) - 1] = m.p
        if len(self.activations) != len(self.linears) - 1 or any(
            m.bias is None for m in self.linears
        ):
            raise TypeError("expected Linear layers with bias separated by activations")
        self.head = next((h.name for h in HEADS.values() if h.module == type(head).__name__), None)
        if self.head is None:
            raise TypeError(f"unknown output head {type(head).__name__}")
        if LOSSES[loss].head != self.head:
            raise ValueError(f"loss {loss!r} does not fit the model's {self.head} head")
        self.loss = loss
        self.weight_decay = weight_decay

    @staticmethod
    def activate(z: torch.Tensor, kind: str) -> torch.Tensor:
        """act(z), in place (birdplane.activations)."""
        return ACTIVATIONS[kind].forward_(z)

    @staticmethod
    def derivative_times(grad: torch.Tensor, h: torch.Tensor, kind: str) -> torch.Tensor:
        """grad * activation'(z), written with the activation's output h = act(z)."""
        return ACTIVATIONS[kind].backward(grad, h)

    @staticmethod
    def output_grad(
        z: torch.Tensor, y: torch.Tensor, loss: str
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """d(mean loss)/d(logits) for the batch, and the head's outputs (birdplane.losses).

        z and the gradient are (..., classes, batch), y is (..., batch), the outputs (..., batch,
        classes); a leading dim holds several models (birdplane.train.fast.batched).
        """
        return LOSSES[loss].grad(z, y)

    @torch.no_grad()
    def step(self, x: torch.Tensor, y: torch.Tensor, lr: float) -> torch.Tensor:
        """One SGD step on the minibatch (x: N x features, y: N labels), weights updated in place;
        returns the head's outputs before the update (N x classes).

        Activations are kept transposed (features x batch): the forward product is then
        W @ x^T, which MKL runs about 25% faster than x @ W^T at batch 64 on the 2-core machine,
        and each layer's gradient (units x batch) is already contiguous for the update.
        """
        return self._step(x.t(), y, lr)[0]

    def gram_block(self) -> int:
        """How many minibatches `steps` should get at once (see gram_block)."""
        return gram_block(self.linears[0].out_features)

    @torch.no_grad()
    def steps(self, x: torch.Tensor, y: torch.Tensor, lr: float, batch_size: int) -> torch.Tensor:
        """One SGD step per consecutive `batch_size` rows of x, in order: the same steps as calling
        `step` on each minibatch, with the first layer's products done once for all of them.

        The first layer's weights W are read and written once for the whole block instead of twice
        per minibatch: its forward products for every minibatch come from one product with the
        block's starting weights, W_0 @ x^T, and each minibatch j adds what the earlier updates of
        the block changed, exactly (in exact arithmetic):
            W_j x_j^T = a^j (W_0 x_j^T - lr * sum_{i<j} a^-(i+1) delta_i (x_i x_j^T)),
        a = 1 - lr * weight_decay, delta_i the first layer's gradient at step i (units x batch),
        x_i x_j^T a small batch x batch Gram matrix. The block's updates are then one addmm_:
            W_B = a^B (W_0 - lr * sum_i a^-(i+1) delta_i x_i).
        Biases and the other layers are updated step by step as in `step`. Returns the head's
        outputs of every step before its update (rows of x x classes).
        """
        if len(x) <= batch_size:
            return self.step(x, y, lr)
        return gram_steps(
            self.linears[0].weight,
            x,
            y,
            lr,
            self.weight_decay,
            batch_size,
            lambda xt, yb, z: self._step(xt, yb, lr, z),
        )

    def _step(
        self,
        xt: torch.Tensor,
        y: torch.Tensor,
        lr: float,
        first_product: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`step` on transposed inputs xt (features x batch). With `first_product` (the first
        layer's W @ xt, computed by `steps`, overwritten here) the first layer's weights are left
        to the caller, which gets that layer's gradient delta (units x batch) as the second result."""
        inputs = [xt]  # each layer's input, units x batch
        outs = [None]  # each hidden layer's activation output before dropout (for its derivative)
        masks = [None]  # each hidden layer's scaled dropout mask, or None
        h = inputs[0]
        last = len(self.linears) - 1
        for i, layer in enumerate(self.linears):
            if i == 0 and first_product is not None:
                z = first_product.add_(layer.bias.unsqueeze(1))
            else:
                z = torch.addmm(layer.bias.unsqueeze(1), layer.weight, h)
            if i < last:
                h = self.activate(z, self.activations[i])
                outs.append(h)
                p = self.dropout[i]
                if (
                    p > 0
                ):  # nn.Dropout on CPU: bernoulli(1 - p) over the batch x units tensor, / (1 - p)
                    mask = (
                        torch.empty(h.shape[1], h.shape[0], device=h.device)
                        .bernoulli_(1 - p)
                        .div_(1 - p)
                        .t()
                    )
                    masks.append(mask)
                    h = h * mask
                else:
                    masks.append(None)
                inputs.append(h)
        delta, outputs = self.output_grad(z, y, self.loss)
        decay = 1 - lr * self.weight_decay  # SGD's weight_decay: p <- p - lr * (grad + wd * p)
        for i in range(last, -1, -1):
            layer, a = self.linears[i], inputs[i]
            back = (
                layer.weight.t() @ delta if i > 0 else None
            )  # with the weights before this step's update
            if i > 0 or first_product is None:
                layer.weight.addmm_(delta, a.t(), beta=decay, alpha=-lr)
            if decay != 1:
                layer.bias.mul_(decay)
            layer.bias.sub_(delta.sum(dim=1), alpha=lr)
            if back is not None:
                if masks[i] is not None:
                    back.mul_(masks[i])
                delta = self.derivative_times(back, outs[i], self.activations[i - 1])
        return outputs, delta
