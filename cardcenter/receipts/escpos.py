"""A receipt as ESC/POS bytes for a 58 or 80 mm thermal printer (no printer I/O here).

The code page is chosen from the text, not from the locale:

- **CP437** (``ESC t 0``), the page every ESC/POS printer has, when every
  character of the receipt is in it (English receipts, Latin names with
  accents such as "é"). ``FS .`` first turns off the Chinese character
  mode that printers sold in China start in, or their CP437 bytes above
  0x7F would be read as halves of Chinese characters.
- **GB18030** in Chinese character mode (``FS &``) otherwise: Chinese
  labels, or a Chinese name on an English receipt. Printers with Chinese
  firmware print GB2312/GBK double-byte codes in this mode, and GB18030
  is their superset that encodes every character (rare ones outside GBK
  come out as the printer's blank box rather than breaking the line). In
  this mode every character that is not ASCII prints two columns wide,
  Latin accents too, so lines are measured that way.

Headings and token digits are bold (``ESC E``) and double height
(``GS !`` 0x01), which keeps the column count; the receipt ends with
``GS V 66 0``: feed to the cutter and cut partially, leaving a tab that
holds the receipt until the customer takes it. A printer without a cutter
ignores it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import tzinfo
from enum import StrEnum
from typing import Final

from cardcenter.receipts.content import Row, rows
from cardcenter.receipts.model import Receipt
from cardcenter.receipts.text import COLUMNS, Line, Measure, display_width, styled

ESC: Final = b"\x1b"
FS: Final = b"\x1c"
GS: Final = b"\x1d"
LF: Final = b"\n"

INIT: Final = ESC + b"@"
"""ESC @: clear the buffer and every mode set before (the last receipt's bold, say)."""
CP437_PAGE: Final = FS + b"." + ESC + b"t\x00"
"""FS . (Chinese mode off) and ESC t 0 (code page 437)."""
CHINESE_MODE: Final = FS + b"&"
"""FS &: Chinese character mode, double-byte codes (GB18030 here)."""
BOLD_ON: Final = ESC + b"E\x01"
BOLD_OFF: Final = ESC + b"E\x00"
DOUBLE_HEIGHT: Final = GS + b"!\x01"
NORMAL_SIZE: Final = GS + b"!\x00"
CUT: Final = GS + b"V\x42\x00"
"""GS V 66 0: feed to the cutting position and cut partially."""


class CodePage(StrEnum):
    CP437 = "cp437"
    GB18030 = "gb18030"


def gb_width(text: str) -> int:
    """Columns in Chinese character mode: ASCII one, every other character two."""
    return sum(1 if ch.isascii() else 2 for ch in text)


_MEASURE: Final[dict[CodePage, Measure]] = {
    CodePage.CP437: display_width,
    CodePage.GB18030: gb_width,
}


@dataclass(frozen=True)
class Layout:
    """The lines to print and the code page they are printed in."""

    code_page: CodePage
    columns: int
    lines: list[Line]


def code_page_for(content: list[Row]) -> CodePage:
    """CP437 when it has every character of the receipt, else GB18030 (see the module)."""
    try:
        for row in content:
            (row.text + row.value).encode(CodePage.CP437)
    except UnicodeEncodeError:
        return CodePage.GB18030
    return CodePage.CP437


def layout(
    receipt: Receipt, *, paper: int = 58, locale: str = "en", tz: tzinfo | str = "UTC"
) -> Layout:
    """The receipt fitted to ``paper`` (58 or 80 mm) in the code page its text needs."""
    if paper not in COLUMNS:
        raise ValueError(f"thermal paper is 58 or 80 mm wide, not {paper}")
    content = rows(receipt, locale, tz)
    page = code_page_for(content)
    columns = COLUMNS[paper]
    return Layout(page, columns, styled(content, columns, _MEASURE[page]))


def render(
    receipt: Receipt, *, paper: int = 58, locale: str = "en", tz: tzinfo | str = "UTC"
) -> bytes:
    """The bytes to send to the printer, from ``ESC @`` to the cut."""
    return encode(layout(receipt, paper=paper, locale=locale, tz=tz))


def encode(plan: Layout) -> bytes:
    """Printer commands for a layout: initialise, code page, lines (styles as they change), cut."""
    out = bytearray(INIT)
    out += CP437_PAGE if plan.code_page is CodePage.CP437 else CHINESE_MODE
    strong = False
    for line in plan.lines:
        if line.strong != strong:
            strong = line.strong
            out += BOLD_ON + DOUBLE_HEIGHT if strong else BOLD_OFF + NORMAL_SIZE
        out += line.text.encode(plan.code_page, errors="replace") + LF
    if strong:
        out += BOLD_OFF + NORMAL_SIZE
    out += CUT
    return bytes(out)
