"""Checkpoints: each seed's weights at one epoch of a training stage, read by the sweep.

`train@<variant>` keeps every seed's weights at the end of epoch `train.checkpoint_epoch` and
writes them to `checkpoints/<variant>.pt` (birdplane.checkpointfile), with the seeds' histories up
to that epoch and what decides their bits besides the seeds (`Computation`): the net, the SGD
recipe, the engine, the numerics mode, the device, torch's and numpy's versions, the md5 of the
data it trained on and of every source file of this package that took part in the training (what
the process had loaded, less the modules that cannot change a number: `NOT_COMPUTATION`). The
sweep's `w32`, `mse_lr0.01` and `w512` are the first 30 epochs of `small`, `mse` and `nll` (same
net, loss, step size, batch order and initialisation), so with `checkpoint_epoch` equal to
`sweep.epochs` the sweep reads them from there instead of training them again (birdplane.sweep;
of `w512`, whose epochs early stopping watches, only those it needs to see train again).

A checkpoint is a cache, not a dependency: the sweep reads one only where it holds exactly the
bits the sweep would compute (pinned numerics on the CPU, everything above equal; unpinned, a
variant's 512-unit seeds train one by one, equal only to float rounding), so the sweep's outputs
are the same with or without it (tests/test_checkpoint.py) and dvc.yaml does not list it: a
changed variant does not re-run the sweep.

This module is the ML core's part: what a checkpoint holds, its bytes (`checkpoint_bytes`), and
whether it holds a training. birdplane.checkpointfile reads and checks a file: only the sweep
needs that, so an edit to the checks re-runs no training stage.
"""

from __future__ import annotations

import hashlib
import io
import sys
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Iterable

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
HISTORY = ("epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy")  # no wall time
COMPUTATION_KEYS = ("engine", "numerics", "device", "libraries", "inputs", "code")
PACKAGE = Path(__file__).resolve().parent  # src/birdplane: the code's md5s are of files below it
# The package's top-level modules that no stage lists in dvc.yaml (tests/test_stage_deps.py says
# why each cannot change a stage's outputs: argument parsing and error reporting, the process's
# set-up, atomic file writing, MLflow, provenance, DVC hints, the exception base classes). A
# checkpoint's code leaves them out too: an edit to one re-runs no stage, so it must not change a
# checkpoint's bytes either. (process.py does pin the numerics; a checkpoint records the mode.)
NOT_COMPUTATION = frozenset(
    {"cli", "process", "io", "tracking", "serving", "provenance", "errors", "dvc_hints", "__init__"}
)


@dataclass(frozen=True)
class Computation:
    """What decides a training's bits besides the net, the recipe and the seeds."""

    engine: str  # params.yaml's train.engine (the sweep trains with the fused one)
    numerics: str  # birdplane.numerics.mode(): pinned or fast
    device: str  # cpu or cuda
    libraries: str  # torch's and numpy's versions
    inputs: str  # md5 over the prepared data and metrics/stats.json (inputs_md5)
    code: dict[str, str]  # package-relative source file -> md5 (computation_files)


def computation_files() -> list[str]:
    """The package-relative source files of this package's modules that this process imported,
    less those of NOT_COMPUTATION, and every file of the training package (the sweep may train the
    same seeds through a module the stage did not load: side by side, where a variant's seed
    trained alone). Every one is a dependency of the training stage in dvc.yaml."""
    files = {p.relative_to(PACKAGE).as_posix() for p in (PACKAGE / "train").rglob("*.py")}
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None)
        if (name == "birdplane" or name.startswith("birdplane.")) and path:
            resolved = Path(path).resolve()
            if resolved.is_relative_to(PACKAGE):
                files.add(resolved.relative_to(PACKAGE).as_posix())
    return sorted(f for f in files if f.removesuffix(".py") not in NOT_COMPUTATION)


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
