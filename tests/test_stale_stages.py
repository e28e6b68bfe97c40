"""Files are cut along what stages use, so that an edit re-runs only the stages that run the edited
code. Checked with real `dvc status` in a copy of the project: for a few representative files,
which stages does an edit make stale?"""

import hashlib
import json
import subprocess

import pytest
import yaml

from conftest import BIN, ROOT, copy_project

pytestmark = pytest.mark.e2e

TRAIN = {
    f"train@{v}" for v in yaml.safe_load((ROOT / "params.yaml").read_text())["train"]["variants"]
}
EXPECTED = {
    "src/birdplane/shift.py": {"shift-test"},  # the shift test: not the training augmentation
    # the training augmentation: not the shift test (the sweep shares the train/ folder with them)
    "src/birdplane/train/augment.py": TRAIN | {"sweep"},
    "src/birdplane/train/engine.py": TRAIN | {"sweep"},
    "src/birdplane/train/variant.py": TRAIN | {"sweep"},  # the folder: one line in dvc.yaml
    "src/birdplane/sweep.py": {"sweep"},  # the sweep's own logic: not the variants
    "src/birdplane/metrics.py": TRAIN | {"evaluate"},  # calibration: each seed's val_ece
    "src/birdplane/inference.py": TRAIN | {"sweep", "evaluate", "shift-test"},
    "src/birdplane/report/document.py": {"report"},
    "src/birdplane/report/lang/de.toml": {"report"},
    "src/birdplane/process.py": set(),  # signals and the heap: no output changes
    "src/birdplane/cli.py": set(),
    "src/birdplane/tracking.py": set(),
    "pipeline/evaluate.py": {"evaluate"},
}


def code_changes(project) -> set[tuple[str, str]]:
    """(stage, path) for every changed code dependency `dvc status` reports (data and model outputs
    are missing in the copy and ignored here)."""
    r = subprocess.run(
        [str(BIN / "dvc"), "status", "--json"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    found = set()
    for stage, entries in json.loads(r.stdout or "{}").items():
        for entry in entries:
            if isinstance(entry, dict):
                found |= {
                    (stage, p)
                    for p in (entry.get("changed deps") or {})
                    if p.startswith(("src/", "pipeline/"))
                }
    return found


def code_hash(path) -> str:
    """DVC's md5 of a file, or of a folder (the md5 of its sorted {md5, relpath} listing + '.dir')."""
    if path.is_file():
        return hashlib.md5(path.read_bytes()).hexdigest()
    listing = [
        {"md5": hashlib.md5(f.read_bytes()).hexdigest(), "relpath": f.relative_to(path).as_posix()}
        for f in sorted(path.rglob("*"), key=lambda f: f.relative_to(path).as_posix())
        if f.is_file()
    ]
    return hashlib.md5(json.dumps(listing, sort_keys=True).encode()).hexdigest() + ".dir"


def lock_the_code(project) -> None:
    """Record the code as it is in the copy's dvc.lock, as `dvc commit` would (every code dependency
    dvc.yaml lists, with its hash): then the question is only what an edit changes, whether or not
    the committed lock is up to date."""
    lock_file = project / "dvc.lock"
    lock = yaml.safe_load(lock_file.read_text())
    stages = yaml.safe_load((project / "dvc.yaml").read_text())["stages"]
    for name, entry in lock["stages"].items():
        spec = stages[name.split("@")[0]]
        listed = [d if isinstance(d, str) else next(iter(d)) for d in spec.get("do", spec)["deps"]]
        code = [d for d in listed if d.startswith(("src/", "pipeline/"))]
        data = [d for d in entry.get("deps", []) if not d["path"].startswith(("src/", "pipeline/"))]
        entry["deps"] = data + [
            {"path": d, "hash": "md5", "md5": code_hash(project / d)} for d in code
        ]
    lock_file.write_text(yaml.safe_dump(lock, sort_keys=False))


def test_an_edit_stales_only_the_stages_that_run_the_file(tmp_path):
    project = copy_project(
        tmp_path / "copy", ("dvc.yaml", "dvc.lock", "params.yaml", "src", "pipeline", ".dvcignore")
    )
    subprocess.run([str(BIN / "dvc"), "init", "--no-scm", "-q"], cwd=project, check=True)
    lock_the_code(project)
    before = code_changes(project)
    assert not before, before
    # Python's bytecode caches (a student's machine writes them on every import) are not code
    for folder in ("src/birdplane/train/__pycache__", "src/birdplane/report/__pycache__"):
        (project / folder).mkdir(exist_ok=True)
        (project / folder / "engine.cpython-311.pyc").write_bytes(b"bytecode")
    assert not code_changes(project), (
        "a __pycache__ file made stages stale: .dvcignore must list it"
    )
    for path, expected in EXPECTED.items():
        file = project / path
        original = file.read_bytes()
        file.write_bytes(original + b"\n# an edit\n")
        stale = {
            stage
            for stage, p in code_changes(project) - before
            if p == path or path.startswith(p + "/")
        }
        file.write_bytes(original)
        assert stale == expected, (
            f"editing {path} stales {sorted(stale)}, expected {sorted(expected)}"
        )
