import socket

import pytest

from birdplane.data import ArchiveError
from birdplane.download import DownloadError, Transfer, download, md5_of
from cifar_fixture import make_archive


def leftovers(d):
    return sorted(p.name for p in d.iterdir()) if d.exists() else []


def test_http_download_verifies_md5(tiny_archive, tmp_path):
    url, md5, src = tiny_archive
    dest = tmp_path / "raw" / "c.tar.gz"
    assert download(url, md5, dest, progress=False) == dest
    assert md5_of(dest) == md5 and leftovers(dest.parent) == ["c.tar.gz"]


def test_progress_bar_is_drawn(tiny_archive, tmp_path, capsys):
    url, md5, _ = tiny_archive
    download(url, md5, tmp_path / "c.tar.gz", progress=True)
    assert "cifar-10-python.tar.gz" in capsys.readouterr().err


def test_file_url(tmp_path):
    src, md5 = make_archive(tmp_path / "mirror" / "c.tar.gz")
    dest = tmp_path / "raw" / "c.tar.gz"
    download(src.as_uri(), md5, dest, progress=False)
    assert md5_of(dest) == md5


def test_md5_mismatch_leaves_nothing(tiny_archive, tmp_path):
    url, md5, _ = tiny_archive
    dest = tmp_path / "raw" / "c.tar.gz"
    with pytest.raises(
        DownloadError, match=f"checksum mismatch.*expected md5 {'0' * 32}, got {md5}"
    ):
        download(url, "0" * 32, dest, progress=False)
    assert leftovers(dest.parent) == []


def test_transient_errors_are_retried(tiny_archive, http_server, tmp_path):
    url, md5, _ = tiny_archive
    behaviour = http_server[2]
    behaviour["fail_first"] = 2
    logs = []
    download(
        url,
        md5,
        tmp_path / "c.tar.gz",
        progress=False,
        transfer=Transfer(retries=3, backoff_s=0.01),
        log=logs.append,
    )
    assert behaviour["requests"] == 3 and len(logs) == 2 and "503" in logs[0]


def test_truncated_transfer_fails_after_retries(tiny_archive, http_server, tmp_path):
    url, md5, _ = tiny_archive
    http_server[2]["truncate"] = True
    with pytest.raises(
        DownloadError, match=r"closed after \d+ of \d+ bytes.*gave up after 2 attempts"
    ):
        download(
            url,
            md5,
            tmp_path / "raw" / "c.tar.gz",
            progress=False,
            transfer=Transfer(retries=2, backoff_s=0.01),
        )
    assert leftovers(tmp_path / "raw") == []


def test_truncated_file_with_its_own_md5_is_refused(tmp_path):
    src, _ = make_archive(tmp_path / "mirror" / "c.tar.gz")
    data = src.read_bytes()
    src.write_bytes(data[: len(data) - 100])
    with pytest.raises(ArchiveError, match="truncated or corrupt"):
        download(src.as_uri(), md5_of(src), tmp_path / "raw" / "c.tar.gz", progress=False)
    assert leftovers(tmp_path / "raw") == []


def test_unreachable_url_names_url_and_mirror(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/cifar-10-python.tar.gz"
    with pytest.raises(DownloadError) as e:
        download(
            url,
            "0" * 32,
            tmp_path / "raw" / "c.tar.gz",
            progress=False,
            transfer=Transfer(retries=2, backoff_s=0.01),
        )
    msg = str(e.value)
    assert url in msg and "BIRDPLANE_DATA_URL" in msg and "gave up after 2 attempts" in msg
    assert leftovers(tmp_path / "raw") == []


def test_missing_file_and_404_are_not_retried(tiny_archive, http_server, tmp_path):
    with pytest.raises(DownloadError, match="No such file"):
        download(
            (tmp_path / "absent.tar.gz").as_uri(), "0" * 32, tmp_path / "c.tar.gz", progress=False
        )
    base = http_server[0]
    with pytest.raises(DownloadError, match="HTTP 404"):
        download(
            f"{base}/absent.tar.gz",
            "0" * 32,
            tmp_path / "c.tar.gz",
            progress=False,
            transfer=Transfer(backoff_s=5),
        )
