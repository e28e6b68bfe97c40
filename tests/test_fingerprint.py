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
    for part in (
        "flags ",
        "avx2",
        "CPUID AVX",
        "ATen AVX2",
        "openblas",
        "Haswell",
        "torch 2.",
        "numpy ",
    ):
        assert part in line, line


def test_fast_numerics_cannot_be_checked_against_the_committed_bits():
    r = check("--threads", "1", BIRDPLANE_NUMERICS="fast")
    assert (
        r.returncode == 2 and "only pinned numerics on x86-64 give the committed bits" in r.stderr
    )


def test_here_computes_the_committed_bits_in_this_process():
    """--here is for an emulated CPU (qemu-user emulates one process; run_one's children would run on
    the host): the same digests, computed in the checking process at its OMP_NUM_THREADS."""
    r = check("--here", OMP_NUM_THREADS="1")
    assert r.returncode == 0, r.stderr
    assert "give the committed digests with 1 thread(s) on " in r.stdout
    assert "CPUID: " in r.stdout and "AVX2" in r.stdout.split("CPUID: ")[1]


def test_here_refuses_thread_counts():
    r = check("--here", "--threads", "2")
    assert r.returncode == 2 and "set OMP_NUM_THREADS, not --threads" in r.stderr


def test_the_report_names_the_vector_extensions_the_libraries_see():
    features = fingerprint.cpuid_features()
    assert "AVX2" in features and "FMA3" in features  # pinned numerics need both (numerics.py)
    assert set(features) <= {"AVX", "AVX2", "FMA3", "AVX512F", "AVX512BW", "AVX512VL", "AVX512VNNI"}


def test_the_emulation_tool_says_what_it_needs(tmp_path):
    """tools/emulated_fingerprint.sh (the fingerprint under qemu-user's Intel Haswell, minutes per
    run: docs/reproducing.md) names the package it needs where qemu-x86_64 is missing."""
    tool = fingerprint.COMMITTED.parents[1] / "tools" / "emulated_fingerprint.sh"
    assert subprocess.run(["bash", "-n", str(tool)]).returncode == 0
    r = subprocess.run(
        ["bash", str(tool)],
        env={**os.environ, "QEMU": str(tmp_path / "qemu-x86_64")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and "apt-get install qemu-user" in r.stderr, r.stderr
