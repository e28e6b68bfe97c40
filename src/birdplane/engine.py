"""Training: the whole data set as tensors on the device, minibatches by seeded permutation.

No DataLoader: a batch is `x[perm[i:i + batch_size]]`, one indexing op. Core functions take
tensors and plain values and return results; tracking happens in the caller's `on_epoch`.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn

from birdplane.errors import BirdplaneError
from birdplane.losses import LOSSES, LossFn

EVAL_CHUNK = 4096  # rows per no-grad forward pass: bounds memory, large enough to run at full speed


class TrainingDiverged(BirdplaneError):
    """The loss became NaN or infinite."""


@dataclass(frozen=True)
class EpochStats:
    epoch: int
    train_loss: float
    train_accuracy: float
    val_loss: float
    val_accuracy: float
    seconds: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise BirdplaneError("train.device is 'cuda' but no CUDA device is available; use 'auto' or 'cpu'")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    """Same seed, same machine -> bit-identical results."""
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def to_features(images: np.ndarray, mean: list[float], std: list[float], device: torch.device) -> torch.Tensor:
    """uint8 N x 3 x 32 x 32 -> normalized float32 N x 3072 on `device` (one copy of the data)."""
    x = torch.from_numpy(images).to(device).float().div_(255)
    m = torch.tensor(mean, device=device).view(1, 3, 1, 1)
    s = torch.tensor(std, device=device).view(1, 3, 1, 1)
    return x.sub_(m).div_(s).reshape(len(images), -1)


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Model outputs for all rows of x, in chunks."""
    model.eval()
    return torch.cat([model(x[i:i + EVAL_CHUNK]) for i in range(0, len(x), EVAL_CHUNK)])


@torch.no_grad()
def loss_and_accuracy(model: nn.Module, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Mean loss and accuracy over the whole set (a full no-grad pass)."""
    out = predict(model, x)
    return float(loss_fn(out, y)), accuracy(out, y)


def accuracy(outputs: torch.Tensor, y: torch.Tensor) -> float:
    """Share of correct predictions, as an exact ratio of counts (9987/10000 is 0.9987, not float32 noise)."""
    return int((outputs.argmax(1) == y).sum()) / len(y)


def autograd_step(model: nn.Module, loss_fn: LossFn, lr: float) -> Callable[[torch.Tensor, torch.Tensor], None]:
    """The reference step: autograd and torch.optim.SGD, exactly the book's loop body."""
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        batch_loss = loss_fn(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        batch_loss.backward()
        optimizer.step()

    return step


def make_step(model: nn.Module, loss: str, lr: float, fused: bool = True) -> Callable[[torch.Tensor, torch.Tensor], None]:
    """One SGD step on a minibatch: birdplane.fused's one-pass update, or autograd + optim.SGD."""
    if fused:
        from birdplane.fused import FusedMLP

        fused_mlp = FusedMLP(model, loss)
        return lambda x, y: fused_mlp.step(x, y, lr)
    return autograd_step(model, LOSSES[loss], lr)


def train_epoch(step: Callable[[torch.Tensor, torch.Tensor], None], x: torch.Tensor, y: torch.Tensor,
                batch_size: int, generator: torch.Generator) -> None:
    """One pass over the data in minibatches: slices of a seeded permutation, no DataLoader."""
    perm = torch.randperm(len(x), generator=generator).to(x.device)
    for i in range(0, len(x), batch_size):
        idx = perm[i:i + batch_size]
        step(x[idx], y[idx])


def train(model: nn.Module, loss: str, train_x: torch.Tensor, train_y: torch.Tensor,
          val_x: torch.Tensor, val_y: torch.Tensor, *, epochs: int, batch_size: int, lr: float,
          seed: int, name: str = "model", fused: bool = True,
          on_epoch: Callable[[EpochStats], None] | None = None) -> list[EpochStats]:
    """Plain minibatch SGD, as in the book; returns one EpochStats per epoch.

    `fused` uses birdplane.fused (same math, one pass over each weight matrix per update);
    False uses autograd + torch.optim.SGD. Raises TrainingDiverged (naming `name` and the epoch)
    as soon as a loss is not finite.
    """
    loss_fn = LOSSES[loss]
    step = make_step(model, loss, lr, fused)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    history: list[EpochStats] = []
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        model.train()
        train_epoch(step, train_x, train_y, batch_size, gen)
        train_loss, train_acc = loss_and_accuracy(model, loss_fn, train_x, train_y)
        val_loss, val_acc = loss_and_accuracy(model, loss_fn, val_x, val_y)
        if not (np.isfinite(train_loss) and np.isfinite(val_loss)):
            raise TrainingDiverged(
                f"variant {name!r}: loss became {train_loss} at epoch {epoch} of {epochs}; "
                f"lower its learning rate (train.lr or train.variants.{name}.lr, now {lr}). No model was written")
        stats = EpochStats(epoch, train_loss, train_acc, val_loss, val_acc, time.perf_counter() - t0)
        history.append(stats)
        if on_epoch is not None:
            on_epoch(stats)
    return history
