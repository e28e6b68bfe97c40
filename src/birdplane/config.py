"""Typed, validated params: `params.yaml` loaded into pydantic models.

Every model forbids unknown keys, so a typo (`epoch:` for `epochs:`) is an error
that names the key, not a silently ignored setting. Stages call `load_params`
first, before any work, and read only their own section.

The file is untrusted input (`dvc exp run -S`, a pull request, a student's editor), so it is
read defensively: a size cap before parsing, UTF-8 only, plain YAML only (no anchors, aliases,
merge keys or tags, so no "billion laughs"), bounded nesting, no duplicate keys, strict types
(`seed: true` is not 1) and an upper bound on the size of every model. Each refusal is a
ConfigError with a short message that never echoes more than a few dozen characters of input.

params.yaml holds every value; the models here define types and bounds only, no second set of
values (what a setting that is left out means, e.g. a regularizer that is off, is said where it
is declared). Another params file (`--params my.yaml`) may set only what it changes: the rest
comes from the project's params.yaml.
"""

from __future__ import annotations

import difflib
import os
import re
import reprlib
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

import yaml
from birdplane.architecture import activation_floats, n_parameters
from birdplane.cifar import CIFAR10_CLASSES
from birdplane.errors import BirdplaneError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

ENV_URL, ENV_MD5 = "BIRDPLANE_DATA_URL", "BIRDPLANE_DATA_MD5"

# params.yaml is 4 KB; 64 KiB leaves room for many variants and comments. Checked before parsing
# because the pure-Python parser (needed for the checks in _Loader) reads only ~100 KB/s of dense
# tokens: a bigger file would take seconds before its error.
MAX_FILE_BYTES = 64 * 1024
# params.yaml nests 5 levels deep (the list train.variants.cnn.channels in 4 mappings)
MAX_DEPTH = 32
# one hidden layer or conv layer: 128x the book's 512, far below sizes that only an allocator stops
MAX_WIDTH = 65_536
# Parameters of one model. The book net (3072-512-2) has 1.6 M; 50 M is 30x that, about 200 MB of
# float32 weights (twice that with the gradients), which a student laptop still trains. A bigger
# model is refused while the params are read, before MLflow or torch do any work.
MAX_PARAMETERS = 50_000_000
# Activations of one batch (or of one evaluation chunk of EVAL_ROWS images), x3 for what backward
# keeps: 4 GiB is what a student laptop can spare; the book's nets need a few MB.
MAX_ACTIVATION_BYTES = 4 << 30
EVAL_ROWS = 256  # birdplane.inference.EVAL_CHUNK
# The sweep trains its seeds side by side: 3 x the book net is 4.7 M parameters.
MAX_SWEEP_PARAMETERS = 4 * MAX_PARAMETERS
REPORT_LANGUAGES = Path(__file__).parent / "report" / "lang"  # one <code>.toml catalog per language
MAX_MESSAGE_LINES = 20  # settings listed in one error; the rest are counted
# What dvc.yaml's `foreach` (stage train@<name>), file names and the shell take without quoting
VARIANT_NAME = r"[a-z][a-z0-9_-]{0,31}"
REGULARIZER_NAME = r"[a-z][a-z0-9_]{0,31}"


class ConfigError(BirdplaneError):
    """params.yaml is missing, unreadable or invalid; the message says which key and what is allowed."""


def _short(value: object, limit: int = 80) -> str:
    """The repr of a value from the file, at most `limit` characters. reprlib stops early, so a
    huge string or list is never formatted whole."""
    r = reprlib.Repr()
    r.maxstring = r.maxother = min(limit, 40)
    r.maxlong, r.maxlist, r.maxdict, r.maxlevel = 40, 6, 3, 2
    text = r.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _cut(text: str, limit: int = 200) -> str:
    """Plain text (a parser's message) cut to `limit` characters."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _one_of(name: str, registry: dict) -> str:
    """`name` if the registry has it, else the error pydantic gives for a Literal."""
    if name not in registry:
        names = [repr(n) for n in registry]
        choices = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"
        raise ValueError(f"Input should be {choices}")
    return name


class _Strict(BaseModel):
    # strict: no coercion, so a bool is not an int and "3" is not a number (an int is still a valid
    # float: `lr: 1` is 1.0); allow_inf_nan=False: `.nan` and `.inf` are errors, not values
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


def _url_problem(url: str) -> str | None:
    """What is wrong with a download URL, or None: a scheme the download cannot fetch, or a line
    break or other control character (which urllib refuses, or which hides what the URL is)."""
    if not re.match(r"(https?|file)://", url):
        return "must start with http://, https:// or file://"
    if re.search(r"[\x00-\x1f\x7f-\x9f]", url):
        return "must not contain line breaks or other control characters"
    return None


def _md5_problem(md5: str) -> str | None:
    """What is wrong with an md5 (after stripping white space and lower-casing it), or None."""
    if re.fullmatch(r"[0-9a-f]{32}", md5):
        return None
    if re.match(r"[0-9a-f]{32}\s", md5):  # `md5sum file` prints the file name after the digits
        return (
            "must be the 32 hex digits of an md5 only; md5sum's output has the file name after them"
        )
    return "must be an md5: exactly 32 hex digits"


def _shown_url(url: str) -> str:
    """A URL from the params or the environment for an error message: without its secrets, cut."""
    from birdplane.text import redact_url  # error messages only: no stage output depends on it

    return _short(redact_url(url))


class DataConfig(_Strict):
    url: str
    md5: str  # 32 hex digits; surrounding white space is dropped and upper case lower-cased
    retries: Annotated[int, Field(ge=1, le=10)]
    timeout_s: Annotated[float, Field(gt=0, le=3600)]
    classes: Annotated[list[str], Field(min_length=2, max_length=len(CIFAR10_CLASSES))]

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, url: str) -> str:
        if problem := _url_problem(url):
            raise ValueError(problem)
        parts = urlsplit(url)
        if "@" in parts.netloc or parts.query or parts.fragment:
            # params.yaml is committed, and DVC copies every param it tracks into dvc.lock
            raise ValueError(
                f"has credentials or a query string: params.yaml and dvc.lock are committed, so "
                f"give such a URL in the environment instead ({ENV_URL})"
            )
        return url

    @field_validator("md5")
    @classmethod
    def _an_md5(cls, md5: str) -> str:
        # a trailing newline (a value pasted from a file) would pass a `$`-anchored pattern and then
        # fail as a "checksum mismatch" after the whole download
        md5 = md5.strip().lower()
        if problem := _md5_problem(md5):
            raise ValueError(problem)
        return md5

    @field_validator("classes")
    @classmethod
    def _known_classes(cls, classes: list[str]) -> list[str]:
        unknown = [c for c in classes if c not in CIFAR10_CLASSES]
        if unknown:
            raise ValueError(
                f"unknown class {_short(unknown)}; choose from {list(CIFAR10_CLASSES)}"
            )
        if len(set(classes)) != len(classes):
            raise ValueError("lists a class twice")
        return classes

    def source(self) -> tuple[str, str]:
        """The (url, md5) actually used: environment overrides win over params.yaml."""
        url = os.environ.get(ENV_URL) or self.url
        given_md5 = os.environ.get(ENV_MD5) or self.md5
        md5 = given_md5.strip().lower()
        if problem := _url_problem(url):
            raise ConfigError(f"{ENV_URL}={_shown_url(url)} {problem}")
        if problem := _md5_problem(md5):
            raise ConfigError(f"{ENV_MD5}={_short(given_md5)} {problem}")
        return url, md5


class StatsConfig(_Strict):
    ddof: Literal[0, 1]

    @field_validator("ddof", mode="before")
    @classmethod
    def _integer(cls, ddof: object) -> object:
        # a Literal matches by equality even in strict mode, and True == 1.0 == 1
        if type(ddof) is not int:
            raise ValueError("Input should be 0 or 1")
        return ddof


Positive = Annotated[int, Field(ge=1)]
Width = Annotated[int, Field(ge=1, le=MAX_WIDTH)]


Fraction = Annotated[float, Field(ge=0, lt=1)]


class Regularizers(_Strict):
    """What may be added to plain SGD against overfitting. A regularizer that is not set is off (0,
    or no early stopping): that is what leaving it out means, not a default value."""

    weight_decay: Annotated[float, Field(ge=0, le=1)] = 0.0  # torch.optim.SGD's L2 weight_decay
    dropout: Fraction = 0.0  # share of hidden outputs dropped in training
    patience: Annotated[int, Field(ge=1, le=10_000)] | None = (
        None  # early stopping; keeps the best epoch
    )
    augment_shift: Annotated[int, Field(ge=0, le=16)] = (
        0  # random shift of every training image, pixels
    )


class VariantConfig(Regularizers):
    """One trained model: its architecture and loss, regularizers, and optional overrides of the
    shared recipe."""

    arch: Literal["mlp", "cnn"] = "mlp"  # a fully connected net unless a variant says cnn
    hidden: Annotated[list[Width], Field(min_length=0, max_length=8)]
    channels: Annotated[
        list[Width], Field(max_length=4)
    ] = []  # cnn only: 3x3 conv + 2x2 max-pool each
    activation: str  # a name in birdplane.activations
    loss: str  # a name in birdplane.losses
    # not set: the shared train.* value
    epochs: Annotated[int, Field(ge=1, le=10_000)] | None = None
    batch_size: Annotated[int, Field(ge=1, le=65_536)] | None = None
    lr: Annotated[float, Field(gt=0, le=1e6)] | None = None
    seeds: Annotated[int, Field(ge=1, le=100)] | None = None

    @field_validator("activation")
    @classmethod
    def _known_activation(cls, name: str) -> str:
        from birdplane.activations import ACTIVATIONS

        return _one_of(name, ACTIVATIONS)

    @field_validator("loss")
    @classmethod
    def _known_loss(cls, name: str) -> str:
        from birdplane.losses import LOSSES

        return _one_of(name, LOSSES)

    @model_validator(mode="after")
    def _channels_for_cnn(self) -> "VariantConfig":
        if self.arch == "cnn" and not self.channels:
            raise ValueError("arch 'cnn' needs channels, e.g. [16, 8] (the book's chapter-8 net)")
        if self.arch == "mlp" and self.channels:
            raise ValueError("channels apply to arch 'cnn' only")
        return self


class TrainConfig(_Strict):
    device: Literal["auto", "cpu", "cuda"]
    engine: Literal["fused", "autograd"]
    train_metrics: Literal["running", "full"]
    epochs: Annotated[int, Field(ge=1, le=10_000)]
    batch_size: Annotated[int, Field(ge=1, le=65_536)]
    lr: Annotated[float, Field(gt=0, le=1e6)]
    seeds: Annotated[int, Field(ge=1, le=100)]  # models per variant, seeds seed, seed+1, ...
    # each seed's weights at the end of this epoch go to checkpoints/<variant>.pt, from which the
    # sweep reads its runs of a variant's recipe (birdplane.checkpoint); null: none kept
    checkpoint_epoch: Annotated[int, Field(ge=1, le=10_000)] | None = None
    variants: dict[str, VariantConfig]

    @field_validator("variants")
    @classmethod
    def _names(cls, variants: dict[str, VariantConfig]) -> dict[str, VariantConfig]:
        if not variants:
            raise ValueError("needs at least one variant")
        for name in variants:
            # the name becomes a DVC stage (train@<name>), file names and a word in dvc.yaml's cmd:
            # fullmatch, since `$` would let a trailing newline through
            if not re.fullmatch(VARIANT_NAME, name):
                raise ValueError(
                    f"variant name {_short(name, 40)}: a lower-case letter, then up to 31 of a-z, "
                    f"0-9, '-', '_' (it names a DVC stage and files)"
                )
        return variants

    def recipe(self, variant: str) -> "Recipe":
        """The full training recipe of one variant: shared defaults with its overrides applied."""
        if variant not in self.variants:
            raise ConfigError(
                f"unknown variant {_short(variant)}; params.yaml train.variants has "
                f"{sorted(self.variants)}"
            )
        v = self.variants[variant]
        return Recipe(
            name=variant,
            arch=v.arch,
            hidden=tuple(v.hidden),
            channels=tuple(v.channels),
            activation=v.activation,
            loss=v.loss,
            epochs=v.epochs or self.epochs,
            batch_size=v.batch_size or self.batch_size,
            lr=v.lr or self.lr,
            seeds=v.seeds or self.seeds,
            weight_decay=v.weight_decay,
            dropout=v.dropout,
            patience=v.patience,
            augment_shift=v.augment_shift,
        )


class Recipe(Regularizers):
    """Everything that determines one trained model (with the seed and the data)."""

    name: str
    arch: str
    hidden: tuple[int, ...]
    channels: tuple[int, ...]
    activation: str
    loss: str
    epochs: int
    batch_size: int
    lr: float
    seeds: int


class SweepConfig(_Strict):
    """The capacity sweep: the book's recipe on many widths and regularizers, several seeds each."""

    seeds: Annotated[int, Field(ge=1, le=100)]
    epochs: Annotated[int, Field(ge=1, le=10_000)]
    widths: Annotated[list[Width], Field(max_length=32)]
    deep: Annotated[list[Width], Field(max_length=8)]
    base_width: (
        Width  # the net the regularizers and the learning-rate study are tried on (the book's)
    )
    regularizers: dict[str, Regularizers]
    # the learning-rate study: the book net with each loss (a name in birdplane.losses) at each
    # learning rate; 10 is 1000x the book's 0.01, a bound against typos (1e2 for 1e-2)
    losses: Annotated[list[str], Field(max_length=8)]
    learning_rates: Annotated[list[Annotated[float, Field(gt=0, le=10)]], Field(max_length=16)]

    @field_validator("widths", "learning_rates")
    @classmethod
    def _sorted(cls, values: list, info) -> list:
        if values != sorted(set(values)):
            raise ValueError(
                f"list the {info.field_name.replace('_', ' ')} once each, smallest first"
            )
        return values

    @field_validator("losses")
    @classmethod
    def _known_losses(cls, losses: list[str]) -> list[str]:
        from birdplane.losses import LOSSES

        if len(set(losses)) != len(losses):
            raise ValueError("lists a loss twice")
        return [_one_of(name, LOSSES) for name in losses]

    @field_validator("regularizers")
    @classmethod
    def _reg_names(cls, regs: dict[str, Regularizers]) -> dict[str, Regularizers]:
        for name, r in regs.items():
            if not re.fullmatch(
                REGULARIZER_NAME, name
            ):  # names runs, plot columns and the sweep's metrics
                raise ValueError(
                    f"regularizer name {_short(name, 40)}: a lower-case letter, then up to 31 of "
                    f"a-z, 0-9, '_'"
                )
            if r.augment_shift:
                raise ValueError(
                    f"{name}: augment_shift is not swept; give a train variant augment_shift instead"
                )
        return regs


class EvaluateConfig(_Strict):
    calibration_bins: Annotated[int, Field(ge=2, le=100)]


class ShiftConfig(_Strict):
    max_shift: Annotated[int, Field(ge=0, le=16)]
    modes: Annotated[list[Literal["fill", "wrap"]], Field(min_length=1, max_length=2)]
    summary_shift: Annotated[int, Field(ge=0, le=16)]

    @field_validator("modes")
    @classmethod
    def _unique(cls, modes: list[str]) -> list[str]:
        if len(set(modes)) != len(modes):
            raise ValueError("lists a mode twice")
        return modes


class ReportConfig(_Strict):
    lang: str  # a catalog src/birdplane/report/lang/<lang>.toml: a language is a file
    # which variant answers which homework question
    baseline: str
    mse: str
    small: str
    # the translation comparison: the MLP trained on shifted images and the convnet ("" to leave out)
    augmented: str
    cnn: str
    fit_threshold: Annotated[float, Field(gt=0, le=1)]

    @field_validator("lang")
    @classmethod
    def _known_language(cls, lang: str) -> str:
        # the catalogs' files, looked at without importing the report (config sits below it)
        known = sorted(p.stem for p in REPORT_LANGUAGES.glob("*.toml"))
        if lang not in known:
            raise ValueError(
                f"no report catalog for {_short(lang)}; choose from {known} "
                f"or add src/birdplane/report/lang/{_short(lang, 20)}.toml"
            )
        return lang


class MlflowConfig(_Strict):
    experiment: Annotated[str, Field(min_length=1, max_length=200)]


class Params(_Strict):
    seed: Annotated[int, Field(ge=0, le=2**31 - 1)]
    data: DataConfig
    stats: StatsConfig
    train: TrainConfig
    evaluate: EvaluateConfig
    shift: ShiftConfig
    report: ReportConfig
    sweep: SweepConfig
    mlflow: MlflowConfig

    @model_validator(mode="after")
    def _summary_within_range(self) -> "Params":
        if self.shift.summary_shift > self.shift.max_shift:
            raise ValueError(
                f"shift.summary_shift ({self.shift.summary_shift}) must not exceed "
                f"shift.max_shift ({self.shift.max_shift})"
            )
        for role in ("baseline", "mse", "small", "augmented", "cnn"):
            name = getattr(self.report, role)
            if role in ("augmented", "cnn") and not name:
                continue
            if name not in self.train.variants:
                leave_out = " or '' to leave it out" if role in ("augmented", "cnn") else ""
                raise ValueError(
                    f"report.{role} is {_short(name)}, which is not in train.variants "
                    f"({', '.join(self.train.variants)}): set it to one of them{leave_out}"
                )
        self._models_fit()
        return self

    def _models_fit(self) -> None:
        """Refuse a model too big to train (MAX_PARAMETERS) while reading the params, not after the
        MLflow run has started and torch has asked for the memory."""
        n_classes = len(self.data.classes)
        models = {}  # what the message names -> (hidden, channels)
        for name, v in self.train.variants.items():
            key = f"train.variants.{name}"
            what = (
                f"{key}.channels {v.channels} with hidden {v.hidden}"
                if v.channels
                else f"{key}.hidden {v.hidden}"
            )
            models[what] = (v.hidden, v.channels)
        models |= {f"sweep.widths entry {w}": ([w], []) for w in self.sweep.widths}
        if self.sweep.deep:
            models[f"sweep.deep {self.sweep.deep}"] = (self.sweep.deep, [])
        if self.sweep.regularizers or (self.sweep.losses and self.sweep.learning_rates):
            models[f"sweep.base_width {self.sweep.base_width}"] = ([self.sweep.base_width], [])
        for what, (hidden, channels) in models.items():
            n = n_parameters(hidden, n_classes, channels)
            if n > MAX_PARAMETERS:
                raise ValueError(
                    f"{what} gives a model of {n:,} parameters ({n * 4 / 1e9:.1f} GB of float32 "
                    f"weights), more than the limit of {MAX_PARAMETERS:,}: use fewer or narrower layers"
                )
        # memory beyond the weights: a batch's activations (a convnet's feature maps above all) and
        # the sweep's seeds, which train side by side
        for name, v in self.train.variants.items():
            rows = max(v.batch_size or self.train.batch_size, EVAL_ROWS)
            need = (
                rows * activation_floats(v.hidden, n_classes, v.channels) * 4 * 3
            )  # outputs, gradients, inputs
            if need > MAX_ACTIVATION_BYTES:
                raise ValueError(
                    f"train.variants.{name}: a batch of {rows} images needs about {need / 2**30:.1f} GiB "
                    f"of activations, more than {MAX_ACTIVATION_BYTES / 2**30:.0f} GiB: use fewer or "
                    f"narrower layers or channels, or a smaller batch_size"
                )
        widest = max((n_parameters(h, n_classes, c) for h, c in models.values()), default=0)
        if self.sweep.seeds * widest > MAX_SWEEP_PARAMETERS:
            raise ValueError(
                f"sweep.seeds {self.sweep.seeds} x {widest:,} parameters train side by side: more "
                f"than {MAX_SWEEP_PARAMETERS:,} at once; use fewer seeds or narrower widths"
            )


def _describe(err: ValidationError, path: Path) -> str:
    """One line for one bad setting; a header and one line per setting (at most
    MAX_MESSAGE_LINES) for several."""
    problems = []
    for e in err.errors(include_url=False):
        key = ".".join(
            p if isinstance(p, str) and re.fullmatch(r"[\w\[\]-]{1,40}", p) else _short(p, 40)
            for p in e["loc"]
        )
        if e["type"] == "extra_forbidden":
            allowed = _allowed(e["loc"])
            close = difflib.get_close_matches(str(e["loc"][-1])[:100], allowed, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            problems.append(f"{key}: unknown key; {hint}allowed here: {', '.join(allowed)}")
        elif not e["loc"]:  # a rule across sections: its message names the keys
            problems.append(e["msg"].removeprefix("Value error, "))
        else:
            got = (
                ""
                if e["type"] == "missing"
                else f" (got {_short(_without_secrets(e.get('input')), 60)})"
            )
            problems.append(f"{key}: {e['msg'].removeprefix('Value error, ')}{got}")
    problems = [_cut(p, 280) for p in problems]  # the values are cut already; this bounds the rest
    if len(problems) == 1:
        return f"{path}: {problems[0]}"
    lines = [f"{path}: {len(problems)} invalid setting(s)"]
    lines += [f"  - {p}" for p in problems[:MAX_MESSAGE_LINES]]
    if len(problems) > MAX_MESSAGE_LINES:
        lines.append(f"  ... and {len(problems) - MAX_MESSAGE_LINES} more")
    return "\n".join(lines)


def _without_secrets(value: object) -> object:
    """A value from the file for an error message: a string with any URL's user:password@ and
    query masked (data.url may carry them)."""
    if not isinstance(value, str):
        return value
    from birdplane.text import redact  # error messages only: no stage output depends on it

    # only the start is shown (_short), and redact's time grows with the square of a long word
    return redact(value[:1000])


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
        if part not in model.model_fields:  # inside a list or dict value: no model there
            break
        model = _model_of(model.model_fields[part].annotation) or model
    return list(model.model_fields)


def _model_of(annotation) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        if found := _model_of(arg):
            return found
    return None


class _Loader(yaml.SafeLoader):
    """SafeLoader restricted to plain YAML, checked event by event while the document is composed,
    before anything is built: no anchors or aliases (one alias can stand for billions of values),
    no explicit tags, nesting at most MAX_DEPTH (checked before descending, so 5,000 levels end at
    level 33, not in a RecursionError), and no key twice in one mapping (YAML would keep the last
    one silently)."""

    def __init__(self, stream):
        super().__init__(stream)
        self.depth = 0

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or event.anchor is not None:
            raise _refusal(
                event, "anchors and aliases (&name, *name) are not allowed: write each value out"
            )
        if getattr(event, "tag", None) is not None:  # !!int, !foo, !!python/...: explicit types
            raise _refusal(
                event, f"tags such as {_short(event.tag, 40)} are not allowed: write plain values"
            )
        if not isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
            return super().compose_node(parent, index)
        if self.depth >= MAX_DEPTH:
            raise _refusal(event, f"nested more than {MAX_DEPTH} levels deep; params.yaml needs 5")
        self.depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise _refusal(key_node, "merge keys (<<) are not allowed: write each key out")
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:  # unhashable: the base class reports it
                continue
            if first is not None:
                raise _refusal(
                    key_node,
                    f"key {_short(key, 40)} appears twice (first on line {first}): "
                    f"keep one, YAML would silently use the last",
                )
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)

    def construct_object(self, node, deep=False):
        try:
            return super().construct_object(node, deep=deep)
        except yaml.YAMLError:
            raise
        except (ValueError, TypeError, ArithmeticError) as e:  # e.g. an int of 5,000 digits
            raise _refusal(node, f"cannot read this value: {_cut(str(e), 100)}") from None


def _refusal(at, problem: str) -> yaml.MarkedYAMLError:
    return yaml.MarkedYAMLError(problem=problem, problem_mark=at.start_mark)


def _yaml_problem(e: yaml.YAMLError, text: str) -> str:
    """A YAML error as one line: where it is and what is wrong, without PyYAML's snippet."""
    if isinstance(e, yaml.reader.ReaderError):
        line = text[: e.position].count("\n") + 1
        char = e.character if isinstance(e.character, int) else ord(e.character)
        return f"line {line}: control character #x{char:04x} is not allowed in YAML"
    if isinstance(e, yaml.MarkedYAMLError):
        mark = e.problem_mark or e.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        what = ", ".join(x for x in (e.context, e.problem) if x)
        if "'\\t'" in what:
            what += " (indent with spaces, not tabs)"
        return where + _cut(" ".join(what.split()))
    return _cut(str(e))


def _read_text(path: Path) -> str:
    """The file's text: at most MAX_FILE_BYTES (checked before parsing) of UTF-8."""
    try:
        with path.open("rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"{path} not found: run the stage from the project root") from None
    except OSError as e:
        raise ConfigError(f"{path} cannot be read: {e.strerror or e}") from None
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError(
            f"{path} is larger than {MAX_FILE_BYTES // 1024} KiB; params.yaml is about 4 KiB: "
            f"is it the right file?"
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise ConfigError(
            f"{path} is not UTF-8 text: byte 0x{data[e.start]:02x} at offset {e.start} "
            f"(line {line}); save the file as UTF-8"
        ) from None


PROJECT_PARAMS = Path("params.yaml")  # stages run from the project's root, as dvc.yaml's cmd does


def _read_params(path: Path) -> dict:
    text = _read_text(path)
    try:
        raw = yaml.load(text, Loader=_Loader)  # noqa: S506 (_Loader is a restricted SafeLoader)
    except yaml.YAMLError as e:
        raise ConfigError(f"{path} is not valid YAML: {_yaml_problem(e, text)}") from None
    if raw is None:
        raise ConfigError(f"{path} is empty: give at least one section (seed, data, train, ...)")
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{path} must be a mapping of sections (seed, data, stats, train, ...); "
            f"got {_short(raw, 40)}"
        )
    return raw


def load_params(path: str | Path = PROJECT_PARAMS, base: Path | None = PROJECT_PARAMS) -> Params:
    """Read and validate a params file; raise ConfigError naming every bad key. A file other than
    `base` (the project's params.yaml, where every value lives) may set only what it changes: the
    rest is base's, section by section and key by key. A collection it sets (train.variants,
    sweep.regularizers, a list) is taken whole, so it can also drop a variant."""
    path = Path(path)
    raw = _read_params(path)
    if base is not None and base.exists() and path.resolve() != base.resolve():
        project = _read_params(base)
        raw = {
            **project,
            **{
                k: {**project[k], **v}
                if isinstance(v, dict) and isinstance(project.get(k), dict)
                else v
                for k, v in raw.items()
            },
        }
    try:
        return Params.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(_describe(e, path)) from None


def main(argv: list[str] | None = None) -> int:
    """`python -m birdplane.config [PARAMS]`: check a params file the way every stage does, before
    `dvc repro` reads it (DVC parses params.yaml with its own YAML reader, which has none of the
    checks above: a billion-laughs file makes DVC itself run out of memory)."""
    import sys

    path = Path((argv if argv is not None else sys.argv[1:] or ["params.yaml"])[0])
    try:
        load_params(path)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"{path}: valid")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
