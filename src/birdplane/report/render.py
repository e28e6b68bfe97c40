"""The document's blocks as Markdown and self-contained HTML, from the same templates' data."""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from birdplane.report.document import Block


def _environments():
    import jinja2

    env_md = jinja2.Environment(
        loader=jinja2.PackageLoader("birdplane.report", "templates"),
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    env_html = jinja2.Environment(
        loader=jinja2.PackageLoader("birdplane.report", "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    env_md.filters["cell"] = _cell
    env_md.filters["fenced"] = _fenced
    env_html.filters["code"] = _inline_code
    return env_md, env_html


def render(title: str, blocks: list[Block], lang: str, figure_dir: Path) -> tuple[str, str]:
    """(markdown, html) from the same blocks; HTML embeds every figure as a data URI."""
    env_md, env_html = _environments()

    def data_uri(name: str) -> str:
        with (figure_dir / name).open("rb") as fh:
            return "data:image/png;base64," + base64.b64encode(fh.read()).decode("ascii")

    md = env_md.get_template("report.md.j2").render(title=title, blocks=blocks, lang=lang)
    html = env_html.get_template("report.html.j2").render(
        title=title, blocks=blocks, lang=lang, data_uri=data_uri
    )
    return md, html


def markdown(blocks: list[Block]) -> str:
    """Blocks alone as Markdown, as the report writes them (without its title and header comment)."""
    md = _environments()[0].get_template("report.md.j2").render(title="", blocks=blocks, lang="")
    return md.split("\n", 3)[3]  # the comment, "# ", an empty line


def _cell(text: object) -> str:
    """A table cell on one line, every pipe escaped (one that birdplane.text escaped already stays)."""
    return re.sub(r"(?<!\\)\|", r"\\|", str(text)).replace("\n", " ")


def _fenced(text: str, info: str = "yaml") -> str:
    """A fenced code block that no run of backticks in `text` can close: one backtick more."""
    fence = "`" * max(3, 1 + max((len(r) for r in re.findall(r"`+", text)), default=0))
    return f"{fence}{info}\n{text}\n{fence}"


# a code span: a run of backticks, then text up to a run of the same length (CommonMark)
_CODE_SPAN = re.compile(r"(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)", re.DOTALL)
# what birdplane.text.md_text escapes, and the entities it writes
_MD_ESCAPE = re.compile(r"\\([\\`*_\[\]|])")
_ENTITIES = {"&lt;": "<", "&gt;": ">", "&amp;": "&"}


def _plain(text: str) -> str:
    """Markdown text (no code) as the characters it shows: md_text's escapes undone."""
    text = _MD_ESCAPE.sub(r"\1", text)
    return re.sub("&(lt|gt|amp);", lambda m: _ENTITIES[m.group(0)], text)


def _inline_code(text: str):
    """Markdown's code spans (any fence length, as birdplane.text.md_code writes them) as <code>,
    the rest as the text it shows; all of it HTML-escaped."""
    from markupsafe import Markup, escape

    text, html, at = str(text), Markup(""), 0
    for m in _CODE_SPAN.finditer(text):
        code = m.group(2)
        if len(code) > 2 and code[0] == code[-1] == " " and code.strip():
            code = code[1:-1]
        html += (
            escape(_plain(text[at : m.start()]))
            + Markup("<code>")
            + escape(code.replace("\\|", "|"))
            + Markup("</code>")
        )
        at = m.end()
    return html + escape(_plain(text[at:]))
