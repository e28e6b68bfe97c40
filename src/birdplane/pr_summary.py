"""The pull-request view: what a change does to the params and the results, in the job summary.

    python -m birdplane.pr_summary --base origin/main [--verdict check.md] [--artifact reports]

Prints Markdown (the workflow appends it to $GITHUB_STEP_SUMMARY): `dvc params diff` and
`dvc metrics diff` against the base as tables, then the reproduction check's verdict (the summary
that `python -m birdplane.reproduce --summary FILE` wrote), then where the rendered report is. What
CML posts as a comment, without a token that can write: the job summary needs none.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path


def dvc_table(*args: str, cwd: Path) -> str:
    """`dvc <args> --md`, or a line saying why there is no table."""
    try:
        r = subprocess.run(["dvc", *args, "--md"], cwd=cwd, capture_output=True, text=True)
    except FileNotFoundError:
        return f"`dvc {' '.join(args)}` failed: `dvc` is not on PATH (activate the project's venv)"
    if r.returncode != 0:
        lines = (r.stderr.strip() or r.stdout.strip() or f"exit status {r.returncode}").splitlines()
        return f"`dvc {' '.join(args)}` failed: {lines[-1] if lines else ''}"
    return r.stdout.strip() or "No changes."


def render(root: Path, base: str, head: str, verdict: Path | None, artifact: str) -> str:
    # both revisions named: after the check's re-run the working copy holds the fresh results
    parts = [
        f"# What this change does to the results (`{head}` against `{base}`)",
        "## Params",
        dvc_table("params", "diff", base, head, cwd=root),
        "## Metrics (committed in this change against the base)",
        dvc_table("metrics", "diff", base, head, "--precision", "4", cwd=root),
        "## Reproduction",
    ]
    if verdict and verdict.exists():
        with verdict.open(encoding="utf-8") as f:
            parts.append(f.read().strip().replace("\n## ", "\n### ").removeprefix("## ").strip())
    else:
        parts.append("No verdict: the reproduction check did not run or wrote no summary.")
    parts += [
        "## Report",
        f"The rendered report of this run is the workflow artifact `{artifact}` "
        "(reports/report.md and report.html); the committed one is in the change's reports/.",
    ]
    return "\n\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", required=True, help="the git revision the change is compared with")
    ap.add_argument("--head", default="HEAD", help="the revision of the change (default: HEAD)")
    ap.add_argument("--verdict", type=Path, help="the reproduction check's Markdown summary")
    ap.add_argument(
        "--artifact", default="reports", help="the name of the uploaded report artifact"
    )
    args = ap.parse_args(argv)
    sys.stdout.write(render(Path.cwd(), args.base, args.head, args.verdict, args.artifact))
    return 0


if __name__ == "__main__":
    sys.exit(main())
