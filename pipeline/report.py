"""Stage `report`: render the homework report from the earlier stages' outputs only.

Reads params `report.*`, `train.variants` (which variants to show), `shift.summary_shift`,
`sweep.base_width` and, for provenance, the whole params file. Writes reports/report.md (renders
on GitHub), reports/report.html (self-contained) and reports/figures/*.png.
"""

import tempfile
from pathlib import Path

from birdplane.cli import parser
from birdplane.process import run_stage


def main() -> None:
    args = parser(
        __doc__,
        {
            "data": "the prepared images (.npz), for the sample figure",
            "stats": "metrics/stats.json",
            "metrics": "folder: {train,eval,shift}/<variant>.json",
            "plots": "folder: train/<variant>.csv, shift/grid/<variant>.csv",
            "logs": "folder: train/<variant>.json, download.json",
            "out": "the report's folder",
        },
    ).parse_args()

    from birdplane.config import load_params
    from birdplane.data import load_dataset
    from birdplane.io import outputs
    from birdplane.report import build_document, phrases, render
    from birdplane.report.inputs import draw_figures, load_inputs

    params = load_params(args.params)
    inp = load_inputs(params, args.params, args.stats, args.metrics, args.plots, args.logs)
    lang = params.report.lang
    t = phrases(lang)
    with tempfile.TemporaryDirectory() as tmp:
        train, _, classes = load_dataset(args.data)
        made = draw_figures(inp, t, train.images, train.labels, classes, Path(tmp))
        title, blocks = build_document(inp, t, made)
        md, html = render(title, blocks, lang, Path(tmp))
        with outputs() as out:
            for name in made.values():
                out.write_bytes(args.out / "figures" / name, (Path(tmp) / name).read_bytes())
            out.write_text(args.out / "report.md", md)
            out.write_text(args.out / "report.html", html)
    print(
        f"report ({lang}) -> {args.out / 'report.md'}, {args.out / 'report.html'}, {len(made)} figures"
    )


if __name__ == "__main__":
    run_stage("report", main)
