"""One variant of train.variants: its seeds trained one after the other or side by side
(birdplane.train.fast's train_many, where that is faster), and what the training stage writes from them: the
metrics (the first seed's model; mean ± std over all seeds and each seed's own figures when there
are several) and the per-epoch curves (each seed's, and their mean).

Tracking stays outside: the caller passes `hooks` (birdplane.tracking.SeedLogger in the stage;
the no-op `Hooks` here by default), which see each seed start, each epoch and each result.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from birdplane import numerics
from birdplane.inference import final_metrics, logit_gradients, predict
from birdplane.losses import LOSSES, probabilities
from birdplane.models import ModelConfig, build_model, describe, head_for, n_parameters
from birdplane.summary import spread, spread_known
from birdplane.train.engine import TRAINERS, seed_everything
from birdplane.train.fast import train_many
from birdplane.train.sgd import SGD, EpochStats, KeepEpoch

Data = tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class Options:
    """How a stage trains a recipe, beyond the recipe: params.yaml's train.engine,
    train.train_metrics and train.checkpoint_epoch."""

    engine: str = "fused"  # a key of engine.TRAINERS
    train_metrics: str = "running"
    checkpoint_epoch: int | None = None  # keep each seed's weights at the end of this epoch


@dataclass
class SeedRun:
    seed: int
    model: nn.Module
    history: list[EpochStats]
    final: dict[
        str, Any
    ]  # final_metrics of the trained model, plus its best epoch and epochs trained
    # the model's state_dict at the end of Options.checkpoint_epoch; None where none was asked
    # for or training ended before it
    kept: dict[str, torch.Tensor] | None = None


class Hooks:
    """What a caller may watch; every method does nothing here."""

    def scope(self, seeds: list[int]) -> AbstractContextManager:
        """Around the training of these seeds: one, or all of them when they train side by side."""
        return nullcontext()

    def start(self, seed: int, model: nn.Module) -> None:
        pass

    def epoch(self, seed: int, stats: EpochStats) -> None:
        pass

    def end(self, seed: int, final: dict[str, Any]) -> None:
        pass


def model_config(recipe, n_classes: int) -> ModelConfig:
    """The net a recipe (config.Recipe) describes, for `n_classes` classes."""
    return ModelConfig(
        hidden=recipe.hidden,
        n_classes=n_classes,
        activation=recipe.activation,
        head=head_for(recipe.loss),
        arch=recipe.arch,
        channels=recipe.channels,
        dropout=recipe.dropout,
    )


def best_of(history: list[EpochStats]) -> dict[str, Any]:
    """The epoch of highest validation accuracy (the earliest among ties) and how long it trained."""
    best = max(history, key=lambda s: (s.val_accuracy, -s.epoch))
    return {
        "best_val_accuracy": best.val_accuracy,
        "best_epoch": best.epoch,
        "epochs_trained": len(history),
    }


# Unpinned, the seeds of a first layer this wide train one by one: side by side took 1.12-1.23 times
# as long there (MKL; Intel Xeon 2026-11, AMD EPYC 2026-12-03), pinned on the CPU 0.84-0.87
# (OpenBLAS; the same bits either way). docs/performance.md, "Figures behind the code's choices".
UNPINNED_SIDE_BY_SIDE_BELOW_UNITS = 512


def side_by_side(
    recipe,
    cfg: ModelConfig,
    engine: str,
    n_seeds: int,
    device: str = "cpu",
    pinned: bool | None = None,
) -> bool:
    """Whether the seeds train at once (birdplane.train.fast.train_many): several seeds of a fused
    mlp. Each seed's steps are the products it takes alone, so with pinned numerics on the CPU its
    model and curves are the same bits as one by one (tests/test_train_variant.py), and faster
    where measured (3 x 3072-512-2: 0.84-0.87); otherwise (unpinned, or on CUDA, where 512 units
    side by side were not measured) the same models to float rounding, side by side only below
    UNPINNED_SIDE_BY_SIDE_BELOW_UNITS. `pinned`: by default this process's numerics mode. Not with
    augmentation (train_many has none) nor dropout (its masks are drawn once for all models, so a
    seed's model would depend on the seeds beside it)."""
    if pinned is None:
        pinned = numerics.mode() == numerics.PINNED
    first_layer = (cfg.hidden or (cfg.n_classes,))[0]
    return (
        n_seeds > 1
        and engine == "fused"
        and cfg.arch == "mlp"
        and not recipe.augment_shift
        and not cfg.dropout
        and ((pinned and device == "cpu") or first_layer < UNPINNED_SIDE_BY_SIDE_BELOW_UNITS)
    )


def sgd_recipe(recipe, train_metrics: str = "running") -> SGD:
    """How a recipe (config.Recipe) trains: the one place its loss, lr and regularizers enter the
    training code."""
    return SGD(
        loss=recipe.loss,
        epochs=recipe.epochs,
        batch_size=recipe.batch_size,
        lr=recipe.lr,
        weight_decay=recipe.weight_decay,
        patience=recipe.patience,
        augment_shift=recipe.augment_shift,
        train_metrics=train_metrics,
    )


def train_variant(
    recipe,
    cfg: ModelConfig,
    train: Data,
    val: Data,
    *,
    seeds: list[int],
    options: Options = Options(),
    hooks: Hooks = Hooks(),
) -> list[SeedRun]:
    """Train the recipe once per seed (each seed its own initialisation and batch order), side by
    side where `side_by_side` says so, else one after the other with options.engine (a key of
    engine.TRAINERS); the final metrics are the model's (the best epoch's, with early stopping) on
    all images, as evaluate sees it. With options.checkpoint_epoch each run also keeps its weights
    at that epoch (SeedRun.kept)."""
    sgd = sgd_recipe(recipe, options.train_metrics)
    keep = options.checkpoint_epoch
    if side_by_side(recipe, cfg, options.engine, len(seeds), train[0].device.type):
        with hooks.scope(seeds):
            return _train_side_by_side(recipe, cfg, (train, val), sgd, seeds, keep, hooks)
    runs = []
    for seed in seeds:
        with hooks.scope([seed]):
            model = _seeded_model(cfg, seed, train[0].device, hooks)
            kept = [KeepEpoch(keep)] if keep else []
            history = TRAINERS[options.engine](
                model,
                train,
                val,
                sgd,
                seed=seed,
                name=recipe.name,
                on_epoch=_watching(model, kept, lambda stats: hooks.epoch(seed, stats)),
            )
            run = _result(recipe, seed, model, history, train, val, hooks)
            runs.append(_with_kept(run, kept))
    return runs


def _watching(model: nn.Module, kept: list[KeepEpoch], on_epoch):
    """on_epoch, and each KeepEpoch shown the epoch: one model trained in place holds the epoch's
    weights when its on_epoch is called (both engines' loops)."""

    def watched(stats: EpochStats) -> None:
        for k in kept:
            k.update(stats.epoch, stats.val_accuracy, lambda: _state(model))
        on_epoch(stats)

    return watched


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _with_kept(run: SeedRun, kept: list[KeepEpoch]) -> SeedRun:
    run.kept = kept[0].weights if kept else None
    return run


def _train_side_by_side(
    recipe,
    cfg: ModelConfig,
    data: tuple[Data, Data],
    sgd: SGD,
    seeds: list[int],
    keep: int | None,
    hooks: Hooks,
) -> list[SeedRun]:
    """train_variant's seeds at once (birdplane.train.fast.train_many)."""
    train, val = data
    models = [_seeded_model(cfg, seed, train[0].device, hooks) for seed in seeds]
    kept = [[KeepEpoch(keep)] if keep else [] for _ in seeds]

    def on_epoch(stats: list[EpochStats]) -> None:
        # one EpochStats per model still training: without early stopping, every seed's
        for seed, s in zip(seeds, stats):
            hooks.epoch(seed, s)

    histories = train_many(
        models,
        train,
        val,
        sgd,
        seeds=seeds,
        names=[recipe.name] * len(seeds),
        on_epoch=on_epoch if recipe.patience is None else None,
        watch=kept if keep else (),
    )
    if recipe.patience is not None:  # which seeds had stopped was not known epoch by epoch
        for seed, history in zip(seeds, histories):
            for s in history:
                hooks.epoch(seed, s)
    return [
        _with_kept(_result(recipe, seed, model, history, train, val, hooks), k)
        for seed, model, history, k in zip(seeds, models, histories, kept)
    ]


def _seeded_model(cfg: ModelConfig, seed: int, device: torch.device, hooks: Hooks) -> nn.Module:
    """The seed's initialisation (as birdplane.sweep makes it), shown to the hooks."""
    seed_everything(seed)
    model = build_model(cfg).to(device)
    hooks.start(seed, model)
    return model


def _result(
    recipe,
    seed: int,
    model: nn.Module,
    history: list[EpochStats],
    train: Data,
    val: Data,
    hooks: Hooks,
) -> SeedRun:
    final = {**final_metrics(model, recipe.loss, train, val), **best_of(history)}
    hooks.end(seed, final)
    return SeedRun(seed, model, history, final)


SPREAD = ("train_accuracy", "val_accuracy", "overfit_gap", "best_val_accuracy", "best_epoch")
PER_SEED = (*SPREAD, "epochs_trained")


def variant_metrics(
    recipe, cfg: ModelConfig, runs: list[SeedRun], train: Data, val: Data, calibration_bins: int
) -> dict[str, Any]:
    """metrics/train/<variant>.json: the first seed's model; with several seeds also `seeds`: mean
    ± std over them (summary.spread) and each seed's own figures (`runs`, seed_figures)."""
    first = runs[0]
    metrics = {
        **first.final,
        "epochs": recipe.epochs,
        # early stopping: the model is the best epoch's, training ended at epochs_trained
        "early_stopping": recipe.patience is not None,
        "n_parameters": n_parameters(first.model),
        "model": describe(cfg),
        "recipe": recipe.model_dump(),
    }
    if len(runs) > 1:
        per_seed = [seed_figures(r, recipe.loss, train, val, calibration_bins) for r in runs]
        metrics["seeds"] = {
            "seeds": [r.seed for r in runs],
            **{k: spread([p[k] for p in per_seed]) for k in (*SPREAD, "val_ece")},
            # None where a model got no training image wrong (confidently): left out of the spread
            **{
                f"logit_grad_{k}": spread_known([p["logit_grad"][k] for p in per_seed])
                for k in ("misclassified", "confidently_wrong")
            },
            "runs": per_seed,
        }
    return metrics


def seed_figures(
    run: SeedRun, loss: str, train: Data, val: Data, calibration_bins: int
) -> dict[str, Any]:
    """One seed's final figures, its model's expected calibration error on the validation images
    (as evaluate computes it) and the loss gradients on the training images it gets wrong
    (inference.logit_gradients)."""
    # imported here: the sweep, which imports this module too, does not run birdplane.metrics
    from birdplane.metrics import calibration

    x, y = val
    ece, _ = calibration(
        probabilities(predict(run.model, x), LOSSES[loss].head), y, calibration_bins
    )
    return {
        "seed": run.seed,
        **{k: run.final[k] for k in PER_SEED},
        "val_ece": ece,
        "logit_grad": logit_gradients(run.model, loss, *train),
    }


def history_rows(history: list[EpochStats]) -> list[dict[str, float]]:
    """One row per epoch (the wall time goes to the log, not the plot)."""
    return [{k: v for k, v in s.to_dict().items() if k != "seconds"} for s in history]


def seed_rows(runs: list[SeedRun]) -> list[dict[str, float]]:
    """plots/train/seeds/<variant>.csv: one row per seed and epoch."""
    return [{"seed": r.seed, **row} for r in runs for row in history_rows(r.history)]


def mean_rows(runs: list[SeedRun]) -> list[dict[str, float]]:
    """plots/train/<variant>.csv: per epoch the mean over the seeds (with early stopping, over the
    seeds still training at that epoch); one seed's are its own history_rows."""
    histories = [history_rows(r.history) for r in runs]
    rows = []
    for i in range(max(map(len, histories))):
        at = [h[i] for h in histories if len(h) > i]
        rows.append(
            {k: v if k == "epoch" else sum(r[k] for r in at) / len(at) for k, v in at[0].items()}
        )
    return rows
