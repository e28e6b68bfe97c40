"""Many MLPs trained at once: stacked weights, batched matrix products.

A capacity sweep trains dozens of small networks (widths 2 ... 1024, several seeds). One at a time,
a 3072-8-2 net spends its step launching a dozen tiny operations; K of them stacked into
(K, out, in) weight tensors take one batched product per layer for all K. Each model keeps its
own initialisation and its own batch order (its seed), so the result is the same as training the K
models one by one with birdplane.train.fast.train: for models of one width (a variant's seeds, a
sweep configuration's) each takes the products it takes alone, so with pinned numerics on the CPU
the same bits; padded widths or unpinned, to float rounding (tests check both).

Widths may differ: every layer is zero-padded to the widest model and a mask keeps the padding
units at exactly zero (no output, no gradient), whatever the activation. Weight decay, dropout
(one mask draw for all K, so not the same random numbers as one by one) and early stopping
(each model keeps its own best epoch) work as in birdplane.train.loop.train.
"""

from __future__ import annotations

import torch
from torch import nn

from birdplane import inference
from birdplane.inference import EVAL_CHUNK
from birdplane.losses import HEADS, LOSSES
from birdplane.train.fast.epochs import Stepper
from birdplane.train.fast.fused import FusedMLP, gram_block, gram_steps
from birdplane.train.sgd import SGD


class BatchedMLP:
    """K build_model networks of the same depth, activation and head, as stacked tensors."""

    def __init__(self, models: list[nn.Sequential], loss: str, weight_decay: float = 0.0):
        fused = [FusedMLP(m, loss) for m in models]  # checks each model's structure and head
        first = fused[0]
        if any(
            f.activations != first.activations
            or len(f.linears) != len(first.linears)
            or f.dropout != first.dropout
            for f in fused
        ):
            raise ValueError(
                "batched models need the same depth, activation and dropout (widths may differ)"
            )
        self.dropout, self.weight_decay = first.dropout, weight_decay
        if (
            len({f.linears[0].in_features for f in fused}) != 1
            or len({f.linears[-1].out_features for f in fused}) != 1
        ):
            raise ValueError("batched models need the same inputs and classes")
        self.loss, self.activations, self.k = loss, first.activations, len(models)
        device = first.linears[0].weight.device
        self.weights: list[torch.Tensor] = []
        self.biases: list[torch.Tensor] = []
        self.masks: list[torch.Tensor | None] = []
        for layer in range(len(first.linears)):
            rows = max(f.linears[layer].out_features for f in fused)
            cols = max(f.linears[layer].in_features for f in fused)
            w = torch.zeros(self.k, rows, cols, device=device)
            b = torch.zeros(self.k, rows, 1, device=device)
            mask = torch.zeros(self.k, rows, 1, device=device)
            for k, f in enumerate(fused):
                lin = f.linears[layer]
                w[k, : lin.out_features, : lin.in_features] = lin.weight.detach()
                b[k, : lin.out_features, 0] = lin.bias.detach()
                mask[k, : lin.out_features] = 1
            self.weights.append(w)
            self.biases.append(b)
            padded = layer < len(first.linears) - 1 and not bool(mask.all())
            self.masks.append(mask if padded else None)
        self._fused, self._models = fused, models

    def stepper(self, sgd: SGD, block: int) -> Stepper:
        """The SGD step of all K models, `block` minibatches per call (Fused.train_many)."""
        return Stepper(lambda x, y: self.steps(x, y, sgd.lr, sgd.batch_size), block)

    def parameters(self) -> list[torch.Tensor]:
        return self.weights + self.biases

    def gram_block(self) -> int:
        """Minibatches per `steps` call (fused.gram_block), for the widest first layer."""
        return gram_block(self.weights[0].shape[1])

    @torch.no_grad()
    def step(self, x: torch.Tensor, y: torch.Tensor, lr: float) -> torch.Tensor:
        """One SGD step for every model: x (K, N, features), y (K, N), each model its own batch.
        Returns the head's outputs before the update (K, N, classes)."""
        return self._step(x.transpose(1, 2), y, lr)[0]

    @torch.no_grad()
    def steps(self, x: torch.Tensor, y: torch.Tensor, lr: float, batch_size: int) -> torch.Tensor:
        """One SGD step per consecutive `batch_size` rows of x (K, rows, features), every model on
        its own rows: FusedMLP.steps for K models, the first layer's products for the whole block
        at once with the same Gram correction, batched over the models."""
        if x.shape[1] <= batch_size:
            return self.step(x, y, lr)
        return gram_steps(
            self.weights[0],
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
        """`step` on transposed inputs xt (K, features, batch); with `first_product` (W @ xt from
        `steps`) the first layer's weights are left to the caller, which gets its delta back."""
        inputs = [xt]
        outs: list[torch.Tensor | None] = [None]  # activation outputs before dropout
        drops: list[torch.Tensor | None] = [None]  # scaled dropout masks
        h = inputs[0]
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            z = (
                first_product.add_(b)
                if i == 0 and first_product is not None
                else torch.baddbmm(b, w, h)
            )
            if i < last:
                h = FusedMLP.activate(z, self.activations[i])
                if self.masks[i] is not None:
                    h.mul_(self.masks[i])
                outs.append(h)
                p = self.dropout[i]
                drops.append(torch.empty_like(h).bernoulli_(1 - p).div_(1 - p) if p > 0 else None)
                if p > 0:
                    h = h * drops[-1]
                inputs.append(h)
        delta, outputs = FusedMLP.output_grad(z, y, self.loss)
        decay = 1 - lr * self.weight_decay
        for i in range(last, -1, -1):
            w, a = self.weights[i], inputs[i]
            back = (
                w.transpose(1, 2) @ delta if i > 0 else None
            )  # with the weights before the update
            if i > 0 or first_product is None:
                w.baddbmm_(delta, a.transpose(1, 2), beta=decay, alpha=-lr)
            if decay != 1:
                self.biases[i].mul_(decay)
            self.biases[i].sub_(delta.sum(dim=2, keepdim=True), alpha=lr)
            if back is not None:
                if drops[i] is not None:
                    back.mul_(drops[i])
                delta = FusedMLP.derivative_times(back, outs[i], self.activations[i - 1])
                if self.masks[i - 1] is not None:
                    delta.mul_(self.masks[i - 1])
        return outputs, delta

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Head outputs of every model for the same rows x (N, features): (K, N, classes).

        The first layer of all K models is one matrix product with the stacked weights."""
        k, rows, cols = self.weights[0].shape
        chunks = []
        for s in range(0, len(x), EVAL_CHUNK):
            h = (self.weights[0].view(k * rows, cols) @ x[s : s + EVAL_CHUNK].t()).view(k, rows, -1)
            h.add_(self.biases[0])
            for i in range(1, len(self.weights)):
                h = FusedMLP.activate(h, self.activations[i - 1])
                if self.masks[i - 1] is not None:
                    h.mul_(self.masks[i - 1])
                h = torch.baddbmm(self.biases[i], self.weights[i], h)
            chunks.append(h)
        z = torch.cat(chunks, dim=2)
        return HEADS[LOSSES[self.loss].head].apply(z, 1).transpose(1, 2)

    def snapshot(self, k: int) -> list[torch.Tensor]:
        return [t[k].clone() for t in self.weights + self.biases]

    @torch.no_grad()
    def restore(self, k: int, saved: list[torch.Tensor]) -> None:
        for t, s in zip(self.weights + self.biases, saved):
            t[k].copy_(s)

    def state_dict(self, k: int, saved: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """A snapshot of model k as that model's own state_dict (the padding cut off)."""
        names = {id(m): name for name, m in self._models[k].named_modules()}
        linears, n = self._fused[k].linears, len(self.weights)
        state = {}
        for i, lin in enumerate(linears):
            state[f"{names[id(lin)]}.weight"] = saved[i][
                : lin.out_features, : lin.in_features
            ].clone()
            state[f"{names[id(lin)]}.bias"] = saved[n + i][: lin.out_features, 0].clone()
        return state

    def loss_and_accuracy(
        self, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[list[float], list[float]]:
        """Each model's mean loss and accuracy on (x, y). On the CPU each model is measured as it
        would be alone (its weights written back, inference.loss_and_accuracy): with one width the
        training steps are the products each model takes alone, so with pinned numerics a seed's
        model and curves are the same bits whichever seeds train beside it. On CUDA one batched
        pass for all K (K passes would cost K times the launches, and CUDA has no exact bits)."""
        loss_fn = LOSSES[self.loss].mean
        if x.device.type == "cpu":
            self.write_back()
            figures = [inference.loss_and_accuracy(m, loss_fn, x, y) for m in self._models]
            return [loss for loss, _ in figures], [acc for _, acc in figures]
        out = self.predict(x)
        losses = [float(loss_fn(out[k], y)) for k in range(self.k)]
        correct = (out.argmax(2) == y).sum(1).tolist()
        return losses, [c / len(y) for c in correct]

    @torch.no_grad()
    def write_back(self) -> None:
        """Copy the trained weights into the K original models."""
        for i in range(len(self.weights)):
            for k, f in enumerate(self._fused):
                lin = f.linears[i]
                lin.weight.copy_(self.weights[i][k, : lin.out_features, : lin.in_features])
                lin.bias.copy_(self.biases[i][k, : lin.out_features, 0])
