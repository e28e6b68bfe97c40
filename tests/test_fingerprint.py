"""The numerical fingerprint: every machine that runs the suite proves it computes the committed bits,
with 1 thread, 2, 3 (an odd split) and the machine's count."""

import json
import os
import platform
import shutil
import subprocess
import sys

import pytest

from birdplane import fingerprint, numerics

# e2e, like a benchmark script: fresh processes that train for seconds each. `make test` and CI run it;
# the fast tests' workflow (tests.yml) does not, and reproduce.yml runs the check itself
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        platform.machine().lower() not in ("x86_64", "amd64")
        or numerics.requested_mode() != numerics.PINNED,
        reason="the committed bits are x86-64's with pinned numerics (docs/reproducing.md)",
    ),
]


def check(*args, prefix=(), **env):
    r = subprocess.run(
        [*prefix, sys.executable, "-m", "birdplane.fingerprint", "--check", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=600,
    )
    if r.returncode == 3:  # the committed digests are another build's (Windows, the CPU-only wheel)
        pytest.skip(r.stderr.strip())
    return r


def test_this_machine_computes_the_committed_bits_at_every_thread_count():
    counts = sorted({1, 2, 3, os.cpu_count() or 1})
    r = check("--threads", *map(str, counts))
    assert r.returncode == 0, r.stderr
    assert f"give the committed digests with {', '.join(map(str, counts))} thread(s)" in r.stdout


@pytest.mark.skipif(
    not shutil.which("taskset"), reason="taskset (util-linux) restricts a process to one CPU"
)
def test_one_cpu_computes_the_same_bits():
    """OpenBLAS starts no more threads than the CPUs it may use, and its thread count splits its sums:
    pinned numerics set the count at run time, so a container with one CPU gets the same bits."""
    r = check("--threads", "1", prefix=("taskset", "-c", "0"))
    assert r.returncode == 0, r.stderr


def test_a_mismatch_names_the_workload_the_cpu_the_threads_and_the_versions(tmp_path):
    with fingerprint.COMMITTED.open() as f:
        committed = json.load(f)
    committed["digests"]["cnn"] = "0" * 64
    planted = tmp_path / "fingerprint.json"
    planted.write_text(json.dumps(committed))
    r = check("--threads", "1", "--file", str(planted))
    assert r.returncode == 1
    line = r.stderr.splitlines()[0]
    assert line.startswith("fingerprint: cnn differ from fingerprint.json with 1 thread(s) on ")
    for part in ("flags ", "avx2", "ATen AVX2", "openblas", "Haswell", "torch 2.", "numpy "):
        assert part in line, line


def test_fast_numerics_cannot_be_checked_against_the_committed_bits():
    r = check("--threads", "1", BIRDPLANE_NUMERICS="fast")
    assert (
        r.returncode == 2 and "only pinned numerics on x86-64 give the committed bits" in r.stderr
    )
