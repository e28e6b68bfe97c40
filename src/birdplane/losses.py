"""The losses a net can train with, and the output heads they go with: one record each.

A `Loss` is everything every training path needs to know about it: the head the model ends in,
the mean loss of that head's outputs (autograd, evaluation), its gradient with respect to the
logits (the fused and batched SGD steps, which have no autograd), and its sum over a batch (the
running per-epoch figures, computed inside a CUDA graph: elementwise ops and reductions only).
Adding a loss is one `register(Loss(...))`; params.yaml's `loss:` accepts every registered name.

Importing this module does not import torch (the config validates names against it); the
functions import it when called.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

Tensor = "torch.Tensor"


@dataclass(frozen=True)
class Head:
    """The model's last layer: how logits become outputs, and outputs class probabilities."""

    name: str
    module: str  # the torch.nn class, applied with dim=1
    apply: Callable[[Tensor, int], Tensor]  # (logits, class dim) -> outputs
    probabilities: Callable[[Tensor], Tensor]  # outputs -> class probabilities


def _log_softmax(z, dim):
    import torch

    return torch.log_softmax(z, dim=dim)


def _softmax(z, dim):
    import torch

    return torch.softmax(z, dim=dim)


HEADS: dict[str, Head] = {
    "log_softmax": Head("log_softmax", "LogSoftmax", _log_softmax, lambda outputs: outputs.exp()),
    "softmax": Head("softmax", "Softmax", _softmax, lambda outputs: outputs),
}


@dataclass(frozen=True)
class Loss:
    name: str
    head: str
    # mean loss of a batch: outputs (N x classes) of the head against labels (N)
    mean: Callable[[Tensor, Tensor], Tensor]
    # (logits z: ... x classes x batch, labels y: ... x batch) -> (d mean / dz, the head's outputs
    # ... x batch x classes); a leading dim holds several models (birdplane.train.batched)
    grad: Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]
    # summed loss of a batch: outputs (... x batch x classes), labels (... x batch) -> (...)
    total: Callable[[Tensor, Tensor], Tensor]
    doc: str = ""


LOSSES: dict[str, Loss] = {}


def register(loss: Loss) -> Loss:
    if loss.head not in HEADS:
        raise ValueError(
            f"loss {loss.name!r}: unknown head {loss.head!r}; use one of {sorted(HEADS)}"
        )
    LOSSES[loss.name] = loss
    return loss


def onehot(y, classes: int, dim: int, dtype):
    """One-hot targets by comparison (no scatter, so it can be captured in a CUDA graph), with the
    class axis at `dim` (-1: ... x batch x classes, -2: ... x classes x batch)."""
    import torch

    arange = torch.arange(classes, device=y.device)
    if dim == -1:
        return (y.unsqueeze(-1) == arange).to(dtype)
    return (y.unsqueeze(-2) == arange.unsqueeze(1)).to(dtype)


# ---- NLLLoss on LogSoftmax outputs: -log p(correct class), unbounded for confident mistakes


def _nll_mean(log_probs, target):
    import torch.nn.functional as F

    return F.nll_loss(log_probs, target)


def _over_classes(fn, z):
    """fn(z, dim=-1) for logits laid out classes x batch: each image's classes as one row, so the
    result does not depend on how the thread count splits the batch (ATen's softmax over a
    non-last dimension does: another rounding at 3 threads than at 1 or 2)."""
    return fn(z.transpose(-2, -1), dim=-1).transpose(-2, -1)


def _nll_grad(z, y):
    import torch

    n = z.shape[-1]
    outputs = _over_classes(torch.log_softmax, z)
    target = onehot(y, z.shape[-2], -2, z.dtype)
    return outputs.exp().sub_(target).div_(n), outputs.transpose(
        -2, -1
    )  # softmax - onehot, averaged


def _nll_total(outputs, y):
    return -(outputs * onehot(y, outputs.shape[-1], -1, outputs.dtype)).sum((-2, -1))


# ---- MSELoss between Softmax outputs and one-hot targets: at most 1 per image, however wrong


def _mse_mean(probs, target):
    import torch.nn.functional as F

    return F.mse_loss(probs, F.one_hot(target, probs.shape[1]).to(probs.dtype))


def _mse_grad(z, y):
    import torch

    c, n = z.shape[-2:]
    p = _over_classes(torch.softmax, z)
    dp = (p - onehot(y, c, -2, z.dtype)).mul_(2 / (n * c))  # averaged over n*c entries
    dot = (
        (dp * p).transpose(-2, -1).sum(dim=-1, keepdim=True).transpose(-2, -1)
    )  # per image, as above
    return p * (dp - dot), p.transpose(-2, -1)  # through the softmax Jacobian


def _mse_total(outputs, y):
    classes = outputs.shape[-1]
    return (outputs - onehot(y, classes, -1, outputs.dtype)).square().sum((-2, -1)) / classes


NLL = register(
    Loss(
        "nll",
        "log_softmax",
        _nll_mean,
        _nll_grad,
        _nll_total,
        "NLLLoss on LogSoftmax: -log p(correct class), the book's loss for classification",
    )
)
MSE = register(
    Loss(
        "mse",
        "softmax",
        _mse_mean,
        _mse_grad,
        _mse_total,
        "MSELoss between Softmax outputs and one-hot targets (homework task 1)",
    )
)


def nll(log_probs, target):
    return NLL.mean(log_probs, target)


def mse(probs, target):
    return MSE.mean(probs, target)


def probabilities(outputs, head: str):
    """Class probabilities from the model's head (log-probabilities or probabilities)."""
    return HEADS[head].probabilities(outputs)
