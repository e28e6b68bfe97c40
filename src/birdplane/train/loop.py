"""How a model is trained: the book's loop (Deep Learning with PyTorch, ch. 7), read this first.

    model = build_model(ModelConfig())                     # 3072-512-2, Tanh, LogSoftmax
    history = train(model, (train_x, train_y), (val_x, val_y),
                    SGD(loss="nll", epochs=100, batch_size=64, lr=0.01), seed=0)

Every epoch: shuffle the training images; for every minibatch of 64 compute the outputs, the
loss, its gradient (loss.backward()) and one step of torch.optim.SGD; then measure the model on
the validation images. `train.engine: autograd` runs exactly this; the default, `fused`, computes
the same steps faster (birdplane.train.fast, docs/training.md; tests/test_engine.py checks both
give the same weights to float rounding).

Two things differ from the book's notebook, neither in what is computed: a minibatch is the rows
`perm[i:i + batch_size]` of a seeded permutation of one tensor of images (a shuffling DataLoader,
without copying the images one by one), and the epoch's training loss and accuracy are the means
over its minibatches as they were trained (`train_metrics: running`; `full`: a pass after it).
"""

from __future__ import annotations

import time
from functools import partial
from typing import Callable, Iterator

import torch
from torch import nn

from birdplane.inference import LossFn, loss_and_accuracy
from birdplane.losses import LOSSES
from birdplane.train.augment import RandomShift
from birdplane.train.sgd import SGD, EarlyStop, EpochStats, batch_stats, check_finite, shuffle

Data = tuple[torch.Tensor, torch.Tensor]  # images (N x 3072) and labels (N)


def train(
    model: nn.Module,
    train: Data,
    val: Data,
    sgd: SGD,
    *,
    seed: int,
    name: str = "model",
    on_epoch: Callable[[EpochStats], None] | None = None,
) -> list[EpochStats]:
    """Train `model` in place with minibatch SGD; one EpochStats per epoch trained.

    `seed` seeds the batch order (initialise the model's weights before, e.g. with
    engine.seed_everything). With early stopping (sgd.patience) the model ends with its best
    epoch's weights. Raises TrainingDiverged (naming `name`) as soon as a loss is not finite.
    """
    x, y = train
    loss_fn = LOSSES[sgd.loss].mean  # "nll": torch.nn.NLLLoss(), the mean over the minibatch
    optimizer = torch.optim.SGD(model.parameters(), lr=sgd.lr, weight_decay=sgd.weight_decay)
    generator = torch.Generator().manual_seed(seed)  # the batch order's own random numbers
    augment = RandomShift(x, sgd.augment_shift) if sgd.augment_shift else None
    stop = EarlyStop(sgd.patience) if sgd.patience is not None else None
    history, snap = [], partial(snapshot, model)  # snap: the weights, for early stopping
    for epoch in range(1, sgd.epochs + 1):
        t0 = time.perf_counter()
        perm, shifts = shuffle(generator, len(x), sgd.augment_shift, x.device)  # this epoch's order
        batches = minibatches(x, y, sgd.batch_size, perm, augment, shifts)
        running = Running(sgd.loss)
        train_epoch(model, loss_fn, optimizer, batches, running)
        stats = validate(model, loss_fn, train, val, sgd, running)
        stats = check_finite(EpochStats(epoch, *stats, time.perf_counter() - t0), sgd, name)
        history.append(stats)
        stopped = stop is not None and stop.update(epoch, stats.val_accuracy, snap)
        if on_epoch is not None:
            on_epoch(stats)
        if stopped:
            break
    if stop is not None:
        restore(model, stop.weights)
    return history


def train_epoch(
    model: nn.Module,
    loss_fn: LossFn,
    optimizer: torch.optim.Optimizer,
    batches: Iterator[Data],
    running: Running,
) -> None:
    """One pass over the training images, one SGD step per minibatch: the book's loop body."""
    model.train()  # dropout on
    for imgs, labels in batches:
        outputs = model(imgs)
        loss = loss_fn(outputs, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        running.add(outputs.detach(), labels)


class Running:
    """The epoch's summed loss and number of correct predictions, each minibatch measured as it
    was trained (before its step): the running training figures, free of an extra pass."""

    def __init__(self, loss: str):
        # the sums become tensors on the data's device once a minibatch is added
        self.loss, self.loss_sum, self.correct = loss, 0, 0

    def add(self, outputs: torch.Tensor, labels: torch.Tensor) -> None:
        batch_loss, batch_correct = batch_stats(outputs, labels, self.loss)
        self.loss_sum, self.correct = self.loss_sum + batch_loss, self.correct + batch_correct


def minibatches(
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    perm: torch.Tensor,
    augment: RandomShift | None = None,
    shifts: torch.Tensor | None = None,
) -> Iterator[Data]:
    """(images, labels) of each minibatch: the rows perm[i:i + batch_size], gathered with
    index_select (x[idx] gathers a 64 x 3072 minibatch 5-7x slower on CPU). With augmentation,
    each image moved by its shift of this epoch (shifts: N x 2)."""
    for i in range(0, len(perm), batch_size):
        idx = perm[i : i + batch_size]
        if augment is None:
            yield x.index_select(0, idx), y.index_select(0, idx)
        else:
            yield augment(idx, shifts.index_select(0, idx)), y.index_select(0, idx)


def validate(
    model: nn.Module, loss_fn: LossFn, train: Data, val: Data, sgd: SGD, running: Running
) -> tuple[float, float, float, float]:
    """The epoch's training loss and accuracy (running means over its minibatches, or with
    train_metrics "full" a pass over the training images) and the validation loss and accuracy
    (always a full pass, no gradients)."""
    if sgd.train_metrics == "full":
        train_loss, train_acc = loss_and_accuracy(model, loss_fn, *train)
    val_loss, val_acc = loss_and_accuracy(model, loss_fn, *val)
    if sgd.train_metrics == "running":
        n = len(train[1])
        train_loss, train_acc = float(running.loss_sum) / n, int(running.correct) / n
    return train_loss, train_acc, val_loss, val_acc


def snapshot(model: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


@torch.no_grad()
def restore(model: nn.Module, saved: list[torch.Tensor]) -> None:
    for p, s in zip(model.parameters(), saved):
        p.copy_(s)
