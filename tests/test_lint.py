"""The code stays linted and formatted: `ruff check` (pyflakes, pycodestyle) and `ruff format
--check` over every Python file, with the settings in pyproject.toml. Fix with `ruff format` and
`ruff check --fix`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PATHS = ["src", "pipeline", "tests", "benchmarks", "tools"]
RUFF = Path(sys.executable).parent / "ruff"


@pytest.mark.parametrize("command", [["check"], ["format", "--check"]], ids=["lint", "format"])
def test_ruff_finds_nothing(command):
    assert RUFF.exists(), "ruff is a dev dependency (requirements.lock): make venv"
    r = subprocess.run(
        [str(RUFF), *command, *PATHS], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, f"ruff {' '.join(command)}:\n{r.stdout[-3000:]}{r.stderr[-1000:]}"
