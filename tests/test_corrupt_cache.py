"""Corrupt cached data (issue 16, point 6), with real DVC in a temporary git repo.

DVC does not check its cache: a damaged object is checked out as it is, `dvc status` sees nothing,
and `dvc repro -f` re-creates the file, finds an object of that hash in the cache and puts the
damaged copy back. The error names the file and the commands that do recover (delete the file and
its cache object, then re-run the stage that writes it); these tests run those commands.
"""

import hashlib
import re
import sqlite3
import subprocess

import pytest
import yaml

from birdplane.data import DatasetError, load_dataset
from cifar_fixture import make_archive
from conftest import dvc, make_project, project_env, stage

pytestmark = pytest.mark.e2e

DATASET = "data/prepared/dataset.npz"
ARCHIVE = "data/raw/cifar-10-python.tar.gz"


def md5(path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def locked_md5(proj, path: str) -> str:
    lock = yaml.safe_load((proj / "dvc.lock").read_text())
    return next(
        o["md5"] for s in lock["stages"].values() for o in s.get("outs", ()) if o["path"] == path
    )


def corrupt_cache_and_check_out(proj, env, path: str) -> None:
    """Flip one byte of the file's cache object, then check the file out as after a `git checkout`."""
    h = locked_md5(proj, path)
    obj = proj / ".dvc/cache/files/md5" / h[:2] / h[2:]
    data = bytearray(obj.read_bytes())
    data[len(data) // 2] ^= 0xFF
    obj.chmod(0o644)
    obj.write_bytes(bytes(data))
    obj.chmod(0o444)
    (proj / path).unlink()
    dvc(proj, env, "checkout", path, check=True)
    assert md5(proj / path) != h  # the damaged copy is in the workspace ...
    assert (
        "up to date" in dvc(proj, env, "status", "download", "stats").stdout
    )  # ... and DVC does not see it


def one_error_line(r: subprocess.CompletedProcess, stage_name: str) -> str:
    assert r.returncode == 1, r.stdout + r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    lines = [line for line in r.stderr.splitlines() if line.startswith("error in stage")]
    assert len(lines) == 1 and lines[0].startswith(f"error in stage {stage_name}: "), r.stderr
    return lines[0]


def runs_left_running(proj) -> list:
    db = proj / "mlflow.db"
    if not db.exists():
        return []
    with sqlite3.connect(db) as c:
        return c.execute("SELECT name FROM runs WHERE status = 'RUNNING'").fetchall()


def recover(proj, env, error: str) -> None:
    """Run the commands the error prints, as a user would paste them."""
    command = re.search(r"run `([^`]+)`", error).group(1)
    r = subprocess.run(
        ["bash", "-c", command], cwd=proj, env=env, capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.fixture
def project(tmp_path):
    src, archive_md5 = make_archive(
        tmp_path / "mirror" / "cifar-10-python.tar.gz", per_class_train=16, per_class_test=8
    )
    proj = make_project(tmp_path / "proj")
    env = project_env(src.as_uri(), archive_md5)
    dvc(proj, env, "repro", "stats", check=True)
    return proj, env


def test_corrupt_dataset_is_one_line_and_recovers(project):
    proj, env = project
    good = locked_md5(proj, DATASET)
    corrupt_cache_and_check_out(proj, env, DATASET)

    # a consumer of the dataset: one line naming the file and the recovery, no traceback
    error = one_error_line(stage(proj, env, "train.py", variant="small"), "train")
    assert f"{DATASET} is corrupt (BadZipFile: Bad CRC-32 for file 'train_images.npy')" in error
    h = good
    assert (
        f'rm -f {DATASET} "$(dvc cache dir)/files/md5/{h[:2]}/{h[2:]}" && dvc repro -f stats'
        in error
    )
    assert not (proj / "models").exists() and runs_left_running(proj) == []

    # the trap the message warns about: re-running the stage alone puts the damaged copy back
    dvc(proj, env, "repro", "-f", "stats", check=True)
    with pytest.raises(DatasetError, match="is corrupt"):
        load_dataset(proj / DATASET)

    recover(proj, env, error)
    assert md5(proj / DATASET) == good
    train, val, classes = load_dataset(proj / DATASET)
    assert classes == ["airplane", "bird"] and len(train.labels) == 32 and len(val.labels) == 16
    assert "Data and pipelines are up to date." in dvc(proj, env, "status", "stats").stdout


def test_corrupt_archive_is_one_line_and_recovers(project):
    """The same for the raw archive: `dvc repro -f download` alone would put the damaged copy back too."""
    proj, env = project
    good = locked_md5(proj, ARCHIVE)
    corrupt_cache_and_check_out(proj, env, ARCHIVE)

    cmd = yaml.safe_load((proj / "dvc.yaml").read_text())["stages"]["stats"][
        "cmd"
    ]  # as DVC runs it
    r = subprocess.run(
        ["bash", "-c", cmd], cwd=proj, env=env, capture_output=True, text=True, timeout=300
    )
    error = one_error_line(r, "stats")
    assert f"{ARCHIVE} is not a readable tar.gz" in error and "truncated or corrupt" in error
    assert f'"$(dvc cache dir)/files/md5/{good[:2]}/{good[2:]}" && dvc repro -f download' in error

    recover(proj, env, error)
    assert md5(proj / ARCHIVE) == good
    assert (
        "Data and pipelines are up to date." in dvc(proj, env, "status", "download", "stats").stdout
    )
