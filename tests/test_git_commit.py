"""The commit a run's provenance names: "-dirty" when the code or the pipeline's definition differ
from it, not when a running `dvc repro` rewrites its own outputs."""

import subprocess

from birdplane.provenance import git_commit


def test_dirty_only_for_code_and_pipeline_changes(tmp_path):
    def git(*args):
        subprocess.run(
            ["git", "-c", "user.email=t@t.invalid", "-c", "user.name=t", *args],
            cwd=tmp_path,
            check=True,
            capture_output=True,
        )

    assert git_commit(tmp_path) is None  # not a repository
    (tmp_path / "src").mkdir()
    (tmp_path / "src/model.py").write_text("a\n")
    (tmp_path / "params.yaml").write_text("seed: 0\n")
    (tmp_path / "dvc.lock").write_text("x\n")
    git("init", "-q")
    git("add", "-A")
    git("commit", "-qm", "init")
    sha = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True
    ).stdout.strip()
    assert git_commit(tmp_path) == sha
    (tmp_path / "dvc.lock").write_text("y\n")  # what dvc repro writes while later stages start
    assert git_commit(tmp_path) == sha
    (tmp_path / "params.yaml").write_text("seed: 1\n")
    assert git_commit(tmp_path) == f"{sha}-dirty"
    (tmp_path / "params.yaml").write_text("seed: 0\n")
    (tmp_path / "src/model.py").write_text("b\n")
    assert git_commit(tmp_path / "src") == f"{sha}-dirty"
