"""The README's results: the report's summary and results tables, rendered from the committed
metrics between two markers, so that no number in the README is typed by hand.

    python -m birdplane.report.readme            # rewrite the block in README.md
    python -m birdplane.report.readme --check    # exit 1 where the block differs from the metrics

`make pipeline` rewrites the block after `dvc repro`; `tests/test_readme.py` runs the check, so
committed metrics with a stale README fail the suite.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

BEGIN = (
    "<!-- results: rendered from metrics/ by `python -m birdplane.report.readme`; do not edit -->"
)
END = "<!-- end of results -->"


def results_block(root: Path) -> str:
    """The summary (the homework's answers) and the results tables of the English report."""
    from birdplane.config import load_params
    from birdplane.report.catalog import phrases
    from birdplane.report.document import Doc, results, summary
    from birdplane.report.findings import analyse
    from birdplane.report.inputs import load_inputs
    from birdplane.report.render import markdown

    params_file = root / "params.yaml"
    inp = load_inputs(
        load_params(params_file),
        params_file,
        root / "metrics/stats.json",
        root / "metrics",
        root / "plots",
        root / "logs",
    )
    t = phrases("en")
    d = Doc(inp, analyse(inp), t, {})
    blocks = [
        b for b in summary(d)[1:] + results(d) if b.kind != "heading"
    ]  # without the report's intro
    for b in (
        blocks
    ):  # the wall time is provenance: a re-run with the same numbers leaves the README as it is
        if b.kind == "table" and b.header == t.texts("results.header"):
            b.header, b.rows = b.header[:-1], [row[:-1] for row in b.rows]
    return f"{BEGIN}\n\n{markdown(blocks).strip()}\n\n{END}"


def updated(readme: str, block: str) -> str:
    """`readme` with the text from BEGIN to END replaced by `block`."""
    start, end = readme.find(BEGIN), readme.find(END)
    if start < 0 or end < start:
        raise ValueError(f"the README has no block from {BEGIN!r} to {END!r}")
    return readme[:start] + block + readme[end + len(END) :]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", type=Path, default=Path("."), help="the project (default: here)")
    ap.add_argument(
        "--check", action="store_true", help="only check; exit 1 if the README is stale"
    )
    args = ap.parse_args(argv)
    path = args.root / "README.md"
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    if BEGIN not in text or END not in text:  # a README of your own: left as it is
        print(f"{path}: no results block ({BEGIN} ... {END}); nothing rendered", file=sys.stderr)
        return 1 if args.check else 0
    new = updated(text, results_block(args.root))
    if args.check:
        if new != text:
            print(
                f"{path}: the results differ from metrics/: run `python -m birdplane.report.readme`",
                file=sys.stderr,
            )
            return 1
        return 0
    if new != text:
        path.write_text(new, encoding="utf-8", newline="\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
