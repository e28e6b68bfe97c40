"""The reproduction check: do the committed results come out of this code again?

    python -m birdplane.reproduce --rerun                      # re-run every stage, then compare
    python -m birdplane.reproduce                              # compare the working copy as it is
    python -m birdplane.reproduce --rerun --mode statistical   # CUDA, Apple Silicon, BIRDPLANE_NUMERICS=fast

1. Definitions first: dvc.yaml and params.yaml must be the committed ones, and so must everything in
   dvc.lock that defines a stage (its command, its params, the hashes of the code and data it reads
   that no stage writes). What a run rewrites (the outputs' hashes, logs/ with its wall times and URL)
   may differ: `make pipeline` then `make reproduce-check` works in a fresh clone.
2. With --rerun every stage runs again (`download` from DVC's cache when it has the archive).
3. The comparison, in one of two modes (`auto`, the default, picks exact where it can):
   - exact: with pinned numerics (birdplane.numerics) on x86-64 the same params give the same bits.
     Every number of every committed metrics file, every committed plot file and every model
     file's and checkpoint's md5 (against the committed dvc.lock) must be equal. Refused, with the reason, where the
     committed results or this machine are not pinned.
   - statistical: another platform follows another float trajectory, which is like another seed.
     A number that has a measured seed spread s (a {mean, std, n, values} record, or the variant's
     `seeds` in metrics/train) may move by K_SPREADS * s * sqrt(2) (one run's value: the difference
     of two draws) or K_SPREADS * s * sqrt(2 / n) (a mean over n seeds). Counts, parameter counts and
     recipes must be equal. Every other number is listed as not comparable, with the reason; nothing
     is skipped silently. docs/reproducing.md has the measurement behind K_SPREADS.
4. Exit status 0: all reproduce; 1: a table names what differs; 2: the check was refused; 3: the
   re-run failed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import re
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

# Statistical mode: how many seed spreads a number may move. Measured (docs/reproducing.md): the
# results of the same params made with MKL's AVX-512 kernels on an Intel Xeon (tests/data/unpinned)
# against the pinned ones moved by at most 1.42 spreads (of 702 values with a spread; 95 % by less
# than 0.07); 4 leaves room for a spread estimated from 3 seeds, and still fails +3 points on the
# book net's validation accuracy (it detects 2.27 points there).
K_SPREADS = 4.0
# numbers that are counts or settings, equal on every platform
EXACT_KEYS = re.compile(
    r"(^|\.)(n_train|n_val|n_parameters|epochs|support|bytes|max_shift|batch_size|n|seeds\.\d+|"
    r"hidden\.\d+|channels\.\d+|lr|dropout|weight_decay|patience|"
    r"train_per_class\.\w+|val_per_class\.\w+|learning_rates\.\d+|seed)$|(^|\.)recipe\."
)
EXACT, STATISTICAL, AUTO = "exact", "statistical", "auto"


@dataclass(frozen=True)
class Difference:
    file: str
    key: str
    committed: Any
    fresh: Any
    allowed: str


@dataclass
class Comparison:
    differences: list[Difference]
    compared: int = 0
    not_comparable: Counter | None = None  # reason -> count

    def __post_init__(self):
        self.not_comparable = self.not_comparable or Counter()


def flatten(obj: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from flatten(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from flatten(v, f"{prefix}.{i}")
    else:
        yield prefix, obj


def _number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _equal(a: Any, b: Any) -> bool:
    return a == b or (_number(a) and _number(b) and math.isnan(a) and math.isnan(b))


def compare_exact(file: str, committed: Any, fresh: Any) -> Comparison:
    """Every leaf of `committed` equal in `fresh` (a missing key is a difference)."""
    fresh_flat = dict(flatten(fresh))
    result = Comparison([])
    for key, old in flatten(committed):
        result.compared += 1
        new = fresh_flat.get(key, "(missing)")
        if not _equal(old, new):
            result.differences.append(Difference(file, key, old, new, "exact"))
    return result


# ---- statistical mode: spreads measured over seeds


def spread_records(obj: Any, prefix: str = "") -> Iterator[tuple[str, dict]]:
    """Every {mean, std, n, values} record in obj, with its flattened key."""
    if isinstance(obj, dict):
        if {"mean", "std", "n", "values"} <= obj.keys():
            yield prefix, obj
            return
        for k, v in obj.items():
            yield from spread_records(v, f"{prefix}.{k}" if prefix else str(k))


def variant_spreads(train_metrics: dict) -> dict[str, tuple[float, int]]:
    """A variant's per-seed spreads (metrics/train/<v>.json `seeds`): key -> (std, n), with the
    logit-gradient records also under the names their per-seed values have (logit_grad.misclassified)."""
    out = {}
    for key, rec in spread_records(train_metrics.get("seeds") or {}):
        if _number(rec["std"]) and rec["n"] and rec["n"] >= 2:
            out[key] = (float(rec["std"]), int(rec["n"]))
            if key.startswith("logit_grad_"):
                out["logit_grad." + key[len("logit_grad_") :]] = out[key]
    return out


# keys of evaluate and shift-test that are the same quantity as a training metric of the variant
SAME_QUANTITY = {"accuracy_at_0": "val_accuracy", "accuracy_by_shift.0": "val_accuracy"}


def statistical_rule(
    file: str, key: str, committed_files: dict[str, Any]
) -> tuple[str, float | None, str]:
    """('exact' | 'relative' | 'spread' | 'skip', tolerance, reason) for one flattened key of one
    committed file."""
    obj = committed_files[file]
    if re.search(r"(^|\.)logit_grad[^.]*\..*\bn$|(^|\.)logit_grad[^.]*\.n$", key):
        return (
            "skip",
            None,
            "how many seeds had a non-empty set of images (it varies with the trajectory)",
        )
    if EXACT_KEYS.search(key):
        return "exact", 0.0, ""
    if file == "metrics/stats.json":
        return "relative", 1e-9, "float64 sums of integer pixel counts"
    # a record of its own: ...mean / ...values.i / ...std
    for rec_key, rec in spread_records(obj):
        if key.startswith(rec_key + "."):
            rest = key[len(rec_key) + 1 :]
            if not (_number(rec["std"]) and rec["n"] and rec["n"] >= 2):
                return "skip", None, "a spread over fewer than 2 seeds"
            s, n = float(rec["std"]), int(rec["n"])
            if rest == "mean":
                return (
                    "spread",
                    K_SPREADS * s * math.sqrt(2 / n),
                    f"{K_SPREADS:g} x seed spread / sqrt(n/2)",
                )
            if rest.startswith("values."):
                return (
                    "spread",
                    K_SPREADS * s * math.sqrt(2),
                    f"{K_SPREADS:g} x seed spread x sqrt(2)",
                )
            if rest == "std":
                return (
                    "skip",
                    None,
                    "a spread itself (estimated from a few seeds, no tolerance of its own)",
                )
    # a variant's single-run numbers: the spread of the same quantity over its seeds
    m = re.match(r"metrics/(train|eval|shift)/(.+)\.json$", file)
    if m:
        train = committed_files.get(f"metrics/train/{m.group(2)}.json") or {}
        spreads = variant_spreads(train)
        base = re.sub(r"^seeds\.runs\.\d+\.", "", key)
        base = SAME_QUANTITY.get(base, base)
        if base in spreads:
            s, _ = spreads[base]
            return (
                "spread",
                K_SPREADS * s * math.sqrt(2),
                f"{K_SPREADS:g} x the variant's seed spread x sqrt(2)",
            )
        if not spreads:
            return "skip", None, "a variant trained with one seed: no measured spread"
    return "skip", None, "no seed spread measured for this quantity"


def compare_statistical(
    file: str, committed: Any, fresh: Any, committed_files: dict[str, Any]
) -> Comparison:
    fresh_flat = dict(flatten(fresh))
    result = Comparison([])
    for key, old in flatten(committed):
        new = fresh_flat.get(key, "(missing)")
        parents = [key.rsplit(".", i)[0] for i in range(1, key.count(".") + 1)]
        if (
            old is None
            or new is None
            or any(fresh_flat.get(p, 0) is None for p in parents)
            or (new == "(missing)" and any(k.startswith(key + ".") for k in fresh_flat))
        ):
            # e.g. the gradient on confidently wrong images: none of them on one platform, a few on another
            result.not_comparable[
                "present on one side only (a figure over a set that may be empty)"
            ] += 1
            continue
        if not _number(old):
            # names, flags and labels: equal, or the recipe is another one
            result.compared += 1
            if not _equal(old, new):
                result.differences.append(Difference(file, key, old, new, "equal"))
            continue
        kind, tol, reason = statistical_rule(file, key, committed_files)
        if kind == "skip":
            result.not_comparable[reason] += 1
            continue
        result.compared += 1
        if not _number(new):
            result.differences.append(Difference(file, key, old, new, "a number"))
        elif kind == "exact" and not _equal(old, new):
            result.differences.append(Difference(file, key, old, new, "exact"))
        elif kind == "relative" and not math.isclose(old, new, rel_tol=tol):
            result.differences.append(
                Difference(file, key, old, new, f"±{tol:g} relative ({reason})")
            )
        elif kind == "spread" and not abs(new - old) <= tol:
            result.differences.append(Difference(file, key, old, new, f"±{tol:.4g} ({reason})"))
    return result


# ---- what was committed


def _git(*args: str, cwd: Path) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout


def committed_files(root: Path, rev: str, folder: str, suffix: str) -> dict[str, str]:
    files = [
        f
        for f in _git("ls-tree", "-r", "--name-only", rev, "--", folder, cwd=root).splitlines()
        if f.endswith(suffix)
    ]
    return {f: _git("show", f"{rev}:{f}", cwd=root) for f in files}


def committed_metrics(root: Path, rev: str) -> dict[str, Any]:
    return {
        f: json.loads(text) for f, text in committed_files(root, rev, "metrics", ".json").items()
    }


def _lock(text: str | None) -> dict:
    import yaml

    return (yaml.safe_load(text) or {}).get("stages", {}) if text else {}


def _read(path: Path) -> str | None:
    try:
        with path.open(encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        return None


def lock_definitions(stages: dict) -> dict[str, dict]:
    """What in dvc.lock defines each stage: its command, its params, and the hashes of the
    dependencies that no stage writes (code, the archive's source). Outputs and produced
    dependencies are what a run rewrites."""
    produced = {o["path"].rstrip("/") for s in stages.values() for o in s.get("outs", [])}

    def is_produced(path: str) -> bool:
        p = path.rstrip("/")
        return p in produced or any(
            o.startswith(p + "/") or p.startswith(o + "/") for o in produced
        )

    return {
        name: {
            "cmd": s.get("cmd"),
            "params": s.get("params"),
            "deps": {
                d["path"]: d.get("md5") for d in s.get("deps", []) if not is_produced(d["path"])
            },
        }
        for name, s in stages.items()
    }


def definition_problems(root: Path, rev: str) -> list[str]:
    """Changed stage definitions, params or code, against `rev` and against dvc.lock."""
    problems = [
        f"{f} differs from {rev}: the check reproduces committed definitions only"
        for f in _git("diff", "--name-only", rev, "--", "dvc.yaml", "params.yaml", cwd=root).split()
    ]
    try:
        old_text = _git("show", f"{rev}:dvc.lock", cwd=root)
    except subprocess.CalledProcessError:
        old_text = None
    old, new = lock_definitions(_lock(old_text)), lock_definitions(_lock(_read(root / "dvc.lock")))
    for name in sorted(set(old) | set(new)):
        if name not in new or name not in old:
            problems.append(
                f"dvc.lock: stage {name} {'missing' if name not in new else 'not'} in {rev}'s dvc.lock"
            )
            continue
        for part in ("cmd", "params"):
            if old[name][part] != new[name][part]:
                problems.append(f"dvc.lock: {name}'s {part} differs from {rev}")
        for path in sorted(set(old[name]["deps"]) | set(new[name]["deps"])):
            if old[name]["deps"].get(path) != new[name]["deps"].get(path):
                problems.append(f"dvc.lock: {name}'s dependency {path} differs from {rev}")
    status = subprocess.run(["dvc", "status", "--json"], cwd=root, capture_output=True, text=True)
    if status.returncode != 0:
        return problems + [f"dvc status failed: {status.stderr.strip()}"]
    current = _lock(_read(root / "dvc.lock"))
    produced = {o["path"] for s in current.values() for o in s.get("outs", [])}

    def is_output(path: str) -> bool:
        return path in produced or any(o.startswith(path.rstrip("/") + "/") for o in produced)

    for stage, entries in json.loads(status.stdout or "{}").items():
        for entry in entries:
            if not isinstance(entry, dict):  # e.g. "always changed", "changed command"
                problems.append(f"{stage}: {entry}")
                continue
            for path, state in (entry.get("changed deps") or {}).items():
                if isinstance(state, dict):  # a params file: {key: state}
                    problems += [
                        f"{stage}: param {key} {st} since dvc.lock" for key, st in state.items()
                    ]
                elif not is_output(path):
                    problems.append(f"{stage}: dependency {path} {state} since dvc.lock")
    return problems


def provenance_records(root: Path, rev: str) -> dict[str, dict]:
    """The committed stage logs that record how their results were made (versions, machine, numerics)."""
    out = {}
    for f, text in committed_files(root, rev, "logs", ".json").items():
        try:
            log = json.loads(text)
        except ValueError:
            continue
        if isinstance(log, dict) and isinstance(log.get("versions"), dict):
            out[f] = log
    return out


def unpinned_results(logs: dict[str, dict]) -> list[str]:
    """The committed logs that say their results were not made with pinned numerics."""
    modes = {
        f: (log.get("numerics") or {}).get("mode", "not recorded (made before pinned numerics)")
        for f, log in logs.items()
    }
    return [f"{f}: {mode}" for f, mode in modes.items() if mode != "pinned"]


def other_build(logs: dict[str, dict]) -> str | None:
    """Why the kernels here are another build than the committed results', or None: the same
    version of torch compiled for another platform or index computes other bits."""
    import platform
    from importlib import metadata

    from birdplane.provenance import release

    here = {p: release(metadata.version(p)) for p in ("torch", "numpy")}
    system = platform.system()
    for f, log in logs.items():
        made = {p: release(log["versions"].get(p)) for p in here}
        made_system = (
            str((log.get("machine") or {}).get("platform", ""))
            .split("-")[0]
            .replace("macOS", "Darwin")
        )
        if made != here or (made_system and made_system != system):
            return (
                f"the committed results were made with torch {made['torch']}, numpy {made['numpy']} on "
                f"{made_system or 'an unrecorded system'} ({f}); this is torch {here['torch']}, numpy "
                f"{here['numpy']} on {system}, another build of the kernels"
            )
    return None


def exact_refusal(root: Path, rev: str) -> str | None:
    """Why an exact comparison cannot hold here, or None."""
    from birdplane import numerics

    try:
        mode = numerics.requested_mode()
    except numerics.NumericsError as e:
        return str(e)
    if mode == numerics.FAST:
        return f"numerics are not pinned here ({numerics.MODE_VARIABLE}=fast), so the bits cannot match"
    if mode == numerics.NATIVE:
        import platform

        return f"this is a {platform.machine()} machine; only x86-64 computes the committed bits"
    logs = provenance_records(root, rev)
    cuda = [
        f
        for f, log in logs.items()
        if str((log.get("machine") or {}).get("device") or "").startswith("cuda")
    ]
    if cuda:
        return f"the committed results were computed on CUDA ({', '.join(cuda[:3])}), whose bits no CPU gives"
    if _trains_on_cuda(root):
        return "this machine would train on CUDA (train.device is not 'cpu' and a GPU is present)"
    unpinned = unpinned_results(logs)
    if unpinned:
        return (
            f"the committed results were not made with pinned numerics ({'; '.join(unpinned[:3])}"
            f"{' ...' if len(unpinned) > 3 else ''}), so they cannot be reproduced bit for bit"
        )
    return other_build(logs)


def _trains_on_cuda(root: Path) -> bool:
    import yaml

    try:
        with (root / "params.yaml").open(encoding="utf-8") as f:
            device = ((yaml.safe_load(f) or {}).get("train") or {}).get("device", "auto")
    except (OSError, yaml.YAMLError):
        return False
    if device == "cpu":
        return False
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


MODEL_FOLDERS = ("models/", "checkpoints/")


def model_hashes(root: Path, rev: str) -> dict[str, str]:
    """Model files and the training stages' checkpoints (checkpoints/<variant>.pt, the weights
    the sweep reads) and their md5 as the committed dvc.lock records them."""
    try:
        stages = _lock(_git("show", f"{rev}:dvc.lock", cwd=root))
    except subprocess.CalledProcessError:
        return {}
    return {
        o["path"]: o["md5"]
        for s in stages.values()
        for o in s.get("outs", [])
        if o["path"].startswith(MODEL_FOLDERS) and "md5" in o and not o["md5"].endswith(".dir")
    }


def md5(path: Path) -> str | None:
    if not path.is_file():
        return None
    h = hashlib.md5()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def rerun(root: Path) -> int:
    """`download` as usual (from the run-cache when possible), every later stage forced, in order."""
    names = subprocess.run(
        ["dvc", "stage", "list", "--name-only"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    steps = [["dvc", "repro", "download"]] + [
        ["dvc", "repro", "--single-item", "--force", n] for n in names if n != "download"
    ]
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
    return (
        f"reproduction check: the committed results were made from the archive with md5 {old.get('md5')}, "
        f"this run read md5 {new.get('md5')}: different data, so the numbers cannot match. "
        f"Point BIRDPLANE_DATA_URL / BIRDPLANE_DATA_MD5 at the committed source, or re-run the pipeline "
        f"on this data and commit its results."
    )


def _cell(x: Any) -> str:
    return str(x).replace("|", "\\|").replace("\n", " ")[:80]


def markdown_table(diffs: list[Difference], limit: int = 200) -> str:
    lines = ["| file | value | committed | fresh | allowed |", "| --- | --- | ---: | ---: | --- |"]
    lines += [
        f"| {d.file} | `{_cell(d.key)}` | {_cell(d.committed)} | {_cell(d.fresh)} | {_cell(d.allowed)} |"
        for d in diffs[:limit]
    ]
    if len(diffs) > limit:
        lines.append(f"| ... | {len(diffs) - limit} more | | | |")
    return "\n".join(lines)


def compare_all(root: Path, rev: str, mode: str) -> Comparison:
    committed = committed_metrics(root, rev)
    total = Comparison([])
    for file, old in committed.items():
        path = root / file
        if not path.exists():
            total.differences.append(Difference(file, "(file)", "present", "(missing)", "equal"))
            continue
        with path.open(encoding="utf-8") as f:
            fresh = json.load(f)
        part = (
            compare_exact(file, old, fresh)
            if mode == EXACT
            else compare_statistical(file, old, fresh, committed)
        )
        total.differences += part.differences
        total.compared += part.compared
        total.not_comparable.update(part.not_comparable)
    if mode == EXACT:
        for file, text in committed_files(root, rev, "plots", ".csv").items():
            total.compared += 1
            fresh = _read(root / file)
            if fresh != text:
                total.differences.append(
                    Difference(
                        file,
                        "(bytes)",
                        "committed",
                        "(missing)" if fresh is None else "differ",
                        "equal",
                    )
                )
        for file, digest in model_hashes(root, rev).items():
            total.compared += 1
            got = md5(root / file)
            if got != digest:
                total.differences.append(
                    Difference(file, "md5", digest, got or "(missing)", "exact")
                )
    else:
        total.not_comparable[
            "model files, checkpoints and plot files (bits differ on another platform)"
        ] += len(model_hashes(root, rev)) + len(committed_files(root, rev, "plots", ".csv"))
    return total


def detectable(committed: dict[str, Any]) -> list[str]:
    """The smallest change statistical mode detects in each variant's validation accuracy."""
    out = []
    for file in sorted(committed):
        m = re.match(r"metrics/train/(.+)\.json$", file)
        spreads = variant_spreads(committed[file]) if m else {}
        if "val_accuracy" in spreads:
            s, n = spreads["val_accuracy"]
            out.append(
                f"{m.group(1)} {100 * K_SPREADS * s * math.sqrt(2):.2f} points (one seed), "
                f"{100 * K_SPREADS * s * math.sqrt(2 / n):.2f} (mean of {n})"
            )
    return out


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    """The command line: --mode (or the old --tolerance), --rerun, --rev, --summary."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--mode",
        choices=(AUTO, EXACT, STATISTICAL),
        default=AUTO,
        help="exact where pinned numerics allow it (auto, the default), or statistical",
    )
    ap.add_argument(
        "--tolerance", choices=(EXACT, "cross-machine", STATISTICAL), help=argparse.SUPPRESS
    )
    ap.add_argument("--rerun", action="store_true", help="run every stage again first")
    ap.add_argument("--rev", default="HEAD", help="the commit whose results must reproduce")
    ap.add_argument(
        "--summary",
        type=Path,
        default=os.environ.get("GITHUB_STEP_SUMMARY") or None,
        help="append a Markdown summary here (default: $GITHUB_STEP_SUMMARY)",
    )
    return ap.parse_args(argv)


def _append_summary(summary: Path | None, text: str) -> None:
    """Append Markdown to the summary file, if there is one."""
    if summary:
        with Path(summary).open("a", encoding="utf-8") as f:
            f.write(text)


def _refuse(message: str, summary: Path | None) -> int:
    """Say why the check was refused (stderr and summary); exit status 2."""
    print(f"reproduction check refused: {message}", file=sys.stderr)
    _append_summary(summary, f"## reproduction check refused\n\n{message}\n")
    return 2


def _changed_definitions(root: Path, rev: str) -> str | None:
    """List on stderr the stage definitions or params that differ from `rev`; the refusal, or None."""
    problems = definition_problems(root, rev)
    if not problems:
        return None
    print(
        "reproduction check: stage definitions or params are not the committed ones:",
        file=sys.stderr,
    )
    for p in problems:
        print(f"  - {p}", file=sys.stderr)
    return f"{len(problems)} definition(s) differ from {rev}"


def _report_lines(result: Comparison, mode: str, committed: dict) -> list[str]:
    """The result in words: a head line, the table of differences, what was not comparable."""
    diffs = result.differences
    head = (
        f"reproduction check ({mode}): {len(committed)} metrics files, {result.compared} values compared: "
        + (f"{len(diffs)} differ" if diffs else "all reproduce")
    )
    lines = [head]
    if diffs:
        lines.append(markdown_table(diffs))
    if result.not_comparable:
        lines.append(
            "Not comparable in this mode: "
            + "; ".join(
                f"{n} value(s): {reason}" for reason, n in result.not_comparable.most_common()
            )
        )
    if mode == STATISTICAL:
        lines.append(
            f"Detects a validation accuracy moved by more than: {'; '.join(detectable(committed)) or '-'}"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    try:
        return _check(args)
    except FileNotFoundError as e:
        if e.filename not in ("dvc", "git"):
            raise
        return _refuse(
            f"`{e.filename}` is not on PATH: run `make reproduce-check`, or activate the project's "
            "venv first (source .venv/bin/activate)",
            args.summary,
        )


def _check(args: argparse.Namespace) -> int:
    """The check as main() runs it, once the command line is read: its exit status."""
    mode = {"cross-machine": STATISTICAL}.get(args.tolerance, args.tolerance) or args.mode
    root = Path.cwd()
    changed = _changed_definitions(root, args.rev)
    if changed:
        return _refuse(changed, args.summary)
    committed = committed_metrics(root, args.rev)
    if not committed:
        return _refuse(f"no metrics/*.json committed at {args.rev}", args.summary)
    why_not_exact = exact_refusal(root, args.rev)
    if mode == EXACT and why_not_exact:
        return _refuse(f"{why_not_exact}; use --mode statistical", args.summary)
    if mode == AUTO:
        mode = STATISTICAL if why_not_exact else EXACT
        if why_not_exact:
            print(f"reproduction check: statistical mode, since {why_not_exact}", file=sys.stderr)
    if args.rerun and rerun(root) != 0:
        message = (
            "the re-run of the pipeline failed (its output above says where); nothing was compared"
        )
        print(f"reproduction check: {message}", file=sys.stderr)
        _append_summary(args.summary, f"## reproduction check failed\n\n{message}\n")
        return 3
    result = compare_all(root, args.rev, mode)
    data_hint = _data_source_hint(committed, root)
    if data_hint:
        print(data_hint, file=sys.stderr)
    lines = _report_lines(result, mode, committed)
    print("\n".join(lines))
    _append_summary(args.summary, f"## {lines[0]}\n\n" + "\n\n".join(lines[1:]) + "\n")
    return 1 if result.differences else 0


if __name__ == "__main__":
    sys.exit(main())
