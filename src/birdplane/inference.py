"""Inference: a trained model's outputs for a whole set, and the figures every stage reports from
them (accuracy, mean loss). Training (the per-epoch validation pass), the sweep, evaluate and the
shift test all go through here, so the same model gives the same numbers everywhere."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from birdplane.losses import HEADS, LOSSES

# rows per no-grad forward pass: bounds memory; 256 keeps a convnet's feature maps in cache (2x
# faster than 2,000 at once on 2 cores) and is still a full-speed matrix product for the MLPs
EVAL_CHUNK = 256

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Model outputs for all rows of x, in chunks."""
    model.eval()
    return torch.cat([model(x[i : i + EVAL_CHUNK]) for i in range(0, len(x), EVAL_CHUNK)])


def accuracy(outputs: torch.Tensor, y: torch.Tensor) -> float:
    """Share of correct predictions, as an exact ratio of counts (9987/10000 is 0.9987, not float32 noise)."""
    return int((outputs.argmax(1) == y).sum()) / len(y)


@torch.no_grad()
def loss_and_accuracy(
    model: nn.Module, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor
) -> tuple[float, float]:
    """Mean loss and accuracy over the whole set (a full no-grad pass)."""
    out = predict(model, x)
    return float(loss_fn(out, y)), accuracy(out, y)


def final_metrics(
    model: nn.Module,
    loss: str,
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor],
) -> dict[str, float]:
    """The trained model on all training and validation images: accuracy and mean loss of each,
    and the overfitting gap (train minus validation accuracy). One function for the training
    stages, the sweep and evaluate, so they report the same figures for the same model."""
    train_loss, train_acc = loss_and_accuracy(model, LOSSES[loss].mean, *train)
    val_loss, val_acc = loss_and_accuracy(model, LOSSES[loss].mean, *val)
    return {
        "train_accuracy": train_acc,
        "val_accuracy": val_acc,
        "train_loss": train_loss,
        "val_loss": val_loss,
        "overfit_gap": train_acc - val_acc,
    }


def logit_gradients(
    model: nn.Module, loss: str, x: torch.Tensor, y: torch.Tensor, confident: float = 0.1
) -> dict[str, float | int | None]:
    """How hard the loss pushes on the images the model gets wrong: the size (L2 norm) of each
    image's loss gradient with respect to its logits (the last Linear layer's outputs), averaged
    over the misclassified images, and over the confidently wrong ones (probability of the correct
    class below `confident`). Per image, not per batch: the loss of one image, as LOSSES[loss].total
    sums them, so the figure does not depend on the batch size.

    This is the measured side of homework task 1: NLLLoss's gradient is 1 - p(correct) in size
    (times sqrt 2 for two classes) and grows as an image gets more confidently wrong; MSELoss on
    softmax outputs is flat there (2 p (1 - p)^2 for two classes, which vanishes as p -> 0).
    `model` is a build_model net: a Sequential whose last module is the head."""
    head = LOSSES[loss].head
    logits = predict(model[:-1], x)
    with torch.enable_grad():
        z = logits.detach().requires_grad_(True)
        outputs = HEADS[head].apply(z, 1)
        (grad,) = torch.autograd.grad(LOSSES[loss].total(outputs, y), z)
    norms = grad.norm(dim=1)
    with torch.no_grad():
        p_true = HEADS[head].probabilities(outputs).gather(1, y.unsqueeze(1)).squeeze(1)
        wrong = outputs.argmax(1) != y
        sure = wrong & (p_true < confident)

    def mean(mask: torch.Tensor) -> float | None:
        return float(norms[mask].mean()) if bool(mask.any()) else None

    return {
        "misclassified": mean(wrong),
        "confidently_wrong": mean(sure),
        "all": float(norms.mean()),
        "n_misclassified": int(wrong.sum()),
        "n_confidently_wrong": int(sure.sum()),
    }
