"""birdplane.text: what may be shown of a URL, outside text on a terminal, values in Markdown."""

import pytest

from birdplane import text
from birdplane.text import md_code, md_text, printable, redact, redact_url


@pytest.mark.parametrize(
    "url, shown",
    [
        (
            "https://alice:pw123@host:8443/p/a.tar.gz?token=abcd#frag",
            "https://***@host:8443/p/a.tar.gz?***#***",
        ),
        ("http://user@127.0.0.1:8000/x", "http://***@127.0.0.1:8000/x"),
        (
            "https://example.org/cifar-10-python.tar.gz?X-Amz-Signature=00ff&X-Amz-Credential=k",
            "https://example.org/cifar-10-python.tar.gz?***",
        ),
        (
            "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
            "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        ),
        ("file:///tmp/a b/c.tar.gz", "file:///tmp/a b/c.tar.gz"),
        ("sqlite:///C:/work/mlflow.db", "sqlite:///C:/work/mlflow.db"),
        ("not a url with @ in it", "***"),
    ],
)
def test_redact_url_keeps_scheme_host_and_path_only(url, shown):
    assert redact_url(url) == shown


def test_redact_masks_urls_bare_userinfo_and_remembered_secrets(monkeypatch):
    monkeypatch.setattr(text, "_remembered", set())
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://bob:hunter22@tracking.example:5000")
    line = redact(
        "GET http://bob:hunter22@tracking.example:5000/api failed; host bob:hunter22@tracking.example "
        "unknown; password hunter22; https://h/x?sig=SECRETSIG"
    )
    assert "hunter22" not in line and "SECRETSIG" not in line and "bob" not in line
    assert "http://***@tracking.example:5000/api" in line
    text.remember_secrets_of("https://mirror.example/a.tar.gz?token=tok-123456")
    assert redact("token tok-123456 in a message") == "token *** in a message"


def test_printable_escapes_control_characters_and_cuts():
    shown = printable(b"\x1b[2J\x1b]0;owned\x07\x00\xff ok\r\n\xe2\x80\xae", limit=200)
    assert (
        "\x1b" not in shown and "\x00" not in shown and "\n" not in shown and "\u202e" not in shown
    )
    assert shown.startswith("\\x1b[2J\\x1b]0;owned\\x07\\x00") and "\\u202e" in shown
    assert printable("x" * 10_000_000, limit=50) == "x" * 47 + "..."


def test_markdown_values_cannot_add_html_or_end_cells_or_code_spans():
    cell = md_text("<img src=x onerror=alert(1)> a|b *x* [l](u) _y_ & \n# h")
    assert "<" not in cell and ">" not in cell and "\n" not in cell
    assert (
        "\\|" in cell
        and "\\*x\\*" in cell
        and "\\[l\\]" in cell
        and "\\_y\\_" in cell
        and "&amp;" in cell
    )
    for plain in (
        "birdplane",
        "mse_lr0.01",
        "3072-512-2, Tanh, LogSoftmax",
        "0.8175",
        "file:///tmp/a.tar.gz",
    ):
        assert md_text(plain) == plain and md_code(plain) == f"`{plain}`"
    assert md_code("a``b") == "```a``b```"
    assert md_code("`x") == "`` `x ``"
    assert md_code("a|b") == "`a\\|b`"


@pytest.mark.parametrize("word", ["a" * 200_000, "a-." * 70_000, "x:" * 100_000, "a@" * 100_000])
def test_redact_is_linear_on_long_words(word):
    """A long unbroken word (a hostile params value, a server's body) is scanned once, not tried
    as a URL or a user:password@ at every position: quadratic, 50 KB took 6 s."""
    import time

    t0 = time.perf_counter()
    redact(word)
    assert time.perf_counter() - t0 < 1.0
