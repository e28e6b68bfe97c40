"""Credentials in the download URL and in the tracking URI never reach a file that may be committed,
nor the printed output: one whole `dvc repro` of a tiny project with both, then a search for every
secret in what it wrote and printed (issue 23: `grep -r` for the token finds nothing)."""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import BIN, dvc, make_project, project_env, serve
from cifar_fixture import make_archive

pytestmark = pytest.mark.e2e

SECRETS = {
    "download user": "dl-user-7f3a",
    "download password": "dl-pass-9c2e41",
    "download token": "dl-token-5b8d0e",
    "tracking user": "tr-user-2d6f",
    "tracking password": "tr-pass-a1e9c7",
}
# what a run writes that git may commit, or that DVC records
COMMITTABLE = ("logs", "metrics", "plots", "reports", "dvc.lock", "params.yaml", "dvc.yaml")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _mlflow_server(root: Path, env: dict) -> tuple[subprocess.Popen, int]:
    port = _free_port()
    proc = subprocess.Popen(
        [
            str(BIN / "mlflow"),
            "server",
            "--backend-store-uri",
            f"sqlite:///{root}/server.db",
            "--artifacts-destination",
            str(root / "server-artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        cwd=root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(120):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
            return proc, port
        except OSError:
            assert proc.poll() is None, "mlflow server exited"
            time.sleep(0.5)
    proc.terminate()
    raise AssertionError("mlflow server did not start")


def _files(proj: Path):
    for name in COMMITTABLE:
        path = proj / name
        yield from (
            (p for p in path.rglob("*") if p.is_file())
            if path.is_dir()
            else ([path] if path.exists() else [])
        )


def test_no_secret_in_committed_files_or_output_of_a_whole_repro(tmp_path):
    s = SECRETS
    with serve(tmp_path / "www") as (base, www, _):
        _, md5 = make_archive(www / "cifar-10-python.tar.gz", per_class_train=16, per_class_test=8)
        host = base.removeprefix("http://")
        url = (
            f"http://{s['download user']}:{s['download password']}@{host}/cifar-10-python.tar.gz"
            f"?token={s['download token']}"
        )
        proj = make_project(tmp_path / "proj")
        server, port = _mlflow_server(tmp_path, project_env("", ""))
        try:
            env = project_env(
                url,
                md5,
                MLFLOW_TRACKING_URI=(
                    f"http://{s['tracking user']}:{s['tracking password']}@127.0.0.1:{port}"
                ),
            )
            r = dvc(proj, env, "repro")
        finally:
            server.terminate()
            server.wait(timeout=30)
    printed = r.stdout + r.stderr
    assert r.returncode == 0, printed[-3000:]
    assert (
        "View run" not in printed or "***@127.0.0.1" in printed
    )  # MLflow's links, if shown, redacted
    for what, secret in s.items():
        assert secret not in printed, f"the {what} was printed"
        found = [
            str(p.relative_to(proj)) for p in _files(proj) if secret.encode() in p.read_bytes()
        ]
        assert not found, f"the {what} was written to {found}"
    # and the redacted URL is what the log and the report show
    assert (
        f"http://***@{host}/cifar-10-python.tar.gz?***" in (proj / "logs/download.json").read_text()
    )
    assert (
        f"http://***@{host}/cifar-10-python.tar.gz?***" in (proj / "reports/report.md").read_text()
    )
