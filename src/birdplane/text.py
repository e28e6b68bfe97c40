"""Text that crosses a trust boundary: secrets out of URLs, control characters out of the terminal,
Markdown out of values.

- `redact_url`: what may be shown of a URL. Userinfo (``user:password@``) and the query string
  (signed or private mirrors put tokens there) become ``***``; scheme, host, port and path stay.
- `redact`: any text (an exception's message, a library's log line) with every URL in it
  redacted, every ``user:password@`` masked, and with the secrets of the URLs this process was
  given (`remember_secrets_of`, the environment's `MLFLOW_TRACKING_URI` and `BIRDPLANE_DATA_URL`)
  replaced wherever they appear, also outside a URL (urllib names ``user:password@host`` as the host it could not find).
- `printable`: text from outside (a server's body, a file's content, a URL) for one line of a
  terminal: control characters, ANSI escapes and bidirectional overrides escaped, cut to a length.
- `md_text` and `md_code`: a value for a Markdown table cell or code span, where raw HTML, pipes
  and backticks must not change the document.
"""

from __future__ import annotations

import os
import re
from urllib.parse import SplitResult, parse_qsl, urlsplit

MASK = "***"
# the environment variables whose URLs may carry credentials
SECRET_URL_VARIABLES = ("MLFLOW_TRACKING_URI", "BIRDPLANE_DATA_URL")
# scheme://then anything up to white space, quotes or angle brackets (how URLs end in messages)
# (a scheme starts a word: without the look-behind a long word would be tried at every letter)
_URL = re.compile(r"(?<![A-Za-z0-9+.\-])[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>`]+")
# user:password@ outside a URL (urllib's "unknown host user:password@127.0.0.1")
_USERINFO = re.compile(r"(?<![^\s'\"<>`(=,;])[^\s/@:'\"<>`()]+:[^\s/@'\"<>`()]+@(?=[\w\[])")
_remembered: set[str] = set()


def _split(url: str) -> SplitResult | None:
    try:
        return urlsplit(url)
    except ValueError:  # e.g. an unbalanced [ in the host
        return None


def redact_url(url: str) -> str:
    """`url` with its userinfo and query (and fragment) replaced by ***; anything that does not
    parse as a URL with a scheme is returned whole only if it holds no '@' or '?'."""
    parts = _split(url)
    if parts is None or not parts.scheme:
        return MASK if ("@" in url or "?" in url) else url
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{MASK}@{netloc.rsplit('@', 1)[1]}"
    text = f"{parts.scheme}://{netloc}{parts.path}"
    if parts.query or url.rstrip("#").endswith("?"):
        text += f"?{MASK}"
    if parts.fragment:
        text += f"#{MASK}"
    return text


def secrets_of(url: str) -> list[str]:
    """The parts of `url` that must never be shown: its userinfo (and the password alone), its
    query string (and each value in it) and fragment; longest first, so that replacing them leaves no piece behind."""
    parts = _split(url)
    if parts is None:
        return []
    found = []
    if "@" in parts.netloc:
        userinfo = parts.netloc.rsplit("@", 1)[0]
        found += [userinfo, *([userinfo.split(":", 1)[1]] if ":" in userinfo else [])]
    found += [parts.query, parts.fragment, *(value for _, value in parse_qsl(parts.query))]
    # a secret of fewer than 4 characters would mask unrelated text; such a one is no secret anyway
    return sorted({s for s in found if len(s) >= 4}, key=len, reverse=True)


def remember_secrets_of(url: str) -> None:
    """Mask `url`'s secrets in everything `redact` returns from now on, in this process."""
    _remembered.update(secrets_of(url))


def _known_secrets() -> list[str]:
    found = set(_remembered)
    for var in SECRET_URL_VARIABLES:
        if os.environ.get(var):
            found.update(secrets_of(os.environ[var]))
    return sorted(found, key=len, reverse=True)


def redact(text: str) -> str:
    """`text` with every URL in it redacted (redact_url) and every known secret masked."""
    text = _URL.sub(lambda m: redact_url(m.group(0)), text)
    text = _USERINFO.sub(f"{MASK}@", text)
    for secret in _known_secrets():
        text = text.replace(secret, MASK)
    return text


# C0 and C1 control characters, DEL, and the Unicode format characters that reorder or hide text
# (bidirectional overrides and isolates, zero-width characters, the BOM)
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")


def printable(text: str | bytes, limit: int = 200) -> str:
    """One terminal-safe line of outside text: bytes decoded with invalid ones replaced, newlines,
    tabs, escapes and every other control character shown as \\n, \\t, \\x1b ..., secrets redacted,
    at most `limit` characters (cut with '...')."""
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text[: limit * 4]).decode("utf-8", errors="replace")
    text = redact(text[: limit * 4])  # bounded work on a huge body: only its start can be shown
    escaped = _UNPRINTABLE.sub(lambda m: repr(m.group(0))[1:-1], text)  # \n, \x1b, \u202e
    return escaped if len(escaped) <= limit else escaped[: limit - 3] + "..."


# Markdown's characters that can start markup inside a line: emphasis, links, code, escapes, table
# cells; an underscore only at a word's edge (inside a word, as in mse_lr0.01, it is plain text)
_MD_SPECIAL = re.compile(r"([\\`*\[\]|]|(?<!\w)_|_(?!\w))")


def md_text(value: object) -> str:
    """`value` as literal text in Markdown (a table cell, a sentence): HTML's &, < and > as
    entities, the characters that start markup backslash-escaped, line breaks and other control
    characters as escapes (printable), so a value can neither add HTML nor end its cell. Plain
    words, numbers, paths and names come out unchanged."""
    text = printable(str(value), limit=500)
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MD_SPECIAL.sub(r"\\\1", text)


def md_code(value: object) -> str:
    """`value` as an inline code span that no backtick in it can end: fenced by one backtick more
    than its longest run (CommonMark), padded with a space where it starts or ends with one; pipes
    escaped, which GitHub's tables read as cell ends even inside code."""
    text = printable(str(value), limit=500).replace("|", "\\|")
    runs = [len(r) for r in re.findall(r"`+", text)]
    fence = "`" * (max(runs, default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"
