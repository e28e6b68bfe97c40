"""The Makefile refuses an interpreter it cannot build the venv with, at once, and starts the venv
afresh when the interpreter changes (real make, real interpreters, a throw-away VENV)."""

import glob
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(
    shutil.which("make") is None or sys.platform == "win32", reason="needs GNU make"
)


def make(*args, timeout=60) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["make", "-s", "-C", str(ROOT), *args], capture_output=True, text=True, timeout=timeout
    )


def old_python(tmp_path) -> str:
    """A Python older than 3.11: a real one where pyenv has it, else a stand-in that answers as
    Python 3.9 (what older macOS ships)."""
    found = sorted(glob.glob(str(Path.home() / ".pyenv/versions/3.10.*/bin/python3.10")))
    if found:
        return found[0]
    fake = tmp_path / "python3.9"
    fake.write_text('#!/bin/sh\ncase "$*" in *realpath*) echo "3.9.6 $0";; *) exit 1;; esac\n')
    fake.chmod(0o755)
    return str(fake)


def test_an_old_python_is_refused_at_once(tmp_path):
    venv = tmp_path / "venv"
    t0 = time.monotonic()
    r = make("venv", f"PYTHON={old_python(tmp_path)}", f"VENV={venv}")
    assert r.returncode != 0 and time.monotonic() - t0 < 10
    assert "needs Python 3.11 to 3.13" in r.stderr and "make venv PYTHON=python3.12" in r.stderr, (
        r.stderr
    )
    assert "3.9" in r.stderr or "3.10" in r.stderr
    assert not venv.exists()  # nothing was built or downloaded
    r = make("venv", "PYTHON=no-such-python-here", f"VENV={venv}")
    assert r.returncode != 0 and "'no-such-python-here' does not run" in r.stderr


def test_another_interpreter_starts_the_venv_afresh(tmp_path):
    venv = tmp_path / "venv"
    target = f"{venv}/.interpreter"
    assert make(target, f"PYTHON={sys.executable}", f"VENV={venv}").returncode == 0
    (venv / "installed-before").write_text("x")
    assert make(target, f"PYTHON={sys.executable}", f"VENV={venv}").returncode == 0
    assert (venv / "installed-before").exists()  # same interpreter: the venv is kept
    others = [
        p
        for p in sorted(glob.glob(str(Path.home() / ".pyenv/versions/3.1[123].*/bin/python3.1?")))
        if Path(p).resolve() != Path(sys.executable).resolve()
        and not Path(p).name.endswith(f"{sys.version_info[0]}.{sys.version_info[1]}")
    ]
    if not others:
        pytest.skip("no second Python 3.11-3.13 on this machine")
    r = make(target, f"PYTHON={others[0]}", f"VENV={venv}")
    assert r.returncode == 0 and "rebuilding it" in r.stdout, r.stdout + r.stderr
    assert not (venv / "installed-before").exists()
    assert (venv / ".interpreter").read_text().split()[1] == str(Path(others[0]).resolve())
