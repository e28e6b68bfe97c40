"""The thin layer every stage script shares: argument parsing and error reporting."""
from __future__ import annotations

import argparse
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


def run_stage(name: str, main: Callable[[], None]) -> None:
    """Run a stage; a BirdplaneError ends it with its message and exit status 1, no traceback."""
    try:
        main()
    except BirdplaneError as e:
        print(f"error in stage {name}: {e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print(f"stage {name} interrupted; no outputs were written", file=sys.stderr)
        sys.exit(130)
