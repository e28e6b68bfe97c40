"""The sweep (birdplane.sweep) on tiny real tensors: its configurations, no recipe trained twice,
early stopping read off a full training, divergence in the learning-rate study as a result, and
the per-epoch curves."""

from __future__ import annotations

import re
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import yaml

from birdplane import sweep as sweep_module
from birdplane.config import ConfigError, SweepConfig, load_params
from birdplane.sweep import (
    CURVE,
    Configuration,
    Hooks,
    capacity_rows,
    configurations,
    plan,
    run_sweep,
    sweep_metrics,
    train_configuration,
)
from birdplane.train.sgd import SGD
from conftest import TINY_SWEEP

ROOT = Path(__file__).resolve().parents[1]
SEEDS = [0, 1]


def tiny_sweep(**changes) -> SweepConfig:
    return SweepConfig.model_validate({**TINY_SWEEP, **changes}, strict=False)


def book(sw: SweepConfig) -> SGD:
    """The book's recipe as the sweep stage makes it (train.lr 0.01, a small batch here)."""
    return SGD(loss="nll", epochs=sw.epochs, batch_size=16, lr=0.01)


def tiny_data(n=96, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3072, generator=g)
    y = (x[:, :10].sum(1) > 0).long()  # learnable
    return (x[: n * 3 // 4], y[: n * 3 // 4]), (x[n * 3 // 4 :], y[n * 3 // 4 :])


@contextmanager
def counted_training():
    """The names of the configurations train_many trains, in order."""
    trained = []
    real = sweep_module.train_many

    def counting(models, loss, *args, names, **kwargs):
        trained.append(names[0].split()[1])  # "sweep <config> seed <n>"
        return real(models, loss, *args, names=names, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sweep_module, "train_many", counting)
        yield trained


@pytest.mark.parametrize(
    "edit, message",
    [
        ({"losses": ["nll", "huber"]}, "sweep.losses: Input should be 'nll' or 'mse'"),
        ({"losses": ["mse", "mse"]}, "sweep.losses: lists a loss twice"),
        (
            {"learning_rates": [0.1, 0.01]},
            "sweep.learning_rates: list the learning rates once each, smallest first",
        ),
        ({"learning_rates": [0.1, 0.1]}, "smallest first"),
        ({"learning_rates": [0, 0.1]}, "sweep.learning_rates.0: Input should be greater than 0"),
        (
            {"learning_rates": [0.1, 20]},
            "sweep.learning_rates.1: Input should be less than or equal to 10",
        ),
    ],
)
def test_the_learning_rate_study_is_validated(tmp_path, edit, message):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["sweep"].update(edit)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_params(tmp_path / "params.yaml")


def test_an_empty_study_is_valid(tmp_path):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["sweep"].update(losses=[], learning_rates=[])
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    sw = load_params(tmp_path / "params.yaml").sweep
    assert [c.kind for c in configurations(sw, 0.01)].count("lr") == 0


def test_configurations_order_and_names():
    sw = tiny_sweep(learning_rates=[0.01, 0.03, 0.1])
    configs = configurations(sw, lr=0.01)
    assert [c.name for c in configs] == [
        "w2",
        "w8",
        "deep",
        "nll_lr0.01",
        "nll_lr0.03",
        "nll_lr0.1",
        "mse_lr0.01",
        "mse_lr0.03",
        "mse_lr0.1",
        "weight_decay",
        "dropout",
        "early_stopping",
    ]
    by_name = {c.name: c for c in configs}
    assert by_name["mse_lr0.03"] == Configuration(
        "mse_lr0.03", "lr", (8,), "mse", 0.03
    )  # the book net, base_width
    assert {(c.loss, c.lr) for c in configs if c.kind != "lr"} == {
        ("nll", 0.01)
    }  # the rest: the book's recipe
    assert by_name["early_stopping"].patience == 1 and by_name["dropout"].dropout == 0.5


def test_the_plan_trains_each_recipe_once():
    steps = {s.config.name: s for s in plan(configurations(tiny_sweep(), lr=0.01))}
    assert steps["nll_lr0.01"].same_as == "w8"  # base_width 8 at train.lr: the width w8
    assert steps["early_stopping"].read_from == "w8"  # w8 with patience 1: read off w8's training
    assert steps["w8"].watch == (1,)
    assert [n for n, s in steps.items() if s.same_as or s.read_from] == [
        "nll_lr0.01",
        "early_stopping",
    ]
    # base_width not among the widths: the learning-rate study's book net is the base
    steps = {s.config.name: s for s in plan(configurations(tiny_sweep(widths=[2]), lr=0.01))}
    assert steps["early_stopping"].read_from == "nll_lr0.01" and steps["nll_lr0.01"].watch == (1,)
    # nor at train.lr: early stopping trains on its own
    steps = plan(configurations(tiny_sweep(widths=[2], learning_rates=[0.1]), lr=0.01))
    assert not any(s.same_as or s.read_from or s.watch for s in steps)
    # two regularizers of the same recipe: the second is the first
    regs = {**TINY_SWEEP["regularizers"], "stop_early": {"patience": 1}}
    steps = {s.config.name: s for s in plan(configurations(tiny_sweep(regularizers=regs), lr=0.01))}
    assert steps["stop_early"].same_as == "early_stopping" and steps["w8"].watch == (1,)


@pytest.fixture(scope="module")
def swept():
    train, val = tiny_data()
    with counted_training() as trained:
        done = run_sweep(tiny_sweep(), train, val, book(tiny_sweep()), seeds=SEEDS, n_classes=2)
    return done, trained


def test_no_configuration_is_trained_twice(swept):
    done, trained = swept
    names = [c.name for c in configurations(tiny_sweep(), lr=0.01)]
    assert list(done.results) == names and set(done.seconds) == set(names)
    assert trained == [n for n in names if n not in ("nll_lr0.01", "early_stopping")]
    alias, w8 = done.results["nll_lr0.01"], done.results["w8"]
    assert (
        alias["same_as"] == "w8"
        and alias["kind"] == "lr"
        and (alias["loss"], alias["lr"]) == ("nll", 0.01)
    )
    assert {k: v for k, v in alias.items() if k not in ("same_as", "kind")} == {
        k: v for k, v in w8.items() if k != "kind"
    }
    rows = {
        n: [{k: v for k, v in r.items() if k != "config"} for r in done.rows if r["config"] == n]
        for n in names
    }
    assert rows["nll_lr0.01"] == rows["w8"] and all(len(rows[n]) == len(SEEDS) for n in names)


def test_results_carry_loss_lr_and_the_logit_gradients(swept):
    done, _ = swept
    mse = done.results["mse_lr0.1"]
    assert (mse["kind"], mse["loss"], mse["lr"], mse["model"]) == (
        "lr",
        "mse",
        0.1,
        "3072-8-2, Tanh, Softmax",
    )
    assert (
        mse["val_accuracy"]["n"] == len(SEEDS) and "same_as" not in mse and "read_from" not in mse
    )
    for name, r in done.results.items():
        assert set(r["logit_grad"]) == {
            "misclassified",
            "confidently_wrong",
            "share_confidently_wrong",
        }
        seeds = [row for row in done.rows if row["config"] == name]
        values = [
            row["grad_misclassified"] for row in seeds if row["grad_misclassified"] is not None
        ]
        grad = r["logit_grad"]["misclassified"]  # over the seeds that misclassify any image
        assert (grad["values"], grad["n"]) == (values, len(values)) if values else grad is None
        for row in seeds:
            share = row["share_confidently_wrong"]
            assert share is None or 0 <= share <= 1
            assert (row["grad_confidently_wrong"] is None) == (share in (None, 0))
    metrics = sweep_metrics(tiny_sweep(), SEEDS, done.results)
    assert (metrics["losses"], metrics["learning_rates"]) == (["nll", "mse"], [0.01, 0.1])
    assert set(metrics["small_rule"]["within_one_std"]) <= {"w2", "w8", "deep"}
    assert [r["config"] for r in capacity_rows(done.results)] == [
        "w2",
        "w8",
        "deep",
        "weight_decay",
        "dropout",
        "early_stopping",
    ]


def test_curves_have_every_epoch_of_every_trained_configuration(swept):
    done, trained = swept
    assert all(list(r) == ["config", "seed", "epoch", *CURVE] for r in done.curves)
    epochs = TINY_SWEEP["epochs"]
    assert [(r["config"], r["seed"], r["epoch"]) for r in done.curves] == [
        (n, s, e) for n in trained for s in SEEDS for e in range(1, epochs + 1)
    ]
    assert all(0 <= r["train_accuracy"] <= 1 and r["val_loss"] > 0 for r in done.curves)


@pytest.mark.parametrize("watch", [(2,), (2, 4)])
def test_early_stopping_read_off_a_full_run_equals_a_run_with_patience(watch):
    """The watched run trains the full length; each patience's rows equal a real run with it (same
    seeds): the same stopping epoch and best epoch exactly, the same final model's numbers."""
    train, val = tiny_data(n=200)
    base = Configuration("w8", "width", (8,), "nll", 0.3)
    common = dict(seeds=[1, 2], n_classes=2, hooks=Hooks())
    recipe = SGD(loss="nll", epochs=15, batch_size=8, lr=base.lr)
    full, full_curves, derived = train_configuration(base, watch, train, val, recipe, **common)
    assert len(full_curves) == 2 * 15 and set(derived) == set(watch)
    for patience in watch:
        stopped, curves, _ = train_configuration(
            replace(base, patience=patience), (), train, val, recipe, **common
        )
        assert any(r["epochs_trained"] < 15 for r in stopped)  # it did stop early
        assert len(curves) == sum(r["epochs_trained"] for r in stopped)
        for a, b in zip(derived[patience], stopped):
            exact = ("seed", "best_epoch", "epochs_trained")
            assert [a[k] for k in exact] == [b[k] for k in exact]
            for k in (
                "train_accuracy",
                "val_accuracy",
                "overfit_gap",
                "grad_misclassified",
                "share_confidently_wrong",
            ):
                assert a[k] == pytest.approx(b[k], rel=1e-5, abs=1e-6), k


def test_divergence_in_the_learning_rate_study_is_a_result():
    train, val = tiny_data()
    # an infinite rate is far above the params' bound (10): a tanh net's loss stays finite at any
    # learning rate the params allow (tried up to 1e36). A finite 3e38 overflowed MKL's products into
    # NaN but left MSE's bounded loss finite with the pinned kernels (weights of +-inf, tanh of them
    # +-1): whether a huge step gives NaN depends on the kernels, inf * 0 always does
    sw = tiny_sweep(widths=[8], deep=[], regularizers={}).model_copy(
        update={"learning_rates": [0.01, float("inf")]}
    )
    seen = []

    class Watch(Hooks):
        @contextmanager
        def scope(self, config, params):
            try:
                yield
            except Exception as e:
                seen.append((config.name, type(e).__name__))
                raise

        def end(self, config, result, seconds):
            seen.append((config.name, "end"))

    with counted_training() as trained:
        done = run_sweep(sw, train, val, book(sw), seeds=SEEDS, n_classes=2, hooks=Watch())
    assert trained == ["w8", "nll_lrinf", "mse_lr0.01", "mse_lrinf"]  # went on after the divergence
    for name in ("nll_lrinf", "mse_lrinf"):
        r = done.results[name]
        assert r["diverged"] == {"epoch": 1} and "val_accuracy" not in r and "logit_grad" not in r
        assert (name, "TrainingDiverged") in seen and (
            name,
            "end",
        ) in seen  # the scope saw the error
        assert not any(row["config"] == name for row in done.rows + done.curves)
    assert done.results["mse_lr0.01"]["val_accuracy"]["n"] == len(SEEDS)
    assert done.results["nll_lr0.01"]["same_as"] == "w8"


def test_a_diverged_configuration_ends_its_mlflow_run_failed(tmp_path, monkeypatch):
    import mlflow

    from birdplane import tracking

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    train, val = tiny_data()
    sw = tiny_sweep(widths=[2], deep=[], regularizers={}, losses=["nll"]).model_copy(
        update={"learning_rates": [3e38]}
    )  # above the params' bound: see the test above
    lines = []
    try:
        with tracking.variant_run("sweep-test", "sweep", stage="sweep", tags={}):
            run_sweep(
                sw,
                train,
                val,
                book(sw),
                seeds=SEEDS,
                n_classes=2,
                hooks=tracking.SweepLogger({}, lambda c, r, s: lines.append((c.name, r))),
            )
        runs = mlflow.search_runs(experiment_names=["sweep-test"], output_format="list")
    finally:
        mlflow.set_tracking_uri(None)
    assert sorted((r.info.run_name, r.info.status) for r in runs) == [
        ("sweep", "FINISHED"),
        ("sweep-nll_lr3e+38", "FAILED"),
        ("sweep-w2", "FINISHED"),
    ]
    assert [(n, r.get("diverged")) for n, r in lines] == [
        ("w2", None),
        ("nll_lr3e+38", {"epoch": 1}),
    ]
