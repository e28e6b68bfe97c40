"""Training: the whole data set as tensors on the device, minibatches by seeded permutation.

No DataLoader: a batch is the rows `perm[i:i + batch_size]` of x, one index_select. Core functions take
tensors and plain values and return results; tracking happens in the caller's `on_epoch`.
"""
from __future__ import annotations

import functools
import os
import time
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from birdplane.errors import BirdplaneError
from birdplane.inference import LossFn, loss_and_accuracy
from birdplane.losses import LOSSES

class TrainingDiverged(BirdplaneError):
    """The loss became NaN or infinite; `epoch` is the epoch it did (None where not known)."""

    def __init__(self, message: str, epoch: int | None = None):
        super().__init__(message)
        self.epoch = epoch


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


@dataclass
class EarlyStop:
    """Early stopping of one model, epoch by epoch: the best validation accuracy so far (the
    earliest epoch among ties), that epoch's weights (what `snapshot` returned) and the epoch at
    which `patience` epochs without a better one ran out (None while they have not). fit_loop
    stops a model by it (`patience`) or only watches (`watch`): the same rule both ways."""
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


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise BirdplaneError("train.device is 'cuda' but no CUDA device is available; use 'auto' or 'cpu'")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    """Same seed -> bit-identical results: on any x86-64 machine and thread count with pinned
    numerics (birdplane.numerics, installed here if it is not yet), on the same machine without."""
    from birdplane import numerics

    numerics.install()
    # cuBLAS is deterministic only with a fixed workspace; must be set before CUDA starts
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.manual_seed(seed)
    # what torch.use_deterministic_algorithms(True, warn_only=True) does, less its import of
    # torch._inductor (3 s per stage process, for a setting of the compiler that nothing here uses)
    torch._C._set_deterministic_algorithms(True, warn_only=True)
    # Deterministic mode also fills every new tensor of torch.empty or a resize with NaN, so that
    # reading memory before writing it would show. Nothing here does (the results are the same
    # bytes without the fill), and it wrote each gathered minibatch twice: 12 % of the 32-unit
    # net's epoch on 2 cores (docs/performance.md).
    torch.utils.deterministic.fill_uninitialized_memory = False


def batch_stats(outputs: torch.Tensor, y: torch.Tensor, loss: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed loss and number of correct predictions of a minibatch, from the head's outputs.

    outputs: (..., batch, classes), y: (..., batch); a leading dim holds several models. Elementwise
    ops and reductions only (the one-hot target by comparison, no gather or scatter), so that it
    runs inside a captured CUDA graph; the sums stay on the device (no sync per step).
    """
    return LOSSES[loss].total(outputs, y), (outputs.argmax(-1) == y).sum(-1)


Step = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""SGD on (x, y), weights updated in place: one step per minibatch, where x holds one minibatch or
(for a step made with `batch_size`) several consecutive ones; returns the head's outputs for every
row as they were before its step's update (rows x classes, no autograd history)."""


@dataclass(frozen=True)
class Stepper:
    """A Step, how many minibatches of `batch_size` rows it takes per call, and whether it is
    birdplane.train.fused's (no autograd, no optimizer: can be captured in a CUDA graph)."""
    step: Step
    batches_per_call: int = 1
    fused: bool = False


def autograd_step(model: nn.Module, loss_fn: LossFn, lr: float, weight_decay: float = 0.0) -> Step:
    """The reference step: autograd and torch.optim.SGD, exactly the book's loop body."""
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, weight_decay=weight_decay)

    def step(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        outputs = model(x)
        batch_loss = loss_fn(outputs, y)
        optimizer.zero_grad(set_to_none=True)
        batch_loss.backward()
        optimizer.step()
        return outputs.detach()

    return step


def make_step(model: nn.Module, loss: str, lr: float, fused: bool = True, weight_decay: float = 0.0,
              batch_size: int = 64, block: int | None = None) -> Stepper:
    """SGD steps on minibatches of `batch_size`: birdplane.train.fused's one-pass update where the model
    is a build_model mlp and `fused`, else autograd + optim.SGD. The fused step takes `block`
    minibatches per call (default: FusedMLP.gram_block, 4 for a wide first layer)."""
    fused_mlp = None
    if fused:
        from birdplane.train.fused import fuse

        fused_mlp = fuse(model, loss, weight_decay)
    if fused_mlp is None:
        return Stepper(autograd_step(model, LOSSES[loss].mean, lr, weight_decay))
    if block is None:
        block = fused_mlp.gram_block()
    if block == 1:
        return Stepper(lambda x, y: fused_mlp.step(x, y, lr), fused=True)
    return Stepper(lambda x, y: fused_mlp.steps(x, y, lr, batch_size), block, fused=True)


def rows(t: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Rows idx of t (N, ...), idx of any shape: idx.shape + t.shape[1:]. index_select, not t[idx]:
    advanced indexing gathers a 64 x 3072 minibatch 5-7x slower on CPU."""
    return t.index_select(0, idx.reshape(-1)).view(*idx.shape, *t.shape[1:])


def take(t: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Rows idx of a per-example tensor: t (N, ...) with idx (B,), or per model t (K, N, ...) with idx (K, B)."""
    if idx.dim() == 1:
        return rows(t, idx)
    return t[torch.arange(len(idx), device=idx.device).unsqueeze(1), idx]


def train_epoch(step: Step, x: torch.Tensor, y: torch.Tensor, batch_size: int, perm: torch.Tensor,
                loss: str, shifts: torch.Tensor | None = None,
                augment: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
                batches_per_call: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """One pass over the data in minibatches, slices of the permutation `perm` (no DataLoader);
    `step` gets `batches_per_call` consecutive minibatches at a time.

    `perm` is (N,) for one model or (K, N) for K models trained at once, each with its own order.
    `shifts` (perm.shape + (2,)) moves each training image by its own (dx, dy) for this epoch
    through `augment` (a birdplane.train.augment.RandomShift over x): random-shift augmentation. Returns the summed loss and the number of
    correct predictions over the epoch's minibatches (each measured on the batch just before its
    update), as device tensors of shape perm.shape[:-1].
    """
    loss_sum = torch.zeros(perm.shape[:-1], device=x.device)
    correct = torch.zeros(perm.shape[:-1], dtype=torch.long, device=x.device)
    per_call = batch_size * batches_per_call
    for i in range(0, perm.shape[-1], per_call):
        idx = perm[..., i:i + per_call]
        yb = rows(y, idx)
        xb = rows(x, idx) if augment is None or shifts is None else augment(idx, take(shifts, idx))
        batch_loss, batch_correct = batch_stats(step(xb, yb), yb, loss)
        loss_sum += batch_loss
        correct += batch_correct
    return loss_sum, correct


EpochRunner = Callable[..., tuple[torch.Tensor, torch.Tensor]]


def epoch_runner(step: Step | Stepper, params: list[torch.Tensor], loss: str, x: torch.Tensor, y: torch.Tensor,
                 batch_size: int, perm_shape: tuple[int, ...], graph: bool, max_shift: int = 0) -> EpochRunner:
    """(perm[, shifts]) -> train_epoch(...) for this step and data; with `graph`, a whole epoch captured
    once as a CUDA graph and replayed (birdplane.train.graphs), else the plain Python loop."""
    stepper = step if isinstance(step, Stepper) else Stepper(step)
    augment = None
    if max_shift:
        from birdplane.train.augment import RandomShift

        augment = RandomShift(x, max_shift)

    def body(perm: torch.Tensor, shifts: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return train_epoch(stepper.step, x, y, batch_size, perm, loss, shifts, augment, stepper.batches_per_call)

    if not graph:
        return body
    from birdplane.train.graphs import GraphedEpoch

    def zeros(n: int) -> list[torch.Tensor]:
        """Inputs of an epoch of n rows, index 0 everywhere (valid, like any permutation)."""
        shape = perm_shape[:-1] + (n,)
        inputs = [torch.zeros(shape, dtype=torch.long, device=x.device)]
        if max_shift:
            inputs.append(torch.zeros(shape + (2,), dtype=torch.long, device=x.device))
        return inputs

    # the warm-up meets every shape of the epoch: one full call of the step and the short last one
    per_call, n = batch_size * stepper.batches_per_call, perm_shape[-1]
    warm = n if n <= per_call else per_call + n % per_call
    return GraphedEpoch(body, params, zeros(n), zeros(warm))


def train(model: nn.Module, loss: str, train_x: torch.Tensor, train_y: torch.Tensor,
          val_x: torch.Tensor, val_y: torch.Tensor, *, epochs: int, batch_size: int, lr: float,
          seed: int, name: str = "model", fused: bool = True, train_metrics: str = "running",
          graph: bool | None = None, weight_decay: float = 0.0, patience: int | None = None,
          augment_shift: int = 0, block: int | None = None,
          on_epoch: Callable[[EpochStats], None] | None = None) -> list[EpochStats]:
    """Plain minibatch SGD, as in the book; returns one EpochStats per epoch trained.

    Against overfitting (the params' regularizers; the model's dropout lives in its config):
    `weight_decay` is torch.optim.SGD's L2 penalty; `patience` stops after that many epochs
    without a better validation accuracy and keeps the best epoch's weights (early stopping);
    `augment_shift` moves each training image by its own random (dx, dy) in -k..k every epoch.

    `fused` uses birdplane.train.fused for build_model's mlps (same math, one pass over each weight
    matrix per update; other models use autograd); False uses autograd + torch.optim.SGD. `block`
    minibatches go through the fused step at once (FusedMLP.steps: the first layer's products for
    all of them together; default FusedMLP.gram_block, 1 = step by step). `graph`
    (default: on CUDA with the fused step) replays each epoch as one captured CUDA graph. Per-epoch
    training loss and accuracy are the running means over the epoch's minibatches ("running", free)
    or a full pass after the epoch ("full", about a third of an epoch's work); validation is always
    a full pass. With early stopping the model ends with its best epoch's weights. Raises
    TrainingDiverged (naming `name` and the epoch) as soon as a loss is not finite.
    """
    step = make_step(model, loss, lr, fused, weight_decay, batch_size, block)
    if graph is None:
        graph = step.fused and train_x.device.type == "cuda"
    params = list(model.parameters())
    run_epoch = epoch_runner(step, params, loss, train_x, train_y, batch_size, (len(train_x),), graph,
                             augment_shift)

    def full_pass(x: torch.Tensor, y: torch.Tensor) -> tuple[list[float], list[float]]:
        batch_loss, acc = loss_and_accuracy(model, LOSSES[loss].mean, x, y)
        return [batch_loss], [acc]

    def on_epochs(stats: list[EpochStats]) -> None:
        if on_epoch is not None:
            on_epoch(stats[0])

    def run(perm: torch.Tensor, shifts: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        model.train()
        args = (perm[0],) if shifts is None else (perm[0], shifts[0])
        loss_sum, correct = run_epoch(*args)
        return loss_sum.unsqueeze(0), correct.unsqueeze(0)

    def snapshot(_: int) -> list[torch.Tensor]:
        return [p.detach().clone() for p in params]

    def restore(_: int, saved: list[torch.Tensor]) -> None:
        with torch.no_grad():
            for p, s in zip(params, saved):
                p.copy_(s)

    histories = fit_loop(run, full_pass, train_x, train_y, val_x, val_y, epochs=epochs, seeds=[seed],
                         names=[name], lr=lr, train_metrics=train_metrics, on_epoch=on_epochs,
                         patience=patience, augment_shift=augment_shift, snapshot=snapshot, restore=restore)
    return histories[0]


def fit_loop(run_epoch: Callable[[torch.Tensor, torch.Tensor | None], tuple[torch.Tensor, torch.Tensor]],
             full_pass: Callable[[torch.Tensor, torch.Tensor], tuple[list[float], list[float]]],
             train_x: torch.Tensor, train_y: torch.Tensor, val_x: torch.Tensor, val_y: torch.Tensor, *,
             epochs: int, seeds: list[int], names: list[str], lr: float, train_metrics: str,
             on_epoch: Callable[[list[EpochStats]], None] | None, patience: int | None = None,
             augment_shift: int = 0, snapshot: Callable[[int], object] | None = None,
             restore: Callable[[int, object], None] | None = None,
             watch: Sequence[Sequence[EarlyStop]] = ()) -> list[list[EpochStats]]:
    """The epoch loop shared by one model (train) and K models at once (birdplane.train.batched).

    Each model k draws its batch order (and augmentation shifts) from its own generator seeded
    with seeds[k]; run_epoch(perm: K x N, shifts: K x N x 2 or None) trains one epoch and returns
    per-model running loss sums and correct counts; full_pass(x, y) returns per-model mean losses
    and accuracies. With `patience`, model k stops after `patience` epochs without a better
    validation accuracy (its history ends there; batched models still compute until all stop)
    and gets its best epoch's weights back through snapshot/restore. `watch` (one list per model)
    holds EarlyStops that only watch: training goes on, and each ends with the epoch at which its
    patience would have stopped model k and a snapshot of the best epoch's weights up to there,
    what a run with that `patience` ends with (the sweep reads early stopping off a full run).
    """
    if train_metrics not in ("running", "full"):
        raise ValueError(f"train_metrics must be 'running' or 'full', not {train_metrics!r}")
    gens = [torch.Generator(device="cpu").manual_seed(s) for s in seeds]
    n, k_models = len(train_x), len(seeds)
    histories: list[list[EpochStats]] = [[] for _ in seeds]
    if watch and len(watch) != k_models:
        raise ValueError("watch: one list of EarlyStops per model")
    stops = [EarlyStop(patience) if patience is not None else None for _ in seeds]
    active = [True] * k_models
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        perms, shifts = [], []
        for g in gens:
            perms.append(torch.randperm(n, generator=g))
            if augment_shift:
                shifts.append(torch.randint(-augment_shift, augment_shift + 1, (n, 2), generator=g))
        perm = torch.stack(perms).to(train_x.device)
        loss_sums, corrects = run_epoch(perm, torch.stack(shifts).to(train_x.device) if shifts else None)
        # the passes before reading the running sums: on a GPU their launches then queue behind the
        # epoch's work instead of waiting for it to finish
        if train_metrics == "full":
            train_losses, train_accs = full_pass(train_x, train_y)
        val_losses, val_accs = full_pass(val_x, val_y)
        if train_metrics == "running":
            train_losses = [v / n for v in loss_sums.tolist()]
            train_accs = [c / n for c in corrects.tolist()]
        seconds = time.perf_counter() - t0
        stats = []
        for k, name in enumerate(names):
            if not active[k]:
                continue
            if not (np.isfinite(train_losses[k]) and np.isfinite(val_losses[k])):
                raise TrainingDiverged(
                    f"variant {name!r}: loss became {train_losses[k]} at epoch {epoch} of {epochs}; "
                    f"lower its learning rate (train.lr or train.variants.{name}.lr, now {lr}). "
                    "No model was written", epoch)
            s = EpochStats(epoch, train_losses[k], train_accs[k], val_losses[k], val_accs[k], seconds)
            histories[k].append(s)
            stats.append(s)
            # one snapshot of model k for every EarlyStop that finds this epoch its best
            snap = functools.cache(lambda k=k: snapshot(k) if snapshot else None)
            for w in watch[k] if watch else ():
                w.update(epoch, s.val_accuracy, snap)
            if stops[k] is not None and stops[k].update(epoch, s.val_accuracy, snap):
                active[k] = False
        if on_epoch is not None and stats:
            on_epoch(stats)
        if not any(active):
            break
    if patience is not None and restore is not None:
        for k, stop in enumerate(stops):
            restore(k, stop.weights)
    return histories
