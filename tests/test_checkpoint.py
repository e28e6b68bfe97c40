"""Checkpoints (birdplane.checkpoint, birdplane.checkpointfile): a training keeps each seed's
weights at one epoch, the sweep reads a configuration a variant already trained from them and gets
the bits it computes itself, and a checkpoint file is checked like a model file."""

from __future__ import annotations

import io
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from birdplane import checkpoint, numerics
from birdplane.checkpoint import Computation, why_not
from birdplane.checkpointfile import CheckpointError, read_checkpoint
from birdplane import sweep as sweep_module
from birdplane.config import Recipe
from birdplane.errors import BirdplaneError
from birdplane.sweep import config_sgd, configurations, model_config, plan, run_sweep
from birdplane.sweep import watched_epochs
from birdplane.train.sgd import EpochStats
from birdplane.train.variant import Options, model_config as variant_config
from birdplane.train.variant import sgd_recipe, train_variant
from test_stage_inputs import deep_list, saved_deep
from test_sweep import SEEDS, book, counted_training, tiny_data, tiny_sweep

HERE = Computation("fused", "pinned", "cpu", "torch, numpy", "0" * 32, {"train/sgd.py": "1" * 32})


def recipe(**kw) -> Recipe:
    """The sweep's `w2` as a variant (tiny_sweep's book recipe, batch 16), 4 epochs."""
    base = dict(name="small", arch="mlp", hidden=(2,), channels=(), activation="tanh")
    base |= dict(loss="nll", epochs=4, batch_size=16, lr=0.01, seeds=len(SEEDS))
    return Recipe(**{**base, **kw})


def trained(r: Recipe, keep: int | None = 2, engine: str = "fused"):
    train, val = tiny_data()
    return train_variant(
        r, variant_config(r, 2), train, val, seeds=SEEDS, options=Options(engine, "running", keep)
    )


def same_state(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(
    "kw, engine",
    [({}, "fused"), ({"seeds": 1}, "fused"), ({}, "autograd")],
    ids=["side-by-side", "one-by-one", "autograd"],
)
def test_a_kept_epoch_is_the_model_of_a_run_that_long(kw, engine):
    """Weights and history at epoch 2 of a 4-epoch run are those of a 2-epoch run, bit for bit,
    whichever way the seeds train."""
    r = recipe(**kw)
    long, short = trained(r, 2, engine), trained(r.model_copy(update={"epochs": 2}), None, engine)
    for a, b in zip(long, short):
        assert a.kept is not None and b.kept is None
        assert same_state(a.kept, b.model.state_dict())
        assert not same_state(a.kept, a.model.state_dict())  # it went on training
        assert [s.to_dict() | {"seconds": 0} for s in a.history[:2]] == [
            s.to_dict() | {"seconds": 0} for s in b.history
        ]


def test_an_epoch_training_never_reaches_keeps_nothing():
    assert all(run.kept is None for run in trained(recipe(epochs=2), keep=3))


def write(tmp_path: Path, runs, r: Recipe, keep: int = 2, computation=HERE) -> Path:
    sgd = replace(sgd_recipe(r), epochs=keep)
    ck = checkpoint.of_runs(r.name, variant_config(r, 2), sgd, computation, runs)
    path = tmp_path / f"{r.name}.pt"
    path.write_bytes(checkpoint.checkpoint_bytes(ck))
    return path


@pytest.fixture(scope="module")
def small_checkpoint(tmp_path_factory):
    r = recipe()
    return write(tmp_path_factory.mktemp("checkpoints"), trained(r), r), r


def test_the_file_is_deterministic_and_reads_back(small_checkpoint, tmp_path):
    path, r = small_checkpoint
    again = write(tmp_path, trained(r), r)
    assert again.read_bytes() == path.read_bytes()
    ck = read_checkpoint(path, n_classes=2)
    assert (ck.variant, ck.epoch, ck.seeds, ck.computation) == ("small", 2, SEEDS, HERE)
    assert ck.sgd == replace(sgd_recipe(r), epochs=2) and ck.config == variant_config(r, 2)
    assert [len(h) for h in ck.histories] == [2, 2]
    assert b"seconds" not in path.read_bytes()  # no wall time: equal trainings, equal bytes


def test_why_a_checkpoint_does_not_hold_a_training(small_checkpoint):
    path, r = small_checkpoint
    ck = read_checkpoint(path, n_classes=2)
    cfg, sgd = variant_config(r, 2), replace(sgd_recipe(r), epochs=2)
    assert why_not(ck, cfg, sgd, SEEDS) is None and why_not(ck, cfg, sgd, SEEDS[:1]) is None
    assert why_not(ck, replace(cfg, hidden=(16,)), sgd, SEEDS) == "another net"
    assert "best epoch's weights" in why_not(
        replace(ck, sgd=replace(ck.sgd, patience=1)), cfg, replace(sgd, patience=1), SEEDS
    )
    assert why_not(ck, cfg, replace(sgd, epochs=3), SEEDS) == "kept at epoch 2, not 3"
    assert why_not(ck, cfg, replace(sgd, lr=0.1), SEEDS) == "another recipe"
    assert why_not(ck, cfg, replace(sgd, train_metrics="full"), SEEDS) == "another recipe"
    assert why_not(ck, cfg, sgd, [0, 5]) == "no seed 5 in it"


def test_the_sweep_reads_a_checkpointed_configuration_as_it_would_train_it(small_checkpoint):
    """w2 read from `small`'s checkpoint: every result, seed row and curve of the sweep is the
    bits of the sweep that trains w2."""
    assert numerics.mode() == numerics.PINNED  # the exact claim is pinned numerics'
    path, _ = small_checkpoint
    sw, (train, val) = tiny_sweep(), tiny_data()
    with counted_training() as alone:
        own = run_sweep(sw, train, val, book(sw), seeds=SEEDS, n_classes=2)
    with counted_training() as reading:
        read = run_sweep(
            sw,
            train,
            val,
            book(sw),
            seeds=SEEDS,
            n_classes=2,
            checkpoints=[read_checkpoint(path, n_classes=2)],
        )
    assert read.checkpointed == {"w2": "small"} and own.checkpointed == {}
    assert alone == ["w2", *reading]
    assert read.results == own.results and read.rows == own.rows and read.curves == own.curves


def test_the_plan_reads_a_watched_checkpoint_and_reads_early_stopping_off_it(small_checkpoint):
    """w8 is early stopping's base: read from a checkpoint too, early stopping still read off its
    training; what is read off what depends on the params alone, not on which checkpoints exist."""
    configs, ck = configurations(tiny_sweep(), lr=0.01), read_checkpoint(small_checkpoint[0], 2)
    steps = {s.config.name: s for s in plan(configs, {"w2": ck, "w8": ck})}
    assert steps["w2"].checkpoint is ck and steps["w2"].watch == ()
    assert steps["w8"].checkpoint is ck and steps["w8"].watch == (1,)
    assert steps["early_stopping"].read_from == "w8" and steps["early_stopping"].checkpoint is None
    assert steps["nll_lr0.01"].same_as == "w8" and steps["nll_lr0.01"].checkpoint is None
    without = plan(configs)
    assert [replace(s, checkpoint=None) for s in steps.values()] == without


def history(*val_accuracies: float) -> list[EpochStats]:
    return [EpochStats(e, 0.5, 0.5, 0.5, a, 0.0) for e, a in enumerate(val_accuracies, 1)]


def test_early_stopping_sees_the_epochs_up_to_where_the_last_seed_stops():
    """EarlyStop's rule on the checkpoint's validation accuracies: patience 2 stops seed 0 at
    epoch 4 (best at 2; ties do not count), seed 1 at epoch 5; a seed that never stops needs all."""
    ck = checkpoint.Checkpoint(
        "small", 6, None, None, HERE, [0, 1, 2],
        [
            history(0.5, 0.6, 0.6, 0.55, 0.7, 0.7),
            history(0.5, 0.6, 0.7, 0.7, 0.6, 0.8),
            history(0.5, 0.6, 0.7, 0.8, 0.9, 0.95),
        ],
        [],
    )  # fmt: skip
    assert watched_epochs(ck, (2,), [0]) == 4 and watched_epochs(ck, (2,), [0, 1]) == 5
    assert watched_epochs(ck, (1,), [0, 1]) == 4 and watched_epochs(ck, (1, 2), [0]) == 4
    assert watched_epochs(ck, (2,), [0, 2]) == 6  # seed 2 improves every epoch


@contextmanager
def trained_epochs():
    """(configuration, epochs) for each train_many of the sweep, in order."""
    seen = []
    real = sweep_module.train_many

    def counting(models, train, val, sgd, *, names, **kwargs):
        seen.append((names[0].split()[1], sgd.epochs))  # "sweep <config> seed <n>"
        return real(models, train, val, sgd, names=names, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sweep_module, "train_many", counting)
        yield seen


WATCHED = dict(widths=[8], deep=[], epochs=6, regularizers={"early_stopping": {"patience": 1}})


@pytest.fixture(scope="module")
def watched_checkpoint(tmp_path_factory):
    """`small` as 3072-8-2 kept at epoch 6: the sweep's w8 of WATCHED, early stopping's base."""
    r = recipe(hidden=(8,), epochs=6)
    path = write(tmp_path_factory.mktemp("watched"), trained(r, keep=6), r, keep=6)
    return read_checkpoint(path, n_classes=2)


def test_early_stopping_off_a_read_configuration_trains_only_the_epochs_it_watches(
    watched_checkpoint,
):
    """w8 read from the checkpoint; early stopping's epochs (fewer than 6) train again, watched:
    every result, seed row and curve is the bits of the sweep that trains w8 for all 6."""
    assert numerics.mode() == numerics.PINNED  # the exact claim is pinned numerics'
    sw, (train, val) = tiny_sweep(**WATCHED), tiny_data()
    with trained_epochs() as alone:
        own = run_sweep(sw, train, val, book(sw), seeds=SEEDS, n_classes=2)
    with trained_epochs() as reading:
        read = run_sweep(
            sw, train, val, book(sw), seeds=SEEDS, n_classes=2, checkpoints=[watched_checkpoint]
        )
    needed = watched_epochs(watched_checkpoint, (1,), SEEDS)
    assert needed < 6  # else this test shows nothing: both train all 6
    assert ("w8", 6) in alone and ("w8", needed) in reading and ("w8", 6) not in reading
    assert read.checkpointed == {"w8": "small"} and read.rewatched == {"w8": needed}
    assert read.results["early_stopping"]["read_from"] == "w8"
    assert read.results == own.results and read.rows == own.rows and read.curves == own.curves


def test_a_checkpoint_whose_epochs_this_machine_does_not_compute_stops_the_sweep(
    watched_checkpoint,
):
    """One figure of the last epoch trained again is not the checkpoint's: the sweep ends in an
    error naming the checkpoint, the seed and epoch, and what to run."""
    last = watched_epochs(watched_checkpoint, (1,), SEEDS)
    h = [list(x) for x in watched_checkpoint.histories]
    h[1][last - 1] = replace(h[1][last - 1], train_loss=h[1][last - 1].train_loss + 1e-6)
    ck = replace(watched_checkpoint, histories=h)
    sw, (train, val) = tiny_sweep(**WATCHED), tiny_data()
    with pytest.raises(BirdplaneError, match=r"checkpoint of small disagrees") as e:
        run_sweep(sw, train, val, book(sw), seeds=SEEDS, n_classes=2, checkpoints=[ck])
    assert f"seed 1, epoch {last}" in str(e.value) and "dvc repro --force train@small" in str(
        e.value
    )


def test_only_a_checkpoint_of_the_same_training_is_read(small_checkpoint, tmp_path):
    """Another learning rate, another length or too few seeds: the sweep trains w2 itself."""
    _, r = small_checkpoint
    sw = tiny_sweep()
    configs = configurations(sw, lr=0.01)
    w2 = next(c for c in configs if c.name == "w2")
    assert model_config(w2, 2) == variant_config(r, 2)
    assert config_sgd(w2, book(sw)) == replace(sgd_recipe(r), epochs=2)
    from birdplane.sweep import from_checkpoints

    for variant, keep, seeds in ((recipe(lr=0.02), 2, 2), (r, 3, 2), (recipe(seeds=1), 2, 1)):
        runs = trained(variant, keep)[:seeds]
        ck = read_checkpoint(write(tmp_path, runs, variant, keep), n_classes=2)
        assert from_checkpoints(configs, [ck], book(sw), SEEDS, 2) == {}, (variant, keep)


def test_a_checkpoint_of_other_code_data_or_libraries_is_not_read():
    """What decides the bits besides the recipe, compared with how it is here, in words."""
    files = checkpoint.computation_files()
    assert "checkpoint.py" in files and "train/sgd.py" in files
    now = checkpoint.here("fused", "cpu", "0" * 32, files)
    assert now.numerics == "pinned" and now.code["train/sgd.py"] == checkpoint.source_md5(
        checkpoint.PACKAGE / "train" / "sgd.py"
    )
    assert checkpoint.differences(now, now) == []
    older = replace(now, code=now.code | {"train/sgd.py": "1" * 32, "models.py": "2" * 32})
    assert checkpoint.differences(older, now) == [
        "src/birdplane/models.py and 1 more files changed since it was trained"
    ]
    other = replace(now, inputs="1" * 32, libraries="torch 2.0, numpy 1.0")
    assert checkpoint.differences(other, now) == [
        f"libraries 'torch 2.0, numpy 1.0', here {now.libraries!r}",
        f"inputs '{'1' * 32}', here '{'0' * 32}'",
    ]
    gone = replace(now, code={"gone.py": "3" * 32})
    assert checkpoint.differences(gone, checkpoint.here("fused", "cpu", "0" * 32, ["gone.py"])) == [
        "src/birdplane/gone.py changed since it was trained"
    ]


def test_only_pinned_numerics_on_the_cpu_read_checkpoints(monkeypatch):
    assert checkpoint.cannot_read("cpu") is None
    assert checkpoint.cannot_read("cuda") == "the device is cuda, not the CPU"
    monkeypatch.setattr(numerics, "mode", lambda: numerics.FAST)
    assert checkpoint.cannot_read("cpu") == "numerics are fast, not pinned"


def test_a_source_file_hashes_the_same_with_windows_line_ends(tmp_path):
    (tmp_path / "a.py").write_bytes(b"x = 1\ny = 2\n")
    (tmp_path / "b.py").write_bytes(b"x = 1\r\ny = 2\r\n")
    assert checkpoint.source_md5(tmp_path / "a.py") == checkpoint.source_md5(tmp_path / "b.py")


def test_a_dropout_configuration_is_never_read(small_checkpoint):
    """The sweep's `dropout` trains its seeds side by side with masks drawn for all of them at once;
    a variant with the same dropout trains its seeds one by one: other bits, so never read."""
    from birdplane.sweep import from_checkpoints

    ck = read_checkpoint(small_checkpoint[0], n_classes=2)
    sw = tiny_sweep(base_width=2)
    configs = configurations(sw, lr=0.01)
    dropout = next(c for c in configs if c.name == "dropout")
    as_variant = replace(
        ck, config=model_config(dropout, 2), sgd=replace(config_sgd(dropout, book(sw)), epochs=2)
    )
    assert why_not(as_variant, model_config(dropout, 2), as_variant.sgd, SEEDS) is None
    assert "dropout" not in from_checkpoints(configs, [as_variant], book(sw), SEEDS, 2)


def blob_of(path: Path) -> dict:
    return torch.load(path, weights_only=True)


def saved(tmp_path: Path, blob: dict, name: str = "small.pt") -> Path:
    buffer = io.BytesIO()
    torch.save(blob, buffer)
    path = tmp_path / name
    path.write_bytes(buffer.getvalue())
    return path


def edited(key, value):
    return lambda b: b | {key: value}


def nan_history(b):
    h = [[list(row) for row in seed] for seed in b["histories"]]
    h[1][0][4] = float("nan")
    return b | {"histories": h}


def wrong_shape(b):
    states = [dict(s) for s in b["states"]]
    states[0]["1.weight"] = torch.zeros(2, 100)
    return b | {"states": states}


@pytest.mark.parametrize(
    "edit, words",
    [
        (edited("format", 2), "format 2, not 1"),
        (edited("variant", "nll"), "variant 'nll''s checkpoint, not 'small''s"),
        (edited("epoch", 0), "epoch is not an integer"),
        (edited("seeds", [0, 0]), "seeds are not up to 100 different integers"),
        (edited("seeds", [0]), "one state_dict and one history per seed"),
        (edited("sgd", {"loss": "nll"}), "its sgd does not have exactly"),
        (edited("computation", {"engine": "fused"}), "its computation is not"),
        (
            lambda b: b | {"computation": b["computation"] | {"code": {"../../x.py": "0" * 32}}},
            "its code is not package-relative source files",
        ),
        (nan_history, "epoch 1 of a history is not 5 finite numbers"),
        (wrong_shape, "state_dict 1.weight has shape [2, 100]"),
        (lambda b: {k: v for k, v in b.items() if k != "states"}, "not the fields of a checkpoint"),
    ],
    ids=lambda x: x if isinstance(x, str) else None,
)
def test_a_damaged_checkpoint_is_refused_naming_the_file_and_the_fix(
    small_checkpoint, tmp_path, edit, words
):
    path, _ = small_checkpoint
    bad = saved(tmp_path, edit(blob_of(path)))
    with pytest.raises(CheckpointError) as e:
        read_checkpoint(bad, n_classes=2)
    message = str(e.value)
    assert words in message and str(bad) in message and "dvc repro -f train@small" in message


def test_a_truncated_or_hostile_checkpoint_is_refused(small_checkpoint, tmp_path):
    path, _ = small_checkpoint
    truncated = tmp_path / "small.pt"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        read_checkpoint(truncated, n_classes=2)

    class Hostile:
        def __reduce__(self):
            return (print, ("ran",))

    hostile = saved(tmp_path, blob_of(path) | {"variant": Hostile()})
    with pytest.raises(CheckpointError, match="nothing in the file was run"):
        read_checkpoint(hostile, n_classes=2)
    with pytest.raises(CheckpointError, match="predict 2 classes, the prepared data has 3"):
        read_checkpoint(path, n_classes=3)


def test_the_code_of_a_checkpoint_leaves_out_modules_that_cannot_change_a_number():
    """cli.py, errors.py, the package's __init__.py...: no stage depends on them in dvc.yaml, so an
    edit to one must not change a checkpoint's bytes (tests/test_pipeline_train.py checks that a
    training stage's checkpoint names only its dependencies)."""
    import birdplane.cli  # noqa: F401  (loaded in every stage's process)
    import birdplane.tracking  # noqa: F401

    files = checkpoint.computation_files()
    assert "train/__init__.py" in files  # a package of the training, in its deps
    assert not [f for f in files if f.removesuffix(".py") in checkpoint.NOT_COMPUTATION]
    assert "cli.py" not in files and "__init__.py" not in files and "errors.py" not in files


def hostile_values():
    return [
        torch.tensor([1.0, 2.0]),
        [[1]],
        {"a": 1},
        deep_list(),
        None,
        float("nan"),
        10**400,  # math.isfinite raises on it
        "x",
        -1,
        True,
    ]


def with_sgd(key, value):
    return lambda b: b | {"sgd": b["sgd"] | {key: value}}


def with_computation(key, value):
    return lambda b: b | {"computation": b["computation"] | {key: value}}


def with_history_cell(column, value):
    def edit(b):
        h = [[list(row) for row in seed] for seed in b["histories"]]
        h[0][0][column] = value
        return b | {"histories": h}

    return edit


def hostile_edits():
    """(edit, value): every field of the file, and every field within sgd, computation and a
    history row, set to values of other types: tensors (whose comparisons raise), unhashable lists
    and dicts, None..."""
    keys = sorted(checkpoint.KEYS)
    for value in hostile_values():
        yield from ((edited(k, value), value) for k in keys)
        yield from ((with_sgd(k, value), value) for k in checkpoint.SGD_KEYS)
        yield from ((with_computation(k, value), value) for k in checkpoint.COMPUTATION_KEYS)
        columns = range(len(checkpoint.HISTORY))
        yield from ((with_history_cell(c, value), value) for c in columns)


def test_a_field_of_any_other_type_is_refused_with_one_checkpoint_error(small_checkpoint, tmp_path):
    """No TypeError or RuntimeError from comparing a tensor or hashing a list: whatever a field
    holds, the file reads or is refused with one CheckpointError naming it; a tensor, a list, a
    dict or a NaN where the file has a plain value is always refused."""
    path, _ = small_checkpoint
    blob, always_refused, refused = blob_of(path), 0, 0
    for edit, value in hostile_edits():
        bad = saved_deep(tmp_path / "small.pt", edit(blob))
        try:
            read_checkpoint(bad, n_classes=2)
        except CheckpointError as e:
            assert str(bad) in str(e), e
            refused += 1
        else:
            assert not isinstance(value, (torch.Tensor, list, dict, float)), (edit, value)
        always_refused += isinstance(value, (torch.Tensor, list, dict, float))
    assert refused >= always_refused > 100


def test_a_checkpoint_of_many_seeds_is_read(tmp_path):
    """params.yaml allows 100 seeds: a checkpoint holds a model per seed, more zip records than a
    model file may have (256), and is read all the same."""
    from birdplane.models import build_model
    from birdplane.train.sgd import EpochStats

    r = recipe(seeds=100)
    cfg, sgd = variant_config(r, 2), replace(sgd_recipe(r), epochs=1)
    seeds = list(range(100))
    states = [build_model(cfg).state_dict() for _ in seeds]  # tensors of their own: a record each
    history = [EpochStats(1, 0.5, 0.5, 0.5, 0.5, seconds=0.0)]
    ck = checkpoint.Checkpoint("small", 1, cfg, sgd, HERE, seeds, [history] * 100, states)
    path = tmp_path / "small.pt"
    path.write_bytes(checkpoint.checkpoint_bytes(ck))
    back = read_checkpoint(path, n_classes=2)
    assert back.seeds == seeds and len(back.states) == 100
