"""Reading a checkpoint file: `checkpoints/<variant>.pt`, written by `train@<variant>`
(birdplane.checkpoint: what it holds, its bytes, when the sweep may read it), read by the sweep.

A checkpoint is input like a model file: `read_checkpoint` checks it with birdplane.modelfile's
checks (size and zip directory first, torch.load without running code, the config within the
params' bounds, every state_dict against the config's shapes, finite float32) plus its own fields,
each field's type before its value, and refuses a bad one with one CheckpointError that names the
file and the fix.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from birdplane.checkpoint import (
    COMPUTATION_KEYS,
    FORMAT,
    HISTORY,
    KEYS,
    SGD_KEYS,
    Checkpoint,
    Computation,
)
from birdplane.errors import BirdplaneError
from birdplane.modelfile import Refused  # what is wrong; read_checkpoint adds the name and fix
from birdplane.models import ModelConfig
from birdplane.train.sgd import SGD, EpochStats

SOURCE_FILE = r"[a-z0-9_]+(/[a-z0-9_]+)*\.py"  # a package-relative path, no ".."
MAX_SEEDS = 100  # params.yaml's bound on a variant's seeds


class CheckpointError(BirdplaneError):
    """A checkpoint file is unreadable or not one a training stage can have written."""


def recovery(path: Path) -> str:
    from birdplane.dvc_hints import dvc_recovery

    return dvc_recovery(path, f"run `dvc repro -f train@{path.stem}`")


def read_checkpoint(path: Path, n_classes: int) -> Checkpoint:
    """The checkpoint in `path`, every check of the module's docstring passed; `n_classes`: the
    number of classes of the data, which its nets must predict."""
    from birdplane import modelfile

    path = Path(path)
    try:
        modelfile.check_container(
            path, MAX_SEEDS * modelfile.MAX_FILE_BYTES, MAX_SEEDS * modelfile.MAX_RECORDS
        )
        blob = modelfile.load_blob(path)
        return _parse(path, blob, n_classes)
    except (Refused, RecursionError) as e:
        why = modelfile.TOO_DEEP if isinstance(e, RecursionError) else e
        raise CheckpointError(
            f"{path}: {why}; not a checkpoint the training stage wrote: {recovery(path)}"
        ) from None
    except modelfile.ModelFileError as e:  # the file is missing
        raise CheckpointError(str(e)) from None


def _parse(path: Path, blob: Any, n_classes: int) -> Checkpoint:
    from birdplane import modelfile
    from birdplane.config import VARIANT_NAME

    if not isinstance(blob, dict) or set(blob) != KEYS:
        got = sorted(map(str, blob)) if isinstance(blob, dict) else type(blob).__name__
        raise Refused(f"it holds {str(got)[:120]}, not the fields of a checkpoint")
    if type(blob["format"]) is not int or blob["format"] != FORMAT:
        raise Refused(f"format {str(blob['format'])[:20]}, not {FORMAT} (another version wrote it)")
    variant, epoch = blob["variant"], blob["epoch"]
    if not isinstance(variant, str) or not re.fullmatch(VARIANT_NAME, variant):
        raise Refused("its variant is not a variant name")
    if variant != path.stem:
        raise Refused(f"it is variant {variant!r}'s checkpoint, not {path.stem!r}'s")
    if type(epoch) is not int or not 1 <= epoch <= 10_000:
        raise Refused("its epoch is not an integer in 1..10000")
    problem = modelfile.config_problem(blob["config"])
    if problem:
        raise Refused(problem)
    cfg = ModelConfig.from_dict(blob["config"])
    if cfg.n_classes != n_classes:
        raise Refused(
            f"its nets predict {cfg.n_classes} classes, the prepared data has {n_classes}"
        )
    sgd, computation = _sgd(blob["sgd"], epoch), _computation(blob["computation"])
    seeds, histories = _seeds(blob), _histories(blob["histories"], epoch)
    states = blob["states"]
    if not isinstance(states, list) or not len(states) == len(histories) == len(seeds):
        raise Refused("it does not hold one state_dict and one history per seed")
    for state in states:
        problem = modelfile.state_problem(state, cfg)
        if problem:
            raise Refused(problem)
    return Checkpoint(variant, epoch, cfg, sgd, computation, seeds, histories, states)


def _sgd(fields_: Any, epoch: int) -> SGD:
    from birdplane.losses import LOSSES

    if not isinstance(fields_, dict) or set(fields_) != set(SGD_KEYS):
        raise Refused(f"its sgd does not have exactly {', '.join(SGD_KEYS)}")
    f = fields_
    ok = (
        isinstance(f["loss"], str)
        and f["loss"] in LOSSES
        and type(f["batch_size"]) is int
        and f["batch_size"] >= 1
        and type(f["lr"]) is float
        and 0 < f["lr"] < math.inf
        and type(f["weight_decay"]) is float
        and 0 <= f["weight_decay"] < math.inf
        and (f["patience"] is None or type(f["patience"]) is int and f["patience"] >= 1)
        and type(f["augment_shift"]) is int
        and f["augment_shift"] >= 0
        and isinstance(f["train_metrics"], str)
        and f["train_metrics"] in ("running", "full")
    )
    if not ok:
        raise Refused("its sgd holds a value a recipe cannot have")
    return SGD(**f, epochs=epoch)


def _computation(c: Any) -> Computation:
    if (
        not isinstance(c, dict)
        or set(c) != set(COMPUTATION_KEYS)
        or not all(isinstance(c[k], str) and len(c[k]) <= 64 for k in COMPUTATION_KEYS[:-1])
    ):
        raise Refused(f"its computation is not {', '.join(COMPUTATION_KEYS)}")
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
        raise Refused("its code is not package-relative source files and their md5s")
    return Computation(**c)


def _seeds(blob: dict) -> list[int]:
    seeds = blob["seeds"]
    if (
        not isinstance(seeds, list)
        or len(seeds) > MAX_SEEDS
        or not all(type(s) is int for s in seeds)
        or len(set(seeds)) != len(seeds)
    ):
        raise Refused(f"its seeds are not up to {MAX_SEEDS} different integers")
    return seeds


def _histories(histories: Any, epoch: int) -> list[list[EpochStats]]:
    """Each seed's epochs 1..epoch: five finite numbers each, the first the epoch."""
    if not isinstance(histories, list) or len(histories) > MAX_SEEDS:
        raise Refused("its histories are not a list per seed")
    out = []
    for h in histories:
        if not isinstance(h, list) or len(h) != epoch:
            raise Refused(f"a history does not have {epoch} epochs")
        rows = []
        for i, row in enumerate(h, 1):
            if (
                not isinstance(row, list)
                or len(row) != len(HISTORY)
                or type(row[0]) is not int
                or row[0] != i
                or not all(number(v) for v in row[1:])
            ):
                raise Refused(f"epoch {i} of a history is not {len(HISTORY)} finite numbers")
            rows.append(EpochStats(*row, seconds=0.0))
        out.append(rows)
    return out


def number(v: Any) -> bool:
    """A finite float, or an int a float holds exactly (math.isfinite cannot take 10**400)."""
    return type(v) is float and math.isfinite(v) or type(v) is int and abs(v) <= 2**53
