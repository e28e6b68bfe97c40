"""birdplane.train.variant: a variant's seeds trained side by side or one by one (the same models
and curves: bit for bit with pinned numerics, else to float rounding), the metrics' `seeds`
section, the per-seed and mean curves, and the MLflow runs of tracking.SeedLogger with all seeds'
runs open at once (a temporary SQLite store)."""

import functools
import os

import pytest
import torch

from birdplane import numerics
from birdplane.config import Recipe
from birdplane.inference import logit_gradients, predict
from birdplane.io import outputs
from birdplane.losses import LOSSES, probabilities
from birdplane.metrics import calibration
from birdplane.summary import spread
from birdplane.train import variant
from birdplane.train.sgd import EpochStats
from birdplane.train.variant import (
    Hooks,
    Options,
    SeedRun,
    history_rows,
    mean_rows,
    model_config,
    seed_rows,
    side_by_side,
    train_variant,
    variant_metrics,
)

SEEDS = [0, 1, 2]


def data(n=120):
    """Images whose label is a noisy function of a few pixels: learnable, not all learnt in 3 epochs."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3072, generator=g)
    y = (x[:, :10].sum(1) + 3 * torch.randn(n, generator=g) > 0).long()
    cut = n * 3 // 4
    return (x[:cut], y[:cut]), (x[cut:], y[cut:])


def recipe(**kw):
    base = dict(
        name="v",
        arch="mlp",
        hidden=(8,),
        channels=(),
        activation="tanh",
        loss="nll",
        epochs=3,
        batch_size=10,
        lr=0.05,
        seeds=len(SEEDS),
    )
    return Recipe(**{**base, **kw})


def train(r, seeds=SEEDS, **kw):
    hooks = kw.pop("hooks", Hooks())
    return train_variant(
        r, model_config(r, 2), *data(), seeds=seeds, options=Options(**kw), hooks=hooks
    )


def test_which_recipes_train_their_seeds_side_by_side():
    def at_once(n_seeds=3, engine="fused", pinned=True, device="cpu", **kw):
        r = recipe(**kw)
        return side_by_side(r, model_config(r, 2), engine, n_seeds, device, pinned)

    assert (
        at_once()
        and at_once(hidden=(512,))
        and at_once(hidden=(32, 600))
        and at_once(weight_decay=0.1, patience=2)
    )
    assert not at_once(n_seeds=1) and not at_once(engine="autograd")
    # unpinned (MKL) the wide nets train one by one: side by side was slower there
    assert at_once(hidden=(256,), pinned=False) and not at_once(hidden=(512,), pinned=False)
    assert at_once(hidden=(256,), device="cuda") and not at_once(hidden=(512,), device="cuda")
    assert not at_once(augment_shift=2) and not at_once(dropout=0.5)
    assert not at_once(arch="cnn", channels=(4,), hidden=(8,))


@pytest.mark.parametrize(
    "reg",
    [{}, {"weight_decay": 0.01, "patience": 1}, {"hidden": (512,)}],
    ids=["plain", "early-stopping", "wide-gram-blocks"],
)
def test_seeds_side_by_side_are_the_models_each_seed_gets_alone(monkeypatch, reg):
    """With pinned numerics bit for bit: every weight and every figure of every epoch (so the stage
    may train seeds side by side for speed alone); unpinned, to float rounding."""
    calls, train_many = [], variant.train_many
    # side by side whatever the mode (unpinned the wide nets would train one by one)
    monkeypatch.setattr(variant, "side_by_side", functools.partial(side_by_side, pinned=True))

    def spy(*args, **kw):
        calls.append(kw["seeds"])
        return train_many(*args, **kw)

    monkeypatch.setattr(variant, "train_many", spy)
    r = recipe(epochs=6, **reg)
    together = train(r)
    assert calls == [SEEDS]
    alone = [train(r, seeds=[s])[0] for s in SEEDS]
    assert calls == [SEEDS]  # one seed: engine.TRAINERS[engine]
    if numerics.describe()["mode"] == numerics.PINNED:
        for a, b in zip(alone, together):
            assert [s.to_dict() | {"seconds": 0} for s in b.history] == [
                s.to_dict() | {"seconds": 0} for s in a.history
            ]
            assert b.final == a.final
            for k, w in a.model.state_dict().items():
                assert torch.equal(b.model.state_dict()[k], w), k
        return
    for a, b in zip(alone, together):
        assert a.seed == b.seed and [s.epoch for s in a.history] == [s.epoch for s in b.history]
        for sa, sb in zip(a.history, b.history):
            assert sb.val_accuracy == sa.val_accuracy and sb.train_accuracy == sa.train_accuracy
            assert sb.val_loss == pytest.approx(sa.val_loss, rel=1e-4)
        for k, w in a.model.state_dict().items():
            torch.testing.assert_close(b.model.state_dict()[k], w, rtol=1e-4, atol=1e-5, msg=k)
        assert b.final["val_accuracy"] == a.final["val_accuracy"]
        assert b.final["best_epoch"] == a.final["best_epoch"]


class Recorder(variant.Hooks):
    def __init__(self):
        self.scopes, self.epochs, self.ends = [], [], []

    def scope(self, seeds):
        self.scopes.append(list(seeds))
        return super().scope(seeds)

    def epoch(self, seed, stats):
        self.epochs.append((seed, stats.epoch))

    def end(self, seed, final):
        self.ends.append(seed)


@pytest.mark.parametrize(
    "kw, scopes",
    [({}, [SEEDS]), ({"engine": "autograd"}, [[s] for s in SEEDS])],
    ids=["side-by-side", "one-by-one"],
)
def test_hooks_see_every_seed_and_epoch(kw, scopes):
    hooks = Recorder()
    runs = train(recipe(), hooks=hooks, **kw)
    assert hooks.scopes == scopes and hooks.ends == SEEDS
    assert sorted(hooks.epochs) == [(s, e) for s in SEEDS for e in (1, 2, 3)]
    assert [len(r.history) for r in runs] == [3, 3, 3]


def test_the_seeds_section_has_each_seeds_figures():
    r = recipe(epochs=2, lr=0.002)  # a few training images still wrong
    runs = train(r)
    (train_x, train_y), (val_x, val_y) = data()
    m = variant_metrics(r, model_config(r, 2), runs, (train_x, train_y), (val_x, val_y), 10)
    assert (
        m["val_accuracy"] == runs[0].final["val_accuracy"]
        and m["train_accuracy"] == runs[0].final["train_accuracy"]
    )
    s = m["seeds"]
    assert list(s) == [
        "seeds",
        "train_accuracy",
        "val_accuracy",
        "overfit_gap",
        "best_val_accuracy",
        "best_epoch",
        "val_ece",
        "logit_grad_misclassified",
        "logit_grad_confidently_wrong",
        "runs",
    ]
    assert s["seeds"] == SEEDS and [p["seed"] for p in s["runs"]] == SEEDS
    for run, p in zip(runs, s["runs"]):
        assert list(p) == [
            "seed",
            "train_accuracy",
            "val_accuracy",
            "overfit_gap",
            "best_val_accuracy",
            "best_epoch",
            "epochs_trained",
            "val_ece",
            "logit_grad",
        ]
        probs = probabilities(predict(run.model, val_x), LOSSES["nll"].head)
        assert p["val_ece"] == calibration(probs, val_y, 10)[0]
        assert p["logit_grad"] == logit_gradients(run.model, "nll", train_x, train_y)
        assert p["val_accuracy"] == run.final["val_accuracy"] and p["epochs_trained"] == 2
    assert s["val_ece"] == spread([p["val_ece"] for p in s["runs"]])
    assert s["val_accuracy"] == spread([r.final["val_accuracy"] for r in runs])
    wrong = [p["logit_grad"]["misclassified"] for p in s["runs"]]
    assert None not in wrong and s["logit_grad_misclassified"] == spread(wrong)
    one = variant_metrics(r, model_config(r, 2), runs[:1], (train_x, train_y), (val_x, val_y), 10)
    assert "seeds" not in one and one == {k: v for k, v in m.items() if k != "seeds"}


def test_a_seed_without_wrong_images_is_left_out_of_the_gradient_spread(monkeypatch):
    figures = iter(
        [
            {"misclassified": 0.5, "confidently_wrong": None},
            {"misclassified": 0.7, "confidently_wrong": None},
            {"misclassified": None, "confidently_wrong": None},
        ]
    )
    monkeypatch.setattr(variant, "logit_gradients", lambda *a, **kw: next(figures))
    r = recipe(epochs=1)
    s = variant_metrics(r, model_config(r, 2), train(r), *data(), 10)["seeds"]
    assert (
        s["logit_grad_misclassified"] == spread([0.5, 0.7])
        and s["logit_grad_confidently_wrong"] is None
    )
    assert s["runs"][2]["logit_grad"]["misclassified"] is None


def stats(epoch, value):
    return EpochStats(epoch, value, value / 10, 2 * value, value / 20, 0.5)


def run_of(seed, values):
    return SeedRun(seed, None, [stats(e, v) for e, v in enumerate(values, 1)], {})


def test_seed_curves_and_their_mean_over_the_seeds_still_training():
    runs = [
        run_of(0, [1.0, 2.0, 3.0]),
        run_of(1, [3.0, 4.0]),
        run_of(2, [5.0, 6.0, 9.0]),
    ]  # seed 1 stopped early
    rows = seed_rows(runs)
    assert list(rows[0]) == [
        "seed",
        "epoch",
        "train_loss",
        "train_accuracy",
        "val_loss",
        "val_accuracy",
    ]
    assert [(r["seed"], r["epoch"], r["train_loss"]) for r in rows] == [
        (0, 1, 1.0),
        (0, 2, 2.0),
        (0, 3, 3.0),
        (1, 1, 3.0),
        (1, 2, 4.0),
        (2, 1, 5.0),
        (2, 2, 6.0),
        (2, 3, 9.0),
    ]
    mean = mean_rows(runs)
    assert list(mean[0]) == ["epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy"]
    assert [r["epoch"] for r in mean] == [1, 2, 3]
    assert [r["train_loss"] for r in mean] == pytest.approx(
        [3.0, 4.0, 6.0]
    )  # epoch 3: seeds 0 and 2 only
    assert [r["val_loss"] for r in mean] == pytest.approx([6.0, 8.0, 12.0])
    assert [r["val_accuracy"] for r in mean] == pytest.approx([0.15, 0.2, 0.3])


def test_one_seeds_mean_curve_is_its_history_byte_for_byte(tmp_path):
    run = train(recipe(), seeds=[0])[0]
    with outputs() as out:
        out.write_csv(tmp_path / "mean.csv", mean_rows([run]), float_format="%.6f")
        out.write_csv(tmp_path / "history.csv", history_rows(run.history), float_format="%.6f")
        out.write_csv(tmp_path / "seeds.csv", seed_rows([run]), float_format="%.6f")
    assert (tmp_path / "mean.csv").read_bytes() == (tmp_path / "history.csv").read_bytes()
    lines = (tmp_path / "seeds.csv").read_text().splitlines()
    assert (
        lines[0] == "seed,epoch,train_loss,train_accuracy,val_loss,val_accuracy" and len(lines) == 4
    )
    assert (
        lines[1].startswith("0,1,")
        and lines[1][4:] == (tmp_path / "history.csv").read_text().splitlines()[1][2:]
    )


# ---------------------------------------------------------------- MLflow


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A temporary SQLite store for this module's runs; yields its URI."""
    import mlflow

    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow')}/mlflow.db"
    before = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = uri
    try:
        yield uri
    finally:
        if before is None:
            del os.environ["MLFLOW_TRACKING_URI"]
        else:
            os.environ["MLFLOW_TRACKING_URI"] = before
        mlflow.set_tracking_uri(None)


def train_tracked(experiment, r, *, engine="fused", echo=None) -> str:
    """What the train stage does around train_variant: the variant's run and SeedLogger; returns
    the variant run's id."""
    from birdplane import tracking

    tags = {"variant": r.name, "dvc_stage": f"train@{r.name}"}
    with tracking.variant_run(experiment, r.name, stage=f"train@{r.name}", tags=tags) as run:
        train(
            r,
            engine=engine,
            hooks=tracking.SeedLogger(r.name, f"train@{r.name}", SEEDS, {"lr": r.lr}, tags, echo),
        )
    return run.info.run_id


def runs_of(experiment):
    import mlflow

    return mlflow.search_runs(experiment_names=[experiment], output_format="list")


@pytest.mark.parametrize("engine", ["fused", "autograd"], ids=["side-by-side", "one-by-one"])
def test_each_further_seed_is_a_finished_child_run_with_its_epochs(store, engine):
    from mlflow.tracking import MlflowClient

    experiment = f"seeds-{engine}"
    r = recipe()
    parent = train_tracked(experiment, r, engine=engine)
    runs = {run.info.run_name: run for run in runs_of(experiment)}
    assert sorted(runs) == ["v", "v-seed1", "v-seed2"]
    assert all(run.info.status == "FINISHED" for run in runs.values())
    client = MlflowClient()
    for seed, name in zip(SEEDS, ("v", "v-seed1", "v-seed2")):
        run = runs[name]
        assert run.data.params["seed"] == str(seed) and run.data.params["lr"] == str(r.lr)
        history = client.get_metric_history(run.info.run_id, "val_accuracy")
        assert sorted(m.step for m in history) == [1, 2, 3]
        if seed != SEEDS[0]:
            assert run.data.tags["mlflow.parentRunId"] == parent and run.data.tags["seed"] == str(
                seed
            )
            assert (
                run.data.tags["birdplane.pid"] == str(os.getpid())
                and run.data.tags["variant"] == "v"
            )
            assert (
                "final_val_accuracy" in run.data.metrics and "final_val_ece" not in run.data.metrics
            )
    assert "mlflow.parentRunId" not in runs["v"].data.tags


@pytest.mark.parametrize("error, status", [(RuntimeError, "FAILED"), (KeyboardInterrupt, "KILLED")])
def test_an_error_mid_training_ends_every_seeds_run(store, error, status):
    def echo(seed, stats):
        if stats.epoch == 2:
            raise error("stop")

    experiment = f"stopped-{status}"
    with pytest.raises(error):
        train_tracked(experiment, recipe(), echo=echo)
    runs = runs_of(experiment)
    assert sorted(run.info.run_name for run in runs) == ["v", "v-seed1", "v-seed2"]
    assert [run.info.status for run in runs] == [status] * 3
