"""What every training path shares: the recipe (SGD), the per-epoch record (EpochStats), the batch
order (shuffle), the running minibatch figures (batch_stats), early stopping (EarlyStop) and the
error for a loss that is no longer finite (TrainingDiverged).

birdplane.train.loop (the book's loop) and birdplane.train.fast (the accelerations) both build on
these, so they draw the same batch order, stop at the same epoch and report the same figures.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Callable

import torch

from birdplane.errors import BirdplaneError
from birdplane.losses import LOSSES


@dataclass(frozen=True)
class SGD:
    """How a model is trained: plain minibatch SGD (no momentum), as in the book's chapter 7."""

    loss: str  # a name in birdplane.losses ("nll": NLLLoss on LogSoftmax)
    epochs: int
    batch_size: int  # the book's 64: small enough for noisy steps that generalise
    lr: float  # the one step size: train.lr, or a variant's or sweep config's own
    weight_decay: float = 0.0  # torch.optim.SGD's L2 penalty: p <- p - lr * (grad + wd * p)
    patience: int | None = (
        None  # early stopping: stop that many epochs after the best, keep the best
    )
    augment_shift: int = 0  # move each training image by its own random (dx, dy) in -k..k per epoch
    train_metrics: str = (
        "running"  # running: means over the epoch's minibatches (free); full: one more pass
    )

    def __post_init__(self):
        if self.train_metrics not in ("running", "full"):
            raise ValueError(
                f"train_metrics must be 'running' or 'full', not {self.train_metrics!r}"
            )


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


class TrainingDiverged(BirdplaneError):
    """The loss became NaN or infinite; `epoch` is the epoch it did (None where not known)."""

    def __init__(self, message: str, epoch: int | None = None):
        super().__init__(message)
        self.epoch = epoch


def check_finite(stats: EpochStats, sgd: SGD, name: str) -> EpochStats:
    """stats, or TrainingDiverged naming the model, the epoch and the learning rate to lower."""
    if not (math.isfinite(stats.train_loss) and math.isfinite(stats.val_loss)):
        raise TrainingDiverged(
            f"variant {name!r}: loss became {stats.train_loss} at epoch {stats.epoch} of {sgd.epochs}; "
            f"lower its learning rate (train.lr or train.variants.{name}.lr, now {sgd.lr}). "
            "No model was written",
            stats.epoch,
        )
    return stats


def shuffle(
    generator: torch.Generator, n: int, augment_shift: int, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One epoch's order of the n training images, a random permutation from the model's own
    seeded (CPU) generator, and with augmentation each image's (dx, dy) shift for the epoch
    (n x 2), drawn after it from the same generator; both moved to `device`."""
    perm = torch.randperm(n, generator=generator).to(device)
    if not augment_shift:
        return perm, None
    return perm, torch.randint(-augment_shift, augment_shift + 1, (n, 2), generator=generator).to(
        device
    )


def batch_stats(
    outputs: torch.Tensor, y: torch.Tensor, loss: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed loss and number of correct predictions of a minibatch, from the head's outputs.

    outputs: (..., batch, classes), y: (..., batch); a leading dim holds several models. Elementwise
    ops and reductions only (the one-hot target by comparison, no gather or scatter), so that it
    runs inside a captured CUDA graph; the sums stay on the device (no sync per step).
    """
    return LOSSES[loss].total(outputs, y), (outputs.argmax(-1) == y).sum(-1)


@dataclass
class EarlyStop:
    """Early stopping of one model, epoch by epoch: the best validation accuracy so far (the
    earliest epoch among ties), that epoch's weights (what `snapshot` returned) and the epoch at
    which `patience` epochs without a better one ran out (None while they have not). A training
    loop stops a model by it (SGD.patience) or only watches (the sweep): the same rule both ways."""

    patience: int
    best_accuracy: float = -1.0
    best_epoch: int = 0
    weights: object = None
    stopped_at: int | None = None

    def update(self, epoch: int, val_accuracy: float, snapshot: Callable[[], object]) -> bool:
        """One more epoch; `snapshot()` is taken when it is the best so far. True once stopped."""
        if self.stopped_at is None:
            if val_accuracy > self.best_accuracy:
                self.best_accuracy, self.best_epoch, self.weights = val_accuracy, epoch, snapshot()
            elif epoch - self.best_epoch >= self.patience:
                self.stopped_at = epoch
        return self.stopped_at is not None


@dataclass
class KeepEpoch:
    """The weights of one model at the end of epoch `epoch` (what `snapshot` returned there), kept
    while training goes on: a training stage keeps each seed's weights at `train.checkpoint_epoch`,
    from which the sweep reads its shorter runs of the same recipe (birdplane.checkpoint). Watches
    like an EarlyStop that never stops; `weights` stays None if training ends before `epoch`."""

    epoch: int
    weights: object = None

    def update(self, epoch: int, val_accuracy: float, snapshot: Callable[[], object]) -> bool:
        if epoch == self.epoch:
            self.weights = snapshot()
        return False


Watcher = (
    EarlyStop | KeepEpoch
)  # what a training loop's `watch` holds: update(epoch, acc, snapshot)
