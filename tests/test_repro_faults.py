"""What the README's "When things go wrong" says about a failed stage under `dvc repro`, done for
real: DVC deletes the stage's outputs before it runs it, so a failed stage leaves them missing (never
half-written); `dvc checkout` brings back the cached ones and `git checkout` the ones kept in git."""

from __future__ import annotations

import hashlib

import pytest

from cifar_fixture import make_archive
from conftest import dvc, make_project, project_env, run, serve

pytestmark = pytest.mark.e2e


def _md5(path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_a_failed_stage_under_dvc_repro_leaves_its_outputs_missing_and_checkout_restores_them(
    tmp_path,
):
    with serve(tmp_path / "www") as (base, www, _):
        _, md5 = make_archive(www / "cifar-10-python.tar.gz", per_class_train=4, per_class_test=2)
        proj = make_project(tmp_path / "proj")
        env = project_env(f"{base}/cifar-10-python.tar.gz", md5)
        dvc(proj, env, "repro", "download", check=True)
        run(["git", "add", "-A"], proj, env, check=True)
        run(["git", "commit", "-qm", "downloaded"], proj, env, check=True)
        archive, log = proj / "data/raw/cifar-10-python.tar.gz", proj / "logs/download.json"
        committed_log = log.read_bytes()

        failed = dvc(
            proj, project_env(f"{base}/cifar-10-python.tar.gz", "0" * 32), "repro", "-f", "download"
        )
    assert failed.returncode != 0
    [line] = [x for x in failed.stderr.splitlines() if x.startswith("error in stage download:")]
    assert "checksum mismatch" in line and "Traceback" not in failed.stderr
    # DVC removed the outputs before the stage ran; the stage wrote nothing, not even a temp file
    assert not archive.exists() and not log.exists()
    assert not list((proj / "data/raw").glob("*birdplane-tmp"))

    dvc(proj, env, "checkout", "download", check=True)  # the cached output, from .dvc/cache
    run(
        ["git", "checkout", "--", "logs/download.json"], proj, env, check=True
    )  # the one kept in git
    assert _md5(archive) == md5 and log.read_bytes() == committed_log
    assert "changed" not in dvc(proj, env, "status", "download", check=True).stdout
