"""Inference: a trained model's outputs for a whole set, and the figures every stage reports from
them (accuracy, mean loss). Training (the per-epoch validation pass), the sweep, evaluate and the
shift test all go through here, so the same model gives the same numbers everywhere."""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from birdplane.losses import LOSSES

# rows per no-grad forward pass: bounds memory; 256 keeps a convnet's feature maps in cache (2x
# faster than 2,000 at once on 2 cores) and is still a full-speed matrix product for the MLPs
EVAL_CHUNK = 256

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Model outputs for all rows of x, in chunks."""
    model.eval()
    return torch.cat([model(x[i:i + EVAL_CHUNK]) for i in range(0, len(x), EVAL_CHUNK)])


def accuracy(outputs: torch.Tensor, y: torch.Tensor) -> float:
    """Share of correct predictions, as an exact ratio of counts (9987/10000 is 0.9987, not float32 noise)."""
    return int((outputs.argmax(1) == y).sum()) / len(y)


@torch.no_grad()
def loss_and_accuracy(model: nn.Module, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Mean loss and accuracy over the whole set (a full no-grad pass)."""
    out = predict(model, x)
    return float(loss_fn(out, y)), accuracy(out, y)


def final_metrics(model: nn.Module, loss: str, train: tuple[torch.Tensor, torch.Tensor],
                  val: tuple[torch.Tensor, torch.Tensor]) -> dict[str, float]:
    """The trained model on all training and validation images: accuracy and mean loss of each,
    and the overfitting gap (train minus validation accuracy). One function for the training
    stages, the sweep and evaluate, so they report the same figures for the same model."""
    train_loss, train_acc = loss_and_accuracy(model, LOSSES[loss].mean, *train)
    val_loss, val_acc = loss_and_accuracy(model, LOSSES[loss].mean, *val)
    return {"train_accuracy": train_acc, "val_accuracy": val_acc, "train_loss": train_loss, "val_loss": val_loss,
            "overfit_gap": train_acc - val_acc}
