"""What every stage process does around its work (birdplane.process.run_stage): the heap setting,
SIGTERM handled like Ctrl-C (held back while the MLflow store writes), and every fault ended in one
line and an exit status.

Nothing here can change a stage's outputs, so no stage depends on this file in dvc.yaml (a change
to the heap setting used to re-run evaluate and shift-test for byte-identical outputs). The pinned
numerics, which do decide the bits, live in birdplane.numerics, a dependency of every stage that
computes with torch; run_stage only sets them early, before numpy or torch is imported."""

from __future__ import annotations

import ctypes
import signal
import sys
import time
from contextlib import contextmanager
from typing import Callable, Iterator

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
    temporaries came back as fresh, zeroed pages: thousands of page faults and kernel time every
    epoch, none in a fresh benchmark process (measured: docs/performance.md, "Page faults"). Fixed
    thresholds end that; setting them also turns off
    glibc's adaptive ones, so both are set. A no-op returning False where there is no mallopt.
    """
    try:
        # Windows: CDLL(None) raises TypeError; macOS and musl: no mallopt (AttributeError) or a
        # stub that returns 0. Any of them: leave the allocator as it is.
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError, TypeError, ValueError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )


class Terminated(KeyboardInterrupt):
    """SIGTERM, SIGINT (or SIGHUP) arrived: handled like Ctrl-C, so every `finally` and `except
    BaseException` on the way out (temporary outputs, the MLflow run) cleans up."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


HANDLED = ("SIGTERM", "SIGINT", "SIGHUP")
# How long a deferred signal may wait for a store write (and the clean-up after it may take) before
# we give up on the write: MLflow's SQLite sessions wait up to 20 s for a lock that another process
# holds, its HTTP calls up to 30 s; the stage must end within 5 s of the signal.
SIGNAL_GRACE_S = 3.0


class _SignalState:
    """What the handlers share: how deep in signals_deferred() the main thread is, the signal that
    waits for the section's end, the first signal's number and the time by which we must be out."""

    depth = 0
    pending: int | None = None
    first: int | None = None
    deadline: float | None = None
    gave_up = False


_state = _SignalState()


def _interrupt(signum: int) -> None:
    # a further signal while cleaning up must not interrupt the clean-up itself
    for name in HANDLED:
        if (other := getattr(signal, name, None)) is not None:
            signal.signal(other, signal.SIG_IGN)
    raise Terminated(signum)


def _on_signal(signum: int, _frame) -> None:
    """Raise Terminated now, or, inside signals_deferred(), when the section ends (and at the latest
    when the grace is over)."""
    if _state.first is None:
        _state.first, _state.deadline = signum, time.monotonic() + SIGNAL_GRACE_S
    if _state.depth:
        _state.pending = _state.pending or signum
        _arm_grace()
        return
    _interrupt(signum)


def _on_grace_over(_signum: int, _frame) -> None:
    """The write that held the signal back took too long (a store locked by another process, a
    server that does not answer): give up on it, and on every store write after it (the clean-up
    would wait for the same store). The run may stay RUNNING; the next stage that opens the store
    closes it (birdplane.tracking.close_orphaned_runs). Python runs this handler between bytecodes:
    a write stuck inside C (sqlite3 waiting up to 20 s for a lock another process holds) ends first."""
    if _state.first is None:
        return  # a stray SIGALRM: not ours
    _state.pending, _state.gave_up = None, True
    _interrupt(_state.first)


def _arm_grace() -> None:
    """Let SIGALRM end the deferred section when the grace after the first signal is over."""
    if _state.deadline is None or not hasattr(signal, "setitimer"):
        return  # no signal yet, or a platform without timers (Windows): no bound
    signal.setitimer(signal.ITIMER_REAL, max(_state.deadline - time.monotonic(), 0.001))


def _disarm_grace() -> None:
    if _state.deadline is not None and hasattr(signal, "setitimer"):
        signal.setitimer(signal.ITIMER_REAL, 0)


@contextmanager
def signals_deferred() -> Iterator[None]:
    """A section that a signal must not interrupt half way: a transaction with the MLflow store.

    Raising Terminated inside SQLAlchemy or sqlite3 can leave a connection that still holds the
    database's write lock; ending the run as KILLED then waited 20 s for that lock and failed with
    `database is locked`, leaving the run RUNNING. Inside this section the handler only records the
    signal; Terminated is raised when the (outermost) section ends, right after the write returns.
    A write that is still going after SIGNAL_GRACE_S is given up (see _on_grace_over). Nestable;
    without run_stage's handlers (a test, a notebook) it defers nothing."""
    if _state.gave_up:
        raise Terminated(_state.first)
    _state.depth += 1
    if _state.first is not None:
        _arm_grace()  # clean-up after a signal: this write gets what is left of the grace
    try:
        yield
    finally:
        _state.depth -= 1
        if _state.depth == 0:
            _disarm_grace()
            if _state.pending is not None:
                signum, _state.pending = _state.pending, None
                _interrupt(signum)


def handle_termination() -> None:
    """Turn SIGTERM (what `timeout`, `kill`, a CI cancel and a container stop send), SIGINT (Ctrl-C)
    and SIGHUP (a closed terminal) into Terminated, held back inside signals_deferred(). Where a
    signal does not exist (SIGHUP, SIGALRM on Windows), skip it."""
    _state.depth, _state.pending, _state.first, _state.deadline, _state.gave_up = (
        0,
        None,
        None,
        None,
        False,
    )
    for name in HANDLED:
        signum = getattr(signal, name, None)
        if signum is not None:
            signal.signal(signum, _on_signal)
    if hasattr(signal, "SIGALRM"):
        signal.signal(signal.SIGALRM, _on_grace_over)


def _exit_at_once(status: int) -> None:
    """Exit after the atexit handlers, without the interpreter's own finalization.

    Every clean-up has run by now (the `finally` blocks, the run's end, then MLflow's and logging's
    atexit handlers here). What remains is Python tearing down the modules MLflow, SQLAlchemy and
    torch loaded: 1-3 s of a loaded machine, more than an interrupted stage may take (it must end
    within 5 s of the signal)."""
    import atexit
    import os

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing more to say
            pass
    os._exit(status)


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
        print(
            f"stage {name} interrupted ({signal.Signals(signum).name}); no outputs were written",
            file=sys.stderr,
        )
        _exit_at_once(128 + signum)
    except OSError as e:
        if not no_space(e):
            raise
        # shutil's copies name the source as filename and the destination as filename2
        target = getattr(e, "filename2", None) or e.filename
        where = f" writing {target}" if target else ""
        print(
            f"error in stage {name}: no space left on the device{where}; free some space (or move the "
            f"project, its DVC cache or MLflow store elsewhere) and run the stage again. No outputs were "
            f"written",
            file=sys.stderr,
        )
        sys.exit(1)
