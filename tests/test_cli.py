"""What every stage process shares at start-up (birdplane.process.run_stage): freed memory stays in the heap."""

import os
import subprocess
import sys
import textwrap

import pytest

# Where does a fresh 31 MB tensor come from: the heap (brk, reused after a free) or its own
# mapping (mmap, handed back to the kernel by free and faulted in again next time)? glibc maps
# blocks above its threshold, which adapts upward only after such a block was freed.
WHERE = textwrap.dedent("""
    import sys
    import torch
    from birdplane.process import run_stage

    def where():
        with open("/proc/self/maps") as f:
            heaps = [[int(a, 16) for a in line.split()[0].split("-")] for line in f if line.rstrip().endswith("[heap]")]
        ptr = torch.empty(31 << 18).fill_(1.0).data_ptr()  # 31 MB, filled
        print("heap" if any(lo <= ptr < hi for lo, hi in heaps) else "mapped")

    run_stage("where", where) if sys.argv[1] == "stage" else where()
""")


def allocation(mode: str) -> str:
    return subprocess.run(
        [sys.executable, "-c", WHERE, mode], capture_output=True, text=True, check=True
    ).stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt, /proc/self/maps")
def test_a_stage_keeps_blocks_up_to_32_mb_in_its_heap():
    if allocation("plain") != "mapped":
        pytest.skip("this libc already serves 31 MB from the heap without being asked")
    # under run_stage (birdplane.process.keep_freed_memory) the block comes from the heap, where a
    # free keeps it for the next training block instead of unmapping it
    assert allocation("stage") == "heap"


# What ctypes does where there is no glibc: Windows refuses CDLL(None) with TypeError, macOS's
# libSystem has no mallopt (AttributeError), and a failed dlopen raises OSError.
NO_GLIBC = {
    "windows": "def CDLL(name, *a, **k):\n"
    "    raise TypeError('expected str, bytes or os.PathLike object, not NoneType')\n",
    "macos": "class CDLL:\n    def __init__(self, name, *a, **k):\n        pass\n",
    "no-libc": "def CDLL(name, *a, **k):\n    raise OSError('dlopen failed')\n",
}


@pytest.mark.parametrize("platform", sorted(NO_GLIBC))
def test_the_heap_setting_is_a_no_op_without_glibc(monkeypatch, platform):
    import ctypes

    from birdplane import process

    namespace: dict = {}
    exec(NO_GLIBC[platform], namespace)
    monkeypatch.setattr(ctypes, "CDLL", namespace["CDLL"])
    assert process.keep_freed_memory() is False


def test_a_stage_runs_on_a_simulated_platform_without_glibc(tmp_path):
    """The download stage, start to end, in a process whose ctypes behaves as on Windows."""
    from cifar_fixture import make_archive

    from conftest import ROOT

    archive, md5 = make_archive(tmp_path / "www" / "cifar-10-python.tar.gz")
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "import ctypes\n" + NO_GLIBC["windows"] + "ctypes.CDLL = CDLL\n"
    )
    env = {
        **os.environ,
        "PYTHONPATH": str(site),
        "BIRDPLANE_DATA_URL": archive.as_uri(),
        "BIRDPLANE_DATA_MD5": md5,
    }
    out = tmp_path / "proj"
    r = subprocess.run(
        [
            sys.executable,
            str(ROOT / "pipeline/download.py"),
            "--params",
            str(ROOT / "params.yaml"),
            "--out",
            str(out / "raw.tar.gz"),
            "--log",
            str(out / "download.json"),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert (out / "raw.tar.gz").read_bytes() == archive.read_bytes()
    probe = subprocess.run(
        [sys.executable, "-c", "from birdplane.process import keep_freed_memory as k; print(k())"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    assert probe.stdout.strip() == "False"  # the simulation was in force
