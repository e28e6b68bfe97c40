"""All-or-nothing output writing for stages.

A stage writes every output through one `Outputs` transaction: each file goes to a temporary
name beside its destination, and only when the stage's work succeeded are all of them renamed
into place. An exception anywhere (Ctrl-C and SIGTERM included) deletes the temporary files and
leaves the previous state of the disk untouched.

A temporary file is named `.<name>.<pid>.birdplane-tmp`: beside its destination, so that the
rename is atomic on any file system, and with a suffix that `.dvcignore` and `.gitignore` list, so
that neither DVC's hash of an output folder nor `git add` ever sees one. A process killed with
SIGKILL cannot delete its own; the next stage that writes into the same folder removes those of
dead processes (`remove_stale`).
"""

from __future__ import annotations

import errno
import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

TMP_SUFFIX = ".birdplane-tmp"


def tmp_name(dest: Path) -> Path:
    return dest.with_name(f".{dest.name}.{os.getpid()}{TMP_SUFFIX}")


def _pid_of(tmp: Path) -> int | None:
    stem = tmp.name[: -len(TMP_SUFFIX)]
    pid = stem.rsplit(".", 1)[-1]
    return int(pid) if pid.isdigit() else None


def process_alive(pid: int, since: float | None = None) -> bool:
    """Whether process `pid` runs, and (with `since`, a time.time()) already ran then: a pid that
    was reused by a process started later is not the one that wrote the file."""
    import psutil

    try:
        proc = psutil.Process(pid)
        return since is None or proc.create_time() <= since + 1
    except psutil.AccessDenied:
        return True  # another user's process: alive, and not ours to clean up after
    except (psutil.NoSuchProcess, ValueError):
        return False


def remove_stale(folder: Path) -> list[Path]:
    """Delete the temporary files that dead processes left in `folder`; return them."""
    removed = []
    for tmp in folder.glob(f"*{TMP_SUFFIX}") if folder.is_dir() else ():
        pid = _pid_of(tmp)
        try:
            mtime = tmp.stat().st_mtime
        except FileNotFoundError:
            continue
        if pid != os.getpid() and (pid is None or not process_alive(pid, since=mtime)):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def no_space(e: BaseException) -> bool:
    """Whether `e` is the file system saying it is full (or the user's quota is)."""
    return isinstance(e, OSError) and e.errno in (
        errno.ENOSPC,
        getattr(errno, "EDQUOT", errno.ENOSPC),
    )


class Outputs:
    def __init__(self) -> None:
        self._pending: list[tuple[Path, Path]] = []
        self._swept: set[Path] = set()

    def path(self, dest: str | Path) -> Path:
        """A temporary path to write `dest` to; it is renamed to `dest` on commit."""
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.parent not in self._swept:
            remove_stale(dest.parent)
            self._swept.add(dest.parent)
        tmp = tmp_name(dest)
        self._pending.append((tmp, dest))
        return tmp

    def write_text(self, dest: str | Path, text: str) -> None:
        self.write_with(dest, lambda p: p.write_text(text, encoding="utf-8", newline="\n"))

    def write_bytes(self, dest: str | Path, data: bytes) -> None:
        self.write_with(dest, lambda p: p.write_bytes(data))

    def write_json(self, dest: str | Path, obj: Any) -> None:
        self.write_text(dest, dumps_json(obj))

    def write_csv(
        self, dest: str | Path, rows: list[dict[str, Any]], float_format: str | None = None
    ) -> None:
        """Rows (dicts with the same keys, in column order) as CSV, without an index column."""
        import pandas as pd

        frame = pd.DataFrame(rows)
        self.write_with(dest, lambda p: frame.to_csv(p, index=False, float_format=float_format))

    def write_with(self, dest: str | Path, writer: Callable[[Path], None]) -> None:
        """Let `writer` (e.g. torch.save, DataFrame.to_csv) write to the temporary path. A full
        disk is reported with the destination's name, not the temporary one."""
        try:
            writer(self.path(dest))
        except OSError as e:
            if no_space(e):
                raise OSError(e.errno, os.strerror(e.errno), str(dest)) from None
            raise

    def _commit(self) -> None:
        for tmp, dest in self._pending:
            os.replace(tmp, dest)
        self._pending.clear()

    def _discard(self) -> None:
        for tmp, _ in self._pending:
            tmp.unlink(missing_ok=True)
        self._pending.clear()


@contextmanager
def _signals_held() -> Iterator[None]:
    """Ctrl-C and SIGTERM wait until the renames are done (where the platform can hold signals):
    a commit is never left half done."""
    import signal

    hold = getattr(signal, "pthread_sigmask", None)
    if hold is None:
        yield
        return
    previous = hold(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        hold(signal.SIG_SETMASK, previous)


@contextmanager
def outputs() -> Iterator[Outputs]:
    out = Outputs()
    try:
        yield out
    except BaseException:
        out._discard()
        raise
    with _signals_held():
        out._commit()


def dumps_json(obj: Any) -> str:
    """Stable, diff-friendly JSON; refuses NaN/inf, which is not JSON and breaks `dvc metrics`."""
    return json.dumps(obj, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def read_json(path: str | Path) -> Any:
    with Path(path).open(encoding="utf-8") as f:
        return json.load(f)
