"""What the project knows of DVC outside dvc.yaml: the exact commands that replace a damaged output,
and where the project's root is from inside a queued experiment's copy.

Operations code (the stages' error lines, the model-file checks) asks here; the ML core raises
birdplane.errors.DamagedFile with a plain fix and knows nothing of DVC.
"""

from __future__ import annotations

import os
from pathlib import Path


def dvc_recovery(path: Path, fallback: str) -> str:
    """How to replace a corrupt DVC-tracked file: delete it AND its cache object, then re-run the
    stage that writes it. DVC does not check its cache: `dvc checkout` copies a damaged object as
    it is, and `dvc repro -f` re-creates the file, finds an object of that hash in the cache and
    puts the damaged copy back. The object's name is the file's md5 in dvc.lock (run from the
    project root, as DVC runs stages); `fallback` where the file is not a DVC output there.
    """
    try:
        import yaml

        rel = Path(os.path.relpath(path)).as_posix()
        with open("dvc.lock", encoding="utf-8") as f:
            lock = yaml.safe_load(f)
        for stage, entry in lock["stages"].items():
            for out in entry.get("outs") or ():
                if (
                    out.get("path") == rel
                    and isinstance(out.get("md5"), str)
                    and len(out["md5"]) == 32
                ):
                    md5 = out["md5"]
                    return (
                        f'run `rm -f {rel} "$(dvc cache dir)/files/md5/{md5[:2]}/{md5[2:]}" && '
                        f"dvc repro -f {stage}` (the DVC cache holds the damaged copy too: "
                        "`dvc repro` alone would put it back)"
                    )
    except Exception:  # a hint must never hide the error it explains
        pass
    return fallback


def project_root(start: Path | None = None) -> Path:
    """The project's root, also from inside a `dvc exp run --queue/--temp` copy.

    DVC runs queued experiments in copies under `<root>/.dvc/tmp/exps/…`; MLflow must still
    write to the one store at the real root.
    """
    here = (start or Path.cwd()).resolve()
    parts = here.parts
    for i in range(len(parts) - 3):
        if parts[i : i + 3] == (".dvc", "tmp", "exps"):
            return Path(*parts[:i])
    return here
