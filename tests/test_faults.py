"""Faults, as an operator meets them: a tracking server that is down or hangs, SIGTERM and SIGKILL
in the middle of a stage, a full disk. Each ends in one clear line and a clean state, and the next
run just works. Real stage processes on a tiny project, real signals, a real tmpfs."""

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from conftest import BIN, dvc, files_under, make_project, project_env, stage_args

pytestmark = pytest.mark.e2e

LONG_EPOCHS = 400  # seconds of training on the tiny data: time to land a signal after epoch 1


def keep_variants(params):
    """Three small variants and a long one; the report roles that are gone are switched off."""
    v = params["train"]["variants"]
    params["train"]["variants"] = {
        "nll": v["nll"],
        "small": v["small"],
        "long": {"hidden": [8], "activation": "tanh", "loss": "nll", "epochs": LONG_EPOCHS},
    }
    params["report"].update(mse="nll", augmented="", cnn="")


@pytest.fixture
def project(tmp_path, tiny_archive):
    """A tiny project whose data is prepared (download, stats); yields (project, env)."""
    url, md5, _ = tiny_archive
    proj = make_project(tmp_path / "proj", keep_variants)
    env = project_env(url, md5)
    dvc(proj, env, "repro", "stats", check=True)
    return proj, env


def train(proj, env, variant, **popen) -> subprocess.Popen:
    return subprocess.Popen(
        [str(BIN / "python"), "pipeline/train.py", *stage_args("train.py", variant)],
        cwd=proj,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )


def wait_for_line(proc: subprocess.Popen, pattern: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if re.search(pattern, line):
            return
        if not line and proc.poll() is not None:
            raise AssertionError(
                f"stage ended ({proc.returncode}) before {pattern!r}: {proc.stderr.read()}"
            )
    raise AssertionError(f"no {pattern!r} within {timeout} s")


def temp_files(proj: Path) -> list[str]:
    """Temporary files anywhere in the project (outside .git, .dvc and the MLflow store)."""
    found = []
    for p in proj.rglob("*"):
        rel = p.relative_to(proj)
        if rel.parts[0] in (".git", ".dvc") or not p.is_file():
            continue
        if p.name.endswith((".birdplane-tmp", ".tmp", ".part")):
            found.append(str(rel))
    return found


def outputs_of(proj: Path) -> list[str]:
    return [
        f
        for d in ("models", "metrics/train", "plots/train", "logs/train")
        for f in files_under(proj / d)
    ]


@contextlib.contextmanager
def tracking_store(uri: str):
    import mlflow

    mlflow.set_tracking_uri(uri)
    try:
        yield mlflow
    finally:
        mlflow.set_tracking_uri(None)


def runs_of(proj: Path, uri: str | None = None):
    with tracking_store(uri or f"sqlite:///{proj}/mlflow.db") as mlflow:
        return mlflow.search_runs(experiment_names=["birdplane"], output_format="list")


def variant_runs(proj: Path) -> list[tuple[str, str]]:
    """(name, status) of the variants' own runs; the further seeds' child runs (small trains 3 seeds)
    must not be left RUNNING."""
    runs = runs_of(proj)
    assert all(r.info.status != "RUNNING" for r in runs), [
        (r.info.run_name, r.info.status) for r in runs
    ]
    return [
        (r.info.run_name, r.info.status) for r in runs if "mlflow.parentRunId" not in r.data.tags
    ]


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


# ---------------------------------------------------------------- the tracking server


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def silent_server():
    """A server on 127.0.0.1 that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held, stop = [], threading.Event()

    def accept():
        server.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(OSError):
                held.append(server.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        server.close()


def run_against(proj, env, uri, **extra) -> tuple[subprocess.CompletedProcess, float]:
    t0 = time.monotonic()
    r = subprocess.run(
        [str(BIN / "python"), "pipeline/train.py", *stage_args("train.py", "small")],
        cwd=proj,
        capture_output=True,
        text=True,
        env={**env, "MLFLOW_TRACKING_URI": uri, **extra},
        timeout=120,
    )
    return r, time.monotonic() - t0


def test_a_tracking_server_that_is_down_ends_the_stage_at_once(project):
    proj, env = project
    uri = f"http://127.0.0.1:{closed_port()}"
    r, seconds = run_against(proj, env, uri)
    assert r.returncode == 1 and seconds < 30
    line = one_error_line(r.stderr)
    assert line.startswith("error in stage train: cannot use the MLflow tracking store " + uri)
    assert "mlflow server" in line and "unset it" in line
    assert (
        "epoch" not in r.stdout and outputs_of(proj) == []
    )  # no training started, nothing written


def test_a_tracking_server_that_never_answers_ends_the_stage_within_30_s(project):
    proj, env = project
    with silent_server() as uri:
        r, seconds = run_against(proj, env, uri)
        assert r.returncode == 1 and seconds < 30, (seconds, r.stderr)
        assert uri in one_error_line(r.stderr)
        # the user's own MLflow settings win over the stage's defaults
        r, quick = run_against(
            proj, env, uri, MLFLOW_HTTP_REQUEST_TIMEOUT="1", MLFLOW_HTTP_REQUEST_MAX_RETRIES="0"
        )
        assert r.returncode == 1 and quick < seconds - 5, (quick, seconds)
    assert outputs_of(proj) == []


# ---------------------------------------------------------------- signals


def test_sigterm_ends_the_stage_like_ctrl_c(project):
    proj, env = project
    proc = train(proj, env, "long")
    wait_for_line(proc, r"epoch +1/")
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143
    assert one_error_line(err) == "stage train interrupted (SIGTERM); no outputs were written"
    assert outputs_of(proj) == [] and temp_files(proj) == []
    runs = runs_of(proj)
    assert [(r.info.run_name, r.info.status) for r in runs] == [("long", "KILLED")]


def test_after_sigkill_mid_training_the_next_run_closes_the_orphaned_run(project):
    proj, env = project
    proc = train(proj, env, "long")
    wait_for_line(proc, r"epoch +1/")
    proc.kill()
    proc.wait(timeout=30)
    killed = runs_of(proj)
    assert [r.info.status for r in killed] == ["RUNNING"]  # SIGKILL cannot be caught
    r = dvc(proj, env, "repro", "train@small")
    assert r.returncode == 0, r.stdout + r.stderr
    by_id = {run.info.run_id: run for run in runs_of(proj)}
    orphan = by_id[killed[0].info.run_id]
    assert (
        orphan.info.status == "KILLED"
        and "ended without closing this run" in orphan.data.tags["birdplane.closed"]
    )
    assert all(run.info.status != "RUNNING" for run in by_id.values())
    assert temp_files(proj) == []


def test_sigkill_while_writing_outputs_leaves_nothing_behind(project):
    """The kill lands while the outputs are temporary files (the model is being logged to MLflow
    between writing them and renaming them into place); the next `dvc repro` removes them, and
    dvc.lock records exactly the expected files."""
    proj, env = project
    proc = train(proj, env, "small")
    deadline = time.monotonic() + 120
    while not temp_files(proj):
        assert proc.poll() is None and time.monotonic() < deadline, "the stage ended before writing"
        time.sleep(0.005)
    proc.kill()
    proc.wait(timeout=30)
    left = temp_files(proj)
    assert left and all(f.endswith(".birdplane-tmp") for f in left), left
    # DVC never sees them: `models` as evaluate's dependency has exactly one file per variant
    r = dvc(proj, env, "repro", "evaluate")
    assert r.returncode == 0, r.stdout + r.stderr
    assert temp_files(proj) == []
    with (proj / "dvc.lock").open() as f:
        lock = yaml.safe_load(f)["stages"]
    models = next(d for d in lock["evaluate"]["deps"] if d["path"] == "models")
    assert models["nfiles"] == 4 and sorted(files_under(proj / "models")) == [
        ".gitignore",
        "long.pt",
        "nll.pt",
        "small.pt",
    ]
    assert sorted(o["path"] for o in lock["train@small"]["outs"]) == [
        "checkpoints/small.pt",
        "logs/train/small.json",
        "metrics/train/small.json",
        "models/small.pt",
        "plots/train/seeds/small.csv",
        "plots/train/small.csv",
    ]
    assert all(run.info.status != "RUNNING" for run in runs_of(proj))
    status = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all"],
        cwd=proj,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "birdplane-tmp" not in status


# ---------------------------------------------------------------- a full disk


@contextlib.contextmanager
def tmpfs(path: Path, size: str):
    path.mkdir(parents=True)
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        pytest.skip(
            f"cannot mount a small tmpfs here (needs root and CAP_SYS_ADMIN): {r.stderr.strip()}"
        )
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


needs_mount = pytest.mark.skipif(
    not sys.platform.startswith("linux") or os.geteuid() != 0 or not shutil.which("mount"),
    reason="a small tmpfs needs Linux and root",
)


@needs_mount
def test_a_full_disk_for_the_outputs_writes_nothing_and_fails_the_run(project, tmp_path):
    proj, env = project
    with tmpfs(tmp_path / "small-disk", "48k") as disk:  # the 3072-8-2 model file is 99 KB
        assert not (proj / "models").exists()
        (proj / "models").symlink_to(disk, target_is_directory=True)
        r = subprocess.run(
            [str(BIN / "python"), "pipeline/train.py", *stage_args("train.py", "small")],
            cwd=proj,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert r.returncode == 1
        line = one_error_line(r.stderr)
        assert (
            "no space left on the device writing models/small.pt" in line
            and "free some space" in line
        )
        assert list(disk.iterdir()) == []  # no partial model, no temp file
        (proj / "models").unlink()
    assert outputs_of(proj) == [] and temp_files(proj) == []
    assert variant_runs(proj) == [("small", "FAILED")]


@needs_mount
def test_a_full_disk_for_the_artifact_store_leaves_no_partial_model(project, tmp_path):
    proj, env = project
    with tmpfs(tmp_path / "small-disk", "48k") as disk:
        (proj / "mlartifacts").symlink_to(disk, target_is_directory=True)
        r = subprocess.run(
            [str(BIN / "python"), "pipeline/train.py", *stage_args("train.py", "small")],
            cwd=proj,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert r.returncode == 1
        line = one_error_line(r.stderr)
        assert "no space left on the device writing" in line and "mlartifacts" in line, line
        assert [p for p in disk.rglob("*") if p.is_file()] == []  # MLflow's partial copy is gone
    assert outputs_of(proj) == [] and temp_files(proj) == []
    assert variant_runs(proj) == [("small", "FAILED")]
