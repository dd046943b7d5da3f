"""A receipt in words, top to bottom, before it meets paper.

Every format prints the same rows in the same order; only the fitting
differs (columns of a thermal printer, points of a PDF page). So the words,
the numbers in the locale's style and the order live here once, and
:mod:`~cardcenter.receipts.text`, :mod:`~cardcenter.receipts.escpos` and
:mod:`~cardcenter.receipts.pdf` only lay them out.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from datetime import tzinfo
from enum import StrEnum

from cardcenter.receipts import labels
from cardcenter.receipts.labels import check_locale, label
from cardcenter.receipts.model import Amount, Item, Receipt, ReceiptKind, TokenKind, TokenLine


class RowKind(StrEnum):
    HEADING = "heading"
    """Centred and emphasised: the utility, the site, the title, the reprint mark."""
    CENTRE = "centre"
    """Centred: the footer."""
    PAIR = "pair"
    """A label on the left and its value on the right."""
    NOTE = "note"
    """Left-aligned text: what a token is."""
    TOKEN = "token"
    """A token's digits in groups of four, large."""
    RULE = "rule"
    """A line across the paper."""


@dataclass(frozen=True)
class Row:
    kind: RowKind
    text: str = ""
    value: str = ""


RULE = Row(RowKind.RULE)

_TITLES = {
    ReceiptKind.CARD_SALE: "title_card_sale",
    ReceiptKind.OPENING: "title_opening",
    ReceiptKind.CARRY_OVER: "title_carry_over",
    ReceiptKind.TOKEN_SALE: "title_token_sale",
    ReceiptKind.ENGINEERING: "title_engineering",
}

_SETTLED = {"written", "delivered"}
"""States a receipt does not mention: the sale is done."""

_DROPPED = {"Cf", "Cs", "Co", "Cn"}
_BLANKED = {"Cc", "Zl", "Zp"}


def clean(text: str) -> str:
    """Text a printer can put on one line: no control characters, no invisible formatting.

    A name typed with a tab or a newline in it would otherwise break the
    layout (and an ESC in it would be a printer command).
    """
    return "".join(
        " " if unicodedata.category(ch) in _BLANKED else ch
        for ch in text
        if unicodedata.category(ch) not in _DROPPED
    )


def rows(receipt: Receipt, locale: str = "en", tz: tzinfo | str = "UTC") -> list[Row]:
    """The receipt's rows in ``locale``, times in the hall's time zone ``tz``."""
    check_locale(locale)
    r = receipt
    out = [Row(RowKind.HEADING, line) for line in r.header]
    out.append(Row(RowKind.HEADING, r.site))
    out.append(RULE)
    out.append(Row(RowKind.HEADING, label(_TITLES[r.kind], locale)))
    if r.reprinted_at is not None:
        out.append(Row(RowKind.HEADING, label("reprint", locale)))
        out.append(Row(RowKind.CENTRE, labels.when(r.reprinted_at, locale, tz)))
    if r.status not in _SETTLED:
        key = f"status_{r.status}"
        out.append(pair("status", label(key, locale) if key in labels.LABELS else r.status, locale))
    if r.number is not None:
        out.append(pair("receipt_no", str(r.number), locale))
    out.append(pair("date", labels.when(r.issued_at, locale, tz), locale))
    out.append(pair("operator", r.operator, locale))
    out.append(RULE)
    out.append(pair("customer_no", r.customer_no, locale))
    out.append(pair("customer_name", r.customer_name, locale))
    out.append(pair("meter_no", r.meter_no, locale))
    optional = (
        ("pan", r.pan),
        ("previous_meter_no", r.previous_meter_no),
        ("card_serial", r.card_serial),
        ("tariff", r.tariff),
        ("purchase_count", None if r.purchase_count is None else str(r.purchase_count)),
    )
    out += [pair(key, value, locale) for key, value in optional if value is not None]
    if r.amounts:
        out.append(RULE)
        out += [amount_row(amount, locale) for amount in r.amounts]
    if r.tokens:
        out.append(RULE)
        out.append(Row(RowKind.HEADING, label("tokens", locale)))
        if len(r.tokens) > 1:
            out.append(Row(RowKind.NOTE, label("token_order", locale)))
        for number, token in enumerate(r.tokens, start=1):
            prefix = f"{number}. " if len(r.tokens) > 1 else ""
            out.append(Row(RowKind.NOTE, prefix + token_words(token, locale)))
            out.append(Row(RowKind.TOKEN, token.grouped))
    out.append(RULE)
    out.append(pair("reference", r.request_id, locale))
    footer = r.footer or (label("footer", locale),)
    out += [Row(RowKind.CENTRE, line) for line in footer]
    return [Row(row.kind, clean(row.text), clean(row.value)) for row in out]


def pair(key: str, value: str, locale: str) -> Row:
    return Row(RowKind.PAIR, label(key, locale), value)


def amount_row(amount: Amount, locale: str) -> Row:
    """A line of money (or energy) with its label: months for a fixed charge, rate for tax."""
    if amount.item is Item.ENERGY:
        return Row(
            RowKind.PAIR,
            label("energy", locale),
            label("kwh", locale, kwh=labels.kwh(amount.value, locale)),
        )
    if amount.item is Item.FIXED_CHARGE and amount.months:
        text = label("fixed_charge_months", locale, months=labels.months(amount.months, locale))
    elif amount.item is Item.TAX and amount.rate is not None:
        text = label("tax_rate", locale, rate=labels.percent(amount.rate, locale))
    else:
        text = label(amount.item.value, locale)
    return Row(RowKind.PAIR, text, labels.money(amount.value, locale))


def token_words(token: TokenLine, locale: str) -> str:
    """What a token does, in the locale's words."""
    if token.kind is TokenKind.CREDIT:
        if token.tenths is None:
            return token.what
        return label("token_credit", locale, kwh=labels.kwh(token.tenths, locale))
    if token.kind is TokenKind.KEY_CHANGE:
        return label("token_key_change", locale, section=token.section, sections=token.sections)
    return label("token_engineering", locale, what=token.what)
