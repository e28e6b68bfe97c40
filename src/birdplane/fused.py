"""A fused SGD step for the lecture's MLPs: the same math as autograd + torch.optim.SGD, fewer
passes over memory.

Autograd writes each weight gradient to a buffer (6.3 MB for the 3072x512 layer), and SGD then
reads weights and gradient and writes the weights again. Here the gradient of a layer is added
straight into its weights with one `addmm_` (W <- W - lr * delta^T a), so the big matrix streams
through memory once per step for the update instead of three times, and no gradient buffers
exist. Weight decay folds into the same call (beta = 1 - lr * weight_decay); dropout draws its
mask exactly as nn.Dropout does on CPU. `engine.train(..., fused=False)` keeps the autograd path as
the reference; a test checks that both give the same weights to float tolerance.
"""
from __future__ import annotations

import torch
from torch import nn

_ACTIVATIONS = {nn.Tanh: "tanh", nn.ReLU: "relu", nn.Sigmoid: "sigmoid"}


def is_mlp(model: nn.Module) -> bool:
    """Whether FusedMLP can train this model (build_model's mlp: Flatten, Linear, activation...)."""
    try:
        FusedMLP(model, "nll" if isinstance(list(model)[-1], nn.LogSoftmax) else "mse")
    except (TypeError, KeyError):
        return False
    return True


class FusedMLP:
    """Training steps for a `build_model` mlp: Flatten, (Linear, activation, Dropout?)*, Linear, head."""

    def __init__(self, model: nn.Sequential, loss: str, weight_decay: float = 0.0):
        layers = list(model)
        if not isinstance(layers[0], nn.Flatten):
            raise TypeError("expected a model from birdplane.models.build_model")
        body, head = layers[1:-1], layers[-1]
        self.linears: list[nn.Linear] = [m for m in body if isinstance(m, nn.Linear)]
        self.activations: list[str] = [_ACTIVATIONS[type(m)] for m in body
                                       if not isinstance(m, (nn.Linear, nn.Dropout))]
        self.dropout: list[float] = [0.0] * len(self.activations)
        for i, m in enumerate(body):
            if isinstance(m, nn.Dropout):
                if i == 0 or isinstance(body[i - 1], (nn.Linear, nn.Dropout)):
                    raise TypeError("expected Dropout right after an activation")
                self.dropout[sum(isinstance(b, nn.Linear) for b in body[:i]) - 1] = m.p
        if len(self.activations) != len(self.linears) - 1 or any(m.bias is None for m in self.linears):
            raise TypeError("expected Linear layers with bias separated by activations")
        self.head = "log_softmax" if isinstance(head, nn.LogSoftmax) else "softmax"
        if (loss, self.head) not in (("nll", "log_softmax"), ("mse", "softmax")):
            raise ValueError(f"loss {loss!r} does not fit the model's {self.head} head")
        self.loss = loss
        self.weight_decay = weight_decay

    @staticmethod
    def activate(z: torch.Tensor, kind: str) -> torch.Tensor:
        if kind == "tanh":
            return z.tanh_()
        if kind == "relu":
            return z.relu_()
        return z.sigmoid_()

    @staticmethod
    def derivative_times(grad: torch.Tensor, h: torch.Tensor, kind: str) -> torch.Tensor:
        """grad * activation'(z), written with the activation's output h = act(z)."""
        if kind == "tanh":
            return grad.mul_(1 - h * h)
        if kind == "relu":
            return grad.mul_(h > 0)
        return grad.mul_(h * (1 - h))

    @staticmethod
    def output_grad(z: torch.Tensor, y: torch.Tensor, loss: str) -> tuple[torch.Tensor, torch.Tensor]:
        """d(mean loss)/d(logits) for the batch, and the head's outputs.

        z and the gradient are (..., classes, batch), y is (..., batch), the outputs (..., batch,
        classes); a leading dim holds several models (birdplane.batched). The one-hot target is
        built by comparison (no scatter), so the step can be captured in a CUDA graph.
        """
        c, n = z.shape[-2:]
        onehot = (y.unsqueeze(-2) == torch.arange(c, device=z.device).unsqueeze(1)).to(z.dtype)
        if loss == "nll":  # d/dz of -log softmax(z)[y], averaged over the batch
            outputs = torch.log_softmax(z, dim=-2)
            return outputs.exp().sub_(onehot).div_(n), outputs.transpose(-2, -1)
        # MSELoss(softmax(z), onehot(y)) averaged over n*c entries, through the softmax Jacobian
        p = torch.softmax(z, dim=-2)
        dp = (p - onehot).mul_(2 / (n * c))
        return p * (dp - (dp * p).sum(dim=-2, keepdim=True)), p.transpose(-2, -1)

    @torch.no_grad()
    def step(self, x: torch.Tensor, y: torch.Tensor, lr: float) -> torch.Tensor:
        """One SGD step on the minibatch (x: N x features, y: N labels), weights updated in place;
        returns the head's outputs before the update (N x classes).

        Activations are kept transposed (features x batch): the forward product is then
        W @ x^T, which MKL runs about 25% faster than x @ W^T at batch 64 on the 2-core machine,
        and each layer's gradient (units x batch) is already contiguous for the update.
        """
        inputs = [x.t()]   # each layer's input, units x batch
        outs = [None]      # each hidden layer's activation output before dropout (for its derivative)
        masks = [None]     # each hidden layer's scaled dropout mask, or None
        h = inputs[0]
        last = len(self.linears) - 1
        for i, layer in enumerate(self.linears):
            z = torch.addmm(layer.bias.unsqueeze(1), layer.weight, h)
            if i < last:
                h = self.activate(z, self.activations[i])
                outs.append(h)
                p = self.dropout[i]
                if p > 0:  # nn.Dropout on CPU: bernoulli(1 - p) over the batch x units tensor, / (1 - p)
                    mask = torch.empty(h.shape[1], h.shape[0], device=h.device).bernoulli_(1 - p).div_(1 - p).t()
                    masks.append(mask)
                    h = h * mask
                else:
                    masks.append(None)
                inputs.append(h)
        delta, outputs = self.output_grad(z, y, self.loss)
        decay = 1 - lr * self.weight_decay  # SGD's weight_decay: p <- p - lr * (grad + wd * p)
        for i in range(last, -1, -1):
            layer, a = self.linears[i], inputs[i]
            back = layer.weight.t() @ delta if i > 0 else None  # with the weights before this step's update
            layer.weight.addmm_(delta, a.t(), beta=decay, alpha=-lr)
            if decay != 1:
                layer.bias.mul_(decay)
            layer.bias.sub_(delta.sum(dim=1), alpha=lr)
            if back is not None:
                if masks[i] is not None:
                    back.mul_(masks[i])
                delta = self.derivative_times(back, outs[i], self.activations[i - 1])
        return outputs
