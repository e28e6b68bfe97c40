"""What every stage process shares at start-up (birdplane.cli.run_stage): freed memory stays in the heap."""
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
    from birdplane.cli import run_stage

    def where():
        with open("/proc/self/maps") as f:
            heaps = [[int(a, 16) for a in line.split()[0].split("-")] for line in f if line.rstrip().endswith("[heap]")]
        ptr = torch.empty(31 << 18).fill_(1.0).data_ptr()  # 31 MB, filled
        print("heap" if any(lo <= ptr < hi for lo, hi in heaps) else "mapped")

    run_stage("where", where) if sys.argv[1] == "stage" else where()
""")


def allocation(mode: str) -> str:
    return subprocess.run([sys.executable, "-c", WHERE, mode], capture_output=True, text=True,
                          check=True).stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt, /proc/self/maps")
def test_a_stage_keeps_blocks_up_to_32_mb_in_its_heap():
    if allocation("plain") != "mapped":
        pytest.skip("this libc already serves 31 MB from the heap without being asked")
    # under run_stage (birdplane.cli.keep_freed_memory) the block comes from the heap, where a
    # free keeps it for the next training block instead of unmapping it
    assert allocation("stage") == "heap"
