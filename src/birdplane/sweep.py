"""The capacity sweep behind homework task 2: the book's recipe (tanh MLP, NLLLoss, SGD on
minibatches) on every width of `sweep.widths`, the deep net (`sweep.deep`) and the book net
(`sweep.base_width`) with each of `sweep.regularizers`, `sweep.seeds` seeds each. The seeds of one
configuration train at once (birdplane.train.batched). Tracking stays outside, in `hooks`.
"""
from __future__ import annotations

import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

from birdplane.inference import final_metrics
from birdplane.models import ModelConfig, build_model, describe, n_parameters
from birdplane.summary import smallest_within_one_std, spread
from birdplane.train import engine
from birdplane.train.batched import train_many
from birdplane.train.variant import Data, best_of

LOSS = "nll"  # the book's recipe
SUMMARIZED = ("train_accuracy", "val_accuracy", "overfit_gap", "best_epoch", "epochs_trained")


@dataclass(frozen=True)
class Configuration:
    name: str
    kind: str                 # width, deep or regularizer
    hidden: tuple[int, ...]
    dropout: float = 0.0
    weight_decay: float = 0.0
    patience: int | None = None


class Hooks:
    """What a caller may watch; every method does nothing here."""

    def scope(self, config: Configuration, params: dict[str, Any]) -> AbstractContextManager:
        return nullcontext()

    def epoch(self, config: Configuration, stats: list[engine.EpochStats]) -> None:
        pass

    def end(self, config: Configuration, result: dict[str, Any], seconds: float) -> None:
        pass


def configurations(sweep) -> list[Configuration]:
    """Every configuration of a config.SweepConfig, in the order the sweep trains them."""
    configs = [Configuration(f"w{w}", "width", (w,)) for w in sweep.widths]
    if sweep.deep:
        configs.append(Configuration("deep", "deep", tuple(sweep.deep)))
    for name, r in sweep.regularizers.items():
        configs.append(Configuration(name, "regularizer", (sweep.base_width,), r.dropout, r.weight_decay, r.patience))
    return configs


def run_sweep(sweep, train: Data, val: Data, *, seeds: list[int], n_classes: int, lr: float, batch_size: int,
              train_metrics: str = "running", hooks: Hooks = Hooks()) -> tuple[dict, list[dict], dict[str, float]]:
    """(results per configuration: mean ± std over the seeds; one row per seed and configuration;
    seconds per configuration)."""
    results, rows, timings = {}, [], {}
    for c in configurations(sweep):
        cfg = ModelConfig(hidden=c.hidden, n_classes=n_classes, dropout=c.dropout)
        models = []
        for seed in seeds:  # each model initialised as engine.train's caller would: its own seed
            engine.seed_everything(seed)
            models.append(build_model(cfg).to(train[0].device))
        t0 = time.perf_counter()
        params = {"config": c.name, "kind": c.kind, "model": describe(cfg), "hidden": list(c.hidden),
                  "dropout": c.dropout, "weight_decay": c.weight_decay, "patience": c.patience, "seeds": seeds,
                  "epochs": sweep.epochs, "n_parameters": n_parameters(models[0])}
        with hooks.scope(c, params):
            histories = train_many(models, LOSS, *train, *val, epochs=sweep.epochs, batch_size=batch_size, lr=lr,
                                   seeds=seeds, names=[f"sweep {c.name} seed {s}" for s in seeds],
                                   train_metrics=train_metrics, weight_decay=c.weight_decay, patience=c.patience,
                                   on_epoch=lambda stats: hooks.epoch(c, stats))
            per_seed = []
            for seed, model, history in zip(seeds, models, histories):
                final, best = final_metrics(model, LOSS, train, val), best_of(history)
                per_seed.append({"config": c.name, "seed": seed, "train_accuracy": final["train_accuracy"],
                                 "val_accuracy": final["val_accuracy"], "overfit_gap": final["overfit_gap"],
                                 "best_epoch": best["best_epoch"], "epochs_trained": best["epochs_trained"]})
            summary = {k: spread([r[k] for r in per_seed]) for k in SUMMARIZED}
            results[c.name] = {"kind": c.kind, "model": describe(cfg), "hidden": list(c.hidden),
                               "n_parameters": n_parameters(models[0]), "dropout": c.dropout,
                               "weight_decay": c.weight_decay, "patience": c.patience, **summary}
            timings[c.name] = time.perf_counter() - t0
            hooks.end(c, results[c.name], timings[c.name])
        rows += per_seed
    return results, rows, timings


def sweep_metrics(sweep, seeds: list[int], results: dict[str, dict]) -> dict[str, Any]:
    """metrics/sweep.json: every configuration, and the rule's pick for the `small` variant among
    the widths and the deep net."""
    capacity = {n: r for n, r in results.items() if r["kind"] in ("width", "deep")}
    pick = smallest_within_one_std(capacity)
    pick["hidden"] = results[pick["pick"]]["hidden"]
    return {"seeds": seeds, "epochs": sweep.epochs, "configs": results, "small_rule": pick}


def capacity_rows(results: dict[str, dict]) -> list[dict[str, Any]]:
    """plots/sweep/capacity.csv: mean and std per configuration, against the parameter count."""
    return [{"config": n, "kind": r["kind"], "n_parameters": r["n_parameters"],
             **{f"{k}_{stat}": r[k][stat] for k in ("train_accuracy", "val_accuracy", "overfit_gap")
                for stat in ("mean", "std")}} for n, r in results.items()]
