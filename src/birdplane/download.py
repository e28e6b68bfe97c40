"""Fetching the CIFAR-10 archive: http(s) or file://, md5-checked, atomic, with retries.

The URL may carry secrets (a private mirror's `user:password@`, a signed URL's `?token=`): every
message shows it redacted (`birdplane.text.redact_url`), and its secrets are remembered, so that
text from elsewhere (a reason phrase, an OS error) is masked too. Everything a server or an archive
says reaches the terminal through `printable`: escaped, cut, redacted.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import os
import socket
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable
from urllib.parse import unquote, urlsplit, urlunsplit

from birdplane.errors import BirdplaneError
from birdplane.config import ENV_MD5, ENV_URL
from birdplane.data import TEST_BATCH, TRAIN_BATCHES, read_members
from birdplane.io import remove_stale, tmp_name
from birdplane.text import printable, redact_url, remember_secrets_of

CHUNK = 1 << 20
# The official archive is 170,498,071 bytes (162.6 MiB); the README's local mirror rebuilds it as
# 173,605,556. 200 MiB leaves room for another compressor and still stops a wrong URL, a lying
# server, an endless body or file:///dev/zero long before the disk fills up.
MAX_ARCHIVE_BYTES = 200 << 20


@dataclass(frozen=True)
class Transfer:
    """How one archive is transferred: attempts, per-request timeout, backoff, size limit."""

    retries: int = 3
    timeout_s: float = 60
    backoff_s: float = 0.5
    max_bytes: int = MAX_ARCHIVE_BYTES


class DownloadError(BirdplaneError):
    """The archive could not be fetched or failed verification; nothing was written."""


class _Transient(Exception):
    """A failure worth retrying (dropped connection, timeout, HTTP 5xx/429)."""


def _offline_hint(shown: str) -> str:
    return (
        f"could not fetch {shown}. Without internet, build a local copy (see the README, "
        f"'Offline: a local mirror') and point the pipeline at it: "
        f"export {ENV_URL}=http://127.0.0.1:8000/cifar-10-python.tar.gz (or file:///path/to/it) "
        f"{ENV_MD5}=<its md5>"
    )


def _too_big(shown: str, what: str, max_bytes: int) -> DownloadError:
    return DownloadError(
        f"{shown} {what}, more than the {max_bytes / 2**20:.0f} MiB limit (the CIFAR-10 "
        f"archive is 163 MiB): not the archive; check data.url (or {ENV_URL})"
    )


def _request(url: str, shown: str) -> tuple[urllib.request.Request, bool]:
    """The request for `url` and whether it carries credentials. urllib reads `user:password@host`
    as a host name, so the userinfo is taken out of the URL and sent as HTTP basic auth, in a header
    that a redirect does not forward to another host."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError for a port that is not a number)
    except ValueError as e:
        raise DownloadError(
            f"{shown} is not a valid URL ({printable(str(e), 80)}): fix data.url (or {ENV_URL})"
        ) from None
    if "@" not in parts.netloc:
        return urllib.request.Request(url), False
    if parts.scheme == "file":
        raise DownloadError(
            f"{shown}: a file:// URL takes no user name or password; remove the part before '@'"
        )
    userinfo, host = parts.netloc.rsplit("@", 1)
    user, _, password = userinfo.partition(":")
    request = urllib.request.Request(urlunsplit(parts._replace(netloc=host)))
    token = base64.b64encode(f"{unquote(user)}:{unquote(password)}".encode("utf-8")).decode("ascii")
    request.add_unredirected_header("Authorization", f"Basic {token}")
    return request, True


def _refused(shown: str, code: int, reason: str, with_credentials: bool) -> DownloadError:
    """HTTP 401 or 403, in words that fit what the URL carried (never the credentials themselves)."""
    if with_credentials:
        return DownloadError(
            f"{shown}: HTTP {code} {reason}: the server refused the user name and password "
            f"given in the URL; fix them in {ENV_URL}"
        )
    if code == 401:
        return DownloadError(
            f"{shown}: HTTP 401 {reason}: the server wants a user name and password; give them "
            f"in {ENV_URL} as https://user:password@host/... (not in params.yaml, which is committed)"
        )
    return DownloadError(
        f"{shown}: HTTP 403 {reason}: the server refused access (a signed URL's token may have "
        f"expired): get a fresh URL, or check data.url (or {ENV_URL})"
    )


def _open(url: str, shown: str, timeout_s: float):
    """The response for `url`; _Transient for retryable failures, DownloadError for final ones."""
    request, with_credentials = _request(url, shown)
    try:
        return urllib.request.urlopen(request, timeout=timeout_s)  # noqa: S310 (scheme checked in config)
    except urllib.error.HTTPError as e:
        e.close()
        reason = printable(str(e.reason or ""), 80)  # the server's own words
        if e.code >= 500 or e.code == 429:
            raise _Transient(f"HTTP {e.code} {reason}") from None
        if e.code in (401, 403):
            raise _refused(shown, e.code, reason, with_credentials) from None
        raise DownloadError(f"{shown}: HTTP {e.code} {reason}. {_offline_hint(shown)}") from None
    except urllib.error.URLError as e:
        if isinstance(e.reason, (FileNotFoundError, PermissionError, IsADirectoryError)):
            # the same words on every platform (Windows says "[WinError 2] The system cannot find...")
            what = {
                FileNotFoundError: "No such file",
                PermissionError: "Permission denied",
                IsADirectoryError: "Is a directory",
            }[type(e.reason)]
            raise DownloadError(f"{shown}: {what}. {_offline_hint(shown)}") from None
        raise _Transient(printable(str(e.reason), 120)) from None
    except (http.client.InvalidURL, ValueError) as e:  # a space or control character, a bad port
        raise DownloadError(
            f"{shown} is not a valid URL ({printable(str(e), 80)}): fix data.url (or {ENV_URL})"
        ) from None
    except (TimeoutError, socket.timeout, ConnectionError, http.client.HTTPException) as e:
        raise _Transient(f"{type(e).__name__}: {printable(str(e), 120)}") from None


def _fetch_once(
    url: str, shown: str, part: Path, timeout_s: float, progress: bool, max_bytes: int
) -> None:
    """Stream `url` into `part`, at most `max_bytes`; raise _Transient for retryable failures,
    DownloadError for final ones (a source too large is one: it will not shrink on a retry)."""
    with _open(url, shown, timeout_s) as resp:
        length = resp.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        if total is not None and total > max_bytes:
            raise _too_big(shown, f"is {total:,} bytes (its Content-Length)", max_bytes)
        bar = None
        if progress:
            from tqdm import tqdm

            name = PurePosixPath(unquote(urlsplit(url).path)).name
            bar = tqdm(
                total=total,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=printable(name, 60),
                file=sys.stderr,
            )
        received = 0
        try:
            with part.open("wb") as out:
                while chunk := resp.read(CHUNK):
                    received += len(chunk)
                    if received > max_bytes:  # an endless body, a server that lies, /dev/zero
                        raise _too_big(shown, f"sent more than {max_bytes:,} bytes", max_bytes)
                    out.write(chunk)
                    if bar is not None:
                        bar.update(len(chunk))
        except (TimeoutError, socket.timeout, ConnectionError, http.client.HTTPException) as e:
            raise _Transient(
                f"{type(e).__name__} after {received} bytes: {printable(str(e), 120)}"
            ) from None
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


def download(
    url: str,
    md5: str,
    dest: Path,
    *,
    transfer: Transfer = Transfer(),
    progress: bool | None = None,
    log: Callable[[str], None] = lambda msg: print(msg, file=sys.stderr),
) -> Path:
    """Fetch `url` to `dest`, verify its md5 and that it is a readable CIFAR-10 archive, then rename.

    Writes to a temporary file beside `dest` and renames only after every check passed, so an
    interrupted or failed download never leaves a partial `dest` behind. `transfer.max_bytes`
    bounds what is written (the tests lower it).
    """
    remember_secrets_of(url)  # from here on, every redacted text masks them
    shown = redact_url(url)
    if progress is None:
        progress = sys.stderr.isatty()
    dest.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(dest.parent)  # what a killed download left behind
    part = tmp_name(dest)
    try:
        retries = transfer.retries
        for attempt in range(1, retries + 1):
            try:
                _fetch_once(url, shown, part, transfer.timeout_s, progress, transfer.max_bytes)
                break
            except _Transient as e:
                if attempt == retries:
                    raise DownloadError(
                        f"{shown}: {e} (gave up after {retries} attempts). {_offline_hint(shown)}"
                    ) from None
                wait = transfer.backoff_s * 2 ** (attempt - 1)
                log(f"download attempt {attempt}/{retries} failed ({e}); retrying in {wait:.1f} s")
                time.sleep(wait)
        got = md5_of(part)
        if got != md5:
            raise DownloadError(
                f"checksum mismatch for {shown}: expected md5 {md5}, got {got} ({part.stat().st_size} bytes). "
                f"The file is truncated, corrupt or a different archive: fix data.md5 in params.yaml "
                f"(or {ENV_MD5}) only if you trust this file, otherwise fetch it again"
            )
        read_members(
            part, TRAIN_BATCHES + (TEST_BATCH,), name=shown
        )  # raises ArchiveError if unusable
        os.replace(part, dest)
        return dest
    finally:
        part.unlink(missing_ok=True)
