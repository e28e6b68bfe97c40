"""Stage `report`: render the homework report from the earlier stages' outputs only.

Reads params `report.*`, `train.variants` (which variants to show), `sweep.base_width` and, for
provenance, the whole params file; the capacity sweep's metrics/sweep.json when it exists. Writes reports/report.md (renders on GitHub), reports/report.html
(self-contained) and reports/figures/*.png.
"""
import tempfile
from pathlib import Path

from birdplane.cli import parser, run_stage


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--data", type=Path, default=Path("data/prepared/dataset.npz"))
    ap.add_argument("--stats", type=Path, default=Path("metrics/stats.json"))
    ap.add_argument("--metrics", type=Path, default=Path("metrics"), help="metrics/{train,eval,shift}/<variant>.json")
    ap.add_argument("--plots", type=Path, default=Path("plots"), help="plots/train/<variant>.csv, plots/shift/grid/<variant>.csv")
    ap.add_argument("--logs", type=Path, default=Path("logs"), help="logs/train/<variant>.json, logs/download.json")
    ap.add_argument("--out", type=Path, default=Path("reports"))
    args = ap.parse_args()

    from birdplane.config import load_params
    params = load_params(args.params)

    import pandas as pd
    import yaml

    from birdplane.data import load_dataset
    from birdplane.io import outputs, read_json
    from birdplane.report import Inputs, Variant, build_document, figures, render

    def optional_json(path: Path):
        return read_json(path) if path.exists() else None

    variants = {}
    for v in params.train.variants:
        grid = args.plots / "shift" / "grid" / f"{v}.csv"
        variants[v] = Variant(
            name=v, train=read_json(args.metrics / "train" / f"{v}.json"),
            history=pd.read_csv(args.plots / "train" / f"{v}.csv"),
            eval=read_json(args.metrics / "eval" / f"{v}.json"),
            shift=optional_json(args.metrics / "shift" / f"{v}.json"),
            shift_grid=pd.read_csv(grid) if grid.exists() else None,
            log=read_json(args.logs / "train" / f"{v}.json"))
    r = params.report
    with Path(args.params).open(encoding="utf-8") as f:
        raw_params = yaml.safe_load(f)
    inp = Inputs(stats=read_json(args.stats), variants=variants, params=raw_params,
                 roles={"baseline": r.baseline, "mse": r.mse, "small": r.small, "augmented": r.augmented,
                        "cnn": r.cnn},
                 fit_threshold=r.fit_threshold, sweep=optional_json(args.metrics / "sweep.json"),
                 download=optional_json(args.logs / "download.json"))

    with tempfile.TemporaryDirectory() as tmp:
        fig_dir = Path(tmp)
        made = {"accuracy": "accuracy.png", "loss": "loss.png", "confusion": "confusion.png"}
        train, _, classes = load_dataset(args.data)
        figures.samples(train.images, train.labels, classes, fig_dir / "samples.png")
        made["samples"] = "samples.png"
        figures.learning_curves(inp, "accuracy", "accuracy", fig_dir / made["accuracy"])
        figures.learning_curves(inp, "loss", "loss", fig_dir / made["loss"], shared_y=False)
        figures.confusion(inp, fig_dir / made["confusion"])
        if inp.sweep:
            figures.sweep(inp, fig_dir / "sweep.png")
            made["sweep"] = "sweep.png"
        if all(v.shift for v in variants.values()):
            figures.shift_curves(inp, fig_dir / "shift.png")
            figures.shift_grids(inp, fig_dir / "shift_grid.png")
            made.update(shift="shift.png", shift_grid="shift_grid.png")
        title, blocks = build_document(inp, r.lang, made)
        md, html = render(title, blocks, r.lang, fig_dir)
        with outputs() as out:
            for name in made.values():
                out.write_bytes(args.out / "figures" / name, (fig_dir / name).read_bytes())
            out.write_text(args.out / "report.md", md)
            out.write_text(args.out / "report.html", html)
    print(f"report ({r.lang}) -> {args.out / 'report.md'}, {args.out / 'report.html'}, {len(made)} figures")


if __name__ == "__main__":
    run_stage("report", main)
