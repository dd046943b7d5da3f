"""Tariff arithmetic without a database: structures, card tariff sets, quotes, bounds.

Everything here is a pure function of its arguments, in integers only:
prices in 0.0001 currency per unit, thresholds and quantities in 0.01 units,
money in minor units (docs/meter.md 1). Decimal text appears only at the
edges (:func:`parse_price`, :func:`format_money`, :func:`format_price`).

The rules are the meter's (docs/meter.md 2), read from the centre's side:

- a version's ``structure`` must be something the card can carry and the
  meter can price (:func:`validate_structure`), so a tariff is refused when an
  operator enters it, not when the first card is written;
- a payment is split into fixed monthly charges, tax and credit
  (:func:`quote`), where the credit is what the meter will deduct from;
- the centre never knows how a meter's quantity was split into intervals,
  TOU periods and tiers, so it can only bound what the meter charged
  (:func:`implied_charge_bounds`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from cardcenter.core.errors import InvalidInputError
from cardcenter.tariffs.models import TariffKind, TariffVersion
from cardlayout.codec.money import parse_decimal
from cardlayout.errors import FormatError
from cardlayout.files import (
    MAX_PERIODS,
    MAX_RATES,
    MAX_SETTLEMENT_DATES,
    MAX_TIERS,
    DayPeriod,
    SettlementDate,
    TariffSet,
    UserType,
)

__all__ = [
    "DEFAULT_SETTLEMENT_DATES",
    "MAX_PRICE",
    "MAX_TAX_RATE",
    "MAX_THRESHOLD",
    "PRICE_SCALE",
    "STRUCTURE_KEYS",
    "Quote",
    "format_money",
    "format_price",
    "format_quantity",
    "implied_charge_bounds",
    "months_due",
    "parse_price",
    "price_range",
    "quote",
    "to_tariff_set",
    "user_type",
    "validate_structure",
]

PRICE_SCALE = 10_000
"""``quantity * price`` is in 1/10 000 minor units (0.01 units x 0.0001 currency)."""

MAX_PRICE = 10**8 - 1
"""A price or threshold is 4 bytes of BCD on the card: 8 digits."""

MAX_THRESHOLD = MAX_PRICE
"""A tier threshold (0.01 units) is 4 bytes of BCD on the card as well."""

MAX_TAX_RATE = 10_000
"""Tax rates are basis points; 100 % is the most the centre accepts."""

STRUCTURE_KEYS = ("rate_prices", "periods", "tier_thresholds", "tier_prices", "settlement_dates")
"""The keys of a normalised structure, always all present."""

DEFAULT_SETTLEMENT_DATES: list[list[int | None]] = [[1, 1, 0]]
"""A stepped tariff given no settlement date settles yearly on 1 January at 00h.

Stepped prices mean nothing without a settlement (the tier accumulator would
never reset), and the yearly reset on 1 January is the usual Chinese
residential "annual ladder" (阶梯电价 by year), so it is the default rather
than an error.
"""

_MONTH_DAYS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
"""A yearly settlement date must exist every year (no 29 February), as on the card."""
_MONTHLY_LAST_DAY = 28
"""A monthly settlement date must exist in every month, February included."""
_MONTH_RE = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")

_USER_TYPES = {
    TariffKind.FLAT: UserType.SINGLE_RATE,
    TariffKind.TOU: UserType.TOU,
    TariffKind.STEPPED: UserType.STEPPED,
    TariffKind.TOU_STEPPED: UserType.TOU_STEPPED,
}


# ---------------------------------------------------------------- text at the edges


def parse_price(text: str, field: str = "price") -> int:
    """``"0.5283"`` is 5283 (0.0001 currency per unit); junk or a 5th decimal is refused.

    Only the text is checked here; whether the price is in range for the
    card is :func:`validate_structure`'s business.
    """
    try:
        return parse_decimal(text, 4, field=field)
    except FormatError as exc:
        raise InvalidInputError(
            field, f"{exc}: give a price per unit with at most 4 decimal places, e.g. 0.5283"
        ) from None


def format_money(minor: int) -> str:
    """Minor units as decimal text: 1234 is ``"12.34"``, -5 is ``"-0.05"``."""
    return _decimal_text(minor, 2)


def format_price(price: int) -> str:
    """A price in 0.0001 currency per unit as text: 5283 is ``"0.5283"``."""
    return _decimal_text(price, 4)


def format_quantity(quantity: int) -> str:
    """A quantity in 0.01 units as text: 240000 is ``"2400.00"``."""
    return _decimal_text(quantity, 2)


def _decimal_text(value: int, places: int) -> str:
    sign = "-" if value < 0 else ""
    whole, fraction = divmod(abs(value), 10**places)
    return f"{sign}{whole}.{fraction:0{places}d}"


# ---------------------------------------------------------------- structures


def _kind(kind: TariffKind | str) -> TariffKind:
    """The kind as the enum (the database hands back plain strings)."""
    try:
        return TariffKind(kind)
    except ValueError:
        names = ", ".join(k.value for k in TariffKind)
        raise InvalidInputError(
            "kind", f"{kind!r} is not a tariff kind: use one of {names}"
        ) from None


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _list(structure: dict[str, Any], key: str) -> list[Any]:
    value = structure.get(key)
    if value is None:
        return []
    if not isinstance(value, list | tuple):
        raise InvalidInputError(key, f"must be a list, not {type(value).__name__}")
    return list(value)


def _int_list(structure: dict[str, Any], key: str) -> list[int]:
    values = _list(structure, key)
    for index, value in enumerate(values):
        if not _is_int(value):
            raise InvalidInputError(
                key, f"{key}[{index}] is {value!r}: give whole numbers (integer units)"
            )
    return values


def _check_prices(key: str, prices: list[int], *, minimum: int) -> None:
    for index, price in enumerate(prices):
        if not minimum <= price <= MAX_PRICE:
            low = format_price(minimum)
            raise InvalidInputError(
                key,
                f"{key}[{index}] is {format_price(price)}: a price must be from {low} "
                f"to {format_price(MAX_PRICE)} per unit (8 digits on the card)",
            )


def _check_periods(periods: list[Any], rate_count: int) -> list[list[int]]:
    out: list[list[int]] = []
    seen: dict[tuple[int, int], int] = {}
    for index, period in enumerate(periods):
        name = f"periods[{index}]"
        if (
            not isinstance(period, list | tuple)
            or len(period) != 3
            or not all(_is_int(v) for v in period)
        ):
            raise InvalidInputError(
                "periods", f"{name} is {period!r}: give [hour, minute, rate], e.g. [8, 0, 2]"
            )
        hour, minute, rate = period
        if not 0 <= hour <= 23:
            raise InvalidInputError("periods", f"{name} has hour {hour}: the hour must be 0 to 23")
        if not 0 <= minute <= 59:
            raise InvalidInputError(
                "periods", f"{name} has minute {minute}: the minute must be 0 to 59"
            )
        if not 1 <= rate <= rate_count:
            raise InvalidInputError(
                "periods",
                f"{name} uses rate {rate}, which has no price: "
                f"the rates are 1 to {rate_count} (one per rate price)",
            )
        if (hour, minute) in seen:
            raise InvalidInputError(
                "periods",
                f"{name} and periods[{seen[hour, minute]}] both start at "
                f"{hour:02d}:{minute:02d}: give each start time once",
            )
        seen[hour, minute] = index
        out.append([hour, minute, rate])
    # The meter takes periods in hh:mm order whatever their order on the card;
    # with no two at one time, sorting changes nothing it does.
    out.sort(key=lambda p: (p[0], p[1]))
    return out


def _check_thresholds(thresholds: list[int]) -> None:
    previous = 0
    for index, threshold in enumerate(thresholds):
        if threshold <= previous or threshold > MAX_THRESHOLD:
            raise InvalidInputError(
                "tier_thresholds",
                f"tier_thresholds[{index}] is {format_quantity(threshold)} after "
                f"{format_quantity(previous)}: thresholds must rise strictly from above 0 "
                f"and stay at most {format_quantity(MAX_THRESHOLD)} units",
            )
        previous = threshold


def _check_settlements(dates: list[Any]) -> list[list[int | None]]:
    if len(dates) > MAX_SETTLEMENT_DATES:
        raise InvalidInputError(
            "settlement_dates",
            f"{len(dates)} settlement dates given; the card holds at most {MAX_SETTLEMENT_DATES}",
        )
    out: list[list[int | None]] = []
    for index, date in enumerate(dates):
        name = f"settlement_dates[{index}]"
        if (
            not isinstance(date, list | tuple)
            or len(date) != 3
            or not (date[0] is None or _is_int(date[0]))
            or not (_is_int(date[1]) and _is_int(date[2]))
        ):
            raise InvalidInputError(
                "settlement_dates",
                f"{name} is {date!r}: give [month, day, hour] for a yearly date "
                f"or [null, day, hour] for a monthly one",
            )
        month, day, hour = date
        if month is not None and not 1 <= month <= 12:
            raise InvalidInputError(
                "settlement_dates", f"{name} has month {month}: the month must be 1 to 12"
            )
        last_day = _MONTHLY_LAST_DAY if month is None else _MONTH_DAYS[month - 1]
        if not 1 <= day <= last_day:
            when = "every month" if month is None else f"every year in month {month}"
            raise InvalidInputError(
                "settlement_dates",
                f"{name} has day {day}: a date that comes {when} must be day 1 to {last_day}",
            )
        if not 0 <= hour <= 23:
            raise InvalidInputError(
                "settlement_dates", f"{name} has hour {hour}: the hour must be 0 to 23"
            )
        if [month, day, hour] in out:
            raise InvalidInputError("settlement_dates", f"{name} is given twice: give it once")
        out.append([month, day, hour])
    return out


def validate_structure(kind: TariffKind | str, structure: dict[str, Any]) -> dict[str, Any]:
    """A structure the card can carry and the meter can price, normalised, or an error.

    The result has all of :data:`STRUCTURE_KEYS`, each a list (JSON-safe, as
    stored in ``TariffVersion.structure``); periods come sorted by start time.
    Each error is an :class:`InvalidInputError` naming the structure key at
    fault. The rules, by kind:

    - flat: exactly one rate price;
    - TOU: 1 to 32 rate prices and 1 to 14 periods ``[hour, minute, rate]``,
      every period's rate having a price, no two periods at one start time;
    - stepped: 1 to 6 strictly rising thresholds, one tier price more than
      thresholds, and 1 to 4 settlement dates (none given: yearly on
      1 January at 00h, :data:`DEFAULT_SETTLEMENT_DATES`);
    - TOU + stepped: both; here a tier price is a surcharge on the rate
      price and may be 0 (the first step of a ladder usually is).

    Every other price is above 0 and at most 8 digits (the card's BCD). A
    kind is refused the parts it does not use (a flat tariff with periods is
    a mistake of kind, not something to drop silently); settlement dates are
    allowed for every kind, since the meter keeps them whatever it prices.
    """
    tariff_kind = _kind(kind)
    if not isinstance(structure, dict):
        raise InvalidInputError(
            "structure", f"must be a mapping of {', '.join(STRUCTURE_KEYS)}, not {structure!r}"
        )
    unknown = sorted(set(structure) - set(STRUCTURE_KEYS))
    if unknown:
        raise InvalidInputError(
            "structure",
            f"unknown key(s) {', '.join(map(repr, unknown))}: "
            f"the keys are {', '.join(STRUCTURE_KEYS)}",
        )
    rate_prices = _int_list(structure, "rate_prices")
    periods = _list(structure, "periods")
    thresholds = _int_list(structure, "tier_thresholds")
    tier_prices = _int_list(structure, "tier_prices")
    settlements = _list(structure, "settlement_dates")

    uses_rates = tariff_kind is not TariffKind.STEPPED
    uses_periods = tariff_kind in (TariffKind.TOU, TariffKind.TOU_STEPPED)
    uses_tiers = tariff_kind in (TariffKind.STEPPED, TariffKind.TOU_STEPPED)
    what = f"a {tariff_kind.value} tariff"

    if not uses_rates and rate_prices:
        raise InvalidInputError(
            "rate_prices",
            f"{what} has no rate prices (it charges the tier price): "
            f"leave them out, or use kind tou_stepped to add a rate price to each tier",
        )
    if not uses_periods and periods:
        raise InvalidInputError(
            "periods", f"{what} has no time-of-use periods: leave them out or use kind tou"
        )
    if not uses_tiers and (thresholds or tier_prices):
        field = "tier_thresholds" if thresholds else "tier_prices"
        raise InvalidInputError(
            field, f"{what} has no tiers: leave them out or use kind stepped or tou_stepped"
        )

    if tariff_kind is TariffKind.FLAT and len(rate_prices) != 1:
        raise InvalidInputError(
            "rate_prices", f"a flat tariff has exactly 1 rate price, not {len(rate_prices)}"
        )
    if uses_periods:
        if not 1 <= len(rate_prices) <= MAX_RATES:
            raise InvalidInputError(
                "rate_prices",
                f"{what} needs 1 to {MAX_RATES} rate prices, not {len(rate_prices)}",
            )
        if not 1 <= len(periods) <= MAX_PERIODS:
            raise InvalidInputError(
                "periods", f"{what} needs 1 to {MAX_PERIODS} day periods, not {len(periods)}"
            )
    _check_prices("rate_prices", rate_prices, minimum=1)
    norm_periods = _check_periods(periods, len(rate_prices))

    if uses_tiers:
        if not 1 <= len(thresholds) <= MAX_TIERS - 1:
            raise InvalidInputError(
                "tier_thresholds",
                f"{what} needs 1 to {MAX_TIERS - 1} tier thresholds, not {len(thresholds)}",
            )
        if len(tier_prices) != len(thresholds) + 1:
            raise InvalidInputError(
                "tier_prices",
                f"{len(thresholds)} tier thresholds need {len(thresholds) + 1} tier prices "
                f"(one more: the last tier has no upper bound), not {len(tier_prices)}",
            )
        _check_thresholds(thresholds)
        surcharge = tariff_kind is TariffKind.TOU_STEPPED
        _check_prices("tier_prices", tier_prices, minimum=0 if surcharge else 1)
        if not settlements:
            settlements = [list(d) for d in DEFAULT_SETTLEMENT_DATES]
    norm_settlements = _check_settlements(settlements)

    return {
        "rate_prices": rate_prices,
        "periods": norm_periods,
        "tier_thresholds": thresholds,
        "tier_prices": tier_prices,
        "settlement_dates": norm_settlements,
    }


# ---------------------------------------------------------------- the card


def user_type(kind: TariffKind | str) -> UserType:
    """EF01's user type for a tariff kind (flat is the card's single rate)."""
    return _USER_TYPES[_kind(kind)]


def card_minute(at: datetime) -> datetime:
    """``at`` in UTC, rounded *up* to a whole minute (the card's switch time holds minutes).

    Up, not down: the meter switches at the first interval starting at or
    after the switch time, and intervals start on whole minutes, so the
    rounded-up minute switches at exactly the interval the exact instant
    would, where rounding down could switch one interval early.
    """
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("switch_time is a naive datetime: give an aware one")
    utc = at.astimezone(UTC)
    whole = utc.replace(second=0, microsecond=0)
    return whole if whole == utc else whole + timedelta(minutes=1)


def to_tariff_set(version: TariffVersion, switch_time: datetime | None = None) -> TariffSet:
    """The card tariff set (EF03, or EF04 with ``switch_time``) of ``version``.

    The structure is validated again on the way out, so a row that was
    written around :func:`validate_structure` fails here with the field
    named, not half-way through a card write.
    """
    s = validate_structure(version.kind, version.structure)
    return TariffSet(
        rate_prices=tuple(s["rate_prices"]),
        periods=tuple(DayPeriod(h, m, r) for h, m, r in s["periods"]),
        tier_thresholds=tuple(s["tier_thresholds"]),
        tier_prices=tuple(s["tier_prices"]),
        settlement_dates=tuple(
            SettlementDate(month=m, day=d, hour=h) for m, d, h in s["settlement_dates"]
        ),
        switch_time=None if switch_time is None else card_minute(switch_time),
    )


# ---------------------------------------------------------------- months and quotes


def _month_index(year: int, month: int) -> int:
    return year * 12 + month - 1


@lru_cache(maxsize=1024)
def _month_text(index: int) -> str:
    # cached, like _month_of below: a sale after a quiet spell names every month since
    year, month0 = divmod(index, 12)
    return f"{year:04d}-{month0 + 1:02d}"


def _parse_month(text: str, field: str) -> int:
    index = _month_of(text) if isinstance(text, str) else None
    if index is None:
        raise InvalidInputError(field, f"{text!r} is not a month: give YYYY-MM, e.g. 2026-01")
    return index


@lru_cache(maxsize=1024)
def _month_of(text: str) -> int | None:
    """The month index of ``YYYY-MM`` text, or None; cached (bounded), since months recur."""
    match = _MONTH_RE.match(text)
    return None if match is None else _month_index(int(match[1]), int(match[2]))


def _utc(at: datetime, name: str) -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"{name} is a naive datetime: the centre's times are aware (UTC)")
    return at.astimezone(UTC)


def months_due(paid_through: str | None, opened_at: datetime, at: datetime) -> tuple[str, ...]:
    """The calendar months (``YYYY-MM``, UTC) whose fixed charge is still due at ``at``.

    From the month after ``paid_through`` (the customer's
    ``fixed_paid_through``), or from the month the account was opened when
    nothing was ever collected, up to and including the month of ``at``.
    Never a month before the opening month, even if ``paid_through`` says
    so (an account taken over from an older system), and nothing when
    ``at`` is not past the paid month.
    """
    opened = _utc(opened_at, "opened_at")
    now = _utc(at, "at")
    start = _month_index(opened.year, opened.month)
    if paid_through is not None:
        start = max(start, _parse_month(paid_through, "fixed_paid_through") + 1)
    end = _month_index(now.year, now.month)
    return tuple(_month_text(i) for i in range(start, end + 1))


@dataclass(frozen=True)
class Quote:
    """How a payment is split: fixed charges first, then tax and credit (minor units).

    ``fixed_charge + tax + credit == tendered`` always. ``credit`` is what
    goes on the card for the meter to deduct from; ``months`` are the
    months the fixed charge pays for (the customer's ``fixed_paid_through``
    becomes the last of them once the sale is confirmed).
    """

    tendered: int
    fixed_charge: int
    months: tuple[str, ...]
    tax: int
    credit: int
    tax_rate: int

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe: integers (minor units, basis points) and the months as a list."""
        return {
            "tendered": self.tendered,
            "fixed_charge": self.fixed_charge,
            "months": list(self.months),
            "tax": self.tax,
            "credit": self.credit,
            "tax_rate": self.tax_rate,
        }


def _tax_included(amount: int, tax_rate: int) -> int:
    """The tax inside a tax-inclusive ``amount``, rounded half up to a minor unit.

    tax = amount * rate / (10000 + rate), and round half up of x/d is
    floor((2x + d) / 2d), all in integers.
    """
    denominator = PRICE_SCALE + tax_rate
    return (2 * amount * tax_rate + denominator) // (2 * denominator)


def _least_buying_credit(tax_rate: int) -> int:
    """The smallest tax-inclusive amount that leaves at least 1 minor unit of credit."""
    amount = 1
    while amount - _tax_included(amount, tax_rate) < 1:
        amount += 1
    return amount


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _months_text(months: Sequence[str]) -> str:
    if len(months) == 1:
        return months[0]
    return f"{months[0]} to {months[-1]}" if months else "none"


def quote(version: TariffVersion, tendered: int, months: tuple[str, ...]) -> Quote:
    """Split ``tendered`` (minor units) into fixed charges for ``months``, tax and credit.

    The fixed charges (``fixed_monthly`` a month) are collected first, so a
    customer who has not bought for a while pays the months missed before
    buying credit. What is left is tax-inclusive: the tax is rounded half up
    to a minor unit and the credit is the rest, so nothing is lost to
    rounding. A payment that leaves no credit is refused with the least
    amount that would do.
    """
    if not _is_int(tendered) or tendered < 0:
        raise InvalidInputError("amount", f"{tendered!r} is not an amount: give 0.01 or more")
    tax_rate = version.tax_rate
    if not _is_int(tax_rate) or not 0 <= tax_rate <= MAX_TAX_RATE:
        raise InvalidInputError(
            "tax_rate", f"the tariff's tax rate {tax_rate!r} is not 0 to {MAX_TAX_RATE} bp"
        )
    fixed_monthly = version.fixed_monthly
    if not _is_int(fixed_monthly) or fixed_monthly < 0:
        raise InvalidInputError(
            "fixed_monthly", f"the tariff's fixed charge {fixed_monthly!r} is not 0 or more"
        )
    indices = [_parse_month(m, "months") for m in months]
    if len(set(indices)) != len(indices):
        raise InvalidInputError("months", f"{list(months)} names a month twice")
    fixed = fixed_monthly * len(months)
    least = fixed + _least_buying_credit(tax_rate)
    if tendered < least:
        if fixed:
            raise InvalidInputError(
                "amount",
                f"{format_money(tendered)} is too little: at least {format_money(least)} "
                f"is needed to cover {_count(len(months), 'month')} of fixed charges "
                f"({format_money(fixed_monthly)} a month, {_months_text(months)}: "
                f"{format_money(fixed)}) and buy some credit",
            )
        raise InvalidInputError(
            "amount",
            f"{format_money(tendered)} buys no credit: give at least {format_money(least)}",
        )
    rest = tendered - fixed
    tax = _tax_included(rest, tax_rate)
    return Quote(
        tendered=tendered,
        fixed_charge=fixed,
        months=tuple(months),
        tax=tax,
        credit=rest - tax,
        tax_rate=tax_rate,
    )


# ---------------------------------------------------------------- what the meter charged


def price_range(version: TariffVersion) -> tuple[int, int]:
    """The least and greatest price (0.0001 per unit) the meter can charge under ``version``.

    Flat: the one rate price. TOU: the prices of the rates some period uses
    (a rate no period names is never in force). Stepped: the tier prices
    (any tier can be reached, depending on what was used since the last
    settlement). TOU + stepped: the least rate price plus the least tier
    price, and the greatest plus the greatest.
    """
    kind = _kind(version.kind)
    s = validate_structure(kind, version.structure)
    rates: list[int] = s["rate_prices"]
    if kind in (TariffKind.TOU, TariffKind.TOU_STEPPED):
        rates = [rates[r - 1] for r in sorted({p[2] for p in s["periods"]})]
    if kind is TariffKind.FLAT:
        return rates[0], rates[0]
    if kind is TariffKind.TOU:
        return min(rates), max(rates)
    tiers: list[int] = s["tier_prices"]
    if kind is TariffKind.STEPPED:
        return min(tiers), max(tiers)
    return min(rates) + min(tiers), max(rates) + max(tiers)


def implied_charge_bounds(version: TariffVersion, quantity: int, ct_pt: int = 1) -> tuple[int, int]:
    """The least and most money (minor units) the meter can have deducted for ``quantity``.

    ``quantity`` is the measured (secondary) quantity in 0.01 units; the
    meter bills the primary quantity ``q = quantity * ct_pt`` (CT x PT).

    Why bounds and not one value: the meter prices every interval by the
    TOU period of its local start and splits it at tier thresholds by what
    was used since the last settlement (docs/meter.md 2). The centre sees
    only totals in the write-back, not how the quantity fell into periods
    and tiers, so all it knows is that the money charged ``S = sum(q_i * p_i)``
    (in 1/10 000 minor units) lies between ``q * pmin`` and ``q * pmax``
    (:func:`price_range`).

    The residue carry: the meter deducts ``(r0 + S) // 10_000`` and keeps the
    remainder, with ``r0`` (0..9999) carried in from before. With ``r1`` the
    remainder carried out, the deduction is ``(r0 + S - r1) / 10_000``, more
    than ``S / 10_000 - 1`` and less than ``S / 10_000 + 1``, so as an integer
    it is ``floor(S / 10_000)`` or ``ceil(S / 10_000)``. Hence the bounds
    ``floor(q * pmin / 10_000)`` and ``ceil(q * pmax / 10_000)``: a span of a
    write-back sequence may be charged one minor unit more or less than the
    exact product, and the carries of consecutive spans cancel out over the
    meter's life.

    One version only: for a span over a tariff change, add the bounds of the
    parts under each version; the sums still hold the deduction (a little
    more loosely, since each part allows its own minor unit).
    """
    if not _is_int(quantity) or quantity < 0:
        raise ValueError(f"quantity must be an integer of 0 or more, not {quantity!r}")
    if not _is_int(ct_pt) or ct_pt < 1:
        raise ValueError(f"ct_pt must be an integer of 1 or more, not {ct_pt!r}")
    low_price, high_price = price_range(version)
    primary = quantity * ct_pt
    return (primary * low_price) // PRICE_SCALE, -(-(primary * high_price) // PRICE_SCALE)
