"""What a quantity costs (docs/meter.md 1 and 2), in integers only.

Pricing is split in two steps so that the tier split is visible and testable
on its own: :func:`price_parts` cuts an interval's quantity into parts that
each have one price and one rate register, and :func:`charge` turns parts
into minor units with the residue rule. Quantities are 0.01 units (primary),
prices 0.0001 currency per unit, so ``quantity * price`` is in
1/10 000 minor units exactly and no float is ever needed.
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from typing import NamedTuple

from cardlayout.files import TARIFF_SET_1, TariffSet, UserType
from cardmeter.registers import MeterState

__all__ = [
    "RESIDUE_SCALE",
    "Part",
    "TariffError",
    "charge",
    "price_parts",
    "tariff_of",
    "tier_index",
    "tou_rate",
]

RESIDUE_SCALE = 10_000
"""``quantity * price`` is in 1/10 000 minor units (0.01 units x 0.0001 currency)."""

_DEFAULT_RATE = 1
"""The rate register of single-rate and stepped-only billing, and of TOU without periods."""


class TariffError(ValueError):
    """The tariff set cannot price this user type (a price it needs is missing)."""


class Part(NamedTuple):
    """A slice of an interval with one price: ``(quantity, price, rate)``.

    ``quantity`` in 0.01 units (primary), ``price`` in 0.0001 currency per
    unit, ``rate`` the 1-based rate register the quantity is counted in
    (``quantity_by_rate[rate - 1]``).
    """

    quantity: int
    price: int
    rate: int


@lru_cache(maxsize=256)
def tariff_of(frame: bytes) -> TariffSet:
    """Decode a tariff-set frame as :attr:`MeterState.current_tariff` does, cached.

    The engine needs the set at every interval and decoding 252 BCD bytes
    costs more than metering; frames are immutable bytes and the value a
    frozen dataclass, so one decoded value can be shared.
    """
    return TARIFF_SET_1.decode(frame)


def tou_rate(tariff: TariffSet, local: datetime) -> int:
    """The rate number in force at local time ``local`` (docs/meter.md 2).

    The period in force is the last one whose ``hh:mm`` is at or before the
    time of day; before the first period of the day, the last period of the
    day (it started the evening before). Periods are taken in ``hh:mm`` order
    whatever their order on the card; of two periods with the same ``hh:mm``
    the later on the card wins. With no periods at all, rate 1.
    """
    if not tariff.periods:
        return _DEFAULT_RATE
    ordered = sorted(tariff.periods, key=lambda p: (p.hour, p.minute))  # stable
    minute_of_day = local.hour * 60 + local.minute
    in_force = ordered[-1]
    for period in ordered:
        if period.hour * 60 + period.minute <= minute_of_day:
            in_force = period
    return in_force.rate


def tier_index(tariff: TariffSet, settled: int) -> int:
    """The tier of the next 0.01 unit after ``settled`` units since settlement.

    Tier t holds the units that bring the settled quantity into
    ``(threshold[t-1], threshold[t]]`` (threshold[-1] = 0, the last tier
    unbounded): the unit that reaches a threshold exactly is still in the
    lower tier.
    """
    for index, threshold in enumerate(tariff.tier_thresholds):
        if settled < threshold:
            return index
    return len(tariff.tier_thresholds)


def _rate_price(tariff: TariffSet, rate: int) -> int:
    if rate > len(tariff.rate_prices):
        raise TariffError(
            f"rate {rate} has no price: the tariff set has {len(tariff.rate_prices)} rate prices"
        )
    return tariff.rate_prices[rate - 1]


def _tier_split(tariff: TariffSet, settled: int, quantity: int) -> list[tuple[int, int]]:
    """``quantity`` after ``settled`` cut at the tier thresholds: ``[(quantity, tier)]``."""
    if not tariff.tier_prices:
        raise TariffError("stepped billing needs tier prices; the tariff set has none")
    parts: list[tuple[int, int]] = []
    position, left = settled, quantity
    while left > 0:
        tier = tier_index(tariff, position)
        if tier < len(tariff.tier_thresholds):
            take = min(left, tariff.tier_thresholds[tier] - position)
        else:
            take = left
        parts.append((take, tier))
        position += take
        left -= take
    return parts


def price_parts(
    user_type: UserType, tariff: TariffSet, local_start: datetime, settled: int, quantity: int
) -> list[Part]:
    """Price ``quantity`` (primary, 0.01 units) consumed from ``local_start`` on.

    ``settled`` is the quantity consumed since the last settlement before this
    interval (the tier accumulator). The TOU rate is that of the interval's
    local start time; an interval is never split at a period boundary, only
    at tier thresholds. A zero quantity has no parts.
    """
    if quantity < 0:
        raise ValueError(f"quantity must not be negative, not {quantity}")
    if settled < 0:
        raise ValueError(f"settled quantity must not be negative, not {settled}")
    if quantity == 0:
        return []
    kind = UserType(user_type)
    if kind is UserType.SINGLE_RATE:
        return [Part(quantity, _rate_price(tariff, _DEFAULT_RATE), _DEFAULT_RATE)]
    if kind is UserType.TOU:
        rate = tou_rate(tariff, local_start)
        return [Part(quantity, _rate_price(tariff, rate), rate)]
    if kind is UserType.STEPPED:
        return [
            Part(q, tariff.tier_prices[tier], _DEFAULT_RATE)
            for q, tier in _tier_split(tariff, settled, quantity)
        ]
    rate = tou_rate(tariff, local_start)
    base = _rate_price(tariff, rate)
    return [
        Part(q, base + tariff.tier_prices[tier], rate)
        for q, tier in _tier_split(tariff, settled, quantity)
    ]


def charge(state: MeterState, parts: list[Part] | list[tuple[int, int, int]]) -> int:
    """Charge ``parts`` to the meter; return the minor units deducted.

    docs/meter.md 1: ``residue += q * p`` for every part, then
    ``residue // 10_000`` minor units are deducted from ``remaining`` and
    added to ``cumulative_used``, and ``residue % 10_000`` is kept for the
    next interval. Whatever the split of a quantity into intervals and parts,
    the total deducted is ``floor(sum(q * p) / 10_000)`` of everything ever
    charged, less nothing: the fraction is carried, never dropped or rounded up.
    """
    total = state.residue
    for quantity, price, _rate in parts:
        if quantity < 0 or price < 0:
            raise ValueError(f"part ({quantity}, {price}) must not be negative")
        total += quantity * price
    amount, state.residue = divmod(total, RESIDUE_SCALE)
    state.remaining -= amount
    state.cumulative_used += amount
    return amount
