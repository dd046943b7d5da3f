"""Every word a receipt prints, in English and Simplified Chinese, and locale-aware numbers.

The table is here, in one place, rather than in the web application's
``.po`` files: receipts are made outside a request too (the API's reprint,
the command line, a batch of reprints), where Flask-Babel has no locale to
offer. The locale names are Babel's, the same as an operator's
(``operators.locale``).

Amounts are integer minor units and energy integer tenths of a kWh; they
become :class:`~decimal.Decimal` by moving the decimal point
(``scaleb``), never through a float, so 10**20 + 1 minor units still prints
its last cent.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, tzinfo
from decimal import Decimal
from typing import Final
from zoneinfo import ZoneInfo

from babel.dates import format_datetime, format_interval, format_skeleton
from babel.numbers import format_decimal

LOCALES: Final = ("en", "zh_Hans_CN")
"""The receipt languages, as Babel (and the operator's profile) names them."""

EN, ZH = LOCALES

LABELS: Final[dict[str, dict[str, str]]] = {
    # titles, one per kind of receipt
    "title_card_sale": {EN: "CARD PURCHASE RECEIPT", ZH: "IC卡购买收据"},
    "title_opening": {EN: "NEW CARD RECEIPT", ZH: "开户售卡收据"},
    "title_carry_over": {EN: "CREDIT MOVED TO NEW METER", ZH: "换表余额转移凭证"},
    "title_token_sale": {EN: "TOKEN PURCHASE RECEIPT", ZH: "令牌购买收据"},
    "title_engineering": {EN: "ENGINEERING TOKEN", ZH: "工程令牌"},
    "reprint": {EN: "*** REPRINT ***", ZH: "*** 补打 REPRINT ***"},
    # who, where, when
    "receipt_no": {EN: "Receipt no.", ZH: "收据号"},
    "reference": {EN: "Ref.", ZH: "请求号"},
    "date": {EN: "Date", ZH: "日期"},
    "site": {EN: "Site", ZH: "营业厅"},
    "operator": {EN: "Operator", ZH: "操作员"},
    "customer_no": {EN: "Customer no.", ZH: "用户编号"},
    "customer_name": {EN: "Name", ZH: "户名"},
    "meter_no": {EN: "Meter no.", ZH: "表号"},
    "pan": {EN: "Meter PAN", ZH: "表计PAN"},
    "previous_meter_no": {EN: "From meter", ZH: "原表号"},
    "card_serial": {EN: "Card serial", ZH: "卡号"},
    "tariff": {EN: "Tariff", ZH: "费率"},
    "purchase_count": {EN: "Purchase no.", ZH: "购买次数"},
    "status": {EN: "Status", ZH: "状态"},
    # the money and the energy
    "tendered": {EN: "Amount paid", ZH: "实收金额"},
    "fixed_charge": {EN: "Fixed charge", ZH: "固定费"},
    "fixed_charge_months": {EN: "Fixed charge ({months})", ZH: "固定费（{months}）"},
    "tax": {EN: "Tax", ZH: "税额"},
    "tax_rate": {EN: "Tax ({rate}%)", ZH: "税额（{rate}%）"},
    "credit": {EN: "Credit", ZH: "充值金额"},
    "carried": {EN: "Credit carried", ZH: "转移余额"},
    "card_amount": {EN: "On card (with unloaded credit)", ZH: "写卡金额（含未到表金额）"},
    "energy": {EN: "Energy", ZH: "电量"},
    "kwh": {EN: "{kwh} kWh", ZH: "{kwh} kWh"},
    # tokens
    "tokens": {EN: "TOKENS", ZH: "令牌"},
    "token_order": {EN: "Enter the tokens in this order:", ZH: "请按顺序输入以下令牌："},
    "token_credit": {EN: "Credit {kwh} kWh", ZH: "充值 {kwh} kWh"},
    "token_key_change": {
        EN: "Key change, section {section} of {sections}",
        ZH: "密钥更换，第{section}段（共{sections}段）",
    },
    "token_engineering": {EN: "{what}", ZH: "工程令牌：{what}"},
    # sale states worth printing (a receipt of a settled sale says nothing)
    "status_pending": {EN: "pending", ZH: "待确认"},
    "status_void": {EN: "VOID", ZH: "作废"},
    "status_reversed": {EN: "REVERSED", ZH: "已冲正"},
    "status_refunded": {EN: "REFUNDED", ZH: "已退款"},
    # the default footer
    "footer": {EN: "Please keep this receipt.", ZH: "请妥善保管本收据。"},
}
"""Label key -> locale -> text; ``{name}`` placeholders are filled by :func:`label`."""

MONEY_PATTERN: Final = "#,##0.00"
"""Two decimals and grouping, as the web pages show money (``cardcenter.web.i18n.money``)."""

_PLAIN = str.maketrans({"\u202f": " ", "\u00a0": " ", "\u2009": " ", "\u2013": "-"})
"""CLDR's narrow and thin spaces (``9:30\u202fAM``) and en dash as plain ASCII, which every
printer code page has (CP437 has neither)."""


def check_locale(locale: str) -> str:
    """``locale`` if receipts speak it; a clear error otherwise (no silent English)."""
    if locale not in LOCALES:
        raise ValueError(f"receipts are in {' or '.join(LOCALES)}, not {locale!r}")
    return locale


def label(key: str, locale: str, **values: object) -> str:
    """The text of ``key`` in ``locale``, placeholders filled from ``values``."""
    return LABELS[key][check_locale(locale)].format(**values)


def money(minor: int, locale: str) -> str:
    """Integer minor units as the locale writes an amount: 1234567 is ``12,345.67``."""
    _check_int(minor)
    text = format_decimal(Decimal(minor).scaleb(-2), format=MONEY_PATTERN, locale=locale)
    return str(text)


def kwh(tenths: int, locale: str) -> str:
    """Energy in tenths of a kWh as the locale writes it: 1423 is ``142.3``."""
    _check_int(tenths)
    return str(format_decimal(Decimal(tenths).scaleb(-1), format="#,##0.0", locale=locale))


def percent(basis_points: int, locale: str) -> str:
    """A tax rate in basis points as a number of percent: 1300 is ``13``, 1350 ``13.5``."""
    _check_int(basis_points)
    return str(format_decimal(Decimal(basis_points).scaleb(-2), format="#,##0.##", locale=locale))


def when(moment: datetime, locale: str, tz: tzinfo | str = "UTC") -> str:
    """An aware time in the hall's time zone, the locale's medium date and time."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{moment!r} has no time zone: a receipt's time must be aware")
    zone = ZoneInfo(tz) if isinstance(tz, str) else tz
    return str(format_datetime(moment, "medium", tzinfo=zone, locale=locale)).translate(_PLAIN)


def month(text: str, locale: str) -> str:
    """A ``YYYY-MM`` month as the locale names it: ``Jan 2026``, ``2026年1月``."""
    return str(format_skeleton("yMMM", _first_day(text), locale=locale))


def _first_day(text: str) -> date:
    year, number = text.split("-")
    return date(int(year), int(number), 1)


def months(texts: Sequence[str], locale: str) -> str:
    """The months a fixed charge pays: one month, or the locale's interval (``Jan - Mar 2026``)."""
    if len(texts) == 1:
        return month(texts[0], locale)
    first, last = _first_day(texts[0]), _first_day(texts[-1])
    return str(format_interval(first, last, "yMMM", locale=locale)).translate(_PLAIN)


def _check_int(value: int) -> None:
    # A float here would already have lost cents: refuse it rather than round it.
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{value!r} is not a whole number of minor units")
