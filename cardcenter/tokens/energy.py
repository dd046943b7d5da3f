"""Money into energy at vend time, as STS vending servers do.

A card meter is sent money and prices each interval itself; a keypad meter
is sent energy (0.1 kWh steps) and knows no prices, so the centre turns the
credit into energy when it vends, by the tariff version in force:

- flat: credit / price;
- stepped: the tariff's tier thresholds are the blocks of one calendar month
  (UTC, the month the centre's fixed charges use), counting the energy
  already vended to this meter this month, so a vend that crosses a
  threshold buys the rest of the cheaper block and then the dearer one;
- TOU: the day's time-weighted average rate price (each period's price
  times its minutes, over 1440). The meter cannot charge by the hour, and
  the average neither depends on the hour the customer buys at (which would
  let everyone buy at the cheapest hour) nor needs the meter's time zone;
- TOU plus stepped: that average plus the block's tier surcharge.

Two roundings, both integer arithmetic (prices may be fractions, never
floats), and in this order:

1. the energy is rounded DOWN to 0.1 kWh: the utility never gives away
   energy that was not paid for;
2. a token's amount field steps by 1, 10, 100 or 1000 tenths as amounts grow
   (:mod:`cardlayout.sts.amount`), and its encoder rounds UP to the next
   step. So the centre vends the largest representable amount *not above*
   what was paid for, and the encoder's rounding then changes nothing. Below
   1638.4 kWh every tenth is representable; above, at most one step
   (1, 10 or 100 kWh at the top) is not vended.

What is paid and not turned into energy (less than one step's worth) is
kept apart in the books (``unvended:N``) and added to the customer's next
vend (:func:`cardcenter.tokens.services.quote_vend`); the result shows it.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from cardcenter.core.errors import InvalidInputError
from cardcenter.tariffs.models import TariffKind, TariffVersion
from cardcenter.tariffs.pricing import (
    PRICE_SCALE,
    format_money,
    format_price,
    validate_structure,
)
from cardlayout.sts.amount import MAX_AMOUNT, decode_amount, encode_amount

HUNDREDTHS_PER_TENTH = 10
"""Tariff thresholds are 0.01 units, tokens 0.1 units."""
MINUTES_A_DAY = 1440
_MANTISSA = 1 << 14


@dataclass(frozen=True)
class Block:
    """Energy up to ``upto`` (0.01 kWh this month; None: no end) costs ``price``."""

    upto: int | None
    price: Fraction
    """0.0001 currency per kWh, as tariff prices are; a fraction for a TOU average."""


@dataclass(frozen=True)
class Energy:
    """What a credit buys and what the token carries."""

    bought: int
    """Tenths of a kWh the credit pays for, rounded down."""
    vended: int
    """Tenths on the token: the largest representable amount not above ``bought``."""
    field: int
    """The token's 16-bit amount field for ``vended``."""
    unvended: int
    """Minor units paid and not turned into energy (rounded down; under one step's worth)."""
    basis: str
    """How the price was found, for the receipt."""


def blocks_of(version: TariffVersion) -> tuple[list[Block], str]:
    """The month's price blocks of ``version`` and a few words saying how they were made."""
    kind = TariffKind(version.kind)
    s = validate_structure(kind, version.structure)
    rates: list[int] = s["rate_prices"]
    if kind is TariffKind.FLAT:
        return [Block(None, Fraction(rates[0]))], f"flat {format_price(rates[0])} a kWh"
    if kind is TariffKind.STEPPED:
        uppers: list[int | None] = [*s["tier_thresholds"], None]
        tiers = [
            Block(upto, Fraction(price))
            for upto, price in zip(uppers, s["tier_prices"], strict=True)
        ]
        return tiers, "monthly blocks " + _blocks_text(tiers)
    average = day_average(s["periods"], rates)
    if kind is TariffKind.TOU:
        return [Block(None, average)], f"TOU day average {_price_text(average)} a kWh"
    uppers = [*s["tier_thresholds"], None]
    tiers = [
        Block(upto, average + price) for upto, price in zip(uppers, s["tier_prices"], strict=True)
    ]
    return tiers, f"TOU day average plus monthly blocks {_blocks_text(tiers)}"


def day_average(periods: list[list[int]], rates: list[int]) -> Fraction:
    """The time-weighted average rate price of one day.

    Periods come sorted by start (as :func:`validate_structure` gives them);
    each runs to the next one's start, and the last runs round midnight to
    the first (before the first start of the day the evening's period is in
    force, as the meter has it).
    """
    starts = [hour * 60 + minute for hour, minute, _ in periods]
    total = 0
    for index, (_hour, _minute, rate) in enumerate(periods):
        end = starts[index + 1] if index + 1 < len(starts) else starts[0] + MINUTES_A_DAY
        total += (end - starts[index]) * rates[rate - 1]
    return Fraction(total, MINUTES_A_DAY)


def _price_text(price: Fraction) -> str:
    whole = price.numerator // price.denominator
    return format_price(whole) if price.denominator == 1 else f"about {format_price(whole)}"


def _blocks_text(blocks: list[Block]) -> str:
    parts = []
    for block in blocks:
        upto = "" if block.upto is None else f" to {block.upto // 100}.{block.upto % 100:02d} kWh"
        parts.append(f"{_price_text(block.price)}{upto}")
    return ", ".join(parts)


def affordable(blocks: list[Block], budget: Fraction, start: int) -> int:
    """The most energy (0.01 kWh) ``budget`` (1/10 000 minor units) buys from ``start`` on.

    ``start`` is the energy already vended in the blocks' month (0.01 kWh).
    """
    position, bought = start, 0
    for block in blocks:
        if block.upto is not None and position >= block.upto:
            continue
        room = None if block.upto is None else block.upto - position
        if room is None or budget < room * block.price:
            return bought + int(budget // block.price)
        bought += room
        budget -= room * block.price
        position += room
    raise AssertionError("the last block has no end")  # pragma: no cover


def cost(blocks: list[Block], start: int, quantity: int) -> Fraction:
    """What ``quantity`` (0.01 kWh) from ``start`` on costs, in 1/10 000 minor units."""
    position, left, total = start, quantity, Fraction(0)
    for block in blocks:
        if left == 0:
            break
        if block.upto is not None and position >= block.upto:
            continue
        take = left if block.upto is None else min(left, block.upto - position)
        total += take * block.price
        position += take
        left -= take
    return total


def representable_floor(tenths: int) -> tuple[int, int]:
    """The largest amount a token carries that is not above ``tenths``, and its field.

    The encoder rounds up to its next step; when it had to round, the step
    just below (one mantissa less, or the top of the exponent below) is
    the answer.
    """
    if not 0 <= tenths <= MAX_AMOUNT:
        raise ValueError(f"{tenths} tenths is not 0..{MAX_AMOUNT}")
    field, credited = encode_amount(tenths)
    if credited == tenths:
        return tenths, field
    exponent, mantissa = divmod(field, _MANTISSA)
    below = field - 1 if mantissa > 0 else (exponent - 1) * _MANTISSA + _MANTISSA - 1
    value = decode_amount(below)
    assert value < tenths < credited
    return value, below


def vend_energy(version: TariffVersion, credit: int, month_before: int) -> Energy:
    """Turn ``credit`` (minor units) into a token amount under ``version``.

    ``month_before`` is the energy (tenths) already vended to the meter this
    calendar month, which decides the block a stepped tariff starts in.
    """
    blocks, basis = blocks_of(version)
    start = month_before * HUNDREDTHS_PER_TENTH
    budget = Fraction(credit * PRICE_SCALE)
    bought = affordable(blocks, budget, start) // HUNDREDTHS_PER_TENTH
    if bought == 0:
        raise InvalidInputError(
            "amount", f"a credit of {format_money(credit)} buys less than 0.1 kWh ({basis})"
        )
    if bought > MAX_AMOUNT:
        raise InvalidInputError(
            "amount",
            f"the credit buys {bought // 10}.{bought % 10} kWh, more than one token carries "
            f"({MAX_AMOUNT // 10}.{MAX_AMOUNT % 10} kWh): sell it in smaller amounts",
        )
    vended, field = representable_floor(bought)
    paid_for = cost(blocks, start, vended * HUNDREDTHS_PER_TENTH)
    unvended = int((budget - paid_for) // PRICE_SCALE)
    return Energy(bought, vended, field, unvended, basis)
