"""The fast path's epochs: minibatches by index into the data on the device, SGD steps that take
several minibatches per call, an epoch that can be captured as one CUDA graph, and the epoch loop
for K models at once (K = 1: one model).

It computes what birdplane.train.loop computes (the same batch order from birdplane.train.sgd,
the same steps to float rounding, the same figures, early stopping and errors); the difference is
how: no autograd or optimizer, and no host synchronisation inside an epoch.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import nn

from birdplane.train.sgd import (
    SGD,
    EarlyStop,
    EpochStats,
    Watcher,
    batch_stats,
    check_finite,
    shuffle,
)

Data = tuple[torch.Tensor, torch.Tensor]

Step = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""SGD on (x, y), weights updated in place: one step per minibatch, where x holds one minibatch or
several consecutive ones; returns the head's outputs for every row as they were before its step's
update (rows x classes, no autograd history)."""


@dataclass(frozen=True)
class Stepper:
    """A Step and how many minibatches of the recipe's batch size it takes per call."""

    step: Step
    batches_per_call: int = 1


def fused_stepper(model: nn.Module, sgd: SGD, block: int | None = None) -> Stepper | None:
    """birdplane.train.fast.fused's one-pass SGD step for a build_model mlp, None for any other
    model. It takes `block` minibatches per call (default: FusedMLP.gram_block, 4 for a wide first
    layer; 1: step by step)."""
    from birdplane.train.fast.fused import fuse

    fused_mlp = fuse(model, sgd.loss, sgd.weight_decay)
    if fused_mlp is None:
        return None
    if block is None:
        block = fused_mlp.gram_block()
    if block == 1:
        return Stepper(lambda x, y: fused_mlp.step(x, y, sgd.lr))
    return Stepper(lambda x, y: fused_mlp.steps(x, y, sgd.lr, sgd.batch_size), block)


def rows(t: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Rows idx of t (N, ...), idx of any shape: idx.shape + t.shape[1:]. index_select, not t[idx]:
    advanced indexing gathers a 64 x 3072 minibatch 5-7x slower on CPU."""
    return t.index_select(0, idx.reshape(-1)).view(*idx.shape, *t.shape[1:])


def take(t: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Rows idx of a per-example tensor: t (N, ...) with idx (B,), or per model t (K, N, ...) with idx (K, B)."""
    if idx.dim() == 1:
        return rows(t, idx)
    return t[torch.arange(len(idx), device=idx.device).unsqueeze(1), idx]


Augment = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def train_epoch(
    stepper: Stepper,
    train: Data,
    perm: torch.Tensor,
    sgd: SGD,
    shifts: torch.Tensor | None = None,
    augment: Augment | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One pass over the data in minibatches, slices of the permutation `perm` (no DataLoader);
    the step gets `batches_per_call` consecutive minibatches at a time.

    `perm` is (N,) for one model or (K, N) for K models trained at once, each with its own order.
    `shifts` (perm.shape + (2,)) moves each training image by its own (dx, dy) for this epoch
    through `augment` (a birdplane.train.augment.RandomShift over x). Returns the summed loss and
    the number of correct predictions over the epoch's minibatches (each measured on the batch
    just before its update), as device tensors of shape perm.shape[:-1].
    """
    x, y = train
    loss_sum = torch.zeros(perm.shape[:-1], device=x.device)
    correct = torch.zeros(perm.shape[:-1], dtype=torch.long, device=x.device)
    per_call = sgd.batch_size * stepper.batches_per_call
    for i in range(0, perm.shape[-1], per_call):
        idx = perm[..., i : i + per_call]
        yb = rows(y, idx)
        xb = rows(x, idx) if augment is None or shifts is None else augment(idx, take(shifts, idx))
        batch_loss, batch_correct = batch_stats(stepper.step(xb, yb), yb, sgd.loss)
        loss_sum += batch_loss
        correct += batch_correct
    return loss_sum, correct


EpochRunner = Callable[..., tuple[torch.Tensor, torch.Tensor]]


def epoch_runner(
    stepper: Stepper,
    params: list[torch.Tensor],
    train: Data,
    sgd: SGD,
    perm_shape: tuple[int, ...],
    graph: bool,
) -> EpochRunner:
    """(perm[, shifts]) -> train_epoch(...) for this step and data; with `graph`, a whole epoch captured
    once as a CUDA graph and replayed (birdplane.train.fast.graphs), else the plain Python loop."""
    x = train[0]
    augment = None
    if sgd.augment_shift:
        from birdplane.train.augment import RandomShift

        augment = RandomShift(x, sgd.augment_shift)

    def body(
        perm: torch.Tensor, shifts: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return train_epoch(stepper, train, perm, sgd, shifts, augment)

    if not graph:
        return body
    from birdplane.train.fast.graphs import GraphedEpoch

    def zeros(n: int) -> list[torch.Tensor]:
        """Inputs of an epoch of n rows, index 0 everywhere (valid, like any permutation)."""
        shape = perm_shape[:-1] + (n,)
        inputs = [torch.zeros(shape, dtype=torch.long, device=x.device)]
        if sgd.augment_shift:
            inputs.append(torch.zeros(shape + (2,), dtype=torch.long, device=x.device))
        return inputs

    # the warm-up meets every shape of the epoch: one full call of the step and the short last one
    per_call, n = sgd.batch_size * stepper.batches_per_call, perm_shape[-1]
    warm = n if n <= per_call else per_call + n % per_call
    return GraphedEpoch(body, params, zeros(n), zeros(warm))


@dataclass(frozen=True)
class Group:
    """K models trained together (K = 1: one model), model k with batch order seeds[k]."""

    seeds: list[int]
    names: list[str]  # for errors
    # (perm: K x N, shifts: K x N x 2 or None) -> per-model running loss sums and correct counts
    run_epoch: Callable[[torch.Tensor, torch.Tensor | None], tuple[torch.Tensor, torch.Tensor]]
    # (x, y) -> per-model mean losses and accuracies over the whole set
    full_pass: Callable[[torch.Tensor, torch.Tensor], tuple[list[float], list[float]]]
    snapshot: Callable[[int], object]  # model k's weights, to keep
    restore: Callable[[int, object], None]  # put a snapshot back into model k


def fit_loop(
    group: Group,
    train: Data,
    val: Data,
    sgd: SGD,
    *,
    on_epoch: Callable[[list[EpochStats]], None] | None = None,
    watch: Sequence[Sequence[Watcher]] = (),
) -> list[list[EpochStats]]:
    """The epoch loop of birdplane.train.loop.train, for K models at once; one history per model.

    With sgd.patience, model k stops after that many epochs without a better validation accuracy
    (its history ends there; the others still compute until all stop) and gets its best epoch's
    weights back. `watch` (one list per model) holds EarlyStops that only watch: training goes
    on, and each ends with the epoch at which its patience would have stopped model k and a
    snapshot of the best epoch's weights up to there, what a run with that patience ends with (the
    sweep reads early stopping off a full run); and KeepEpochs, each a snapshot of model k at its
    epoch. on_epoch gets the stats of the models still training.
    """
    k_models = len(group.seeds)
    if watch and len(watch) != k_models:
        raise ValueError("watch: one list of watchers per model")
    gens = [torch.Generator(device="cpu").manual_seed(s) for s in group.seeds]
    histories: list[list[EpochStats]] = [[] for _ in range(k_models)]
    stops = [EarlyStop(sgd.patience) if sgd.patience is not None else None for _ in range(k_models)]
    active = [True] * k_models
    for epoch in range(1, sgd.epochs + 1):
        t0 = time.perf_counter()
        figures = _one_epoch(group, gens, train, val, sgd)
        seconds = time.perf_counter() - t0
        stats = []
        for k in (k for k in range(k_models) if active[k]):
            s = check_finite(EpochStats(epoch, *figures[k], seconds), sgd, group.names[k])
            histories[k].append(s)
            stats.append(s)
            # one snapshot of model k for every watcher that wants this epoch's weights
            snap = functools.cache(lambda k=k: group.snapshot(k))
            for w in watch[k] if watch else ():
                w.update(epoch, s.val_accuracy, snap)
            if stops[k] is not None and stops[k].update(epoch, s.val_accuracy, snap):
                active[k] = False
        if on_epoch is not None and stats:
            on_epoch(stats)
        if not any(active):
            break
    if sgd.patience is not None:
        for k, stop in enumerate(stops):
            group.restore(k, stop.weights)
    return histories


def _one_epoch(
    group: Group, gens: list[torch.Generator], train: Data, val: Data, sgd: SGD
) -> list[tuple[float, float, float, float]]:
    """Train every model one epoch, each in its own order; per model (train loss, train accuracy,
    val loss, val accuracy) as loop.validate gives them."""
    x, n = train[0], len(train[0])
    orders = [shuffle(g, n, sgd.augment_shift) for g in gens]
    perm = torch.stack([p for p, _ in orders]).to(x.device)
    shifts = torch.stack([s for _, s in orders]).to(x.device) if sgd.augment_shift else None
    loss_sums, corrects = group.run_epoch(perm, shifts)
    # the passes before reading the running sums: on a GPU their launches then queue behind the
    # epoch's work instead of waiting for it to finish
    if sgd.train_metrics == "full":
        train_losses, train_accs = group.full_pass(*train)
    val_losses, val_accs = group.full_pass(*val)
    if sgd.train_metrics == "running":
        train_losses = [v / n for v in loss_sums.tolist()]
        train_accs = [c / n for c in corrects.tolist()]
    return list(zip(train_losses, train_accs, val_losses, val_accs))
