"""The files one stage reads of another's outputs are checked (birdplane.modelfile, birdplane.inputs):
a model file's config and shapes before any layer is built, the report's metrics, plots and logs,
metrics/stats.json. Real files; each refusal names the file and the stage that writes it.
tests/test_inputs_fuzz.py runs the same faults, and many more, through real stage processes."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest
import torch

from birdplane import inputs, modelfile
from birdplane.inputs import InputError
from birdplane.modelfile import ModelFileError
from birdplane.models import ModelConfig, build_model, model_bytes
from birdplane.models import load_model as unchecked_load

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = [
    ModelConfig(hidden=(8,)),
    ModelConfig(hidden=(16, 8), dropout=0.5, head="softmax"),
    ModelConfig(hidden=(), n_classes=3),
    ModelConfig(arch="cnn", channels=(4, 4), hidden=(8,)),
    ModelConfig(arch="cnn", channels=(2, 3, 4), hidden=(), dropout=0.25, activation="relu"),
]


def saved(path: Path, obj) -> Path:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    path.write_bytes(buffer.getvalue())
    return path


@pytest.fixture
def model_file(tmp_path):
    cfg = ModelConfig(hidden=(8,))
    model = build_model(cfg)
    path = tmp_path / "models" / "nll.pt"
    path.parent.mkdir()
    path.write_bytes(model_bytes(model, cfg))
    return path, cfg, {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize(
    "cfg", CONFIGS, ids=lambda c: f"{c.arch}-{c.channels}-{c.hidden}-{c.dropout}"
)
def test_the_shapes_a_config_implies_are_the_built_nets(cfg):
    assert modelfile.expected_shapes(cfg) == {
        k: tuple(v.shape) for k, v in build_model(cfg).state_dict().items()
    }


@pytest.mark.parametrize("cfg", CONFIGS[:1] + CONFIGS[3:4], ids=["mlp", "cnn"])
def test_a_good_file_loads_as_before(tmp_path, cfg):
    path = tmp_path / "m.pt"
    path.write_bytes(model_bytes(build_model(cfg), cfg))
    (checked, c1), (plain, c2) = (
        modelfile.load_model(path, n_classes=cfg.n_classes),
        unchecked_load(path),
    )
    assert c1 == c2 and not checked.training
    for (k1, a), (k2, b) in zip(checked.state_dict().items(), plain.state_dict().items()):
        assert k1 == k2 and torch.equal(a, b) and a.stride() == b.stride()


def refusal(path: Path, **kw) -> str:
    with pytest.raises(ModelFileError) as e:
        modelfile.load_model(path, **kw)
    message = str(e.value)
    assert "\n" not in message and str(path) in message and "dvc repro -f train@nll" in message
    assert "weights_only" not in message
    return message


def test_a_truncated_or_foreign_file_is_refused(model_file):
    path, _, _ = model_file
    good = path.read_bytes()
    path.write_bytes(good[: len(good) // 2])
    assert "truncated or corrupt" in refusal(path)
    path.write_bytes(b"garbage")
    assert "not a zip file" in refusal(path)


def deep_list(depth: int = 20_000) -> list:
    """A list nested `depth` deep: torch.load builds it without recursing, printing it recurses."""
    x: list = []
    for _ in range(depth):
        x = [x]
    return x


def saved_deep(path: Path, obj) -> Path:
    import sys

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(50_000)  # pickling a deep list recurses; only for writing the file
    try:
        return saved(path, obj)
    finally:
        sys.setrecursionlimit(limit)


def test_a_file_nested_deeper_than_python_recurses_is_refused_in_one_line(model_file):
    path, cfg, state = model_file
    assert "its config is a list" in refusal(
        saved_deep(path, {"config": deep_list(), "state_dict": state})
    )
    blob = {"config": cfg.to_dict() | {"hidden": deep_list()}, "state_dict": state}
    assert "nests lists or dicts deeper" in refusal(saved_deep(path, blob))


class Hostile:
    def __reduce__(self):
        import os

        return os.system, ("echo ran",)


def test_a_pickle_that_torch_refuses_gets_our_line_not_torchs_advice(model_file):
    path, cfg, state = model_file
    message = refusal(saved(path, {"config": cfg.to_dict(), "state_dict": state, "x": Hostile()}))
    assert "nothing in the file was run" in message


@pytest.mark.parametrize(
    "edit, words",
    [
        (lambda c: c.update(evil=1), "unknown config key 'evil'"),
        (lambda c: c.pop("head"), "config key 'head' is missing"),
        (lambda c: c.update(hidden="8"), "config hidden is '8', not a list of integers"),
        (lambda c: c.update(hidden=[True]), "not a list of integers"),
        (lambda c: c.update(hidden=[200_000]), "outside 1..65,536"),
        (lambda c: c.update(hidden=[60_000, 60_000]), "more than params.yaml allows (50,000,000)"),
        (lambda c: c.update(hidden=[8] * 9), "more than params.yaml allows (8)"),
        (lambda c: c.update(channels=[4]), "a cnn has channels, an mlp none"),
        (lambda c: c.update(activation="os.system"), "config activation"),
        (lambda c: c.update(dropout=float("nan")), "config dropout"),
        (lambda c: c.update(n_classes=10**9), "config n_classes"),
    ],
)
def test_a_config_beyond_the_params_bounds_is_refused(model_file, edit, words):
    path, cfg, state = model_file
    config = cfg.to_dict()
    edit(config)
    assert words in refusal(saved(path, {"config": config, "state_dict": state}))


def test_a_huge_config_is_refused_before_any_layer_is_built(model_file, monkeypatch):
    """hidden: [60000] is within the width bound: its 184 M parameters are refused from the config's
    numbers, and nothing is built (build_model would allocate 740 MB)."""
    path, cfg, state = model_file
    monkeypatch.setattr(
        modelfile, "build_model", lambda *a: pytest.fail("built a model from a refused file")
    )
    saved(path, {"config": {**cfg.to_dict(), "hidden": (60_000,)}, "state_dict": state})
    assert "184,500,002 parameters" in refusal(path)


@pytest.mark.parametrize(
    "edit, words",
    [
        (
            lambda s: s.update({"1.weight": s["1.weight"][:, :100]}),
            "has shape [8, 100], its config's net needs [8, 3072]",
        ),
        (lambda s: s.pop("3.bias"), "lacks 3.bias"),
        (lambda s: s.update({"9.weight": torch.zeros(1)}), "'9.weight' is not a layer"),
        (lambda s: s.update({"1.bias": s["1.bias"].double()}), "torch.float64, not float32"),
        (lambda s: s["1.weight"].__setitem__((0, 0), float("nan")), "NaN or infinite weights"),
        (lambda s: s["3.bias"].__setitem__(0, float("inf")), "NaN or infinite weights"),
        (lambda s: s.update({"1.bias": [0.0] * 8}), "a list, not a dense tensor"),
    ],
)
def test_a_state_dict_that_does_not_match_its_config_is_refused(model_file, edit, words):
    path, cfg, state = model_file
    edit(state)
    assert words in refusal(saved(path, {"config": cfg.to_dict(), "state_dict": state}))


def test_a_model_for_other_classes_is_refused(model_file):
    path, _, _ = model_file
    assert "predicts 2 classes, the prepared data has 3" in refusal(path, n_classes=3)


def test_a_file_larger_than_any_model_is_refused_unread(model_file):
    path, _, _ = model_file
    with path.open("r+b") as f:
        f.truncate(modelfile.MAX_FILE_BYTES + 1)  # sparse: nothing is written
    assert "more than a file of models within params.yaml's bounds" in refusal(path)


# ---- the JSON and CSV files


@pytest.fixture
def committed(tmp_path):
    """The project's committed metrics, plots and logs, to damage one at a time."""
    for folder in ("metrics", "plots", "logs"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    return tmp_path


def json_refusal(read, path: Path, stage: str) -> str:
    with pytest.raises(InputError) as e:
        read(path)
    message = str(e.value)
    assert (
        "\n" not in message
        and message.startswith(f"{path}: ")
        and f"dvc repro -f {stage}`" in message
    )
    return message


def test_the_committed_files_pass(committed):
    from birdplane.config import load_params

    for v in load_params(ROOT / "params.yaml").train.variants:
        inputs.train_metrics(committed / f"metrics/train/{v}.json", v)
        inputs.eval_metrics(committed / f"metrics/eval/{v}.json")
        inputs.shift_metrics(committed / f"metrics/shift/{v}.json")
        inputs.train_log(committed / f"logs/train/{v}.json", v)
        inputs.history(committed / f"plots/train/{v}.csv", v)
        inputs.seed_history(committed / f"plots/train/seeds/{v}.csv", v)
        inputs.shift_grid(committed / f"plots/shift/grid/{v}.csv")
    inputs.stats(committed / "metrics/stats.json", for_report=True)
    inputs.sweep(committed / "metrics/sweep.json")
    inputs.sweep_curves(committed / "plots/sweep/curves.csv")
    inputs.download_log(committed / "logs/download.json")


def edit_json(path: Path, edit) -> None:
    record = json.loads(path.read_text())
    edit(record)
    path.write_text(json.dumps(record))


def test_nan_in_the_training_metrics_is_an_error_not_nan_percent(committed):
    path = committed / "metrics/train/nll.json"
    edit_json(path, lambda r: r.update(val_accuracy=float("nan")))  # json.dumps writes NaN
    assert "holds NaN, not a finite number" in json_refusal(
        lambda p: inputs.train_metrics(p, "nll"), path, "train@nll"
    )
    path.write_text(path.read_text().replace("NaN", "1e999"))  # overflows to infinity
    assert "1e999, not a finite number" in json_refusal(
        lambda p: inputs.train_metrics(p, "nll"), path, "train@nll"
    )


@pytest.mark.parametrize(
    "content, words",
    [
        ("garbage", "not valid JSON (Expecting value at line 1, column 1)"),
        ("[1, 2]", "the top level is [1, 2], not a mapping"),
        ('{"url": "file:///x"}', "md5 is missing"),
        ('{"url": 3, "md5": "x"}', "url is 3: not a string"),
    ],
)
def test_a_damaged_download_log_is_refused(committed, content, words):
    path = committed / "logs/download.json"
    path.write_text(content)
    assert words in json_refusal(inputs.download_log, path, "download")


@pytest.mark.parametrize(
    "edit, words",
    [
        (lambda r: r.pop("overfit_gap"), "overfit_gap is missing"),
        (lambda r: r.update(val_accuracy="0.8"), "val_accuracy is '0.8': not a number in [0, 1]"),
        (lambda r: r.update(val_accuracy=1e300), "not a number in [0, 1]"),
        (lambda r: r.update(n_parameters=True), "n_parameters is true: not a whole number"),
        (lambda r: r["recipe"].update(hidden=None), "recipe.hidden is null, not a list"),
        (
            lambda r: r["seeds"]["val_accuracy"].update(mean=[]),
            "seeds.val_accuracy.mean is []: not a number",
        ),
    ],
)
def test_wrong_keys_types_and_ranges_in_the_training_metrics_are_refused(committed, edit, words):
    path = committed / "metrics/train/mse.json"
    edit_json(path, edit)
    assert words in json_refusal(lambda p: inputs.train_metrics(p, "mse"), path, "train@mse")


def test_shift_metrics_must_hold_every_ring(committed):
    path = committed / "metrics/shift/cnn.json"
    edit_json(path, lambda r: r["accuracy_by_shift"].pop("3"))
    assert "accuracy_by_shift lacks shift 3" in json_refusal(
        inputs.shift_metrics, path, "shift-test"
    )


@pytest.mark.parametrize(
    "content, words",
    [
        (b"", "empty, not a CSV table"),
        (b"epoch,train_loss,train_accuracy,val_loss,val_accuracy\n", "a header without rows"),
        (b"epoch,train_loss,train_accuracy,val_loss\n1,0.5,0.7,0.5\n", "no column val_accuracy"),
        (
            b"epoch,train_loss,train_accuracy,val_loss,val_accuracy\n1,0.5,0.7,0.5,nan\n",
            "val_accuracy is empty, NaN",
        ),
        (
            b"epoch,train_loss,train_accuracy,val_loss,val_accuracy\n1,0.5,0.7,0.5,\n",
            "val_accuracy is empty, NaN",
        ),
        (
            b"epoch,train_loss,train_accuracy,val_loss,val_accuracy\n1,0.5,0.7,0.5,inf\n",
            "NaN or infinite in row 1",
        ),
        (
            b"epoch,train_loss,train_accuracy,val_loss,val_accuracy\n1,0.5,0.7,0.5,0.8\n2,x,0.7,0.5,0.8\n",
            "column train_loss holds 'x', not a number",
        ),
        (b"epoch,train_loss\xff\n", "not a readable CSV table (UnicodeDecodeError"),
    ],
)
def test_a_damaged_learning_curve_is_refused(committed, content, words):
    path = committed / "plots/train/nll.csv"
    path.write_bytes(content)
    assert words in json_refusal(lambda p: inputs.history(p, "nll"), path, "train@nll")


@pytest.mark.parametrize(
    "edit, words",
    [
        (lambda r: r.update(std=[0.2, 0.0, 0.2]), "the std of channel 1 (green) is 0.0"),
        (lambda r: r.update(std=[0.2, 0.2, -0.1]), "the std of channel 2 (blue) is -0.1"),
        (lambda r: r.update(std=[0.2, 0.2]), "std has 2 values, not 3"),
        (lambda r: r.pop("mean"), "mean is missing"),
        (lambda r: r.update(mean=[0.5, "0.5", 0.5]), "mean[1] is '0.5': not a number in [0, 1]"),
        (lambda r: r.update(source=[]), "source is [], not a mapping"),
    ],
)
def test_stats_that_cannot_normalize_are_refused(committed, edit, words):
    path = committed / "metrics/stats.json"
    edit_json(path, edit)
    assert words in json_refusal(inputs.stats, path, "stats")


def test_training_checks_the_stats_before_it_loads_the_data(committed, monkeypatch):
    """load_tensors refuses a std of 0 itself: unchecked, it shows up epochs later as a NaN loss."""
    from birdplane import data

    path = committed / "metrics/stats.json"
    edit_json(path, lambda r: r.update(std=[0, 0.2, 0.2]))
    monkeypatch.setattr(
        data, "load_tensors", lambda *a: pytest.fail("loaded the data with unchecked stats")
    )
    assert "std of channel 0 (red) is 0" in json_refusal(
        lambda p: inputs.load_tensors(Path("none.npz"), p, "cpu"), path, "stats"
    )


def test_a_damaged_logged_model_says_to_log_it_again(tmp_path):
    """serving reads MLflow's copy (data/model.pt): the fix is the training stage, not models/model.pt."""
    from birdplane import serving

    path = tmp_path / "data" / serving.MODEL_FILE
    path.parent.mkdir()
    path.write_bytes(b"garbage")
    with pytest.raises(ModelFileError, match="not a zip file") as e:
        serving._load_pyfunc(str(path))
    assert serving.LOGGED_FIX in str(e.value) and "train@model" not in str(e.value)
