"""A receipt as a PDF: one 80 mm wide page as long as the receipt, for a printer or an e-mail.

The page is the width of an 80 mm roll so the same file prints on a
receipt printer's PDF driver and on A4 (where it sits as a slip); its height
is fitted to the content, so a batch with a key change is still one page.

Text in Windows-1252 is set in Helvetica; anything else (Chinese) in
reportlab's built-in CID font STSong-Light, which every PDF reader has for
Simplified Chinese, so no font file is shipped or embedded. Token digits
are large and bold, in groups of four. A reprint carries "REPRINT" across
the page beneath the text as well as the localised mark in the heading.

``invariant`` output (no creation time, a fixed document id): the same
receipt gives the same bytes, which the tests and an archive can compare.
"""

from __future__ import annotations

import functools
import io
from dataclasses import dataclass
from datetime import tzinfo
from typing import Final

from reportlab.lib.units import mm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.pdfgen.canvas import Canvas

from cardcenter.receipts.content import Row, RowKind, rows
from cardcenter.receipts.model import Receipt
from cardcenter.receipts.text import wrap

PAGE_WIDTH: Final = 80 * mm
MARGIN: Final = 4 * mm
WIDTH: Final = PAGE_WIDTH - 2 * MARGIN
"""Points of text across the page."""

CJK_FONT: Final = "STSong-Light"
LATIN: Final = {False: "Helvetica", True: "Helvetica-Bold"}
BODY: Final = 8.0
HEADING: Final = 10.0
TOKEN: Final = 15.0
LEADING: Final = 1.3
GAP: Final = 6.0
"""Least space between a label and its value, points."""


@functools.cache
def _cjk_font() -> str:
    """Register STSong-Light with reportlab, once per process."""
    pdfmetrics.registerFont(UnicodeCIDFont(CJK_FONT))
    return CJK_FONT


def font_for(text: str, strong: bool = False) -> str:
    """Helvetica for text it can set (Windows-1252), STSong-Light for anything else."""
    try:
        text.encode("cp1252")
    except UnicodeEncodeError:
        return _cjk_font()
    return LATIN[strong]


@dataclass(frozen=True)
class Piece:
    """A run of text on a line: left, centred or right."""

    text: str
    align: str
    font: str
    size: float


@dataclass(frozen=True)
class PageLine:
    """One line of the page: its pieces and its height (none for a rule)."""

    pieces: tuple[Piece, ...]
    size: float
    rule: bool = False

    @property
    def height(self) -> float:
        return self.size * LEADING


def render(
    receipt: Receipt, *, locale: str = "en", tz: tzinfo | str = "UTC", compress: bool = True
) -> bytes:
    """The receipt as PDF bytes (``compress=False`` leaves the content stream readable)."""
    page = [line for row in rows(receipt, locale, tz) for line in fit(row)]
    height = sum(line.height for line in page) + 2 * MARGIN
    buffer = io.BytesIO()
    canvas = Canvas(
        buffer, pagesize=(PAGE_WIDTH, height), pageCompression=int(compress), invariant=1
    )
    number = receipt.number if receipt.number is not None else receipt.request_id
    canvas.setTitle(f"Receipt {number}")
    canvas.setCreator("cardcenter")
    if receipt.reprint:
        _watermark(canvas, height)
    y = height - MARGIN
    for line in page:
        y -= line.height
        _draw(canvas, line, y)
    canvas.showPage()
    canvas.save()
    return buffer.getvalue()


def fit(row: Row) -> list[PageLine]:
    """A row as page lines: wrapped to the text width, each piece in a font that has it."""
    if row.kind is RowKind.RULE:
        return [PageLine((), BODY / 2, rule=True)]
    if row.kind is RowKind.PAIR:
        return _pair(row.text, row.value)
    strong = row.kind in (RowKind.HEADING, RowKind.TOKEN)
    size = {RowKind.HEADING: HEADING, RowKind.TOKEN: TOKEN}.get(row.kind, BODY)
    align = "left" if row.kind is RowKind.NOTE else "centre"
    font = font_for(row.text, strong)
    if row.kind is RowKind.TOKEN:
        # the digits stay on one line: smaller type rather than a split token
        size = min(size, WIDTH / pdfmetrics.stringWidth(row.text, font, 1))
    return [
        PageLine((Piece(part, align, font, size),), size)
        for part in wrap(row.text, WIDTH, _measure(font, size))
    ]


def _pair(label: str, value: str) -> list[PageLine]:
    """Label left, value right: on one line, or the label wrapped beside or above the value."""
    label_font, value_font = font_for(label), font_for(value)
    label_width = _measure(label_font, BODY)
    value_width = _measure(value_font, BODY)
    room = value_width(value)

    def left(part: str) -> Piece:
        return Piece(part, "left", label_font, BODY)

    def right(part: str) -> Piece:
        return Piece(part, "right", value_font, BODY)

    if label_width(label) + GAP + room <= WIDTH:
        return [_line(left(label), right(value))]
    if room + GAP <= WIDTH / 2:
        head = wrap(label, WIDTH - room - GAP, label_width)
        return [*(_line(left(part)) for part in head[:-1]), _line(left(head[-1]), right(value))]
    above = [_line(left(part)) for part in wrap(label, WIDTH, label_width)]
    return above + [_line(right(part)) for part in wrap(value, WIDTH, value_width)]


def _line(*pieces: Piece) -> PageLine:
    return PageLine(pieces, max(piece.size for piece in pieces))


def _measure(font: str, size: float) -> functools.partial[float]:
    return functools.partial(_string_width, font=font, size=size)


def _string_width(text: str, *, font: str, size: float) -> float:
    return float(pdfmetrics.stringWidth(text, font, size))


def _draw(canvas: Canvas, line: PageLine, y: float) -> None:
    if line.rule:
        canvas.setLineWidth(0.5)
        canvas.line(MARGIN, y + line.height / 2, PAGE_WIDTH - MARGIN, y + line.height / 2)
        return
    for piece in line.pieces:
        canvas.setFont(piece.font, piece.size)
        if piece.align == "left":
            canvas.drawString(MARGIN, y, piece.text)
        elif piece.align == "right":
            canvas.drawRightString(PAGE_WIDTH - MARGIN, y, piece.text)
        else:
            canvas.drawCentredString(PAGE_WIDTH / 2, y, piece.text)


def _watermark(canvas: Canvas, height: float) -> None:
    """The word REPRINT across the page in light grey, under the text."""
    canvas.saveState()
    canvas.setFillGray(0.85)
    canvas.setFont("Helvetica-Bold", 40)
    canvas.translate(PAGE_WIDTH / 2, height / 2)
    canvas.rotate(60)
    canvas.drawCentredString(0, 0, "REPRINT")
    canvas.restoreState()
