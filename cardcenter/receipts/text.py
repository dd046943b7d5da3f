"""A receipt as fixed-width lines: what a thermal printer prints, and a plain-text preview.

Widths are counted in columns as a printer or a terminal shows them, not in
characters: a Chinese character takes two (Unicode's East Asian Width
"W"/"F"), a combining accent none. A line never passes the width: a label
and its value share a line when they fit, money stays right-aligned, and
whatever is too long wraps (at spaces, else between characters, which is
how Chinese wraps anyway).

58 mm paper prints 32 columns of the standard 12-dot font, 80 mm paper 48.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import tzinfo
from typing import Final

from cardcenter.receipts.content import Row, RowKind, rows
from cardcenter.receipts.model import Receipt

COLUMNS: Final = {58: 32, 80: 48}
"""Paper width in mm -> columns of the standard font."""

NARROWEST: Final = 24
"""Columns a token needs: 20 digits in five groups of four."""

Measure = Callable[[str], float]
"""The width of a text: columns on a printer, points on a page."""


def cell_width(ch: str) -> int:
    """Columns one character takes: 2 for wide East Asian ones, 0 for combining marks."""
    if unicodedata.combining(ch) or unicodedata.category(ch) in ("Mn", "Me", "Cf"):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def display_width(text: str) -> int:
    """Columns ``text`` takes on a terminal or a printer with a CJK font."""
    return sum(cell_width(ch) for ch in text)


@dataclass(frozen=True)
class Line:
    """One printed line and whether it is emphasised (bold, double height)."""

    text: str
    strong: bool = False


def lines(
    receipt: Receipt, *, width: int = 32, locale: str = "en", tz: tzinfo | str = "UTC"
) -> list[str]:
    """The receipt as lines of at most ``width`` columns (32 for 58 mm, 48 for 80 mm)."""
    return [line.text for line in styled(rows(receipt, locale, tz), width)]


def text(receipt: Receipt, *, width: int = 32, locale: str = "en", tz: tzinfo | str = "UTC") -> str:
    """The receipt as one string, lines ending in newlines."""
    return "".join(f"{line}\n" for line in lines(receipt, width=width, locale=locale, tz=tz))


def styled(content: list[Row], width: int, measure: Measure = display_width) -> list[Line]:
    """Rows fitted to ``width`` columns as ``measure`` counts them."""
    if width < NARROWEST:
        raise ValueError(f"a receipt needs at least {NARROWEST} columns, not {width}")
    out: list[Line] = []
    for row in content:
        if row.kind is RowKind.RULE:
            out.append(Line("-" * width))
        elif row.kind is RowKind.HEADING:
            out += [Line(centred(t, width, measure), True) for t in wrap(row.text, width, measure)]
        elif row.kind is RowKind.CENTRE:
            out += [Line(centred(t, width, measure)) for t in wrap(row.text, width, measure)]
        elif row.kind is RowKind.TOKEN:
            out += [Line(centred(t, width, measure), True) for t in wrap(row.text, width, measure)]
        elif row.kind is RowKind.NOTE:
            out += [Line(t) for t in wrap(row.text, width, measure)]
        else:
            out += [Line(t) for t in pair(row.text, row.value, width, measure)]
    return out


def pair(label: str, value: str, width: int, measure: Measure = display_width) -> list[str]:
    """``label`` left, ``value`` right-aligned; wrapped when they do not share a line."""
    used, room = measure(label), measure(value)
    if used + 1 + room <= width:
        return [label + " " * int(width - used - room) + value]
    if 1 + room <= width // 2:
        # a short value (money): the label wraps beside it, the value on its last line
        head = wrap(label, int(width - room - 1), measure)
        last = head.pop()
        return [*head, last + " " * int(width - measure(last) - room) + value]
    return wrap(label, width, measure) + [
        " " * int(width - measure(part)) + part for part in wrap(value, width, measure)
    ]


def centred(line: str, width: int, measure: Measure = display_width) -> str:
    return " " * int((width - measure(line)) // 2) + line


def wrap(text: str, width: float, measure: Measure = display_width) -> list[str]:
    """``text`` in lines of at most ``width``: at spaces, long words between characters."""
    out: list[str] = []
    current = ""
    for whole in text.split():
        word = whole
        while measure(word) > width:
            if current:
                out.append(current)
                current = ""
            head, word = cut(word, width, measure)
            out.append(head)
        joined = f"{current} {word}" if current else word
        if measure(joined) <= width:
            current = joined
        else:
            out.append(current)
            current = word
    if current or not out:
        out.append(current)
    return out


def cut(word: str, width: float, measure: Measure = display_width) -> tuple[str, str]:
    """The longest head of ``word`` within ``width`` (one character at least), and the rest."""
    end = 1
    while end < len(word) and measure(word[: end + 1]) <= width:
        end += 1
    return word[:end], word[end:]
