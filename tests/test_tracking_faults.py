"""MLflow faults at the level of one stage process (tests/tracking_stage.py, a stage in miniature
with the real run_stage and birdplane.tracking): a signal landing inside a store write, secrets in
the tracking URI, a tracking server's hostile error bodies, a store or artifact folder that cannot
be written, a deleted experiment. Real processes, a real SQLite store, real HTTP servers on
127.0.0.1."""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
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


def run_stage(proj: Path, epochs: int = 3, timeout: float = 120, **extra: str) -> tuple[subprocess.CompletedProcess, float]:
    t0 = time.monotonic()
    r = subprocess.run([str(BIN / "python"), str(STAGE), str(epochs)], cwd=proj, env=stage_env(**extra),
                       capture_output=True, text=True, timeout=timeout)
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
        return [step for (step,) in db.execute("select step from metrics where key = ? order by step", (key,))]


def temp_files(proj: Path) -> list[str]:
    return [str(p.relative_to(proj)) for p in proj.rglob("*") if p.name.endswith(".birdplane-tmp")]


# ---------------------------------------------------------------- signals inside a store write


@pytest.mark.parametrize("name, status", [("SIGTERM", 143), ("SIGINT", 130)])
def test_a_signal_inside_a_store_write_ends_the_stage_cleanly_after_the_write(tmp_path, name, status):
    """The signal arrives in the middle of epoch 1's metric write (after the transaction began):
    the write completes, then the stage ends in one line, the run KILLED, nothing left behind."""
    t0 = time.monotonic()
    r, seconds = run_stage(tmp_path, epochs=50, BIRDPLANE_TEST_SIGNAL_IN_SQL=f"INSERT INTO metrics:{name}")
    assert f"signal {name} inside" in r.stdout, r.stdout + r.stderr
    assert r.returncode == status, r.stderr
    assert one_line(r.stderr) == f"stage train interrupted ({name}); no outputs were written"
    assert "epoch 1\n" not in r.stdout and "finished" not in r.stdout
    assert runs(tmp_path) == [("tiny", "KILLED")]
    # the write the signal landed in was completed, not cut off half way
    assert logged_steps(tmp_path) == [1]
    assert temp_files(tmp_path) == [] and not (tmp_path / "out" / "result.txt").exists()
    assert seconds < 60 and time.monotonic() - t0 < 60  # start-up included; the signal's own part is below


def test_the_stage_ends_within_5_s_of_a_signal_inside_a_store_write(tmp_path):
    run_stage(tmp_path, epochs=1)  # the store exists: what follows times the signal, not table creation
    r, seconds = run_stage(tmp_path, epochs=50, BIRDPLANE_TEST_SIGNAL_IN_SQL="INSERT INTO metrics:SIGTERM")
    signalled = _seconds_after_signal(r)
    assert r.returncode == 143 and signalled < 5, (signalled, r.stderr)
    assert [status for _, status in runs(tmp_path)] == ["FINISHED", "KILLED"]


def test_a_write_that_holds_a_signal_back_too_long_is_given_up(tmp_path):
    """A store write still going seconds after the signal (a hanging server, a slow disk) does not
    hold the stage: it ends in one line within 5 s of the signal."""
    r, _ = run_stage(tmp_path, epochs=50, BIRDPLANE_TEST_SIGNAL_IN_SQL="INSERT INTO metrics:SIGTERM",
                     BIRDPLANE_TEST_WRITE_S="60")
    assert r.returncode == 143, r.stderr
    assert one_line(r.stderr) == "stage train interrupted (SIGTERM); no outputs were written"
    assert _seconds_after_signal(r) < 5
    assert temp_files(tmp_path) == [] and not (tmp_path / "out" / "result.txt").exists()


def _seconds_after_signal(r: subprocess.CompletedProcess) -> float:
    """How long the stage took from the signal to its exit, from the timestamps the hook printed."""
    stamp = [line for line in r.stdout.splitlines() if line.startswith("signal ")]
    assert stamp, r.stdout + r.stderr
    return time.time() - float(stamp[0].rsplit(" at ", 1)[1])
