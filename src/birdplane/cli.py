"""The thin layer every stage script shares: argument parsing, error reporting, signals and the
process's memory settings."""
from __future__ import annotations

import argparse
import ctypes
import errno
import signal
import sys
from pathlib import Path
from typing import Callable

from birdplane.errors import BirdplaneError


def parser(doc: str | None) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=(doc or "").strip().split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--params", default="params.yaml", help="the params file")
    return ap


VARIANT_INPUTS = {"model": "models/{variant}.pt", "train-log": "logs/train/{variant}.json"}


def variant_parser(doc: str | None, paths: dict[str, str]) -> argparse.ArgumentParser:
    """The arguments of a per-variant stage: --variant, the prepared data, the stats, and one
    --flag per entry of `paths` (plus the model and the training log) whose default is the
    pattern with {variant} filled in by `parse_variant_args`."""
    ap = parser(doc)
    ap.add_argument("--variant", required=True, help="a key of train.variants")
    ap.add_argument("--data", type=Path, default=Path("data/prepared/dataset.npz"))
    ap.add_argument("--stats", type=Path, default=Path("metrics/stats.json"))
    for flag, pattern in {**VARIANT_INPUTS, **paths}.items():
        ap.add_argument(f"--{flag}", type=Path, help=f"default: {pattern}")
    ap.set_defaults(_patterns={**VARIANT_INPUTS, **paths})
    return ap


def parse_variant_args(ap: argparse.ArgumentParser) -> argparse.Namespace:
    args = ap.parse_args()
    for flag, pattern in args._patterns.items():
        attr = flag.replace("-", "_")
        if getattr(args, attr) is None:
            setattr(args, attr, Path(pattern.format(variant=args.variant)))
    return args


def all_variants_parser(doc: str | None, outputs: dict[str, str]) -> argparse.ArgumentParser:
    """The arguments of a stage over every trained variant (evaluate, shift-test): the prepared
    data, the stats, the folders of the models and training logs, and one --flag per output folder."""
    ap = parser(doc)
    ap.add_argument("--data", type=Path, default=Path("data/prepared/dataset.npz"))
    ap.add_argument("--stats", type=Path, default=Path("metrics/stats.json"))
    ap.add_argument("--models", type=Path, default=Path("models"), help="<variant>.pt files")
    ap.add_argument("--train-logs", type=Path, default=Path("logs/train"), help="<variant>.json files")
    ap.add_argument("--variants", nargs="+", metavar="VARIANT", help="default: every key of train.variants")
    for flag, default in outputs.items():
        ap.add_argument(f"--{flag}", type=Path, default=Path(default))
    return ap


def selected_variants(requested: list[str] | None, configured: dict) -> list[str]:
    """The variants a stage works on: those requested, which must exist, else all configured."""
    from birdplane.config import ConfigError

    unknown = sorted(set(requested or ()) - set(configured))
    if unknown:
        raise ConfigError(f"unknown variant(s) {unknown}; params.yaml train.variants has {sorted(configured)}")
    return list(requested or configured)


# glibc's mallopt parameters (malloc.h)
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
# Below this, freed blocks go back to the heap for reuse: more than a training step's temporaries
# (a 256-row block of images is 3 MB) and glibc's own ceiling for its adaptive threshold.
MMAP_THRESHOLD = 32 << 20
# Free memory the heap keeps at its top instead of shrinking: twice the above, as glibc pairs them.
TRIM_THRESHOLD = 64 << 20


def keep_freed_memory() -> bool:
    """Let freed blocks under 32 MB stay in the process's heap (glibc); returns whether it could.

    PyTorch's CPU allocator hands every temporary straight back to malloc. glibc gives the top of
    its heap back to the kernel once more than its trim threshold is free there, and how often that
    happens depends on the heap's history: in a training stage (after the MLflow store, the data
    and the validation pass) the heap shrank and grew again every block or two, and the block's
    temporaries came back as fresh, zeroed pages: about 20,000 page faults and 0.06-0.09 s of
    kernel time per epoch of the 3072-512-2 net, none in a fresh benchmark process
    (docs/performance.md, "Page faults"). Fixed thresholds end that; setting them also turns off
    glibc's adaptive ones, so both are set. A no-op returning False where there is no mallopt.
    """
    try:
        # Windows: CDLL(None) raises TypeError; macOS and musl: no mallopt (AttributeError) or a
        # stub that returns 0. Any of them: leave the allocator as it is.
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError, TypeError, ValueError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))


class Terminated(KeyboardInterrupt):
    """SIGTERM (or SIGHUP) arrived: handled like Ctrl-C, so every `finally` and `except
    BaseException` on the way out (temporary outputs, the MLflow run) cleans up."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_terminated(signum: int, _frame) -> None:
    # a second signal while cleaning up must not interrupt the clean-up itself
    signal.signal(signum, signal.SIG_IGN)
    raise Terminated(signum)


def handle_termination() -> None:
    """Turn SIGTERM (what `timeout`, `kill`, a CI cancel and a container stop send) and SIGHUP (a
    closed terminal) into Terminated. Where a signal does not exist (SIGHUP on Windows), skip it."""
    for name in ("SIGTERM", "SIGHUP"):
        signum = getattr(signal, name, None)
        if signum is not None:
            signal.signal(signum, _raise_terminated)


def run_stage(name: str, main: Callable[[], None]) -> None:
    """Run a stage; a BirdplaneError ends it with its message and exit status 1, no traceback.

    Ctrl-C and SIGTERM end it with a message and 128 + the signal's number (130, 143); a full disk
    with a message naming the path. In every case the stage's outputs are left as they were."""
    keep_freed_memory()
    handle_termination()
    try:
        main()
    except BirdplaneError as e:
        print(f"error in stage {name}: {e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt as e:
        signum = getattr(e, "signum", signal.SIGINT)
        print(f"stage {name} interrupted ({signal.Signals(signum).name}); no outputs were written", file=sys.stderr)
        sys.exit(128 + signum)
    except OSError as e:
        if e.errno not in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
            raise
        # shutil's copies name the source as filename and the destination as filename2
        target = getattr(e, "filename2", None) or e.filename
        where = f" writing {target}" if target else ""
        print(f"error in stage {name}: no space left on the device{where}; free some space (or move the "
              f"project, its DVC cache or MLflow store elsewhere) and run the stage again. No outputs were "
              f"written", file=sys.stderr)
        sys.exit(1)
