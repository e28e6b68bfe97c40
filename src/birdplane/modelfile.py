"""Reading a model file (`models/<variant>.pt`, birdplane.models.model_bytes) that another stage or
another person wrote, checked before anything is built from it.

A model file is untrusted input: a truncated copy, a flipped byte in the DVC cache, a file from
another version of the project or a hostile one. Every way it can be wrong ends in one
ModelFileError naming the file and how to get a good copy, and the checks run in an order that
never lets the file decide how much memory is used:

1. the file's size (at most what a model within the params' bounds can need) and its zip
   directory (only stored records, adding up to no more than the file): a truncated file, a file
   that is not a zip or a compressed record that would unpack to gigabytes is refused here;
2. `torch.load(weights_only=True, mmap=True)`: no code runs, and the tensors are mapped from the
   file rather than read; a pickle that asks for more than tensors and plain containers is refused
   with our own line (torch's own message advises `weights_only=False`, which would run the file);
3. the config: exactly the keys `ModelConfig` has, each of its type and within the bounds that
   params.yaml's variants must keep (birdplane.config), so `hidden: [200000]` is refused from the
   numbers alone;
4. the state_dict against the shapes the config implies, computed arithmetically; float32 and
   finite values;

and only then `build_model` allocates the layers. Evaluate, shift-test and serving load models
here; birdplane.models keeps the net and its serialization (a dependency of every training stage).
"""

from __future__ import annotations

import dataclasses
import pickle
import warnings
import zipfile
from pathlib import Path
from typing import Any

from birdplane.cifar import CIFAR10_CLASSES, IMAGE
from birdplane.architecture import n_parameters
from birdplane.config import MAX_PARAMETERS, MAX_WIDTH, VariantConfig
from birdplane.dvc_hints import dvc_recovery
from birdplane.errors import BirdplaneError
from birdplane.models import ModelConfig, build_model
from birdplane.text import printable

# torch.save's zip: the pickle, a few small records and one record per tensor; the largest model
# within the params' bounds holds MAX_PARAMETERS float32 weights, plus the records' headers and
# alignment (64 bytes each) and the pickle, a few KB.
MAX_FILE_BYTES = MAX_PARAMETERS * 4 + (1 << 20)
MAX_RECORDS = 256
CONFIG_KEYS = tuple(f.name for f in dataclasses.fields(ModelConfig))  # what model_bytes writes
ARCHS = ("mlp", "cnn")


class ModelFileError(BirdplaneError):
    """A model file is missing, unreadable or not a model this project can have written."""


def _max_length(field: str) -> int:
    """The longest list params.yaml allows for a variant's `field` (hidden: 8 layers, channels: 4)."""
    return next(
        m.max_length for m in VariantConfig.model_fields[field].metadata if hasattr(m, "max_length")
    )


def recovery(path: Path) -> str:
    """How to get a good copy of a model file: the training stage of its variant writes it, and
    the DVC cache holds the damaged copy too (birdplane.data.dvc_recovery)."""
    return dvc_recovery(path, f"run `dvc repro -f train@{path.stem}` (or `dvc checkout {path}`)")


# torch.load builds nested lists without recursing, printing or comparing them recurses
TOO_DEEP = "it nests lists or dicts deeper than any file a training stage writes"


class Refused(Exception):
    """What is wrong with the file; read_checked adds its name and the way to a good copy."""


def check_container(
    path: Path, max_bytes: int = MAX_FILE_BYTES, max_records: int = MAX_RECORDS
) -> None:
    """Size and zip directory, before torch reads anything (step 1 of the module's docstring);
    `max_bytes`, `max_records`: the most a file of its kind can need (a checkpoint holds a model
    per seed)."""
    if not path.is_file():
        raise ModelFileError(
            f"{path} does not exist: run `dvc repro train@{path.stem}` (or `dvc checkout {path}`)"
        )
    size = path.stat().st_size
    if size > max_bytes:
        raise Refused(
            f"{size:,} bytes, more than a file of models within params.yaml's bounds can be "
            f"({max_bytes:,} bytes; {MAX_PARAMETERS:,} parameters per model)"
        )
    with path.open("rb") as f:
        if f.read(4) != b"PK\x03\x04":
            raise Refused("not a zip file (torch.save writes one)")
    try:
        with zipfile.ZipFile(path) as z:
            records = z.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
        raise Refused(
            f"truncated or corrupt: its zip directory is unreadable ({printable(str(e), 100)})"
        ) from None
    if len(records) > max_records:
        raise Refused(f"{len(records):,} records in its zip, more than a file of its kind has")
    if any(r.compress_type != zipfile.ZIP_STORED for r in records):
        raise Refused("a compressed record in its zip (torch.save stores them uncompressed)")
    if sum(r.file_size for r in records) > size:
        raise Refused("its zip's records claim more bytes than the file has")


def load_blob(path: Path) -> Any:
    """torch.load without running code and without reading the tensors into memory."""
    import torch

    try:
        with warnings.catch_warnings():  # one line on failure: no warning of torch's before it
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError:
        # torch's message suggests weights_only=False: that would run whatever the file names
        raise Refused(
            "its pickle asks for objects a model file never holds (only tensors and plain "
            "containers are loaded; nothing in the file was run)"
        ) from None
    except (
        Exception
    ) as e:  # a damaged zip or pickle fails with anything from RuntimeError to KeyError
        why = printable(str(e).split("\n", 1)[0], 120)
        why = type(e).__name__ if "weights_only" in why else f"{type(e).__name__}: {why}"
        raise Refused(f"torch cannot read it ({why})") from None


def _is_int(x: object) -> bool:
    return type(x) is int


def _widths(value: object, name: str, longest: int) -> str | None:
    """What is wrong with a list of layer widths, or None."""
    if not isinstance(value, (list, tuple)) or not all(_is_int(w) for w in value):
        return f"config {name} is {printable(repr(value), 60)}, not a list of integers"
    if len(value) > longest:
        return f"config {name} has {len(value)} layers, more than params.yaml allows ({longest})"
    if any(not 1 <= w <= MAX_WIDTH for w in value):
        return (
            f"config {name} {printable(repr(value), 60)} holds a width outside 1..{MAX_WIDTH:,} "
            "(params.yaml's bound)"
        )
    return None


def config_problem(config: object) -> str | None:
    """What makes `config` not one a training stage can have written (keys, types, the params'
    bounds, the parameter count), or None. Pure arithmetic: nothing is allocated."""
    from birdplane.activations import ACTIVATIONS
    from birdplane.losses import HEADS

    if not isinstance(config, dict):
        return f"its config is a {type(config).__name__}, not a mapping"
    unknown = [k for k in config if k not in CONFIG_KEYS]
    missing = [k for k in CONFIG_KEYS if k not in config]
    if unknown:
        return f"unknown config key {printable(repr(unknown[0]), 60)} (a model's config has {', '.join(CONFIG_KEYS)})"
    if missing:
        return f"config key {missing[0]!r} is missing"
    c = config
    if not _is_int(c["in_features"]) or c["in_features"] != IMAGE[0] * IMAGE[1] * IMAGE[2]:
        return f"config in_features is {printable(repr(c['in_features']), 40)}, not {IMAGE[0] * IMAGE[1] * IMAGE[2]}"
    if not _is_int(c["n_classes"]) or not 2 <= c["n_classes"] <= len(CIFAR10_CLASSES):
        return f"config n_classes is {printable(repr(c['n_classes']), 40)}, not 2..{len(CIFAR10_CLASSES)}"
    for key, names in (("activation", ACTIVATIONS), ("head", HEADS), ("arch", ARCHS)):
        if not isinstance(c[key], str) or c[key] not in names:
            return f"config {key} is {printable(repr(c[key]), 40)}, not one of {', '.join(names)}"
    problem = _widths(c["hidden"], "hidden", _max_length("hidden")) or _widths(
        c["channels"], "channels", _max_length("channels")
    )
    if problem:
        return problem
    if (c["arch"] == "cnn") != bool(c["channels"]):
        return f"config arch {c['arch']!r} with channels {list(c['channels'])}: a cnn has channels, an mlp none"
    if type(c["dropout"]) is not float or not 0 <= c["dropout"] < 1:
        return f"config dropout is {printable(repr(c['dropout']), 40)}, not a float in [0, 1)"
    n = n_parameters(list(c["hidden"]), c["n_classes"], list(c["channels"]))
    if n > MAX_PARAMETERS:
        return f"its config describes {n:,} parameters, more than params.yaml allows ({MAX_PARAMETERS:,})"
    return None


def expected_shapes(cfg) -> dict[str, tuple[int, ...]]:
    """The state_dict's key -> shape of the net build_model(cfg) makes, without building it: its
    Sequential numbers every module (Flatten 0, [Unflatten 1, (Conv, act, pool) per channel,
    Flatten], (Linear, act[, Dropout]) per hidden layer, Linear, head)."""
    shapes: dict[str, tuple[int, ...]] = {}
    index, width = 1, cfg.in_features
    if cfg.arch == "cnn":
        index, (c, side) = 2, IMAGE[:2]
        for out in cfg.channels:
            shapes[f"{index}.weight"], shapes[f"{index}.bias"] = (out, c, 3, 3), (out,)
            index, c, side = index + 3, out, side // 2
        index, width = index + 1, c * side * side
    for h in (*cfg.hidden, cfg.n_classes):
        shapes[f"{index}.weight"], shapes[f"{index}.bias"] = (h, width), (h,)
        index, width = index + (3 if cfg.dropout > 0 else 2), h
    return shapes


def state_problem(state: object, cfg) -> str | None:
    """What makes `state` not the state_dict of build_model(cfg), or None; finite float32 values."""
    import torch

    if not isinstance(state, dict):
        return f"its state_dict is a {type(state).__name__}, not a mapping"
    expected = expected_shapes(cfg)
    for key in state:
        if key not in expected:
            return f"state_dict key {printable(repr(key), 60)} is not a layer of its config's net"
    for key, shape in expected.items():
        t = state.get(key)
        if t is None:
            return f"state_dict lacks {key} (its config's net has it)"
        if not isinstance(t, torch.Tensor) or t.layout != torch.strided:
            return f"state_dict {key} is a {type(t).__name__}, not a dense tensor"
        if tuple(t.shape) != shape:
            return (
                f"state_dict {key} has shape {list(t.shape)}, its config's net needs {list(shape)}"
            )
        if t.dtype != torch.float32:
            return f"state_dict {key} is {t.dtype}, not float32"
        if not bool(torch.isfinite(t).all()):
            return f"state_dict {key} holds NaN or infinite weights"
    return None


def read_checked(
    path: Path, n_classes: int | None = None, fix: str | None = None
) -> tuple[ModelConfig, dict]:
    """The (ModelConfig, state_dict) of a model file, every check of the module's docstring
    passed; `n_classes`: the number of classes the data has, which the model must predict; `fix`:
    how to get a good copy, where it is not the project's models/<variant>.pt (a logged model)."""
    path = Path(path)
    try:
        return _read(path, n_classes)
    except (Refused, RecursionError) as e:
        why = e if isinstance(e, Refused) else TOO_DEEP
        raise ModelFileError(
            f"{path}: {why}; not a model file the training stage wrote: {fix or recovery(path)}"
        ) from None


def _read(path: Path, n_classes: int | None) -> tuple[ModelConfig, dict]:
    check_container(path)
    blob = load_blob(path)
    if not isinstance(blob, dict) or set(blob) != {"config", "state_dict"}:
        keys = sorted(map(str, blob)) if isinstance(blob, dict) else type(blob).__name__
        raise Refused(f"it holds {printable(repr(keys), 80)}, not a config and a state_dict")
    problem = config_problem(blob["config"])
    if problem:
        raise Refused(problem)
    cfg = ModelConfig.from_dict(blob["config"])
    if n_classes is not None and cfg.n_classes != n_classes:
        raise Refused(f"it predicts {cfg.n_classes} classes, the prepared data has {n_classes}")
    problem = state_problem(blob["state_dict"], cfg)
    if problem:
        raise Refused(problem)
    return cfg, blob["state_dict"]


def load_model(path: Path, device="cpu", n_classes: int | None = None, fix: str | None = None):
    """The model in a model file, checked (read_checked), on `device`, in eval mode; returns
    (model, ModelConfig). The same module and weights birdplane.models.load_model gives for a
    good file."""
    cfg, state = read_checked(path, n_classes, fix)
    model = build_model(cfg).to(device)
    model.load_state_dict(state)
    model.eval()
    return model, cfg
