"""MLflow faults at the level of one stage process (tests/tracking_stage.py, a stage in miniature
with the real run_stage and birdplane.tracking): a signal landing inside a store write, secrets in
the tracking URI, a tracking server's hostile error bodies, a store or artifact folder that cannot
be written, a deleted experiment. Real processes, a real SQLite store, real HTTP servers on
127.0.0.1."""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import shlex
import shutil
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import BIN, project_env

STAGE = Path(__file__).with_name("tracking_stage.py")
SRC = Path(__file__).resolve().parents[1] / "src"


def stage_env(**extra: str) -> dict[str, str]:
    env = project_env("", "", PYTHONPATH=str(SRC))
    env.pop("BIRDPLANE_DATA_URL"), env.pop("BIRDPLANE_DATA_MD5")
    return {**env, **extra}


def run_stage(
    proj: Path, epochs: int = 3, timeout: float = 120, **extra: str
) -> tuple[subprocess.CompletedProcess, float]:
    t0 = time.monotonic()
    r = subprocess.run(
        [str(BIN / "python"), str(STAGE), str(epochs)],
        cwd=proj,
        env=stage_env(**extra),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return r, time.monotonic() - t0


def one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


def runs(proj: Path) -> list[tuple[str, str]]:
    """(name, status) of every run in the project's SQLite store, read with sqlite3 itself."""
    with sqlite3.connect(proj / "mlflow.db") as db:
        return db.execute("select name, status from runs order by start_time").fetchall()


def logged_steps(proj: Path, key: str = "loss") -> list[int]:
    with sqlite3.connect(proj / "mlflow.db") as db:
        return [
            step
            for (step,) in db.execute(
                "select step from metrics where key = ? order by step", (key,)
            )
        ]


def temp_files(proj: Path) -> list[str]:
    return [str(p.relative_to(proj)) for p in proj.rglob("*") if p.name.endswith(".birdplane-tmp")]


# ---------------------------------------------------------------- signals inside a store write


@pytest.mark.parametrize("name, status", [("SIGTERM", 143), ("SIGINT", 130)])
def test_a_signal_inside_a_store_write_ends_the_stage_cleanly_after_the_write(
    tmp_path, name, status
):
    """The signal arrives in the middle of epoch 1's metric write (after the transaction began):
    the write completes, then the stage ends in one line within 5 s, the run KILLED, nothing left."""
    r, _ = run_stage(
        tmp_path, epochs=50, BIRDPLANE_TEST_SIGNAL_IN_SQL=f"INSERT INTO metrics:{name}"
    )
    assert f"signal {name} inside" in r.stdout, r.stdout + r.stderr
    assert r.returncode == status, r.stderr
    assert one_line(r.stderr) == f"stage train interrupted ({name}); no outputs were written"
    assert _seconds_after_signal(r) < 5
    assert "epoch 1\n" not in r.stdout and "finished" not in r.stdout
    assert runs(tmp_path) == [("tiny", "KILLED")]
    # the write the signal landed in was completed, not cut off half way
    assert logged_steps(tmp_path) == [1]
    assert temp_files(tmp_path) == [] and not (tmp_path / "out" / "result.txt").exists()


def test_a_write_that_holds_a_signal_back_too_long_is_given_up(tmp_path):
    """A store write still going seconds after the signal (a hanging server, a slow disk) does not
    hold the stage: it ends in one line within 5 s of the signal."""
    r, _ = run_stage(
        tmp_path,
        epochs=50,
        BIRDPLANE_TEST_SIGNAL_IN_SQL="INSERT INTO metrics:SIGTERM",
        BIRDPLANE_TEST_WRITE_S="60",
    )
    assert r.returncode == 143, r.stderr
    assert one_line(r.stderr) == "stage train interrupted (SIGTERM); no outputs were written"
    assert _seconds_after_signal(r) < 5
    assert temp_files(tmp_path) == [] and not (tmp_path / "out" / "result.txt").exists()


def _seconds_after_signal(r: subprocess.CompletedProcess) -> float:
    """How long the stage took from the signal to its exit, from the timestamps the hook printed."""
    stamp = [line for line in r.stdout.splitlines() if line.startswith("signal ")]
    assert stamp, r.stdout + r.stderr
    return time.time() - float(stamp[0].rsplit(" at ", 1)[1])


# ---------------------------------------------------------------- a tracking server's answers

PASSWORD = "s3cret-Pa55"
HOSTILE = "\x1b[2J\x1b]0;pwned title\x07\x00\xff\x1b[31mred"


class _Answer(http.server.BaseHTTPRequestHandler):
    """Answers every request with the server's `answer`: (status, body bytes, content type)."""

    def log_message(self, *args):
        pass

    def _reply(self):
        status, body, kind = self.server.answer
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _reply


@contextlib.contextmanager
def answering(status: int, body: bytes, kind: str = "text/plain"):
    """A tracking server on 127.0.0.1 that answers everything with `status` and `body`; yields its
    URI with a user and password in it."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Answer)
    server.answer = (status, body, kind)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://alice:{PASSWORD}@127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def run_against(proj: Path, uri: str) -> tuple[int, bytes, bytes]:
    r = subprocess.run(
        [str(BIN / "python"), str(STAGE), "2"],
        cwd=proj,
        capture_output=True,
        timeout=120,
        env=stage_env(MLFLOW_TRACKING_URI=uri),
    )
    return r.returncode, r.stdout, r.stderr


def assert_safe(stdout: bytes, stderr: bytes) -> str:
    """Nothing raw from the server and no password reached the terminal; returns the one line."""
    for raw in (b"\x1b", b"\x00", b"\xff", b"\x07", PASSWORD.encode()):
        assert raw not in stdout + stderr, (raw, stderr)
    return one_line(stderr.decode())


@pytest.mark.parametrize(
    "status, body, kind, advice",
    [
        (
            400,
            HOSTILE.encode("latin-1"),
            "text/plain",
            "the tracking server refused the request (HTTP 400)",
        ),
        (
            401,
            HOSTILE.encode("utf-8"),
            "text/html",
            "the tracking server refused the credentials (HTTP 401)",
        ),
        (
            403,
            json.dumps({"error_code": "PERMISSION_DENIED", "message": HOSTILE}).encode(),
            "application/json",
            "the tracking server refused the credentials (HTTP 403)",
        ),
        (500, HOSTILE.encode("latin-1"), "text/plain", "the tracking server failed (HTTP 500)"),
        (
            200,
            HOSTILE.encode("utf-8"),
            "text/plain",
            "answers, but not as an MLflow tracking server does",
        ),
    ],
)
def test_a_tracking_servers_error_ends_in_one_safe_line_with_advice_that_fits(
    tmp_path, status, body, kind, advice
):
    with answering(status, body, kind) as uri:
        rc, out, err = run_against(tmp_path, uri)
    assert rc == 1
    line = assert_safe(out, err)
    shown = uri.replace(f"alice:{PASSWORD}", "***")
    assert line.startswith(f"error in stage train: cannot use the MLflow tracking store {shown}")
    assert advice in line, line
    assert "start the server" not in line and b"epoch" not in out


def test_a_tracking_server_that_is_down_gets_advice_to_start_it_without_the_password(tmp_path):
    with answering(200, b"") as uri:
        pass  # the port is closed again
    rc, out, err = run_against(tmp_path, uri)
    assert rc == 1
    line = assert_safe(out, err)
    assert "start the server" in line and "refused" not in line


@pytest.mark.parametrize(
    "message, advice",
    [
        ("(sqlite3.OperationalError) database is locked", "another process held the store's lock"),
        ("(sqlite3.OperationalError) database or disk is full", "the disk is full"),
        (
            "(sqlite3.OperationalError) attempt to write a readonly database",
            "the store cannot be written",
        ),
    ],
)
def test_a_sqlite_store_failure_gets_advice_that_fits(message, advice):
    from mlflow.exceptions import MlflowException

    from birdplane import tracking

    line = str(tracking._store_failure("sqlite:////somewhere/mlflow.db", MlflowException(message)))
    assert advice in line and "check that the path is writable" not in line, line


def test_a_deleted_experiment_is_named_with_the_command_that_restores_it(tmp_path):
    r, _ = run_stage(tmp_path, epochs=1)
    assert r.returncode == 0, r.stderr
    with sqlite3.connect(tmp_path / "mlflow.db") as db:  # what `mlflow experiments delete` does
        db.execute("update experiments set lifecycle_stage = 'deleted' where name = 'birdplane'")
    r, _ = run_stage(tmp_path, epochs=1)
    assert r.returncode == 1
    line = one_line(r.stderr)
    assert "the MLflow experiment 'birdplane' is deleted: restore it with `" in line, line
    assert "disk not full" not in line and "epoch" not in r.stdout
    command = line.split("`")[1]
    assigned, program = command.split(" ", 1)
    var, value = assigned.split("=", 1)
    restore = subprocess.run(
        shlex.split(program),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env=stage_env(**{var: value, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}),
    )
    assert restore.returncode == 0, restore.stderr
    r, _ = run_stage(tmp_path, epochs=1)
    assert r.returncode == 0 and "finished" in r.stdout, r.stderr


# ---------------------------------------------------------------- a store that cannot be written

AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


@contextlib.contextmanager
def read_only(folder: Path):
    """`folder` (with what is in it) read-only for this process: a read-only mount for root, whom
    permissions do not stop (skipped where it cannot mount), else chmod."""
    if not AS_ROOT:
        modes = {p: p.stat().st_mode for p in [folder, *folder.rglob("*")]}
        for p in modes:
            p.chmod(0o555 if p.is_dir() else 0o444)
        try:
            yield
        finally:
            for p, mode in modes.items():
                p.chmod(mode)
        return
    copy = folder.with_name(folder.name + ".copy")
    shutil.copytree(folder, copy, symlinks=True)
    shutil.rmtree(folder)
    folder.mkdir()
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        pytest.skip(
            f"root ignores permissions and cannot mount a read-only tmpfs here: {r.stderr.strip()}"
        )
    try:
        shutil.copytree(copy, folder, symlinks=True, dirs_exist_ok=True)
        subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
        yield
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)
        shutil.rmtree(folder)
        copy.rename(folder)


def assert_found_before_work(r: subprocess.CompletedProcess, what: str) -> None:
    assert r.returncode == 1, r.stdout + r.stderr
    line = one_line(r.stderr)  # no MLflow ERROR log, no traceback
    assert line.startswith(f"error in stage train: cannot write the MLflow {what} "), line
    assert "make it" in line and "writable" in line
    assert "epoch" not in r.stdout  # found before the training


def test_a_read_only_artifact_folder_is_found_before_training(tmp_path):
    proj = tmp_path / "proj"
    proj.mkdir()
    r, _ = run_stage(proj, epochs=1)
    assert r.returncode == 0, r.stderr
    with read_only(proj / "mlartifacts"):
        r, _ = run_stage(proj, epochs=1)
    assert_found_before_work(r, f"artifact store {proj / 'mlartifacts'}")
    assert runs(proj) == [("tiny", "FINISHED")]  # no run opened


def test_a_read_only_tracking_database_is_found_before_training(tmp_path):
    proj = tmp_path / "proj"
    proj.mkdir()
    r, _ = run_stage(proj, epochs=1)
    assert r.returncode == 0, r.stderr
    with read_only(proj):
        r, _ = run_stage(proj, epochs=1)
    assert_found_before_work(r, f"tracking store {proj / 'mlflow.db'}")
    assert runs(proj) == [("tiny", "FINISHED")]


# ---------------------------------------------------------------- the tracking URI's secrets


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def mlflow_server(folder: Path):
    """A real `mlflow server` on 127.0.0.1 (it ignores the credentials); yields (port, its database)."""
    import urllib.request

    folder.mkdir()
    port, db = free_port(), folder / "server.db"
    log = (folder / "server.log").open("w")
    proc = subprocess.Popen(
        [
            str(BIN / "mlflow"),
            "server",
            "--backend-store-uri",
            f"sqlite:///{db}",
            "--artifacts-destination",
            str(folder / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        cwd=folder,
        stdout=log,
        stderr=log,
    )
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                    break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, (
                    folder / "server.log"
                ).read_text()
                time.sleep(0.5)
        yield port, db
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.mark.e2e
def test_the_tracking_uris_password_is_never_printed_nor_logged(tmp_path):
    """MLflow prints "View run <name> at: <tracking URI>/#/experiments/..." when a run of an HTTP
    store ends; with `user:password@` in the URI nothing of it may reach the terminal or the runs."""
    with mlflow_server(tmp_path / "server") as (port, db):
        uri = f"http://alice:{PASSWORD}@127.0.0.1:{port}"
        rc, out, err = run_against(tmp_path, uri)
        assert rc == 0 and b"finished" in out, err
        assert PASSWORD.encode() not in out + err and b"alice" not in out + err
        with sqlite3.connect(db) as store:
            values = [
                v
                for (v,) in store.execute(
                    "select value from tags union all select value from params"
                )
            ]
        assert values and not [v for v in values if PASSWORD in v or "alice:" in v]


# ---------------------------------------------------------------- the real training stage


@pytest.mark.e2e
@pytest.mark.parametrize("statement", ["INSERT INTO logged_models", "INSERT INTO latest_metrics"])
def test_sigterm_inside_the_training_stages_store_write_ends_it_cleanly(
    tmp_path, tiny_archive, statement
):
    """The real train stage, the signal landing inside MLflow's write while the model is logged
    (its logged-model entry) or an epoch's metrics are: one line within 5 s, 143, the run KILLED,
    no output, no temporary file, no partial model in the artifact store."""
    from conftest import dvc, make_project, stage_args
    from test_faults import (
        keep_variants,
        outputs_of,
        temp_files as project_temp_files,
        variant_runs,
    )

    url, md5, _ = tiny_archive
    proj = make_project(tmp_path / "proj", keep_variants)
    env = project_env(url, md5)
    dvc(proj, env, "repro", "stats", check=True)
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(  # runs at the stage's start-up, before its own code
        f"import sys\nsys.path.insert(0, {str(STAGE.parent)!r})\n"
        "from tracking_stage import signal_inside_the_store\nsignal_inside_the_store([True])\n"
    )
    env = {
        **env,
        "PYTHONPATH": os.pathsep.join([str(hook), env.get("PYTHONPATH", "")]),
        "BIRDPLANE_TEST_SIGNAL_IN_SQL": f"{statement}:SIGTERM",
    }
    r = subprocess.run(
        [str(BIN / "python"), "pipeline/train.py", *stage_args("train.py", "small")],
        cwd=proj,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert "signal SIGTERM inside" in r.stdout, r.stdout + r.stderr
    assert r.returncode == 143, r.stderr
    assert one_line(r.stderr) == "stage train interrupted (SIGTERM); no outputs were written"
    assert _seconds_after_signal(r) < 5
    assert outputs_of(proj) == [] and project_temp_files(proj) == []
    assert variant_runs(proj) == [("small", "KILLED")]
    assert [
        p.name for p in (proj / "mlartifacts").rglob("*") if p.is_file()
    ] == []  # no partial model
    if "metrics" in statement:  # the write the signal landed in was completed, not cut off half way
        with sqlite3.connect(proj / "mlflow.db") as db:
            assert db.execute("select count(*) from metrics where step = 1").fetchone()[0] > 0
