"""The JSON and CSV files one stage reads of another's outputs, checked before they are used.

An earlier stage's output can be damaged (a bad merge, an editor, a flipped byte, a file from
another version of the project), and a stage that trusts it ends in a traceback or, worse, in a
report that reads "nan %" with exit status 0. Each file kind has a light schema here: the keys and
columns the readers use, their types and ranges. JSON's NaN and Infinity (which Python's json
accepts) and numbers that overflow to infinity are refused while parsing. A file that fails ends
in one InputError naming the file, what is wrong and how to get a good copy: restore the committed
one, or re-run the stage that writes it.

A schema is plain data: a dict of key -> schema (a "?" before a key: it may be missing),
`Each(schema)` for a list, `Values(schema)` for a mapping with any keys, `Maybe(schema)` for a
value that may be null, or a check function returning what is wrong (or None).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from birdplane.errors import BirdplaneError
from birdplane.text import printable

# The largest of these files is plots/sweep/curves.csv, 69 KB; a file far beyond any real one is
# refused before it is parsed.
MAX_BYTES = 32 << 20
CHANNELS = ("red", "green", "blue")


class InputError(BirdplaneError):
    """A file written by an earlier stage is missing, unreadable or not what that stage writes."""


# ---- schemas


Check = Callable[[Any], "str | None"]


@dataclass(frozen=True)
class Each:
    item: Any
    min_len: int = 0


@dataclass(frozen=True)
class Values:
    item: Any


@dataclass(frozen=True)
class Maybe:
    item: Any


def _number(x: Any) -> bool:
    return type(x) in (int, float)  # not bool; JSON's floats are finite here (read_json)


def number(x: Any) -> str | None:
    return None if _number(x) else "not a number"


def fraction(x: Any) -> str | None:
    return None if _number(x) and 0 <= x <= 1 else "not a number in [0, 1]"


def count(x: Any) -> str | None:
    return None if type(x) is int and x >= 0 else "not a whole number >= 0"


def text(x: Any) -> str | None:
    return None if isinstance(x, str) else "not a string"


def anything(x: Any) -> str | None:
    return None


def _shown(x: Any) -> str:
    return printable(json.dumps(x) if not isinstance(x, str) else repr(x), 40)


def problem(value: Any, schema: Any, where: str = "") -> str | None:
    """What makes `value` not fit `schema` (naming the key, e.g. 'seeds.val_accuracy.mean'), or None."""
    at = where or "the top level"
    if isinstance(schema, dict):
        if not isinstance(value, dict):
            return f"{at} is {_shown(value)}, not a mapping"
        for key, sub in schema.items():
            optional, key = key.startswith("?"), key.lstrip("?")
            if key not in value:
                if optional:
                    continue
                return f"{where + '.' if where else ''}{key} is missing"
            found = problem(value[key], sub, f"{where + '.' if where else ''}{key}")
            if found:
                return found
        return None
    if isinstance(schema, Each):
        if not isinstance(value, list):
            return f"{at} is {_shown(value)}, not a list"
        if len(value) < schema.min_len:
            return f"{at} has {len(value)} entries, fewer than {schema.min_len}"
        return next(
            (p for i, v in enumerate(value) if (p := problem(v, schema.item, f"{where}[{i}]"))),
            None,
        )
    if isinstance(schema, Values):
        if not isinstance(value, dict):
            return f"{at} is {_shown(value)}, not a mapping"
        return next(
            (p for k, v in value.items() if (p := problem(v, schema.item, f"{where}.{k}"))), None
        )
    if isinstance(schema, Maybe):
        return None if value is None else problem(value, schema.item, where)
    found = schema(value)
    return f"{at} is {_shown(value)}: {found}" if found else None


def _spread(item: Check) -> dict:
    """mean ± std over seeds, as birdplane.summary writes it."""
    return {"mean": item, "std": number, "n": count}


STATS = {
    "mean": Each(fraction),
    "std": Each(number),
    "?classes": Each(text, 2),
    "?n_train": count,
    "?n_val": count,
    "?train_per_class": Values(count),
    "?source": {"?md5": text, "?bytes": count},
}
STATS_REPORT = {
    **STATS,
    "classes": Each(text, 2),
    "n_train": count,
    "n_val": count,
    "train_per_class": Values(count),
}
TRAIN_METRICS = {
    "train_accuracy": fraction,
    "val_accuracy": fraction,
    "overfit_gap": number,
    "n_parameters": count,
    "model": text,
    "recipe": {
        "hidden": Each(count),
        "lr": number,
        "loss": text,
        "epochs": count,
        "batch_size": count,
    },
    "?seeds": Maybe(
        {
            "?runs": Each(anything),
            **{
                f"?{k}": Maybe(_spread(number))
                for k in (
                    "train_accuracy",
                    "val_accuracy",
                    "overfit_gap",
                    "best_val_accuracy",
                    "best_epoch",
                    "val_ece",
                )
            },
        }
    ),
}
EVAL_METRICS = {
    "train_accuracy": fraction,
    "val_accuracy": fraction,
    "overfit_gap": number,
    "train_loss": number,
    "val_loss": number,
    "val_nll": number,
    "val_ece": fraction,
    "n_parameters": count,
    "per_class": Values(
        {"precision": fraction, "recall": fraction, "f1": fraction, "support": count}
    ),
    "confusion_matrix": {"labels": Each(text), "rows_actual_cols_predicted": Each(Each(count))},
}
SHIFT_METRICS = {
    "accuracy_at_0": fraction,
    "accuracy_by_shift": Values(fraction),
    "max_shift": count,
}
TRAIN_LOG = {"?train_seconds": number, "?mlflow_run_id": text, "?mlflow_experiment": text}
DOWNLOAD_LOG = {"url": text, "md5": text, "?bytes": count}
SWEEP = {
    "seeds": Each(count, 1),
    "epochs": count,
    "configs": Values(
        {
            "kind": text,
            "?hidden": Each(count),
            "?n_parameters": count,
            "?loss": text,
            "?lr": number,
            **{f"?{k}": _spread(number) for k in ("train_accuracy", "val_accuracy", "overfit_gap")},
        }
    ),
    "small_rule": {"pick": text, "best": text, "hidden": Each(count)},
}


def _stats_values(record: dict) -> str | None:
    """mean and std per channel; a std of 0 (or less) would divide every pixel by zero."""
    for key in ("mean", "std"):
        if len(record[key]) != 3:
            return f"{key} has {len(record[key])} values, not 3 (one per channel: red, green, blue)"
    for i, s in enumerate(record["std"]):
        if not 0 < s <= 1:
            return (
                f"the std of channel {i} ({CHANNELS[i]}) is {s!r}; normalizing divides by it, and pixels in "
                "[0, 1] have a std above 0 and at most 1"
            )
    return None


def _shift_rings(record: dict) -> str | None:
    """accuracy_by_shift has every ring 0..max_shift (the report reads the summary and the last)."""
    missing = [
        r for r in range(record["max_shift"] + 1) if str(r) not in record["accuracy_by_shift"]
    ]
    return (
        f"accuracy_by_shift lacks shift {missing[0]} (max_shift is {record['max_shift']})"
        if missing
        else None
    )


# ---- reading


def _fix(path: Path, stage: str) -> str:
    return f"restore the committed copy (`git checkout -- {path}`) or re-create it with `dvc repro -f {stage}`"


def _error(path: Path, stage: str, what: str) -> InputError:
    return InputError(f"{path}: {what}: {_fix(path, stage)}")


def _bytes(path: Path, stage: str) -> bytes:
    if not path.is_file():
        raise InputError(
            f"{path} does not exist: run `dvc repro {stage}` (or `git checkout -- {path}`)"
        )
    if path.stat().st_size > MAX_BYTES:
        raise _error(path, stage, f"{path.stat().st_size:,} bytes, far more than the stage writes")
    return path.read_bytes()


class _NotFinite(ValueError):
    pass


def _finite_float(s: str) -> float:
    x = float(s)
    if not math.isfinite(x):
        raise _NotFinite(s)
    return x


def _refuse_constant(s: str) -> Any:
    raise _NotFinite(s)


def read_json(
    path: Path, schema: Any, stage: str, check: Callable[[Any], str | None] | None = None
) -> Any:
    """The JSON file at `path`, fitting `schema` (and `check`, on the whole record); `stage`:
    the DVC stage that writes it (the recovery the message names)."""
    path = Path(path)
    raw = _bytes(path, stage)
    try:
        value = json.loads(
            raw.decode("utf-8"), parse_float=_finite_float, parse_constant=_refuse_constant
        )
    except UnicodeDecodeError:
        raise _error(path, stage, "not UTF-8 text") from None
    except json.JSONDecodeError as e:
        raise _error(
            path, stage, f"not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})"
        ) from None
    except _NotFinite as e:
        raise _error(path, stage, f"holds {printable(str(e), 30)}, not a finite number") from None
    except (
        ValueError,
        RecursionError,
    ) as e:  # an integer of thousands of digits, nesting thousands deep
        raise _error(
            path, stage, f"unreadable JSON ({type(e).__name__}: {printable(str(e), 80)})"
        ) from None
    found = problem(value, schema) or (check(value) if check else None)
    if found:
        raise _error(path, stage, found)
    return value


def read_csv(path: Path, numbers: tuple[str, ...], stage: str, texts: tuple[str, ...] = ()):
    """The CSV file at `path` as a DataFrame with at least one row, the columns `numbers` (finite)
    and `texts` (no empty cell); `stage` as in read_json."""
    import io

    import numpy as np
    import pandas as pd

    path = Path(path)
    raw = _bytes(path, stage)
    try:
        frame = pd.read_csv(io.BytesIO(raw), encoding="utf-8")
    except pd.errors.EmptyDataError:
        raise _error(path, stage, "empty, not a CSV table") from None
    except (
        Exception
    ) as e:  # a damaged CSV fails in the parser with ParserError, UnicodeDecodeError, ...
        raise _error(
            path, stage, f"not a readable CSV table ({type(e).__name__}: {printable(str(e), 80)})"
        ) from None
    missing = [c for c in (*numbers, *texts) if c not in frame.columns]
    if missing:
        raise _error(
            path,
            stage,
            f"no column {printable(missing[0], 40)!s} (it has "
            f"{printable(', '.join(map(str, frame.columns)), 100)})",
        )
    if frame.empty:
        raise _error(path, stage, "a header without rows")
    for c in numbers:
        column = frame[c]
        if not pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column):
            bad = next((v for v in column if not _parses_as_number(v)), column.iloc[0])
            raise _error(path, stage, f"column {c} holds {printable(repr(bad), 40)}, not a number")
        if not np.isfinite(column.to_numpy(dtype=float)).all():
            row = int(np.flatnonzero(~np.isfinite(column.to_numpy(dtype=float)))[0])
            raise _error(path, stage, f"column {c} is empty, NaN or infinite in row {row + 1}")
    for c in texts:
        if frame[c].isna().any():
            row = int(frame[c].isna().to_numpy().argmax())
            raise _error(path, stage, f"column {c} has an empty cell in row {row + 1}")
    return frame


def _parses_as_number(v: Any) -> bool:
    try:
        float(v)
        return not isinstance(v, bool)
    except (TypeError, ValueError):
        return False


# ---- the files, by kind


def stats(path: Path, for_report: bool = False) -> dict:
    """metrics/stats.json (the stats stage): mean and std per channel, the std above 0; for the
    report also the class names and counts it quotes."""
    return read_json(path, STATS_REPORT if for_report else STATS, "stats", check=_stats_values)


def load_tensors(data: Path, stats_path: Path, device):
    """birdplane.data.load_tensors, with metrics/stats.json checked first: its mean and std
    normalize every image, and a std of 0 otherwise shows up only as a NaN loss. (The check is
    here, not in birdplane.data, a dependency of every stage: the download and stats stages'
    code stays as it was.)"""
    from birdplane import data as prepared

    return prepared.load_tensors(data, stats(stats_path), device)


def train_metrics(path: Path, variant: str) -> dict:
    return read_json(path, TRAIN_METRICS, f"train@{variant}")


def eval_metrics(path: Path) -> dict:
    return read_json(path, EVAL_METRICS, "evaluate")


def shift_metrics(path: Path) -> dict:
    return read_json(path, SHIFT_METRICS, "shift-test", check=_shift_rings)


def train_log(path: Path, variant: str) -> dict:
    return read_json(path, TRAIN_LOG, f"train@{variant}")


def download_log(path: Path) -> dict:
    return read_json(path, DOWNLOAD_LOG, "download")


def sweep(path: Path) -> dict:
    return read_json(path, SWEEP, "sweep")


CURVE = ("epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy")


def history(path: Path, variant: str):
    """plots/train/<v>.csv: the mean curve over the seeds."""
    return read_csv(path, CURVE, f"train@{variant}")


def seed_history(path: Path, variant: str):
    """plots/train/seeds/<v>.csv: every seed's curve."""
    return read_csv(path, ("seed", *CURVE), f"train@{variant}")


def shift_grid(path: Path):
    """plots/shift/grid/<v>.csv: accuracy per (dx, dy)."""
    return read_csv(path, ("dx", "dy", "accuracy"), "shift-test", texts=("mode",))


def sweep_curves(path: Path):
    """plots/sweep/curves.csv: every epoch of every seed of every configuration."""
    return read_csv(path, ("seed", *CURVE), "sweep", texts=("config",))
