"""The download against a hostile or unlucky source (issue 23): a URL's secrets never reach a
message, the log or the report; `user:password@` works as HTTP basic auth; the download is
bounded (Content-Length, an endless body, file:///dev/zero); what a server says reaches the
terminal escaped. Real servers on 127.0.0.1, the real stage in a subprocess where its one line and
exit status are the point."""

from __future__ import annotations

import base64
import contextlib
import http.server
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import quote

import pytest
import yaml

from birdplane import text
from birdplane.download import MAX_ARCHIVE_BYTES, DownloadError, Transfer, download
from cifar_fixture import make_archive
from conftest import ROOT, project_env

USER, PASSWORD, TOKEN = "alice", "s3cr3t-pw9", "tok-SECRET123"
ODD_PASSWORD = "p@ss:w%rd/9"  # percent-encoded in a URL
HOSTILE = "\x1b[2J\x1b]0;owned\x07\x00\xff"  # clear screen, window title, NUL, 0xFF


class _Source(http.server.BaseHTTPRequestHandler):
    """/auth/...: the archive behind HTTP basic auth (USER, PASSWORD; /auth-odd/...: ODD_PASSWORD);
    /redirect?URL: to URL; /endless: a body without end; /liar: a Content-Length of 1 TB;
    /hostile-500 and /hostile-404: a reason phrase of escape sequences, NUL and 0xFF; anything
    else: the archive."""

    protocol_version = "HTTP/1.0"

    def log_message(self, *args):
        pass

    def do_GET(self):
        seen = self.server.seen
        seen.append({"path": self.path, "auth": self.headers.get("Authorization")})
        path = self.path.split("?", 1)[0]
        try:
            if path.startswith(("/auth/", "/auth-odd/")):
                password = ODD_PASSWORD if path.startswith("/auth-odd/") else PASSWORD
                expected = "Basic " + base64.b64encode(f"{USER}:{password}".encode()).decode()
                if self.headers.get("Authorization") != expected:
                    self.send_response(401, "Unauthorized")
                    self.send_header("WWW-Authenticate", 'Basic realm="mirror"')
                    self.end_headers()
                    return
                self._archive()
            elif path == "/redirect":  # /redirect?<where to>
                self.send_response(302)
                self.send_header("Location", self.path.split("?", 1)[1])
                self.end_headers()
            elif path == "/endless":
                self.send_response(200)
                self.end_headers()
                block = b"\0" * (1 << 16)
                while True:
                    self.wfile.write(block)
            elif path == "/liar":
                self.send_response(200)
                self.send_header("Content-Length", str(10**12))
                self.end_headers()
                self.wfile.write(b"\0" * 1024)
            elif path.startswith("/hostile-"):
                self.send_response(int(path.rsplit("-", 1)[1]), HOSTILE)
                self.end_headers()
                self.wfile.write(HOSTILE.encode("latin-1"))
            else:
                self._archive()
        except (BrokenPipeError, ConnectionResetError):  # the client stopped reading
            pass

    def _archive(self):
        data = self.server.archive
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@contextlib.contextmanager
def source(archive: bytes):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Source)
    server.daemon_threads = True
    server.archive, server.seen = archive, []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", server.seen
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    """(base URL, requests seen, md5) of a server holding a tiny archive; secrets remembered by
    one test are forgotten before the next."""
    monkeypatch.setattr(text, "_remembered", set())
    path, md5 = make_archive(tmp_path / "mirror" / "cifar-10-python.tar.gz")
    with source(path.read_bytes()) as (base, seen):
        yield base, seen, md5


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def write_params(tmp_path: Path, **data) -> Path:
    """A project folder with the project's params.yaml, data.* changed by `data` (one attempt,
    a short timeout unless given)."""
    project = tmp_path / "project"
    project.mkdir(exist_ok=True)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"].update({"retries": 1, "timeout_s": 5, **data})
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return project


def run_stage(tmp_path: Path, env_url: str, env_md5: str, **data) -> subprocess.CompletedProcess:
    """pipeline/download.py in a project folder of its own, as dvc.yaml runs it, with the URL in
    the environment (data.* of params.yaml changed by `data`); output as bytes."""
    project = write_params(tmp_path, **data)
    return subprocess.run(
        [
            sys.executable,
            str(ROOT / "pipeline" / "download.py"),
            "--out",
            "data/raw/cifar-10-python.tar.gz",
            "--log",
            "logs/download.json",
        ],
        cwd=project,
        env=project_env(env_url, env_md5),
        capture_output=True,
        timeout=60,
    )


def files_holding(folder: Path, secret: str) -> list[str]:
    return [str(p) for p in folder.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]


# ---- secrets ----------------------------------------------------------------------------------


def test_user_and_password_in_the_url_work_as_basic_auth_and_are_shown_nowhere(mirror, tmp_path):
    base, seen, md5 = mirror
    url = f"{base.replace('//', f'//{USER}:{PASSWORD}@')}/auth/cifar-10-python.tar.gz?token={TOKEN}"
    r = run_stage(tmp_path, url, md5)
    assert r.returncode == 0, r.stderr
    assert (
        seen[-1]["auth"] is not None and PASSWORD not in seen[-1]["path"]
    )  # a header, not the URL
    out = r.stdout + r.stderr
    for secret in (PASSWORD, TOKEN, f"{USER}:"):
        assert secret.encode() not in out
        assert files_holding(tmp_path / "project", secret) == []
    log = yaml.safe_load((tmp_path / "project/logs/download.json").read_text())
    assert log["url"] == f"http://***@{base.split('//')[1]}/auth/cifar-10-python.tar.gz?***"
    assert b"downloaded http://***@127.0.0.1" in r.stdout


def test_a_percent_encoded_password_is_decoded_for_basic_auth(mirror, tmp_path):
    base, seen, md5 = mirror
    url = (
        base.replace("//", f"//{USER}:{quote(ODD_PASSWORD, safe='')}@")
        + "/auth-odd/cifar-10-python.tar.gz"
    )
    download(url, md5, tmp_path / "c.tar.gz", progress=False)
    assert len(seen) == 1


def test_credentials_are_not_sent_on_to_the_host_a_redirect_names(mirror, tmp_path):
    base, seen, md5 = mirror
    with source(b"") as (other, other_seen):
        url = (
            base.replace("//", f"//{USER}:{PASSWORD}@")
            + f"/redirect?{other}/cifar-10-python.tar.gz"
        )
        with pytest.raises(
            DownloadError, match="checksum mismatch"
        ):  # the other host serves no archive
            download(url, md5, tmp_path / "c.tar.gz", progress=False)
    assert seen[0]["auth"] is not None and [r["auth"] for r in other_seen] == [None]


def test_refused_credentials_end_in_one_line_that_does_not_repeat_them(mirror, tmp_path):
    base, seen, md5 = mirror
    wrong = f"{base.replace('//', f'//{USER}:wrong-{PASSWORD}@')}/auth/cifar-10-python.tar.gz"
    r = run_stage(tmp_path, wrong, md5)
    err = r.stderr.decode()
    assert r.returncode == 1 and err.count("\n") == 1 and "Traceback" not in err
    assert "HTTP 401" in err and "refused the user name and password" in err
    assert PASSWORD not in err and "wrong-" not in err and len(seen) == 1  # not retried
    r = run_stage(tmp_path, f"{base}/auth/cifar-10-python.tar.gz", md5)  # none given
    assert r.returncode == 1 and b"wants a user name and password" in r.stderr
    assert (
        leftovers(tmp_path / "project/data/raw") == []
        and leftovers(tmp_path / "project/logs") == []
    )


def test_a_token_in_the_query_stays_out_of_retry_lines_errors_and_the_progress_bar(
    mirror, tmp_path, capsys
):
    base, seen, md5 = mirror
    logs = []
    with pytest.raises(DownloadError) as e:
        download(
            f"{base}/hostile-503?token={TOKEN}",
            md5,
            tmp_path / "c.tar.gz",
            transfer=Transfer(retries=2, backoff_s=0.01),
            progress=False,
            log=logs.append,
        )
    assert len(logs) == 1 and TOKEN not in logs[0] + str(e.value) and "?***" in str(e.value)
    download(
        f"{base}/cifar-10-python.tar.gz?token={TOKEN}", md5, tmp_path / "c.tar.gz", progress=True
    )
    err = capsys.readouterr().err
    assert "cifar-10-python.tar.gz" in err and TOKEN not in err


def test_a_password_in_params_yaml_is_not_printed_by_the_config_check_or_the_stage(
    mirror, tmp_path
):
    base, _, md5 = mirror
    bad = f"ftp://{USER}:{PASSWORD}@mirror.example/c.tar.gz?token={TOKEN}"  # refused: not http(s) or file
    project = write_params(tmp_path, url=bad)
    check = subprocess.run(
        [sys.executable, "-m", "birdplane.config", "params.yaml"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (
        check.returncode == 1
        and "data.url" in check.stderr
        and "ftp://***@mirror.example" in check.stderr
    )
    assert PASSWORD not in check.stdout + check.stderr and TOKEN not in check.stdout + check.stderr
    r = run_stage(tmp_path, "", md5, url=bad)  # the stage reads the same params.yaml
    assert r.returncode == 1 and b"data.url" in r.stderr
    assert PASSWORD.encode() not in r.stderr and TOKEN.encode() not in r.stderr
    env_url = (
        f"gopher://{USER}:{PASSWORD}@x/c.tar.gz"  # the environment's URL, refused the same way
    )
    r = run_stage(tmp_path, env_url, md5)
    assert (
        r.returncode == 1
        and b"BIRDPLANE_DATA_URL" in r.stderr
        and PASSWORD.encode() not in r.stderr
    )


def test_the_report_shows_the_download_url_without_its_secrets():
    from birdplane.report.document import _shown_params, _source

    url = f"https://{USER}:{PASSWORD}@mirror.example/c.tar.gz?token={TOKEN}"
    inp = SimpleNamespace(
        stats={"source": {"md5": "0" * 32}}, download={"url": url, "md5": "0" * 32}
    )
    assert _source(inp) == {"md5": "0" * 32, "url": "https://***@mirror.example/c.tar.gz?***"}
    shown = yaml.safe_dump(_shown_params({"seed": 0, "data": {"url": url, "md5": "0" * 32}}))
    assert PASSWORD not in shown and TOKEN not in shown and "mirror.example/c.tar.gz" in shown
    official = {"data": {"url": "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"}}
    assert _shown_params(official) == official  # the committed report stays byte-identical


# ---- bounds -----------------------------------------------------------------------------------


def test_an_endless_body_ends_at_the_cap_without_retries_or_leftovers(mirror, tmp_path):
    base, seen, md5 = mirror
    start = time.monotonic()
    with pytest.raises(
        DownloadError, match=r"sent more than 4,194,304 bytes, more than the 4 MiB limit"
    ):
        download(
            f"{base}/endless",
            md5,
            tmp_path / "raw" / "c.tar.gz",
            progress=False,
            transfer=Transfer(backoff_s=0.01, max_bytes=4 << 20),
        )
    assert time.monotonic() - start < 10 and len(seen) == 1 and leftovers(tmp_path / "raw") == []


def test_a_content_length_over_the_cap_is_refused_before_reading(mirror, tmp_path):
    base, seen, md5 = mirror
    with pytest.raises(
        DownloadError,
        match=r"is 1,000,000,000,000 bytes \(its Content-Length\), more than the "
        r"200 MiB limit",
    ):
        download(
            f"{base}/liar",
            md5,
            tmp_path / "raw" / "c.tar.gz",
            progress=False,
            transfer=Transfer(backoff_s=0.01),
        )
    assert len(seen) == 1 and leftovers(tmp_path / "raw") == []


def test_the_cap_lets_the_official_archive_and_the_local_mirror_through():
    assert max(170_498_071, 173_605_556) < MAX_ARCHIVE_BYTES < 256 << 20


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="no /dev/zero")
def test_dev_zero_ends_at_the_real_cap_in_one_line_within_seconds(tmp_path):
    start = time.monotonic()
    r = run_stage(tmp_path, "file:///dev/zero", "0" * 32)
    err = r.stderr.decode()
    assert r.returncode == 1 and err.count("\n") == 1, err
    assert "file:///dev/zero sent more than 209,715,200 bytes, more than the 200 MiB limit" in err
    assert time.monotonic() - start < 20
    assert (
        leftovers(tmp_path / "project/data/raw") == []
        and leftovers(tmp_path / "project/logs") == []
    )


# ---- terminal ---------------------------------------------------------------------------------


@pytest.mark.parametrize("code", [404, 500])
def test_a_hostile_reason_phrase_reaches_the_terminal_escaped(mirror, tmp_path, code):
    base, _, md5 = mirror
    r = run_stage(tmp_path, f"{base}/hostile-{code}", md5)
    assert r.returncode == 1 and r.stderr.count(b"\n") == 1, r.stderr
    assert f"HTTP {code}".encode() in r.stderr and b"\\x1b[2J" in r.stderr
    for raw in (b"\x1b", b"\x00", b"\xff", b"\x07"):
        assert raw not in r.stderr


def test_archive_member_names_are_escaped_and_cut(tmp_path, monkeypatch):
    import io
    import tarfile

    from birdplane.data import ArchiveError, read_members

    name = "../\x1b[2J" + "x" * 5000
    archive = tmp_path / "evil.tar.gz"
    with tarfile.open(archive, "w:gz", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(name)
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(ArchiveError, match="unsafe archive member") as e:
        read_members(archive, ("data_batch_1",))
    assert "\x1b" not in str(e.value) and "\\x1b[2J" in str(e.value) and len(str(e.value)) < 500


# ---- under dvc repro ---------------------------------------------------------------------------


@pytest.mark.e2e
def test_no_secret_of_the_url_reaches_dvc_repro_output_or_any_file_of_the_project(mirror, tmp_path):
    from conftest import dvc, make_project

    base, seen, md5 = mirror
    url = f"{base.replace('//', f'//{USER}:{PASSWORD}@')}/auth/cifar-10-python.tar.gz?token={TOKEN}"
    project = make_project(tmp_path / "proj")
    r = dvc(project, project_env(url, md5), "repro", "stats")
    assert r.returncode == 0, r.stdout + r.stderr
    assert (project / "data/raw/cifar-10-python.tar.gz").exists() and seen[-1]["auth"] is not None
    for secret in (PASSWORD, TOKEN):
        assert secret not in r.stdout + r.stderr
        assert files_holding(project, secret) == []  # logs/, metrics/, dvc.lock, .dvc/ and the rest
