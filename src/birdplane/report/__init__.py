"""The homework report (stage `report`): findings, the document in one language, Markdown and HTML.

`findings` computes what the metrics say, `document` writes it as blocks with `i18n`'s phrases,
`render` turns the blocks into Markdown and HTML with `templates/`, `figures` draws the PNGs
(matplotlib, imported only when a figure is drawn).
"""
from birdplane.report.document import Block, build_document
from birdplane.report.findings import Inputs, Variant, analyse
from birdplane.report.render import render

__all__ = ["Block", "Inputs", "Variant", "analyse", "build_document", "render"]
