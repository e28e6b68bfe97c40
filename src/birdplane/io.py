"""All-or-nothing output writing for stages.

A stage writes every output through one `Outputs` transaction: each file goes to a temporary
name beside its destination, and only when the stage's work succeeded are all of them renamed
into place. An exception anywhere leaves the previous state of the disk untouched.
"""
from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator


def _tmp_name(dest: Path) -> Path:
    return dest.with_name(f".{dest.name}.{os.getpid()}.tmp")


class Outputs:
    def __init__(self) -> None:
        self._pending: list[tuple[Path, Path]] = []

    def path(self, dest: str | Path) -> Path:
        """A temporary path to write `dest` to; it is renamed to `dest` on commit."""
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = _tmp_name(dest)
        self._pending.append((tmp, dest))
        return tmp

    def write_text(self, dest: str | Path, text: str) -> None:
        with self.path(dest).open("w", encoding="utf-8", newline="\n") as f:
            f.write(text)

    def write_bytes(self, dest: str | Path, data: bytes) -> None:
        with self.path(dest).open("wb") as f:
            f.write(data)

    def write_json(self, dest: str | Path, obj: Any) -> None:
        self.write_text(dest, dumps_json(obj))

    def write_with(self, dest: str | Path, writer: Callable[[Path], None]) -> None:
        """Let `writer` (e.g. torch.save, DataFrame.to_csv) write to the temporary path."""
        writer(self.path(dest))

    def _commit(self) -> None:
        for tmp, dest in self._pending:
            os.replace(tmp, dest)
        self._pending.clear()

    def _discard(self) -> None:
        for tmp, _ in self._pending:
            tmp.unlink(missing_ok=True)
        self._pending.clear()


@contextmanager
def outputs() -> Iterator[Outputs]:
    out = Outputs()
    try:
        yield out
    except BaseException:
        out._discard()
        raise
    out._commit()


def dumps_json(obj: Any) -> str:
    """Stable, diff-friendly JSON; refuses NaN/inf, which is not JSON and breaks `dvc metrics`."""
    return json.dumps(obj, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def read_json(path: str | Path) -> Any:
    with Path(path).open(encoding="utf-8") as f:
        return json.load(f)
