"""Typed, validated params: `params.yaml` loaded into pydantic models.

Every model forbids unknown keys, so a typo (`epoch:` for `epochs:`) is an error
that names the key, not a silently ignored setting. Stages call `load_params`
first, before any work, and read only their own section.
"""
from __future__ import annotations

import difflib
import os
import re
from pathlib import Path
from typing import Annotated, Literal

import yaml
from birdplane.data import CIFAR10_CLASSES
from birdplane.errors import BirdplaneError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

OFFICIAL_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
OFFICIAL_MD5 = "c58f30108f718f92721af3b95e74349a"
ENV_URL, ENV_MD5 = "BIRDPLANE_DATA_URL", "BIRDPLANE_DATA_MD5"


class ConfigError(BirdplaneError):
    """params.yaml is missing, unreadable or invalid; the message says which key and what is allowed."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataConfig(_Strict):
    url: str = OFFICIAL_URL
    md5: Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")] = OFFICIAL_MD5
    retries: Annotated[int, Field(ge=1, le=10)] = 3
    timeout_s: Annotated[float, Field(gt=0, le=3600)] = 60
    classes: Annotated[list[str], Field(min_length=2)] = ["airplane", "bird"]

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, url: str) -> str:
        if not re.match(r"^(https?|file)://", url):
            raise ValueError("must start with http://, https:// or file://")
        return url

    @field_validator("classes")
    @classmethod
    def _known_classes(cls, classes: list[str]) -> list[str]:
        unknown = [c for c in classes if c not in CIFAR10_CLASSES]
        if unknown:
            raise ValueError(f"unknown class {unknown}; choose from {list(CIFAR10_CLASSES)}")
        if len(set(classes)) != len(classes):
            raise ValueError("lists a class twice")
        return classes

    def source(self) -> tuple[str, str]:
        """The (url, md5) actually used: environment overrides win over params.yaml."""
        url = os.environ.get(ENV_URL) or self.url
        md5 = (os.environ.get(ENV_MD5) or self.md5).lower()
        if not re.match(r"^(https?|file)://", url):
            raise ConfigError(f"{ENV_URL}={url!r} must start with http://, https:// or file://")
        if not re.match(r"^[0-9a-f]{32}$", md5):
            raise ConfigError(f"{ENV_MD5}={md5!r} is not an md5 (32 hex digits)")
        return url, md5


class StatsConfig(_Strict):
    ddof: Literal[0, 1] = 1


Positive = Annotated[int, Field(ge=1)]


Fraction = Annotated[float, Field(ge=0, lt=1)]


class Regularizers(_Strict):
    """What may be added to plain SGD against overfitting; all off by default."""
    weight_decay: Annotated[float, Field(ge=0, le=1)] = 0.0  # torch.optim.SGD's L2 weight_decay
    dropout: Fraction = 0.0                                   # share of hidden outputs dropped in training
    patience: Annotated[int, Field(ge=1, le=10_000)] | None = None  # early stopping; keeps the best epoch
    augment_shift: Annotated[int, Field(ge=0, le=16)] = 0    # random shift of every training image, pixels


class VariantConfig(Regularizers):
    """One trained model: its architecture and loss, regularizers, and optional overrides of the
    shared recipe."""

    arch: Literal["mlp", "cnn"] = "mlp"
    hidden: Annotated[list[Positive], Field(min_length=0, max_length=8)] = [512]
    channels: Annotated[list[Positive], Field(max_length=4)] = []  # cnn: 3x3 conv + 2x2 max-pool each
    activation: Literal["tanh", "relu", "sigmoid"] = "tanh"
    loss: Literal["nll", "mse"] = "nll"
    epochs: Annotated[int, Field(ge=1, le=10_000)] | None = None
    batch_size: Annotated[int, Field(ge=1, le=65_536)] | None = None
    lr: Annotated[float, Field(gt=0, le=1e6)] | None = None
    seeds: Annotated[int, Field(ge=1, le=100)] | None = None

    @model_validator(mode="after")
    def _channels_for_cnn(self) -> "VariantConfig":
        if self.arch == "cnn" and not self.channels:
            raise ValueError("arch 'cnn' needs channels, e.g. [16, 8] (the book's chapter-8 net)")
        if self.arch == "mlp" and self.channels:
            raise ValueError("channels apply to arch 'cnn' only")
        return self


class TrainConfig(_Strict):
    device: Literal["auto", "cpu", "cuda"] = "auto"
    engine: Literal["fused", "autograd"] = "fused"
    # per-epoch train loss/accuracy: "running" = mean over the epoch's minibatches as they were
    # trained (free); "full" = an extra pass over all training images after each epoch (+1/3 time)
    train_metrics: Literal["running", "full"] = "running"
    epochs: Annotated[int, Field(ge=1, le=10_000)] = 100
    batch_size: Annotated[int, Field(ge=1, le=65_536)] = 64
    lr: Annotated[float, Field(gt=0, le=1e6)] = 1e-2
    seeds: Annotated[int, Field(ge=1, le=100)] = 1  # models per variant, seeds seed, seed+1, ...
    variants: dict[str, VariantConfig] = {
        "nll": VariantConfig(hidden=[512], loss="nll"),
        "mse": VariantConfig(hidden=[512], loss="mse"),
        "small": VariantConfig(hidden=[32], loss="nll"),
    }

    @field_validator("variants")
    @classmethod
    def _names(cls, variants: dict[str, VariantConfig]) -> dict[str, VariantConfig]:
        if not variants:
            raise ValueError("needs at least one variant")
        for name in variants:
            if not re.match(r"^[a-z][a-z0-9_-]{0,31}$", name):
                raise ValueError(f"variant name {name!r}: use lower-case letters, digits, '-' or '_'")
        return variants

    def recipe(self, variant: str) -> "Recipe":
        """The full training recipe of one variant: shared defaults with its overrides applied."""
        if variant not in self.variants:
            raise ConfigError(f"unknown variant {variant!r}; params.yaml train.variants has {sorted(self.variants)}")
        v = self.variants[variant]
        return Recipe(
            name=variant, arch=v.arch, hidden=tuple(v.hidden), channels=tuple(v.channels),
            activation=v.activation, loss=v.loss,
            epochs=v.epochs or self.epochs, batch_size=v.batch_size or self.batch_size,
            lr=v.lr or self.lr, seeds=v.seeds or self.seeds,
            weight_decay=v.weight_decay, dropout=v.dropout, patience=v.patience, augment_shift=v.augment_shift,
        )


class Recipe(Regularizers):
    """Everything that determines one trained model (with the seed and the data)."""

    name: str
    arch: str = "mlp"
    hidden: tuple[int, ...]
    channels: tuple[int, ...] = ()
    activation: str
    loss: str
    epochs: int
    batch_size: int
    lr: float
    seeds: int = 1


class SweepConfig(_Strict):
    """The capacity sweep: the book's recipe on many widths and regularizers, several seeds each."""
    seeds: Annotated[int, Field(ge=1, le=100)] = 3
    # fewer epochs than the homework variants: the sweep trains ~40 models on 2 CPU cores; by
    # epoch 30 the book net fits 92% of the training images and its gap has opened (README: costs)
    epochs: Annotated[int, Field(ge=1, le=10_000)] = 30
    widths: Annotated[list[Positive], Field(max_length=32)] = [2, 4, 8, 16, 32, 64, 128, 256, 512]
    # [1024, 512, 128] is the book's deep net: +3 min on 2 CPU cores, so not in the default grid
    deep: Annotated[list[Positive], Field(max_length=8)] = []
    base_width: Positive = 512   # the net the regularizers are tried on (the book's)
    regularizers: dict[str, Regularizers] = {
        "weight_decay": Regularizers(weight_decay=0.002),
        "dropout": Regularizers(dropout=0.5),
        "early_stopping": Regularizers(patience=5),
    }

    @field_validator("widths")
    @classmethod
    def _sorted(cls, widths: list[int]) -> list[int]:
        if widths != sorted(set(widths)):
            raise ValueError("list the widths once each, smallest first")
        return widths

    @field_validator("regularizers")
    @classmethod
    def _reg_names(cls, regs: dict[str, Regularizers]) -> dict[str, Regularizers]:
        for name, r in regs.items():
            if not re.match(r"^[a-z][a-z0-9_]{0,31}$", name):
                raise ValueError(f"regularizer name {name!r}: use lower-case letters, digits or '_'")
            if r.augment_shift:
                raise ValueError(f"{name}: augment_shift is not swept; give a train variant augment_shift instead")
        return regs


class EvaluateConfig(_Strict):
    calibration_bins: Annotated[int, Field(ge=2, le=100)] = 10


class ShiftConfig(_Strict):
    max_shift: Annotated[int, Field(ge=0, le=16)] = 8
    modes: Annotated[list[Literal["fill", "wrap"]], Field(min_length=1)] = ["fill"]
    summary_shift: Annotated[int, Field(ge=0, le=16)] = 4

    @field_validator("modes")
    @classmethod
    def _unique(cls, modes: list[str]) -> list[str]:
        if len(set(modes)) != len(modes):
            raise ValueError("lists a mode twice")
        return modes


class ReportConfig(_Strict):
    lang: Literal["en", "de"] = "en"
    # which variant answers which homework question
    baseline: str = "nll"
    mse: str = "mse"
    small: str = "small"
    # the translation comparison: the MLP trained on shifted images and the convnet ("" to leave out)
    augmented: str = "augmented"
    cnn: str = "cnn"
    fit_threshold: Annotated[float, Field(gt=0, le=1)] = 0.95


class MlflowConfig(_Strict):
    experiment: Annotated[str, Field(min_length=1, max_length=200)] = "birdplane"


class Params(_Strict):
    seed: Annotated[int, Field(ge=0, le=2**31 - 1)] = 0
    data: DataConfig = DataConfig()
    stats: StatsConfig = StatsConfig()
    train: TrainConfig = TrainConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    shift: ShiftConfig = ShiftConfig()
    report: ReportConfig = ReportConfig()
    sweep: SweepConfig = SweepConfig()
    mlflow: MlflowConfig = MlflowConfig()

    @model_validator(mode="after")
    def _summary_within_range(self) -> "Params":
        if self.shift.summary_shift > self.shift.max_shift:
            raise ValueError(f"shift.summary_shift ({self.shift.summary_shift}) must not exceed "
                             f"shift.max_shift ({self.shift.max_shift})")
        for role in ("baseline", "mse", "small", "augmented", "cnn"):
            name = getattr(self.report, role)
            if role in ("augmented", "cnn") and not name:
                continue
            if name not in self.train.variants:
                raise ValueError(f"report.{role} is {name!r}, which is not in train.variants "
                                 f"({', '.join(self.train.variants)})")
        return self


def _describe(err: ValidationError, path: Path) -> str:
    lines = [f"{path}: {err.error_count()} invalid setting(s)"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(top level)"
        if e["type"] == "extra_forbidden":
            allowed = _allowed(e["loc"])
            close = difflib.get_close_matches(str(e["loc"][-1]), allowed, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            lines.append(f"  - {key}: unknown key; {hint}allowed here: {', '.join(allowed)}")
        else:
            got = "" if e["type"] == "missing" or not e["loc"] else f" (got {e.get('input')!r})"
            lines.append(f"  - {key}: {e['msg'].removeprefix('Value error, ')}{got}")
    return "\n".join(lines)


def _allowed(loc: tuple) -> list[str]:
    """The keys allowed where an unknown key `loc` was found."""
    model: type[BaseModel] = Params
    parts = list(loc[:-1])
    while parts:
        part = str(parts.pop(0))
        if model is TrainConfig and part == "variants":
            model = VariantConfig
            parts = parts[1:]  # skip the variant's name
            continue
        if model is SweepConfig and part == "regularizers":
            model = Regularizers
            parts = parts[1:]
            continue
        model = _model_of(model.model_fields[part].annotation) or model
    return list(model.model_fields)


def _model_of(annotation) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        if found := _model_of(arg):
            return found
    return None


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate the whole params file; raise ConfigError naming every bad key."""
    path = Path(path)
    try:
        with path.open(encoding="utf-8") as f:
            raw = yaml.safe_load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path} not found: run the stage from the project root") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path} is not valid YAML: {e}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} must be a mapping of sections (seed, data, stats, train, ...)")
    try:
        return Params.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(_describe(e, path)) from None
