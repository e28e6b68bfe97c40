"""The reproduction check: do the committed metrics come out again?

    python -m birdplane.reproduce --rerun                         # same machine: bit-identical
    python -m birdplane.reproduce --rerun --tolerance cross-machine

1. The stage definitions and params must be the committed ones, and `dvc.lock` must match them
   (`dvc status` shows no changed code or params; missing data and models are fine).
2. With --rerun, every stage after `download` runs again, forced, in the working copy (the committed
   metrics stay in git). The archive itself is not fetched again when DVC's cache or run-cache
   already has it: its md5 is checked either way.
3. Every number in every committed `metrics/**.json` is compared with the fresh one; the check
   fails with a table of what differs beyond its tolerance.

Why tolerances: on the same machine the same params give bit-identical metrics, so `exact`
allows no difference. On another CPU, float summation order differs (other SIMD widths, thread
splits, BLAS kernels); 100 epochs of SGD amplify the last-bit differences into a different
trajectory, so `cross-machine` allows what the epoch-to-epoch noise of the validation accuracy
allows, and skips what is chaotic by nature (which epoch was best, single confusion-matrix
cells, calibration bins). Model files are never compared across machines.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

# (pattern on the flattened key, absolute tolerance, relative tolerance); first match wins.
# None as tolerance: the key is not compared in this mode.
Rule = tuple[str, float | None, float]
CROSS_MACHINE: list[Rule] = [
    (r"(^|\.)(source\.url)$", None, 0),  # results committed before the URL moved to logs/download.json
    (r"(^|\.)(best_epoch|best_val_accuracy|epochs_trained)(\.|$)", None, 0),  # argmax over a noisy curve
    (r"(^|\.)small_rule\.", None, 0),                        # a pick among noisy means: see the accuracies
    (r"(^|\.)(confusion_matrix|calibration_bins)\.", None, 0),  # per-cell counts: see the accuracies
    (r"(^|\.)(n_train|n_val|n_parameters|epochs|support|bytes|max_shift|batch_size)$", 0, 0),
    (r"(^|\.)(train_per_class|val_per_class)\.", 0, 0),
    (r"(^|\.)(mean|std)\.\d+$", 1e-9, 0),                    # exact integer pixel counts
    (r"(^|\.)recipe\.", 0, 0),
    (r"accuracy|overfit_gap|precision|recall|f1", 0.05, 0),  # 5 percentage points
    (r"(^|\.)val_ece(\.|$)", 0.05, 0),
    # the gradient measure on the misclassified images: which images those are is noisy; a count,
    # or the confidently wrong subset (which may be empty on one machine), is not compared
    (r"(^|\.)(n_misclassified|n_confidently_wrong|confidently_wrong|share_confidently_wrong|"
     r"logit_grad_confidently_wrong)(\.|$)", None, 0),
    (r"logit_grad", 0, 0.5),
    (r"loss|nll", 0, 0.5),                                    # within 50 % of the committed value
    (r".*", 0, 1e-6),
]
EXACT: list[Rule] = [(r".*", 0, 0)]
MODES = {"exact": EXACT, "cross-machine": CROSS_MACHINE}


@dataclass(frozen=True)
class Difference:
    file: str
    key: str
    committed: Any
    fresh: Any
    allowed: str


def flatten(obj: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from flatten(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from flatten(v, f"{prefix}.{i}")
    else:
        yield prefix, obj


def _rule(key: str, rules: list[Rule]) -> tuple[float | None, float]:
    for pattern, abs_tol, rel_tol in rules:
        if re.search(pattern, key):
            return abs_tol, rel_tol
    return 0, 0


def compare(file: str, committed: Any, fresh: Any, rules: list[Rule]) -> list[Difference]:
    """Every leaf of `committed` against `fresh` under `rules`; a missing key is a difference."""
    fresh_flat = dict(flatten(fresh))
    diffs = []
    for key, old in flatten(committed):
        abs_tol, rel_tol = _rule(key, rules)
        if abs_tol is None:
            continue
        new = fresh_flat.get(key, "(missing)")
        if isinstance(old, (int, float)) and not isinstance(old, bool) and isinstance(new, (int, float)):
            if math.isclose(old, new, rel_tol=rel_tol, abs_tol=abs_tol) or old == new:
                continue
            allowed = "exact" if abs_tol == 0 and rel_tol == 0 else (
                f"±{abs_tol:g}" if abs_tol else f"±{rel_tol:.0%} relative")
        elif old == new:
            continue
        else:
            allowed = "equal"
        diffs.append(Difference(file, key, old, new, allowed))
    return diffs


def _git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def committed_metrics(root: Path, rev: str) -> dict[str, Any]:
    files = [f for f in _git("ls-tree", "-r", "--name-only", rev, "--", "metrics", cwd=root).split()
             if f.endswith(".json")]
    return {f: json.loads(_git("show", f"{rev}:{f}", cwd=root)) for f in files}


def _stage_outputs(root: Path) -> set[str]:
    """Every output path recorded in dvc.lock."""
    import yaml

    lock = root / "dvc.lock"
    if not lock.exists():
        return set()
    with lock.open(encoding="utf-8") as f:
        stages = (yaml.safe_load(f) or {}).get("stages", {})
    return {o["path"] for s in stages.values() for o in s.get("outs", [])}


def definition_problems(root: Path, rev: str) -> list[str]:
    """Changed stage definitions, params or code, against `rev` and against dvc.lock.

    Dependencies that are other stages' outputs may be missing or differ (a fresh clone has no
    data or models); changed code, data sources or params are problems.
    """
    problems = []
    changed = _git("diff", "--name-only", rev, "--", "dvc.yaml", "params.yaml", "dvc.lock", cwd=root).split()
    problems += [f"{f} differs from {rev}: the check reproduces committed definitions only" for f in changed]
    status = subprocess.run(["dvc", "status", "--json"], cwd=root, capture_output=True, text=True)
    if status.returncode != 0:
        return problems + [f"dvc status failed: {status.stderr.strip()}"]
    outputs = _stage_outputs(root)

    def is_output(path: str) -> bool:
        return path in outputs or any(o.startswith(path.rstrip("/") + "/") for o in outputs)

    for stage, entries in json.loads(status.stdout or "{}").items():
        for entry in entries:
            if not isinstance(entry, dict):  # e.g. "always changed", "changed command"
                problems.append(f"{stage}: {entry}")
                continue
            for path, state in (entry.get("changed deps") or {}).items():
                if isinstance(state, dict):  # a params file: {key: state}
                    problems += [f"{stage}: param {key} {st} since dvc.lock" for key, st in state.items()]
                elif not is_output(path):
                    problems.append(f"{stage}: dependency {path} {state} since dvc.lock")
    return problems


def rerun(root: Path) -> int:
    """`download` as usual (from the run-cache when possible), every later stage forced, in order."""
    names = subprocess.run(["dvc", "stage", "list", "--name-only"], cwd=root, capture_output=True, text=True,
                           check=True).stdout.split()
    steps = [["dvc", "repro", "download"]] + [["dvc", "repro", "--single-item", "--force", n]
                                                for n in names if n != "download"]
    for cmd in steps:
        r = subprocess.run(cmd, cwd=root)
        if r.returncode != 0:
            print(f"reproduction check: `{' '.join(cmd)}` failed", file=sys.stderr)
            return r.returncode
    return 0


def _data_source_hint(committed: dict[str, Any], root: Path) -> str | None:
    """Say so plainly when the fresh run read another archive than the committed results: the md5
    is in metrics/stats.json, the URL it came from in the download stage's log."""
    old = committed.get("metrics/stats.json", {}).get("source", {})
    path = root / "metrics/stats.json"
    if not old or not path.exists():
        return None
    with path.open(encoding="utf-8") as f:
        new = json.load(f).get("source", {})
    if old.get("md5") == new.get("md5"):
        return None
    log = root / "logs/download.json"
    url = ""
    if log.exists():
        with log.open(encoding="utf-8") as f:
            url = f" from {json.load(f).get('url')}"
    return (f"reproduction check: the committed results were made from the archive with md5 {old.get('md5')}, "
            f"this run read md5 {new.get('md5')}{url}: different data, so the numbers cannot match. "
            f"Point BIRDPLANE_DATA_URL / BIRDPLANE_DATA_MD5 at the committed source, or re-run the pipeline "
            f"on this data and commit its results.")


def markdown_table(diffs: list[Difference]) -> str:
    lines = ["| file | metric | committed | fresh | allowed |", "| --- | --- | ---: | ---: | --- |"]
    lines += [f"| {d.file} | `{d.key}` | {d.committed} | {d.fresh} | {d.allowed} |" for d in diffs]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tolerance", choices=sorted(MODES), default="exact")
    ap.add_argument("--rerun", action="store_true", help="run `dvc repro --force` first")
    ap.add_argument("--rev", default="HEAD", help="the commit whose metrics must reproduce")
    ap.add_argument("--summary", type=Path, default=os.environ.get("GITHUB_STEP_SUMMARY"),
                    help="append a Markdown summary here (default: $GITHUB_STEP_SUMMARY)")
    args = ap.parse_args(argv)
    root = Path.cwd()

    problems = definition_problems(root, args.rev)
    if problems:
        print("reproduction check: stage definitions or params are not the committed ones:", file=sys.stderr)
        for p in problems:
            print(f"  - {p}", file=sys.stderr)
        return 2
    committed = committed_metrics(root, args.rev)
    if not committed:
        print(f"reproduction check: no metrics/*.json committed at {args.rev}", file=sys.stderr)
        return 2
    if args.rerun:
        rc = rerun(root)
        if rc != 0:
            return rc
    rules = MODES[args.tolerance]
    diffs, compared = [], 0
    for file, old in committed.items():
        path = root / file
        if not path.exists():
            diffs.append(Difference(file, "(file)", "present", "(missing)", "equal"))
            continue
        with path.open(encoding="utf-8") as f:
            fresh = json.load(f)
        compared += sum(1 for _ in flatten(old))
        diffs += compare(file, old, fresh, rules)

    ok = not diffs
    data_hint = _data_source_hint(committed, root)
    if data_hint:
        print(data_hint, file=sys.stderr)
    head = (f"reproduction check ({args.tolerance}): {len(committed)} metrics files, {compared} values: "
            + ("all reproduce" if ok else f"{len(diffs)} differ"))
    print(head)
    if not ok:
        print(markdown_table(diffs))
    if args.summary:
        with Path(args.summary).open("a", encoding="utf-8") as f:
            f.write(f"## {head}\n\n" + (markdown_table(diffs) + "\n" if diffs else ""))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
