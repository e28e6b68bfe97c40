"""What every stage process does around its work (birdplane.process.run_stage): the heap setting,
SIGTERM handled like Ctrl-C, and every fault ended in one line and an exit status.

Nothing here can change a stage's outputs, so no stage depends on this file in dvc.yaml (a change
to the heap setting used to re-run evaluate and shift-test for byte-identical outputs). The pinned
numerics, which do decide the bits, live in birdplane.numerics, a dependency of every stage that
computes with torch; run_stage only sets them early, before numpy or torch is imported."""
from __future__ import annotations

import ctypes
import signal
import sys
from typing import Callable

from birdplane.errors import BirdplaneError, DamagedFile
from birdplane.io import no_space


# glibc's mallopt parameters (malloc.h)
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
# Below this, freed blocks go back to the heap for reuse: more than a training step's temporaries
# (a 256-row block of images is 3 MB) and glibc's own ceiling for its adaptive threshold.
MMAP_THRESHOLD = 32 << 20
# Free memory the heap keeps at its top instead of shrinking: twice the above, as glibc pairs them.
TRIM_THRESHOLD = 64 << 20


def keep_freed_memory() -> bool:
    """Let freed blocks under 32 MB stay in the process's heap (glibc); returns whether it could.

    PyTorch's CPU allocator hands every temporary straight back to malloc. glibc gives the top of
    its heap back to the kernel once more than its trim threshold is free there, and how often that
    happens depends on the heap's history: in a training stage (after the MLflow store, the data
    and the validation pass) the heap shrank and grew again every block or two, and the block's
    temporaries came back as fresh, zeroed pages: about 20,000 page faults and 0.06-0.09 s of
    kernel time per epoch of the 3072-512-2 net, none in a fresh benchmark process
    (docs/performance.md, "Page faults"). Fixed thresholds end that; setting them also turns off
    glibc's adaptive ones, so both are set. A no-op returning False where there is no mallopt.
    """
    try:
        # Windows: CDLL(None) raises TypeError; macOS and musl: no mallopt (AttributeError) or a
        # stub that returns 0. Any of them: leave the allocator as it is.
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError, TypeError, ValueError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))


class Terminated(KeyboardInterrupt):
    """SIGTERM (or SIGHUP) arrived: handled like Ctrl-C, so every `finally` and `except
    BaseException` on the way out (temporary outputs, the MLflow run) cleans up."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_terminated(signum: int, _frame) -> None:
    # a second signal while cleaning up must not interrupt the clean-up itself
    signal.signal(signum, signal.SIG_IGN)
    raise Terminated(signum)


def handle_termination() -> None:
    """Turn SIGTERM (what `timeout`, `kill`, a CI cancel and a container stop send) and SIGHUP (a
    closed terminal) into Terminated. Where a signal does not exist (SIGHUP on Windows), skip it."""
    for name in ("SIGTERM", "SIGHUP"):
        signum = getattr(signal, name, None)
        if signum is not None:
            signal.signal(signum, _raise_terminated)


def explain(e: BirdplaneError) -> str:
    """The error's line; for a damaged DVC output, with the commands that replace it for good."""
    if isinstance(e, DamagedFile):
        from birdplane.dvc_hints import dvc_recovery

        return e.with_fix(dvc_recovery(e.path, e.fix))
    return str(e)


def run_stage(name: str, main: Callable[[], None]) -> None:
    """Run a stage; a BirdplaneError ends it with its message and exit status 1, no traceback.

    Ctrl-C and SIGTERM end it with a message and 128 + the signal's number (130, 143); a full disk
    with a message naming the path. In every case the stage's outputs are left as they were."""
    keep_freed_memory()
    handle_termination()
    from birdplane import numerics  # imported here: the stages that compute list it in dvc.yaml

    try:
        numerics.pin()  # before numpy and torch load; a no-op for what download and report do
        main()
    except BirdplaneError as e:
        print(f"error in stage {name}: {explain(e)}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt as e:
        signum = getattr(e, "signum", signal.SIGINT)
        print(f"stage {name} interrupted ({signal.Signals(signum).name}); no outputs were written", file=sys.stderr)
        sys.exit(128 + signum)
    except OSError as e:
        if not no_space(e):
            raise
        # shutil's copies name the source as filename and the destination as filename2
        target = getattr(e, "filename2", None) or e.filename
        where = f" writing {target}" if target else ""
        print(f"error in stage {name}: no space left on the device{where}; free some space (or move the "
              f"project, its DVC cache or MLflow store elsewhere) and run the stage again. No outputs were "
              f"written", file=sys.stderr)
        sys.exit(1)
