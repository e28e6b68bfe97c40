"""Argument parsing shared by the stage scripts. Every path comes from dvc.yaml's `cmd`: the
arguments are required and have no defaults, so each path is written in one place."""

from __future__ import annotations

import argparse
from pathlib import Path


def parser(doc: str | None, paths: dict[str, str]) -> argparse.ArgumentParser:
    """--params (default params.yaml, as DVC reads it) and one required --flag per entry of
    `paths` (flag -> help)."""
    ap = argparse.ArgumentParser(description=(doc or "").strip().split("\n\n")[0])
    ap.add_argument(
        "--params",
        type=Path,
        default=Path("params.yaml"),
        help="the params file (default: params.yaml)",
    )
    for flag, help_text in paths.items():
        ap.add_argument(f"--{flag}", type=Path, required=True, help=help_text)
    return ap


def variants_parser(doc: str | None, paths: dict[str, str]) -> argparse.ArgumentParser:
    """A stage over every trained variant (evaluate, shift-test): `parser` plus --variants."""
    ap = parser(doc, paths)
    ap.add_argument(
        "--variants", nargs="+", metavar="VARIANT", help="default: every key of train.variants"
    )
    return ap


def selected_variants(requested: list[str] | None, configured: dict) -> list[str]:
    """The variants a stage works on: those requested, which must exist, else all configured."""
    from birdplane.config import ConfigError

    unknown = sorted(set(requested or ()) - set(configured))
    if unknown:
        raise ConfigError(
            f"unknown variant(s) {unknown}; params.yaml train.variants has {sorted(configured)}"
        )
    return list(requested or configured)
