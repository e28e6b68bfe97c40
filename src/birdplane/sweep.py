"""The sweep behind homework tasks 2 and 1: the book's recipe (tanh MLP, NLLLoss, SGD on minibatches)
on every width of `sweep.widths`, the deep net (`sweep.deep`) and the book net (`sweep.base_width`)
with each of `sweep.regularizers`; and the learning-rate study: the book net with each loss of
`sweep.losses` at each of `sweep.learning_rates`. `sweep.seeds` seeds each, trained at once
(birdplane.train.fast.train_many), all for `sweep.epochs` epochs.

Nothing is trained twice: a configuration equal to an earlier one (same net, loss, learning rate and
regularizers) gets that one's result (`same_as`), and one that differs from an earlier one only by
early stopping is read off that one's training (`read_from`; an EarlyStop watches it without
stopping). A configuration that a training stage already trained (same net, recipe and seeds, its
weights kept at `sweep.epochs`: birdplane.checkpoint) is read from that stage's checkpoint; where
early stopping watches its epochs, only as many of them train again as early stopping needs to see
(the checkpoint holds their figures, not the best epoch's weights). In the learning-rate study a
loss that becomes NaN is a result (`diverged`), not a crash. Tracking stays outside, in `hooks`.
"""

from __future__ import annotations

import copy
import time
from collections import defaultdict
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Sequence

from birdplane.architecture import n_parameters
from birdplane.checkpoint import Checkpoint, why_not
from birdplane.errors import BirdplaneError
from birdplane.inference import final_metrics, logit_gradients
from birdplane.models import ModelConfig, build_model, describe, head_for
from birdplane.summary import smallest_within_one_std, spread, spread_known
from birdplane.train.engine import seed_everything
from birdplane.train.fast import train_many
from birdplane.train.sgd import SGD, EarlyStop, EpochStats, TrainingDiverged
from birdplane.train.variant import Data, best_of

LOSS = "nll"  # the book's recipe: the widths, the deep net and the regularizers
SUMMARIZED = ("train_accuracy", "val_accuracy", "overfit_gap", "best_epoch", "epochs_trained")
CURVE = ("train_loss", "train_accuracy", "val_loss", "val_accuracy")  # EpochStats less the seconds
# the loss gradient on the training images the model gets wrong (inference.logit_gradients), per seed
GRADIENTS = {
    "misclassified": "grad_misclassified",
    "confidently_wrong": "grad_confidently_wrong",
    "share_confidently_wrong": "share_confidently_wrong",
}


@dataclass(frozen=True)
class Configuration:
    name: str
    kind: str  # width, deep, lr (the learning-rate study) or regularizer
    hidden: tuple[int, ...]
    loss: str
    lr: float
    dropout: float = 0.0
    weight_decay: float = 0.0
    patience: int | None = None

    @property
    def recipe(self) -> tuple:
        """What its training depends on besides the seeds and the length: equal recipes, equal results."""
        return self.hidden, self.loss, self.lr, self.dropout, self.weight_decay, self.patience


@dataclass(frozen=True)
class Step:
    """How the sweep gets one configuration's result."""

    config: Configuration
    same_as: str | None = None  # an equal configuration before it, whose result it is
    read_from: str | None = None  # trained before without early stopping: its training is read
    watch: tuple[int, ...] = ()  # patiences read off this configuration's training
    checkpoint: Checkpoint | None = None  # a variant's checkpoint that holds its training


@dataclass
class SweepRun:
    """run_sweep's results: per configuration the summary over seeds (metrics/sweep.json), one row
    per configuration and seed (runs.csv), one per trained configuration, seed and epoch
    (curves.csv), the seconds per configuration, the configurations read from a checkpoint
    (name -> variant) and of those the epochs trained again for early stopping (name -> epochs)."""

    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)
    curves: list[dict[str, Any]] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    checkpointed: dict[str, str] = field(default_factory=dict)
    rewatched: dict[str, int] = field(default_factory=dict)


class Hooks:
    """What a caller may watch; every method does nothing here. `end` comes inside the
    configuration's scope, or after it where the training diverged (the error left the scope)."""

    def scope(self, config: Configuration, params: dict[str, Any]) -> AbstractContextManager:
        return nullcontext()

    def epoch(self, config: Configuration, stats: list[EpochStats]) -> None:
        pass

    def end(self, config: Configuration, result: dict[str, Any], seconds: float) -> None:
        pass


def configurations(sweep, lr: float) -> list[Configuration]:
    """Every configuration of a config.SweepConfig, in the order the sweep runs them; all but the
    learning-rate study at `lr` (train.lr), the book's."""
    base = (sweep.base_width,)
    configs = [Configuration(f"w{w}", "width", (w,), LOSS, lr) for w in sweep.widths]
    if sweep.deep:
        configs.append(Configuration("deep", "deep", tuple(sweep.deep), LOSS, lr))
    # repr: the shortest text of the float (0.03, not 0.029999...), different for different rates
    configs += [
        Configuration(f"{loss}_lr{rate!r}", "lr", base, loss, rate)
        for loss in sweep.losses
        for rate in sweep.learning_rates
    ]
    configs += [
        Configuration(name, "regularizer", base, LOSS, lr, r.dropout, r.weight_decay, r.patience)
        for name, r in sweep.regularizers.items()
    ]
    return configs


def plan(
    configs: list[Configuration], checkpointed: dict[str, Checkpoint] | None = None
) -> list[Step]:
    """Each recipe trained once: a configuration equal to an earlier one is `same_as` it; one with
    early stopping whose recipe without it came earlier is `read_from` that one, which `watch`es
    its patience; one in `checkpointed` (name -> the checkpoint that holds its training) is read
    from its `checkpoint`, watched or not (rewatched). What is read off what depends on the params
    alone, so the results are the same bits with or without checkpoints."""
    first: dict[tuple, str] = {}
    steps = []
    for c in configs:
        without_stopping = replace(c, patience=None).recipe if c.patience is not None else None
        if c.recipe in first:
            steps.append(Step(c, same_as=first[c.recipe]))
        else:
            steps.append(Step(c, read_from=first.get(without_stopping)))
            first[c.recipe] = c.name
    watch = defaultdict(set)
    for s in steps:
        if s.read_from:
            watch[s.read_from].add(s.config.patience)
    held = checkpointed or {}
    return [
        replace(
            s,
            watch=tuple(sorted(watch[s.config.name])),
            checkpoint=None if s.same_as or s.read_from else held.get(s.config.name),
        )
        for s in steps
    ]


def model_config(c: Configuration, n_classes: int) -> ModelConfig:
    return ModelConfig(
        hidden=c.hidden, n_classes=n_classes, head=head_for(c.loss), dropout=c.dropout
    )


def config_sgd(c: Configuration, book: SGD) -> SGD:
    """How a configuration trains: the book's recipe with its loss, lr and regularizers."""
    return replace(book, loss=c.loss, lr=c.lr, weight_decay=c.weight_decay, patience=c.patience)


def from_checkpoints(
    configs: list[Configuration],
    checkpoints: Sequence[Checkpoint],
    book: SGD,
    seeds: list[int],
    n_classes: int,
) -> dict[str, Checkpoint]:
    """name -> the first checkpoint that holds the configuration's training, where one does."""
    found = {}
    for c in configs:
        if c.dropout:  # a variant's dropout seeds train one by one, the sweep's side by side with
            continue  # masks drawn for all of them at once: other bits
        cfg, sgd = model_config(c, n_classes), config_sgd(c, book)
        holder = next((ck for ck in checkpoints if why_not(ck, cfg, sgd, seeds) is None), None)
        if holder is not None:
            found[c.name] = holder
    return found


def describe_config(c: Configuration, n_classes: int) -> dict[str, Any]:
    """What metrics/sweep.json and MLflow say of a configuration besides its results."""
    return {
        "kind": c.kind,
        "model": describe(model_config(c, n_classes)),
        "hidden": list(c.hidden),
        "n_parameters": n_parameters(list(c.hidden), n_classes),
        "loss": c.loss,
        "lr": c.lr,
        "dropout": c.dropout,
        "weight_decay": c.weight_decay,
        "patience": c.patience,
    }


def run_sweep(
    sweep,
    train: Data,
    val: Data,
    book: SGD,
    *,
    seeds: list[int],
    n_classes: int,
    hooks: Hooks = Hooks(),
    checkpoints: Sequence[Checkpoint] = (),
) -> SweepRun:
    """Every configuration (configurations, plan). `book` is the book's recipe: train.lr,
    train.batch_size, sweep.epochs; each configuration sets its own loss, lr and regularizers.
    `checkpoints` (birdplane.checkpoint, of this data, engine and numerics): what they hold is read."""
    out, configs = SweepRun(), configurations(sweep, book.lr)
    steps = plan(configs, from_checkpoints(configs, checkpoints, book, seeds, n_classes))
    out.checkpointed = {s.config.name: s.checkpoint.variant for s in steps if s.checkpoint}
    read_off: dict[tuple[str, int], list[dict[str, Any]]] = {}  # (base, patience) -> seed rows

    def rows_of(step: Step) -> list[dict[str, Any]]:  # trained or read; the curves go to `out`
        c, derived, data = step.config, {}, (train, val)
        if step.checkpoint:
            if step.watch:  # first: a checkpoint that disagrees stops the configuration
                derived, out.rewatched[c.name] = rewatched(step, data, book, seeds, n_classes)
            rows, curves = read_configuration(c, step.checkpoint, data, seeds, hooks)
        else:
            rows, curves, derived = train_configuration(
                c, step.watch, train, val, book, seeds=seeds, n_classes=n_classes, hooks=hooks
            )
        read_off.update({(c.name, p): r for p, r in derived.items()})
        out.curves.extend(curves)
        return rows

    for step in steps:
        c, t0, described = step.config, time.perf_counter(), describe_config(step.config, n_classes)
        # a base that diverged gave nothing to read off: then early stopping trains on its own
        source = step.read_from if (step.read_from, c.patience) in read_off else None
        params = {"config": c.name, **described, "seeds": seeds, "epochs": sweep.epochs}
        params |= origin(step, source)
        try:
            with hooks.scope(c, params):
                if step.same_as:
                    result, rows = copied(out, step.same_as, c)
                elif source:
                    rows = [{**r, "config": c.name} for r in read_off[source, c.patience]]
                    result = {**described, **summarize(rows), "read_from": source}
                else:
                    rows = rows_of(step)
                    result = {**described, **summarize(rows)}
                out.seconds[c.name] = time.perf_counter() - t0
                hooks.end(c, result, out.seconds[c.name])
        except TrainingDiverged as e:  # its scope has ended (an MLflow run FAILED)
            if c.kind != "lr":  # in the learning-rate study a result; elsewhere a bad recipe
                raise
            result, rows = {**described, "diverged": {"epoch": e.epoch}}, []
            out.seconds[c.name] = time.perf_counter() - t0
            hooks.end(c, result, out.seconds[c.name])
        out.results[c.name] = result
        out.rows += rows
    return out


def origin(step: Step, read_from: str | None) -> dict[str, str]:
    """Where a configuration's result comes from, for its MLflow params (nothing: trained)."""
    checkpoint = step.checkpoint and step.checkpoint.variant
    named = {"same_as": step.same_as, "read_from": read_from, "checkpoint": checkpoint}
    return {k: v for k, v in named.items() if v}


def copied(out: SweepRun, same_as: str, c: Configuration) -> tuple[dict[str, Any], list[dict]]:
    """The result and rows of the equal configuration `same_as`, as `c`'s."""
    result = {k: v for k, v in out.results[same_as].items() if k != "read_from"}
    rows = [{**r, "config": c.name} for r in out.rows if r["config"] == same_as]
    return result | {"kind": c.kind, "same_as": same_as}, rows


def train_configuration(
    c: Configuration,
    watch: tuple[int, ...],
    train: Data,
    val: Data,
    book: SGD,
    *,
    seeds: list[int],
    n_classes: int,
    hooks: Hooks,
) -> tuple[list[dict], list[dict], dict[int, list[dict]]]:
    """Train one configuration's seeds at once, with the book's recipe `book` but the
    configuration's loss, lr and regularizers: (one row per seed, one curve row per seed and
    epoch, and per patience in `watch` the rows of its seeds as a run with that patience gives)."""
    sgd = config_sgd(c, book)
    models, histories, derived = train_watched(
        c, watch, train, val, sgd, seeds, n_classes, lambda stats: hooks.epoch(c, stats)
    )
    rows = [
        seed_row(c.name, seed, m, c.loss, h, train, val)
        for seed, m, h in zip(seeds, models, histories)
    ]
    return rows, curve_rows(c.name, seeds, histories), derived


def train_watched(
    c: Configuration,
    watch: tuple[int, ...],
    train: Data,
    val: Data,
    sgd: SGD,
    seeds: list[int],
    n_classes: int,
    on_epoch: Callable[[list[EpochStats]], None] | None = None,
) -> tuple[list, list[list[EpochStats]], dict[int, list[dict]]]:
    """The seeds of `c` trained at once by `sgd`: (the models, their histories, and per patience
    in `watch` the rows of its seeds as a run with that patience gives)."""
    models = []
    for seed in seeds:  # each model initialised as a variant's would be: its own seed
        seed_everything(seed)
        models.append(build_model(model_config(c, n_classes)).to(train[0].device))
    stops = [[EarlyStop(p) for p in watch] for _ in seeds]
    histories = train_many(
        models,
        train,
        val,
        sgd,
        seeds=seeds,
        names=[f"sweep {c.name} seed {s}" for s in seeds],
        watch=stops if watch else (),
        on_epoch=on_epoch,
    )
    derived = {
        p: [
            early_stopped_row(c, seed, m, h, stop[i], train, val)
            for seed, m, h, stop in zip(seeds, models, histories, stops)
        ]
        for i, p in enumerate(watch)
    }
    return models, histories, derived


def watched_epochs(ck: Checkpoint, watch: tuple[int, ...], seeds: list[int]) -> int:
    """How many of `ck`'s epochs early stopping with each patience of `watch` sees: up to where
    the last of the seeds stops (EarlyStop's rule on the checkpoint's validation accuracies), all
    of them where one never does."""
    needed = 0
    for history in (ck.histories[ck.seeds.index(s)] for s in seeds):
        for patience in watch:
            stop = EarlyStop(patience)
            for s in history:
                if stop.update(s.epoch, s.val_accuracy, lambda: None):
                    break
            needed = max(needed, stop.stopped_at or len(history))
    return needed


def rewatched(
    step: Step, data: tuple[Data, Data], book: SGD, seeds: list[int], n_classes: int
) -> tuple[dict[int, list[dict]], int]:
    """Early stopping's rows (train_configuration's third value) for a configuration read from
    its checkpoint, which holds the last epoch's weights, not the best epoch's: its first
    watched_epochs train again, watched, and must be the checkpoint's; (the rows, those epochs)."""
    c, ck, (train, val) = step.config, step.checkpoint, data
    epochs = watched_epochs(ck, step.watch, seeds)
    sgd = replace(config_sgd(c, book), epochs=epochs)
    _, histories, derived = train_watched(c, step.watch, train, val, sgd, seeds, n_classes)
    for seed, history in zip(seeds, histories):
        held = ck.histories[ck.seeds.index(seed)][:epochs]
        for a, b in zip(history, held):
            if [getattr(a, k) for k in CURVE] != [getattr(b, k) for k in CURVE]:
                raise BirdplaneError(
                    f"the checkpoint of {ck.variant} disagrees with training {c.name} again: seed "
                    f"{seed}, epoch {a.epoch}, this machine computes other bits than the one that "
                    f"wrote it; `python -m birdplane.fingerprint --check` says where, and "
                    f"`dvc repro --force train@{ck.variant}` writes the checkpoint here"
                )
    return derived, epochs


def read_configuration(
    c: Configuration, ck: Checkpoint, data: tuple[Data, Data], seeds: list[int], hooks: Hooks
) -> tuple[list[dict], list[dict]]:
    """train_configuration's rows and curves for a configuration `ck` holds (checkpoint.why_not
    is None): each seed's weights at the end of its epochs, and the epochs up to there; the
    hooks see every epoch, as when it trains."""
    (train, val), at = data, [ck.seeds.index(s) for s in seeds]
    histories = [ck.histories[i] for i in at]
    for stats in zip(*histories):
        hooks.epoch(c, list(stats))
    rows = []
    for seed, i, history in zip(seeds, at, histories):
        model = build_model(ck.config).to(train[0].device)
        model.load_state_dict(ck.states[i])
        rows.append(seed_row(c.name, seed, model, c.loss, history, train, val))
    return rows, curve_rows(c.name, seeds, histories)


def curve_rows(name: str, seeds: list[int], histories: list[list[EpochStats]]) -> list[dict]:
    """curves.csv's rows of a configuration: one per seed and epoch."""
    return [
        {"config": name, "seed": seed, "epoch": s.epoch, **{k: getattr(s, k) for k in CURVE}}
        for seed, h in zip(seeds, histories)
        for s in h
    ]


def early_stopped_row(
    c: Configuration,
    seed: int,
    model,
    history: list[EpochStats],
    stop: EarlyStop,
    train: Data,
    val: Data,
) -> dict[str, Any]:
    """The row of a seed as early stopping with stop.patience would have ended it: the epochs up to
    where it stops, the weights of the best of them (a copy of the model holds them)."""
    stopped = copy.deepcopy(model)
    stopped.load_state_dict(stop.weights)
    return seed_row(
        c.name, seed, stopped, c.loss, history[: stop.stopped_at or len(history)], train, val
    )


def seed_row(
    name: str, seed: int, model, loss: str, history: list[EpochStats], train: Data, val: Data
) -> dict[str, Any]:
    """One seed of a configuration: the trained model on all images (inference.final_metrics), its
    best epoch, and the loss gradient on the training images it gets wrong."""
    final, best, grads = (
        final_metrics(model, loss, train, val),
        best_of(history),
        logit_gradients(model, loss, *train),
    )
    wrong = grads["n_misclassified"]
    grads["share_confidently_wrong"] = grads["n_confidently_wrong"] / wrong if wrong else None
    return {
        "config": name,
        "seed": seed,
        "train_accuracy": final["train_accuracy"],
        "val_accuracy": final["val_accuracy"],
        "overfit_gap": final["overfit_gap"],
        "best_epoch": best["best_epoch"],
        "epochs_trained": best["epochs_trained"],
        **{column: grads[k] for k, column in GRADIENTS.items()},
    }


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean ± std over the seeds; a gradient over the seeds that have such images (null if none)."""
    return {
        **{k: spread([r[k] for r in rows]) for k in SUMMARIZED},
        "logit_grad": {
            k: spread_known([r[column] for r in rows]) for k, column in GRADIENTS.items()
        },
    }


def sweep_metrics(sweep, seeds: list[int], results: dict[str, dict]) -> dict[str, Any]:
    """metrics/sweep.json: every configuration, and the rule's pick for the `small` variant among
    the widths and the deep net."""
    capacity = {n: r for n, r in results.items() if r["kind"] in ("width", "deep")}
    pick = smallest_within_one_std(capacity)
    pick["hidden"] = results[pick["pick"]]["hidden"]
    return {
        "seeds": seeds,
        "epochs": sweep.epochs,
        "losses": sweep.losses,
        "learning_rates": sweep.learning_rates,
        "configs": results,
        "small_rule": pick,
    }


def capacity_rows(results: dict[str, dict]) -> list[dict[str, Any]]:
    """plots/sweep/capacity.csv: mean and std per configuration of the capacity plot (the widths,
    the deep net and the regularizers), against the parameter count."""
    return [
        {
            "config": n,
            "kind": r["kind"],
            "n_parameters": r["n_parameters"],
            **{
                f"{k}_{stat}": r[k][stat]
                for k in ("train_accuracy", "val_accuracy", "overfit_gap")
                for stat in ("mean", "std")
            },
        }
        for n, r in results.items()
        if r["kind"] in ("width", "deep", "regularizer")
    ]
