"""The document's blocks as Markdown and self-contained HTML, from the same templates' data."""
from __future__ import annotations

import base64
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from birdplane.report.document import Block


def render(title: str, blocks: list[Block], lang: str, figure_dir: Path) -> tuple[str, str]:
    """(markdown, html) from the same blocks; HTML embeds every figure as a data URI."""
    import jinja2

    env_md = jinja2.Environment(loader=jinja2.PackageLoader("birdplane.report", "templates"),
                                autoescape=False, keep_trailing_newline=True,
                                trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined)
    env_html = jinja2.Environment(loader=jinja2.PackageLoader("birdplane.report", "templates"),
                                  autoescape=True, trim_blocks=True, lstrip_blocks=True,
                                  undefined=jinja2.StrictUndefined)
    env_md.filters["cell"] = lambda s: str(s).replace("|", "\\|").replace("\n", " ")
    env_html.filters["code"] = _inline_code

    def data_uri(name: str) -> str:
        with (figure_dir / name).open("rb") as fh:
            return "data:image/png;base64," + base64.b64encode(fh.read()).decode("ascii")

    md = env_md.get_template("report.md.j2").render(title=title, blocks=blocks, lang=lang)
    html = env_html.get_template("report.html.j2").render(title=title, blocks=blocks, lang=lang, data_uri=data_uri)
    return md, html


def _inline_code(text: str):
    """`code` spans as <code> in HTML; everything else escaped."""
    from markupsafe import Markup, escape

    parts = str(text).split("`")
    return Markup("".join(escape(p) if i % 2 == 0 else Markup("<code>") + escape(p) + Markup("</code>")
                          for i, p in enumerate(parts)))
