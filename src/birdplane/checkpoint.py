"""Checkpoints: each seed's weights at one epoch of a training stage, read by the sweep.

`train@<variant>` keeps every seed's weights at the end of epoch `train.checkpoint_epoch` and
writes them to `checkpoints/<variant>.pt`, with the seeds' histories up to that epoch and what
decides their bits besides the seeds (`Computation`): the net, the SGD recipe, the engine, the
numerics mode, the device, torch's and numpy's versions, the md5 of the data it trained on and of
every source file of this package the training process had loaded. The sweep's `w32` and
`mse_lr0.01` are the first 30 epochs of `small` and `mse` (same net, loss, step size, batch order
and initialisation), so with `checkpoint_epoch` equal to `sweep.epochs` the sweep reads them from
there instead of training them again (birdplane.sweep; `w512`, `nll`'s, it trains: early stopping
watches its epochs).

A checkpoint is a cache, not a dependency: the sweep reads one only where it holds exactly the
bits the sweep would compute (pinned numerics on the CPU, everything above equal; unpinned, a
variant's 512-unit seeds train one by one, equal only to float rounding), so the sweep's outputs
are the same with or without it (tests/test_checkpoint.py) and dvc.yaml does not list it: a
changed variant does not re-run the sweep.

A checkpoint is input like a model file: `read_checkpoint` checks it with birdplane.modelfile's
checks (size and zip directory first, torch.load without running code, the config within the
params' bounds, every state_dict against the config's shapes, finite float32) plus its own
fields, and refuses a bad one with one CheckpointError that names the file and the fix.
"""

from __future__ import annotations

import hashlib
import io
import math
import re
import sys
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Iterable

from birdplane.errors import BirdplaneError
from birdplane.models import ModelConfig
from birdplane.train.sgd import SGD, EpochStats

FORMAT = 1
KEYS = {
    "format",
    "variant",
    "epoch",
    "config",
    "sgd",
    "computation",
    "seeds",
    "histories",
    "states",
}
SGD_KEYS = tuple(f.name for f in fields(SGD) if f.name != "epochs")  # the length is `epoch`
COMPUTATION_KEYS = ("engine", "numerics", "device", "libraries", "inputs", "code")
PACKAGE = Path(__file__).resolve().parent  # src/birdplane: the code's md5s are of files below it
SOURCE_FILE = r"[a-z0-9_]+(/[a-z0-9_]+)*\.py"  # a package-relative path, no ".."
MAX_SEEDS = 100  # params.yaml's bound on a variant's seeds
HISTORY = ("epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy")  # no wall time


class CheckpointError(BirdplaneError):
    """A checkpoint file is unreadable or not one a training stage can have written."""


@dataclass(frozen=True)
class Computation:
    """What decides a training's bits besides the net, the recipe and the seeds."""

    engine: str  # params.yaml's train.engine (the sweep trains with the fused one)
    numerics: str  # birdplane.numerics.mode(): pinned or fast
    device: str  # cpu or cuda
    libraries: str  # torch's and numpy's versions
    inputs: str  # md5 over the prepared data and metrics/stats.json (inputs_md5)
    code: dict[str, str]  # package-relative source file -> md5, of every module it had loaded


def loaded_files() -> list[str]:
    """The package-relative source files of this package's modules that this process imported."""
    files = set()
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None)
        if (name == "birdplane" or name.startswith("birdplane.")) and path:
            resolved = Path(path).resolve()
            if resolved.is_relative_to(PACKAGE):
                files.add(resolved.relative_to(PACKAGE).as_posix())
    return sorted(files)


def here(engine: str, device: str, inputs: str, files: Iterable[str]) -> Computation:
    """This process's Computation for a training with `engine` on `device` from the data of md5
    `inputs`, with the md5s of the package's source `files` as they are now."""
    import numpy
    import torch

    from birdplane import numerics

    return Computation(
        engine,
        numerics.mode(),
        device,
        f"torch {torch.__version__}, numpy {numpy.__version__}",
        inputs,
        {f: source_md5(PACKAGE / f) for f in sorted(files)},
    )


def cannot_read(device: str) -> str | None:
    """Why no checkpoint can stand for a training here, or None: only with pinned numerics on the
    CPU is a seed the same bits whether it trains alone or beside others (a variant's 512-unit
    seeds train one by one elsewhere; birdplane.train.variant.side_by_side)."""
    from birdplane import numerics

    if numerics.mode() != numerics.PINNED:
        return f"numerics are {numerics.mode()}, not pinned"
    if device != "cpu":
        return f"the device is {device}, not the CPU"
    return None


def differences(ck: Computation, now: Computation) -> list[str]:
    """What differs between a checkpoint's computation and this one, in words."""
    out = [
        f"{k} {getattr(ck, k)!r}, here {getattr(now, k)!r}"
        for k in COMPUTATION_KEYS
        if k != "code" and getattr(ck, k) != getattr(now, k)
    ]
    changed = [f for f in sorted(ck.code) if ck.code[f] != now.code.get(f)]
    if changed:
        more = f" and {len(changed) - 1} more files" if len(changed) > 1 else ""
        out.append(f"src/birdplane/{changed[0]}{more} changed since it was trained")
    return out


def source_md5(path: Path) -> str:
    """md5 of a source file with its line ends as git stores them (a Windows checkout's CRLF
    would otherwise give other checkpoint bytes); "" where the file is gone."""
    try:
        return hashlib.md5(path.read_bytes().replace(b"\r\n", b"\n")).hexdigest()
    except OSError:
        return ""


def inputs_md5(*paths: Path) -> str:
    """One md5 over the files' bytes, in order: the data a training read."""
    h = hashlib.md5()
    for path in paths:
        with Path(path).open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class Checkpoint:
    variant: str
    epoch: int
    config: ModelConfig
    sgd: SGD  # with epochs = `epoch`: what training for that long is
    computation: Computation
    seeds: list[int]
    histories: list[list[EpochStats]]  # per seed, epochs 1..epoch (seconds: 0, not kept)
    states: list[dict[str, Any]]  # per seed, its state_dict at the end of `epoch`


def checkpoint_bytes(ck: Checkpoint) -> bytes:
    """The file's bytes: loadable with torch.load(weights_only=True); no wall time or path in it,
    so the same training gives the same bytes."""
    import torch

    blob = {
        "format": FORMAT,
        "variant": ck.variant,
        "epoch": ck.epoch,
        "config": ck.config.to_dict(),
        "sgd": {k: getattr(ck.sgd, k) for k in SGD_KEYS},
        "computation": {k: getattr(ck.computation, k) for k in COMPUTATION_KEYS},
        "seeds": list(ck.seeds),
        "histories": [[[getattr(s, k) for k in HISTORY] for s in h] for h in ck.histories],
        "states": [{k: v.detach().cpu().contiguous() for k, v in s.items()} for s in ck.states],
    }
    buffer = io.BytesIO()  # in memory: torch.save names the zip's folder after a path it is given
    torch.save(blob, buffer)
    return buffer.getvalue()


def of_runs(variant: str, cfg: ModelConfig, sgd: SGD, computation: Computation, runs) -> Checkpoint:
    """The checkpoint of a training stage's runs (birdplane.train.variant.SeedRun): the seeds that
    reached sgd.epochs, each with its weights there and its epochs up to there."""
    kept = [r for r in runs if r.kept is not None]
    return Checkpoint(
        variant,
        sgd.epochs,
        cfg,
        sgd,
        computation,
        [r.seed for r in kept],
        [r.history[: sgd.epochs] for r in kept],
        [r.kept for r in kept],
    )


def why_not(ck: Checkpoint, cfg: ModelConfig, sgd: SGD, seeds: list[int]) -> str | None:
    """Why `ck` does not hold this training (the net `cfg`, `sgd` for sgd.epochs, `seeds`), or
    None where it does: every seed's weights at the end of it and its epochs up to there."""
    if ck.config != cfg:
        return "another net"
    if ck.sgd.epochs != sgd.epochs:
        return f"kept at epoch {ck.sgd.epochs}, not {sgd.epochs}"
    if ck.sgd != sgd:
        return "another recipe"
    if sgd.patience is not None:  # its model is the best epoch's, not the last one's
        return "early stopping keeps its best epoch's weights, not the last epoch's"
    missing = [s for s in seeds if s not in ck.seeds]
    if missing:
        return f"no seed {missing[0]} in it"
    return None


def recovery(path: Path) -> str:
    from birdplane.dvc_hints import dvc_recovery

    return dvc_recovery(path, f"run `dvc repro -f train@{path.stem}`")


def read_checkpoint(path: Path, n_classes: int) -> Checkpoint:
    """The checkpoint in `path`, every check of the module's docstring passed; `n_classes`: the
    number of classes of the data, which its nets must predict."""
    from birdplane import modelfile

    path = Path(path)
    try:
        modelfile.check_container(path, MAX_SEEDS * modelfile.MAX_FILE_BYTES)
        blob = modelfile.load_blob(path)
        return _parse(path, blob, n_classes)
    except (modelfile.Refused, _Refused) as e:
        raise CheckpointError(
            f"{path}: {e}; not a checkpoint the training stage wrote: {recovery(path)}"
        ) from None
    except modelfile.ModelFileError as e:  # the file is missing
        raise CheckpointError(str(e)) from None


class _Refused(Exception):
    """What is wrong with the checkpoint; read_checkpoint adds its name and the fix."""


def _parse(path: Path, blob: Any, n_classes: int) -> Checkpoint:
    from birdplane import modelfile
    from birdplane.config import VARIANT_NAME

    if not isinstance(blob, dict) or set(blob) != KEYS:
        got = sorted(map(str, blob)) if isinstance(blob, dict) else type(blob).__name__
        raise _Refused(f"it holds {str(got)[:120]}, not the fields of a checkpoint")
    if blob["format"] != FORMAT:
        raise _Refused(
            f"format {str(blob['format'])[:20]}, not {FORMAT} (another version wrote it)"
        )
    variant, epoch = blob["variant"], blob["epoch"]
    if not isinstance(variant, str) or not re.fullmatch(VARIANT_NAME, variant):
        raise _Refused("its variant is not a variant name")
    if variant != path.stem:
        raise _Refused(f"it is variant {variant!r}'s checkpoint, not {path.stem!r}'s")
    if type(epoch) is not int or not 1 <= epoch <= 10_000:
        raise _Refused("its epoch is not an integer in 1..10000")
    problem = modelfile.config_problem(blob["config"])
    if problem:
        raise _Refused(problem)
    cfg = ModelConfig.from_dict(blob["config"])
    if cfg.n_classes != n_classes:
        raise _Refused(
            f"its nets predict {cfg.n_classes} classes, the prepared data has {n_classes}"
        )
    sgd, computation = _sgd(blob["sgd"], epoch), _computation(blob["computation"])
    seeds, histories = _seeds(blob), _histories(blob["histories"], epoch)
    states = blob["states"]
    if not isinstance(states, list) or not len(states) == len(histories) == len(seeds):
        raise _Refused("it does not hold one state_dict and one history per seed")
    for state in states:
        problem = modelfile.state_problem(state, cfg)
        if problem:
            raise _Refused(problem)
    return Checkpoint(variant, epoch, cfg, sgd, computation, seeds, histories, states)


def _sgd(fields_: Any, epoch: int) -> SGD:
    from birdplane.losses import LOSSES

    if not isinstance(fields_, dict) or set(fields_) != set(SGD_KEYS):
        raise _Refused(f"its sgd does not have exactly {', '.join(SGD_KEYS)}")
    f = fields_
    ok = (
        f["loss"] in LOSSES
        and type(f["batch_size"]) is int
        and f["batch_size"] >= 1
        and type(f["lr"]) is float
        and f["lr"] > 0
        and type(f["weight_decay"]) is float
        and f["weight_decay"] >= 0
        and (f["patience"] is None or type(f["patience"]) is int)
        and type(f["augment_shift"]) is int
        and f["train_metrics"] in ("running", "full")
    )
    if not ok:
        raise _Refused("its sgd holds a value a recipe cannot have")
    return SGD(**f, epochs=epoch)


def _computation(c: Any) -> Computation:
    if (
        not isinstance(c, dict)
        or set(c) != set(COMPUTATION_KEYS)
        or not all(isinstance(c[k], str) and len(c[k]) <= 64 for k in COMPUTATION_KEYS[:-1])
    ):
        raise _Refused(f"its computation is not {', '.join(COMPUTATION_KEYS)}")
    code = c["code"]
    if (
        not isinstance(code, dict)
        or len(code) > 500
        or not all(
            isinstance(f, str)
            and re.fullmatch(SOURCE_FILE, f)
            and isinstance(h, str)
            and re.fullmatch(r"[0-9a-f]{32}", h)
            for f, h in code.items()
        )
    ):
        raise _Refused("its code is not package-relative source files and their md5s")
    return Computation(**c)


def _seeds(blob: dict) -> list[int]:
    seeds = blob["seeds"]
    if (
        not isinstance(seeds, list)
        or len(seeds) > MAX_SEEDS
        or not all(type(s) is int for s in seeds)
        or len(set(seeds)) != len(seeds)
    ):
        raise _Refused(f"its seeds are not up to {MAX_SEEDS} different integers")
    return seeds


def _histories(histories: Any, epoch: int) -> list[list[EpochStats]]:
    """Each seed's epochs 1..epoch: five finite numbers each, the first the epoch."""
    if not isinstance(histories, list) or len(histories) > MAX_SEEDS:
        raise _Refused("its histories are not a list per seed")
    out = []
    for h in histories:
        if not isinstance(h, list) or len(h) != epoch:
            raise _Refused(f"a history does not have {epoch} epochs")
        rows = []
        for i, row in enumerate(h, 1):
            if (
                not isinstance(row, list)
                or len(row) != len(HISTORY)
                or row[0] != i
                or not all(type(v) in (int, float) and math.isfinite(v) for v in row)
            ):
                raise _Refused(f"epoch {i} of a history is not {len(HISTORY)} finite numbers")
            rows.append(EpochStats(*row, seconds=0.0))
        out.append(rows)
    return out
