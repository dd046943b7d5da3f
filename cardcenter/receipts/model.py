"""A receipt as data: what was sold, to whom, for how much, and the tokens to type.

A :class:`Receipt` holds facts, not words: label keys, integer minor units,
an aware time, token digits. The language, the time zone and the paper are
chosen when it is printed (:mod:`~cardcenter.receipts.text`,
:mod:`~cardcenter.receipts.escpos`, :mod:`~cardcenter.receipts.pdf`), so one
receipt prints the same sale for a Chinese-speaking cashier and an
English-speaking supervisor's reprint.

The builders read the results the services already return
(:func:`cardcenter.sales.services.sale_result` for a card,
:func:`cardcenter.tokens.services.vend` or ``reprint`` for a token). Those
give money as decimal strings (``"12.34"``); they become minor units through
:class:`~decimal.Decimal`, exactly. What a result does not carry (the
customer's name, the site, a card sale's operator) is asked for by keyword.

A reprint is the same receipt marked: ``reprinted_at`` is when it was printed
again. A result repeated for a retried request (``replayed``) is not a
reprint by itself: the first print may never have happened, so the caller
says which it is.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any

from cardlayout.sts.tokens import ManagementSubclass


class ReceiptKind(StrEnum):
    """What the receipt is for; it chooses the title."""

    CARD_SALE = "card_sale"
    OPENING = "opening"
    """A new account's first card, with its first purchase (possibly of nothing)."""
    CARRY_OVER = "carry_over"
    """A meter swap: the old meter's credit travels to the new one on the card."""
    TOKEN_SALE = "token_sale"
    ENGINEERING = "engineering"
    """Management tokens for an engineer: no money."""


class Item(StrEnum):
    """A line of the money (or energy) part of a receipt, by its label key."""

    TENDERED = "tendered"
    FIXED_CHARGE = "fixed_charge"
    TAX = "tax"
    CREDIT = "credit"
    CARRIED = "carried"
    CARD_AMOUNT = "card_amount"
    """The purse written, when the credit was added to a purchase the meter has not loaded."""
    ENERGY = "energy"
    """Energy a token credits, in tenths of a kWh (not money)."""


@dataclass(frozen=True)
class Amount:
    """One line of money: what it is and how much, in minor units (energy: 0.1 kWh)."""

    item: Item
    value: int
    months: tuple[str, ...] = ()
    """The ``YYYY-MM`` months a fixed charge pays for."""
    rate: int | None = None
    """A tax's rate in basis points (1300 is 13 %), when known."""

    def __post_init__(self) -> None:
        if isinstance(self.value, bool) or not isinstance(self.value, int):
            raise TypeError(f"{self.item}: {self.value!r} is not a whole number of minor units")

    @property
    def is_money(self) -> bool:
        return self.item is not Item.ENERGY


class TokenKind(StrEnum):
    """The kinds of :class:`cardcenter.tokens.models.TokenKind`, as results name them."""

    CREDIT = "credit"
    KEY_CHANGE = "key_change"
    ENGINEERING = "engineering"


@dataclass(frozen=True)
class TokenLine:
    """One token to type into the keypad, in entry order."""

    digits: str
    kind: TokenKind
    what: str
    """The centre's own words for it, as issued (English)."""
    tenths: int | None = None
    """Energy a credit token gives, in tenths of a kWh."""
    section: int = 0
    """1..sections for a key change section."""
    sections: int = 0

    def __post_init__(self) -> None:
        if not self.digits.isdigit() or not self.digits.isascii():
            raise ValueError(f"token {self.digits!r} is not a string of digits")

    @property
    def grouped(self) -> str:
        """The digits in groups of four, as people read and type them."""
        return grouped(self.digits)


def grouped(digits: str) -> str:
    """``"15298186767018462969"`` as ``"1529 8186 7670 1846 2969"``."""
    return " ".join(digits[i : i + 4] for i in range(0, len(digits), 4))


@dataclass(frozen=True)
class Receipt:
    """Everything a receipt shows, in no language yet."""

    kind: ReceiptKind
    site: str
    request_id: str
    """The client's request id: what the API's reprint and a repeated request look up."""
    issued_at: datetime
    operator: str
    customer_no: str
    customer_name: str
    meter_no: str
    status: str
    """The sale's status (``written``, ``delivered``, ``reversed``...), as results give it."""
    number: int | None = None
    """The receipt number: the sale id (engineering tokens have no sale)."""
    header: tuple[str, ...] = ()
    """The utility's lines above everything: name, address, telephone, tax number."""
    pan: str | None = None
    """A keypad meter's STS PAN."""
    card_serial: str | None = None
    previous_meter_no: str | None = None
    tariff: str | None = None
    """The tariff name and version the sale was priced by (``home v3``)."""
    purchase_count: int | None = None
    amounts: tuple[Amount, ...] = ()
    tokens: tuple[TokenLine, ...] = ()
    reprint: bool = False
    reprinted_at: datetime | None = None
    footer: tuple[str, ...] = ()
    """Lines at the bottom; none prints the locale's "keep this receipt"."""

    def __post_init__(self) -> None:
        _check_aware(self.issued_at, "issued_at")
        if self.reprint != (self.reprinted_at is not None):
            raise ValueError("a reprint has a reprint time, and only a reprint has one")
        if self.reprinted_at is not None:
            _check_aware(self.reprinted_at, "reprinted_at")

    def reprinted(self, at: datetime) -> Receipt:
        """This receipt marked as printed again at ``at``."""
        return dataclasses.replace(self, reprint=True, reprinted_at=at)


# ---------------------------------------------------------------- builders

_SALE_KINDS = {
    "sale": ReceiptKind.CARD_SALE,
    "opening": ReceiptKind.OPENING,
    "carry_over": ReceiptKind.CARRY_OVER,
}


def receipt_for_sale(
    result: Mapping[str, Any],
    *,
    site: str,
    operator: str,
    customer_name: str,
    header: Sequence[str] = (),
    footer: Sequence[str] = (),
    customer_no: str | None = None,
    meter_no: str | None = None,
    card_serial: str | None = None,
    reprinted_at: datetime | None = None,
) -> Receipt:
    """The receipt of a card sale from its result (:func:`~cardcenter.sales.services.sale_result`).

    ``customer_no``, ``meter_no`` and ``card_serial`` are needed only for a
    result that lacks them (a repeated request's); given with one that has
    them, they must agree.
    """
    kind = _SALE_KINDS.get(str(result["kind"]))
    if kind is None:
        raise ValueError(f"a {result['kind']!r} sale has no card receipt")
    if result["status"] == "quote" or result.get("trial"):
        raise ValueError("a quote is not a sale: it has no receipt")
    breakdown: Mapping[str, Any] = result.get("breakdown") or {}
    credit = minor_units(result["credit"])
    card_amount = minor_units(result["card_amount"])
    amounts: list[Amount] = []
    if kind is ReceiptKind.CARRY_OVER:
        amounts.append(Amount(Item.CARRIED, credit))
    else:
        amounts += _paid(
            minor_units(result["tendered"]),
            minor_units(result["fixed_charge"]),
            tuple(breakdown.get("months") or ()),
            minor_units(result["tax"]),
            breakdown.get("tax_rate"),
            credit,
        )
    if card_amount != credit:
        amounts.append(Amount(Item.CARD_AMOUNT, card_amount))
    return Receipt(
        kind=kind,
        site=site,
        request_id=str(result["request_id"]),
        issued_at=datetime.fromisoformat(result["created_at"]),
        operator=operator,
        customer_no=_required(result, "customer_no", customer_no),
        customer_name=customer_name,
        meter_no=_required(result, "meter_no", meter_no),
        status=str(result["status"]),
        number=int(result["sale"]),
        header=tuple(header),
        card_serial=_optional(result, "card_serial", card_serial),
        previous_meter_no=breakdown.get("from_meter"),
        tariff=breakdown.get("tariff"),
        purchase_count=int(result["purchase_count"]),
        amounts=tuple(amounts),
        reprint=reprinted_at is not None,
        reprinted_at=reprinted_at,
        footer=tuple(footer),
    )


def receipt_for_tokens(
    result: Mapping[str, Any],
    *,
    site: str,
    customer_name: str,
    operator: str | None = None,
    tax_rate: int | None = None,
    header: Sequence[str] = (),
    footer: Sequence[str] = (),
    reprinted_at: datetime | None = None,
) -> Receipt:
    """The receipt of a token batch (:func:`~cardcenter.tokens.services.vend`, ``reprint``).

    A vend's result has a ``sale`` (the money) and ``energy``; an engineering
    token's has neither. ``operator`` replaces the operator's user name the
    result gives (a full name, say); ``tax_rate`` (basis points) is not in
    the result, and without it the tax line shows no rate.
    """
    entries: Sequence[Mapping[str, Any]] = result["tokens"]
    if not entries:
        raise ValueError(f"request {result['request_id']} issued no token")
    sections = sum(1 for entry in entries if entry["kind"] == TokenKind.KEY_CHANGE)
    sale: Mapping[str, Any] | None = result.get("sale")
    energy: Mapping[str, Any] = result.get("energy") or {}
    vended = tenths(energy["kwh"]) if "kwh" in energy else None
    tokens = tuple(_token(entry, sections, vended) for entry in entries)
    amounts: list[Amount] = []
    if sale is not None:
        amounts += _paid(
            minor_units(sale["tendered"]),
            minor_units(sale["fixed_charge"]),
            tuple(sale.get("months") or ()),
            minor_units(sale["tax"]),
            tax_rate,
            minor_units(sale["credit"]),
        )
    if vended is not None:
        amounts.append(Amount(Item.ENERGY, vended))
    return Receipt(
        kind=ReceiptKind.TOKEN_SALE if sale is not None else ReceiptKind.ENGINEERING,
        site=site,
        request_id=str(result["request_id"]),
        issued_at=datetime.fromisoformat(result["issued_at"]),
        operator=operator or str(result["operator"]),
        customer_no=str(result["customer_no"]),
        customer_name=customer_name,
        meter_no=str(result["meter_no"]),
        status=str(sale["status"]) if sale is not None else "delivered",
        number=int(sale["id"]) if sale is not None else None,
        header=tuple(header),
        pan=str(result["meter"]),
        tariff=sale.get("tariff") if sale is not None else None,
        amounts=tuple(amounts),
        tokens=tokens,
        reprint=reprinted_at is not None,
        reprinted_at=reprinted_at,
        footer=tuple(footer),
    )


def minor_units(text: str) -> int:
    """A result's decimal money text (``"12.34"``) as minor units, exactly; never a float."""
    return _scaled(text, 2)


def tenths(text: str) -> int:
    """A result's kWh text (``"142.3"``) as tenths of a kWh."""
    return _scaled(text, 1)


def _scaled(text: str, places: int) -> int:
    if not isinstance(text, str):
        raise TypeError(f"{text!r} is not decimal text (results give money as strings)")
    try:
        value = Decimal(text).scaleb(places)
    except InvalidOperation:
        raise ValueError(f"{text!r} is not a decimal number") from None
    if not value.is_finite() or value != value.to_integral_value():
        raise ValueError(f"{text!r} has more than {places} decimal places")
    return int(value)


def _paid(
    tendered: int,
    fixed_charge: int,
    months: tuple[str, ...],
    tax: int,
    rate: int | None,
    credit: int,
) -> list[Amount]:
    """How the payment was split: paid, fixed charge (if any), tax, credit."""
    lines = [Amount(Item.TENDERED, tendered)]
    if fixed_charge:
        lines.append(Amount(Item.FIXED_CHARGE, fixed_charge, months=months))
    lines.append(Amount(Item.TAX, tax, rate=rate))
    lines.append(Amount(Item.CREDIT, credit))
    return lines


def _token(entry: Mapping[str, Any], sections: int, vended: int | None) -> TokenLine:
    kind = TokenKind(entry["kind"])
    section = 0
    if kind is TokenKind.KEY_CHANGE:
        section = ManagementSubclass(int(entry["subclass"])).section
    return TokenLine(
        digits=str(entry["digits"]),
        kind=kind,
        what=str(entry["what"]),
        tenths=vended if kind is TokenKind.CREDIT else None,
        section=section,
        sections=sections if kind is TokenKind.KEY_CHANGE else 0,
    )


def _optional(result: Mapping[str, Any], key: str, given: str | None) -> str | None:
    """A value of the result, or the one given for a result that lacks it; both must agree."""
    found = result.get(key)
    if found is not None and given is not None and str(found) != given:
        raise ValueError(f"the result has {key} {found}, not {given}")
    value = found if found is not None else given
    return None if value is None else str(value)


def _required(result: Mapping[str, Any], key: str, given: str | None) -> str:
    value = _optional(result, key, given)
    if value is None:
        raise ValueError(f"the result has no {key}: give {key}=")
    return value


def _check_aware(moment: datetime, name: str) -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} {moment!r} has no time zone")
