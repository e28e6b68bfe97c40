"""The homework report (stage `report`): findings, the document in one language, Markdown and HTML.

`findings` computes what the metrics say; `document` decides which sentence applies and writes it
as blocks with the words of `lang/<lang>.toml`, loaded and checked by `catalog`; `render` turns the
blocks into Markdown and HTML with `templates/`; `figures` draws the PNGs (matplotlib, imported
only when a figure is drawn). A new language is one more file in `lang/`.
"""

from birdplane.report.catalog import languages, phrases
from birdplane.report.document import Block, build_document
from birdplane.report.findings import Inputs, Variant, analyse
from birdplane.report.render import render

__all__ = [
    "Block",
    "Inputs",
    "Variant",
    "analyse",
    "build_document",
    "languages",
    "phrases",
    "render",
]
