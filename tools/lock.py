"""Regenerate requirements.lock from pyproject.toml (`make lock`, or `python tools/lock.py [OUTPUT]`).

The lock is universal: one uv resolution for every supported platform (Linux x86_64 and aarch64,
macOS arm64, Windows x86_64) and Python from 3.11 on, with environment markers on the packages
only some of them need (torch's CUDA libraries on Linux, pywin32 on Windows, ...). pip reads the
markers, so `pip install -r requirements.lock` installs the right subset everywhere.

Reproducible because the current lock constrains its own regeneration: every version it pins
stays, and only a package that pyproject.toml newly needs gets the newest version its range
allows. To move a pin, change or delete its line in the lock, then run this again.

uv is a dev dependency; this uses the uv installed beside the running Python.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements.lock"
# The oldest Python the project supports (requires-python): the universal resolution covers it and newer.
PYTHON_MIN = "3.11"
# what the lock's header says regenerates it
HEADER_COMMAND = "make lock  (or: python tools/lock.py)"


def uv_binary() -> str | None:
    """The uv beside this interpreter (bin/ or Scripts/), or None."""
    return shutil.which("uv", path=sysconfig.get_path("scripts"))


def compile_args(*extra: str) -> list[str]:
    """`uv pip compile` of the project and its dev extra, constrained by the lock; uv's argv without
    the binary. --python: builds any sdist's metadata with this interpreter rather than looking
    for (or downloading) one of the target version."""
    return [
        "pip",
        "compile",
        "pyproject.toml",
        "--extra",
        "dev",
        "-c",
        LOCK.name,
        "--python",
        sys.executable,
        "--no-annotate",
        "--quiet",
        *extra,
    ]


def universal_args() -> list[str]:
    return compile_args(
        "--universal", "--python-version", PYTHON_MIN, "--custom-compile-command", HEADER_COMMAND
    )


def main(argv: list[str]) -> int:
    out = Path(argv[0]) if argv else LOCK
    uv = uv_binary()
    if uv is None:
        print(
            "error: uv is not installed beside this Python: run `make venv` (uv is a dev dependency)",
            file=sys.stderr,
        )
        return 1
    # uv writes to stdout; the file is written only once it succeeded, so a failed run keeps the old lock
    done = subprocess.run([uv, *universal_args()], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    if done.returncode:
        return 1  # uv has printed why
    out.write_text(done.stdout, encoding="utf-8", newline="\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
