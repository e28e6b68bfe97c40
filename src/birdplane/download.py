"""Fetching the CIFAR-10 archive: http(s) or file://, md5-checked, atomic, with retries."""
from __future__ import annotations

import hashlib
import http.client
import os
import socket
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

from birdplane.errors import BirdplaneError
from birdplane.config import ENV_MD5, ENV_URL
from birdplane.data import TEST_BATCH, TRAIN_BATCHES, read_members
from birdplane.io import remove_stale, tmp_name

CHUNK = 1 << 20


class DownloadError(BirdplaneError):
    """The archive could not be fetched or failed verification; nothing was written."""


class _Transient(Exception):
    """A failure worth retrying (dropped connection, timeout, HTTP 5xx/429)."""


def _offline_hint(url: str) -> str:
    return (f"could not fetch {url}. Without internet, build a local copy (see the README, "
            f"'Offline: a local mirror') and point the pipeline at it: "
            f"export {ENV_URL}=http://127.0.0.1:8000/cifar-10-python.tar.gz (or file:///path/to/it) "
            f"{ENV_MD5}=<its md5>")


def _fetch_once(url: str, part: Path, timeout_s: float, progress: bool) -> None:
    """Stream `url` into `part`; raise _Transient for retryable failures, DownloadError for final ones."""
    try:
        resp = urllib.request.urlopen(url, timeout=timeout_s)  # noqa: S310 (scheme checked in config)
    except urllib.error.HTTPError as e:
        if e.code >= 500 or e.code == 429:
            raise _Transient(f"HTTP {e.code} {e.reason}") from None
        raise DownloadError(f"{url}: HTTP {e.code} {e.reason}. {_offline_hint(url)}") from None
    except urllib.error.URLError as e:
        if isinstance(e.reason, (FileNotFoundError, PermissionError, IsADirectoryError)):
            # the same words on every platform (Windows says "[WinError 2] The system cannot find...")
            what = {FileNotFoundError: "No such file", PermissionError: "Permission denied",
                    IsADirectoryError: "Is a directory"}[type(e.reason)]
            raise DownloadError(f"{url}: {what}. {_offline_hint(url)}") from None
        raise _Transient(str(e.reason)) from None
    except (TimeoutError, socket.timeout, ConnectionError, http.client.HTTPException) as e:
        raise _Transient(f"{type(e).__name__}: {e}") from None

    with resp:
        length = resp.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        bar = None
        if progress:
            from tqdm import tqdm
            bar = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024,
                       desc=Path(urllib.request.url2pathname(url.rsplit("/", 1)[-1])).name, file=sys.stderr)
        received = 0
        try:
            with part.open("wb") as out:
                while chunk := resp.read(CHUNK):
                    out.write(chunk)
                    received += len(chunk)
                    if bar is not None:
                        bar.update(len(chunk))
        except (TimeoutError, socket.timeout, ConnectionError, http.client.HTTPException) as e:
            raise _Transient(f"{type(e).__name__} after {received} bytes: {e}") from None
        finally:
            if bar is not None:
                bar.close()
    if total is not None and received != total:
        raise _Transient(f"connection closed after {received} of {total} bytes")


def md5_of(path: Path) -> str:
    h = hashlib.md5()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def download(url: str, md5: str, dest: Path, *, retries: int = 3, timeout_s: float = 60,
             progress: bool | None = None, backoff_s: float = 0.5,
             log: Callable[[str], None] = lambda msg: print(msg, file=sys.stderr)) -> Path:
    """Fetch `url` to `dest`, verify its md5 and that it is a readable CIFAR-10 archive, then rename.

    Writes to a temporary file beside `dest` and renames only after every check passed, so an
    interrupted or failed download never leaves a partial `dest` behind.
    """
    if progress is None:
        progress = sys.stderr.isatty()
    dest.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(dest.parent)  # what a killed download left behind
    part = tmp_name(dest)
    try:
        for attempt in range(1, retries + 1):
            try:
                _fetch_once(url, part, timeout_s, progress)
                break
            except _Transient as e:
                if attempt == retries:
                    raise DownloadError(f"{url}: {e} (gave up after {retries} attempts). {_offline_hint(url)}") from None
                wait = backoff_s * 2 ** (attempt - 1)
                log(f"download attempt {attempt}/{retries} failed ({e}); retrying in {wait:.1f} s")
                time.sleep(wait)
        got = md5_of(part)
        if got != md5:
            raise DownloadError(
                f"checksum mismatch for {url}: expected md5 {md5}, got {got} ({part.stat().st_size} bytes). "
                f"The file is truncated, corrupt or a different archive: fix data.md5 in params.yaml "
                f"(or {ENV_MD5}) only if you trust this file, otherwise fetch it again")
        read_members(part, TRAIN_BATCHES + (TEST_BATCH,), name=url)  # raises ArchiveError if unusable
        os.replace(part, dest)
        return dest
    finally:
        part.unlink(missing_ok=True)
