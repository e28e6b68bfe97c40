"""The fast path (`train.engine: fused`, the default): the same SGD as birdplane.train.loop, faster.

    fused.py    the SGD step without autograd: each weight gradient added straight into its weights
                (one pass over the 3072 x 512 matrix per update), and Gram blocks (the first
                layer's products for 4 minibatches at once, corrected exactly for their updates)
    batched.py  K nets as stacked tensors, one batched product per layer for all of them
    graphs.py   a whole epoch captured once as a CUDA graph and replayed
    epochs.py   the epochs these run in: index batches on the device, the K-model epoch loop

The interface is birdplane.train.loop.train's: `train(model, train, val, sgd, seed=...)`, and
`train_many` for K models with their own seeds. Models the fused step cannot train (the convnet)
go through the book's loop. tests/test_engine.py checks that both paths give the same weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import nn

from birdplane.inference import loss_and_accuracy
from birdplane.losses import LOSSES
from birdplane.train import loop
from birdplane.train.fast.epochs import Group, epoch_runner, fit_loop, fused_stepper
from birdplane.train.sgd import SGD, EpochStats, Watcher

Data = tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class Fused:
    """The fast engine's two knobs, for benchmarks and tests; the stages use the defaults."""

    graph: bool | None = None  # each epoch one replayed CUDA graph; default: on CUDA
    block: int | None = (
        None  # minibatches per fused call; default FusedMLP.gram_block, 1: step by step
    )

    def train(
        self,
        model: nn.Module,
        train: Data,
        val: Data,
        sgd: SGD,
        *,
        seed: int,
        name: str = "model",
        on_epoch: Callable[[EpochStats], None] | None = None,
    ) -> list[EpochStats]:
        """birdplane.train.loop.train, computed by the fused step."""
        stepper = fused_stepper(model, sgd, self.block)
        if stepper is None:  # not a build_model mlp (the convnet): the book's loop, autograd
            return loop.train(model, train, val, sgd, seed=seed, name=name, on_epoch=on_epoch)
        graph = self.graph if self.graph is not None else train[0].device.type == "cuda"
        run_epoch = epoch_runner(
            stepper, list(model.parameters()), train, sgd, (len(train[0]),), graph
        )

        def run(
            perm: torch.Tensor, shifts: torch.Tensor | None
        ) -> tuple[torch.Tensor, torch.Tensor]:
            model.train()
            loss_sum, correct = (
                run_epoch(perm[0]) if shifts is None else run_epoch(perm[0], shifts[0])
            )
            return loss_sum.unsqueeze(0), correct.unsqueeze(0)

        def full_pass(x: torch.Tensor, y: torch.Tensor) -> tuple[list[float], list[float]]:
            loss, acc = loss_and_accuracy(model, LOSSES[sgd.loss].mean, x, y)
            return [loss], [acc]

        group = Group(
            [seed],
            [name],
            run,
            full_pass,
            lambda _: loop.snapshot(model),
            lambda _, saved: loop.restore(model, saved),
        )
        report = None if on_epoch is None else (lambda stats: on_epoch(stats[0]))
        return fit_loop(group, train, val, sgd, on_epoch=report)[0]

    def train_many(
        self,
        models: list[nn.Sequential],
        train: Data,
        val: Data,
        sgd: SGD,
        *,
        seeds: list[int],
        names: list[str] | None = None,
        on_epoch: Callable[[list[EpochStats]], None] | None = None,
        watch: Sequence[Sequence[Watcher]] = (),
    ) -> list[list[EpochStats]]:
        """K build_model mlps at once (birdplane.train.fast.batched), model k with batch order
        seeds[k]: the same SGD as `train` on each (initialise each model with its seed before).
        Returns one history per model and leaves the trained weights (the best epoch's, with early
        stopping) in `models`. `watch[k]`: EarlyStops that watch model k without stopping it
        (fit_loop), and KeepEpochs; their weights end as state_dicts of models[k]. No
        augmentation."""
        from birdplane.train.fast.batched import BatchedMLP

        if len(seeds) != len(models):
            raise ValueError("one seed per model")
        if sgd.augment_shift:
            raise ValueError("train_many has no augmentation; train such models one by one")
        batched = BatchedMLP(models, sgd.loss, sgd.weight_decay)
        graph = self.graph if self.graph is not None else train[0].device.type == "cuda"
        block = self.block if self.block is not None else batched.gram_block()
        stepper = batched.stepper(sgd, block)
        run_epoch = epoch_runner(
            stepper, batched.parameters(), train, sgd, (len(models), len(train[0])), graph
        )
        group = Group(
            seeds,
            names or [f"model{k}" for k in range(len(models))],
            lambda perm, _: run_epoch(perm),
            batched.loss_and_accuracy,
            batched.snapshot,
            batched.restore,
        )
        histories = fit_loop(group, train, val, sgd, on_epoch=on_epoch, watch=watch)
        for k, watchers in enumerate(watch):
            for w in watchers:
                if w.weights is not None:  # None: a KeepEpoch whose epoch was not reached
                    w.weights = batched.state_dict(k, w.weights)
        batched.write_back()
        return histories


FUSED = Fused()
train, train_many = FUSED.train, FUSED.train_many
