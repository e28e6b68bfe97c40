"""What the report is made from: the earlier stages' outputs, read into findings.Inputs, and the
figures drawn from them."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from birdplane.io import read_json as _json
from birdplane.report.findings import Inputs, Variant


def _optional(path: Path) -> Any:
    return _json(path) if path.exists() else None


def _csv(path: Path):
    import pandas as pd

    return pd.read_csv(path) if path.exists() else None


def load_inputs(params, params_file: Path, stats: Path, metrics: Path, plots: Path, logs: Path) -> Inputs:
    """Every variant's metrics, history (and every seed's), evaluation, shift test and training log;
    the sweep (and its per-epoch curves) and the download's log when they exist; params.yaml as
    written for the provenance section."""
    import pandas as pd
    import yaml

    variants = {}
    for v in params.train.variants:
        variants[v] = Variant(
            name=v, train=_json(metrics / "train" / f"{v}.json"), history=pd.read_csv(plots / "train" / f"{v}.csv"),
            eval=_json(metrics / "eval" / f"{v}.json"), shift=_optional(metrics / "shift" / f"{v}.json"),
            shift_grid=_csv(plots / "shift" / "grid" / f"{v}.csv"), log=_json(logs / "train" / f"{v}.json"),
            seed_history=_csv(plots / "train" / "seeds" / f"{v}.csv"))
    r = params.report
    with params_file.open(encoding="utf-8") as f:
        as_written = yaml.safe_load(f)  # validated already (load_params); shown whole in the report
    return Inputs(stats=_json(stats), variants=variants, params=as_written,
                  roles={"baseline": r.baseline, "mse": r.mse, "small": r.small, "augmented": r.augmented,
                         "cnn": r.cnn},
                  fit_threshold=r.fit_threshold, summary_shift=params.shift.summary_shift,
                  base_width=params.sweep.base_width, sweep=_optional(metrics / "sweep.json"),
                  download=_optional(logs / "download.json"), sweep_curves=_csv(plots / "sweep" / "curves.csv"),
                  book_lr=params.train.lr)


def draw_figures(inp: Inputs, t, images, labels, classes: list[str], folder: Path) -> dict[str, str]:
    """Every figure the document shows, in the language of `t` (a report.catalog.Catalog), as PNGs in
    `folder`; returns figure key -> file name."""
    from birdplane.report import figures
    from birdplane.report.findings import analyse

    found = analyse(inp)
    made = {"accuracy": "accuracy.png", "loss": "loss.png", "confusion": "confusion.png"}
    figures.samples(images, labels, classes, folder / "samples.png")
    made["samples"] = "samples.png"
    figures.learning_curves(inp, t, "accuracy", folder / made["accuracy"])
    figures.learning_curves(inp, t, "loss", folder / made["loss"], shared_y=False)
    figures.confusion(inp, t, folder / made["confusion"])
    if inp.sweep:
        figures.sweep(inp, t, folder / "sweep.png")
        made["sweep"] = "sweep.png"
    if found["lr_study"]:
        figures.lr_study(inp, t, found["lr_study"], folder / "lr_study.png")
        made["lr_study"] = "lr_study.png"
    if found["story"]:
        figures.story(inp, t, found["story"], folder / "story.png")
        made["story"] = "story.png"
    if all(v.shift for v in inp.variants.values()):
        figures.shift_curves(inp, t, folder / "shift.png")
        figures.shift_grids(inp, t, folder / "shift_grid.png")
        made.update(shift="shift.png", shift_grid="shift_grid.png")
    return made
