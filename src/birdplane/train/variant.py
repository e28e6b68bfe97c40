"""One variant of train.variants: its seeds trained one after the other, and the metrics the training
stage writes (the first seed's model; mean ± std over all seeds when there are several).

Tracking stays outside: the caller passes `hooks` (birdplane.tracking.SeedLogger in the stage;
the no-op `Hooks` here by default), which see each seed start, each epoch and each result.
"""
from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from birdplane.inference import final_metrics
from birdplane.models import ModelConfig, build_model, describe, head_for, n_parameters
from birdplane.summary import spread
from birdplane.train import engine

Data = tuple[torch.Tensor, torch.Tensor]


@dataclass
class SeedRun:
    seed: int
    model: nn.Module
    history: list[engine.EpochStats]
    final: dict[str, Any]  # final_metrics of the trained model, plus its best epoch and epochs trained


class Hooks:
    """What a caller may watch; every method does nothing here."""

    def scope(self, seed: int) -> AbstractContextManager:
        return nullcontext()

    def start(self, seed: int, model: nn.Module) -> None:
        pass

    def epoch(self, seed: int, stats: engine.EpochStats) -> None:
        pass

    def end(self, seed: int, final: dict[str, Any]) -> None:
        pass


def model_config(recipe, n_classes: int) -> ModelConfig:
    """The net a recipe (config.Recipe) describes, for `n_classes` classes."""
    return ModelConfig(hidden=recipe.hidden, n_classes=n_classes, activation=recipe.activation,
                       head=head_for(recipe.loss), arch=recipe.arch, channels=recipe.channels, dropout=recipe.dropout)


def best_of(history: list[engine.EpochStats]) -> dict[str, Any]:
    """The epoch of highest validation accuracy (the earliest among ties) and how long it trained."""
    best = max(history, key=lambda s: (s.val_accuracy, -s.epoch))
    return {"best_val_accuracy": best.val_accuracy, "best_epoch": best.epoch, "epochs_trained": len(history)}


def train_variant(recipe, cfg: ModelConfig, train: Data, val: Data, *, seeds: list[int], fused: bool = True,
                  train_metrics: str = "running", hooks: Hooks = Hooks()) -> list[SeedRun]:
    """Train the recipe once per seed (each seed its own initialisation and batch order); the final
    metrics are the model's (the best epoch's, with early stopping) on all images, as evaluate
    sees it."""
    runs = []
    for seed in seeds:
        with hooks.scope(seed):
            engine.seed_everything(seed)
            model = build_model(cfg).to(train[0].device)
            hooks.start(seed, model)
            history = engine.train(model, recipe.loss, *train, *val, epochs=recipe.epochs,
                                   batch_size=recipe.batch_size, lr=recipe.lr, seed=seed, name=recipe.name,
                                   fused=fused, train_metrics=train_metrics, weight_decay=recipe.weight_decay,
                                   patience=recipe.patience, augment_shift=recipe.augment_shift,
                                   on_epoch=lambda stats: hooks.epoch(seed, stats))
            final = {**final_metrics(model, recipe.loss, train, val), **best_of(history)}
            hooks.end(seed, final)
        runs.append(SeedRun(seed, model, history, final))
    return runs


def variant_metrics(recipe, cfg: ModelConfig, runs: list[SeedRun]) -> dict[str, Any]:
    """metrics/train/<variant>.json: the first seed's model, and mean ± std over the seeds."""
    first = runs[0]
    metrics = {
        **first.final, "epochs": recipe.epochs,
        # early stopping: the model is the best epoch's, training ended at epochs_trained
        "early_stopping": recipe.patience is not None,
        "n_parameters": n_parameters(first.model), "model": describe(cfg), "recipe": recipe.model_dump(),
    }
    if len(runs) > 1:
        metrics["seeds"] = {"seeds": [r.seed for r in runs], **{k: spread([r.final[k] for r in runs]) for k in (
            "train_accuracy", "val_accuracy", "overfit_gap", "best_val_accuracy", "best_epoch")}}
    return metrics


def history_rows(history: list[engine.EpochStats]) -> list[dict[str, float]]:
    """plots/train/<variant>.csv: one row per epoch (the wall time goes to the log, not the plot)."""
    return [{k: v for k, v in s.to_dict().items() if k != "seconds"} for s in history]
