"""EF03 / EF04 tariff sets (docs/card.md 3.3): prices, TOU periods, tiers, settlement.

Set 1 is the tariff in force, set 2 the backup the meter switches to at its
switch time; both files share one layout and one codec. Lists on the card are
fixed arrays with a count: the Python value holds only the used entries, and
decoding insists that unused slots are zero (unused settlement dates
``99 99 99``) so that one value has exactly one encoding.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

from cardlayout.codec import (
    TimeFormat,
    check_int,
    decode_bcd,
    decode_optional_time,
    encode_bcd,
    encode_optional_time,
)
from cardlayout.errors import FormatError
from cardlayout.files.base import BodyReader, CardFile, Example, expect_type

__all__ = [
    "MAX_PERIODS",
    "MAX_RATES",
    "MAX_SETTLEMENT_DATES",
    "MAX_TIERS",
    "TARIFF_SET_1",
    "TARIFF_SET_2",
    "DayPeriod",
    "SettlementDate",
    "TariffSet",
    "TariffSetFile",
]

MAX_RATES = 32
MAX_PERIODS = 14
MAX_TIERS = 7
MAX_SETTLEMENT_DATES = 4

_PRICE = 4
_PERIOD = 3
_SETTLEMENT = 3
_UNUSED_SETTLEMENT = bytes.fromhex("999999")
_LAST_HOUR = 23
_LAST_MINUTE = 59
_MONTHLY_LAST_DAY = 28
"""A monthly date must exist in every month, February included."""
_MONTH_DAYS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
"""A yearly date must exist every year, so 29 February is refused."""


@dataclass(frozen=True)
class DayPeriod:
    """From ``hour:minute`` (meter local time) the meter bills at rate ``rate`` (1-based)."""

    hour: int
    minute: int
    rate: int


@dataclass(frozen=True, kw_only=True)
class SettlementDate:
    """A billing settlement: yearly on ``month``/``day`` or, with ``month`` None, monthly."""

    day: int
    hour: int
    month: int | None = None

    @classmethod
    def yearly(cls, month: int, day: int, hour: int) -> SettlementDate:
        """Settle every year on ``month``/``day`` at ``hour``."""
        return cls(month=month, day=day, hour=hour)

    @classmethod
    def monthly(cls, day: int, hour: int) -> SettlementDate:
        """Settle every month on ``day`` at ``hour``."""
        return cls(day=day, hour=hour)

    @property
    def is_monthly(self) -> bool:
        """True for a monthly settlement date."""
        return self.month is None


@dataclass(frozen=True, kw_only=True)
class TariffSet:
    """The content of EF03 or EF04.

    Prices are in 0.0001 currency per unit, thresholds in 0.01 units. With n
    tiers there are n prices and n-1 strictly rising thresholds (tier i runs
    up to threshold i; the last tier has no upper bound).
    """

    rate_prices: tuple[int, ...] = ()
    periods: tuple[DayPeriod, ...] = ()
    tier_thresholds: tuple[int, ...] = ()
    tier_prices: tuple[int, ...] = ()
    settlement_dates: tuple[SettlementDate, ...] = ()
    switch_time: datetime | None = None


@contextmanager
def _item(name: str) -> Iterator[None]:
    """Report a failure inside one list entry under the list's field name."""
    try:
        yield
    except FormatError as exc:
        raise FormatError(str(exc), field=name) from exc


X = TypeVar("X")


def _entries(value: Sequence[X], limit: int, *, name: str) -> Sequence[X]:
    if not isinstance(value, tuple | list):
        raise FormatError(f"{name} must be a tuple, not {type(value).__name__}", field=name)
    if len(value) > limit:
        raise FormatError(
            f"{name} has {len(value)} entries; the card holds at most {limit}", field=name
        )
    return value


def _check_rising(thresholds: Sequence[int]) -> None:
    previous = 0
    for index, threshold in enumerate(thresholds):
        if threshold <= previous:
            raise FormatError(
                f"tier_thresholds must rise strictly from above 0: "
                f"tier_thresholds[{index}] is {threshold} after {previous}",
                field="tier_thresholds",
            )
        previous = threshold


def _check_settlement(month: int | None, day: int, hour: int, *, name: str) -> None:
    last_day = _MONTHLY_LAST_DAY if month is None else _MONTH_DAYS[month - 1]
    check_int(day, field=f"{name}.day", minimum=1, maximum=last_day)
    check_int(hour, field=f"{name}.hour", minimum=0, maximum=_LAST_HOUR)


def _encode_prices(prices: Sequence[int], slots: int, *, name: str) -> bytes:
    out = bytearray()
    for index, price in enumerate(prices):
        with _item(name):
            out += encode_bcd(price, _PRICE, field=f"{name}[{index}]")
    return bytes(out) + bytes((slots - len(prices)) * _PRICE)


def _encode_periods(periods: Sequence[DayPeriod], rate_count: int) -> bytes:
    out = bytearray()
    for index, item in enumerate(periods):
        name = f"periods[{index}]"
        with _item("periods"):
            period = expect_type(item, DayPeriod, field=name)
            out += encode_bcd(period.hour, 1, field=f"{name}.hour", maximum=_LAST_HOUR)
            out += encode_bcd(period.minute, 1, field=f"{name}.minute", maximum=_LAST_MINUTE)
            rate = check_int(period.rate, field=f"{name}.rate", minimum=1, maximum=MAX_RATES)
            if rate > rate_count:
                raise FormatError(f"{name}.rate is {rate}, beyond the rate count {rate_count}")
            out.append(rate)
    return bytes(out) + bytes((MAX_PERIODS - len(periods)) * _PERIOD)


def _encode_settlements(dates: Sequence[SettlementDate]) -> bytes:
    out = bytearray()
    for index, item in enumerate(dates):
        name = f"settlement_dates[{index}]"
        with _item("settlement_dates"):
            date = expect_type(item, SettlementDate, field=name)
            month = 0
            if date.month is not None:
                month = check_int(date.month, field=f"{name}.month", minimum=1, maximum=12)
            _check_settlement(date.month, date.day, date.hour, name=name)
            out += encode_bcd(month, 1, field=f"{name}.month")
            out += encode_bcd(date.day, 1, field=f"{name}.day")
            out += encode_bcd(date.hour, 1, field=f"{name}.hour")
    return bytes(out) + _UNUSED_SETTLEMENT * (MAX_SETTLEMENT_DATES - len(dates))


def _decode_count(r: BodyReader, limit: int, *, name: str) -> int:
    count = r.byte()
    if count > limit:
        raise FormatError(f"{name} is {count}; the card holds at most {limit}", field=name)
    return count


def _decode_prices(r: BodyReader, count: int, slots: int, *, name: str) -> tuple[int, ...]:
    prices: list[int] = []
    for index in range(slots):
        data = r.take(_PRICE)
        if index < count:
            with _item(name):
                prices.append(decode_bcd(data, field=f"{name}[{index}]"))
        elif any(data):
            raise FormatError(f"{name} slot {index} is unused but not zero", field=name)
    return tuple(prices)


def _decode_periods(r: BodyReader, count: int, rate_count: int) -> tuple[DayPeriod, ...]:
    periods: list[DayPeriod] = []
    for index in range(MAX_PERIODS):
        data = r.take(_PERIOD)
        name = f"periods[{index}]"
        if index >= count:
            if any(data):
                raise FormatError(f"periods slot {index} is unused but not zero", field="periods")
            continue
        with _item("periods"):
            hour = decode_bcd(data[0:1], field=f"{name}.hour", maximum=_LAST_HOUR)
            minute = decode_bcd(data[1:2], field=f"{name}.minute", maximum=_LAST_MINUTE)
            if not 1 <= data[2] <= rate_count:
                raise FormatError(f"{name}.rate is {data[2]}, outside the rates 1..{rate_count}")
        periods.append(DayPeriod(hour, minute, data[2]))
    return tuple(periods)


def _decode_settlements(r: BodyReader) -> tuple[SettlementDate, ...]:
    dates: list[SettlementDate] = []
    unused_seen = False
    for index in range(MAX_SETTLEMENT_DATES):
        data = r.take(_SETTLEMENT)
        name = f"settlement_dates[{index}]"
        if data == _UNUSED_SETTLEMENT:
            unused_seen = True
            continue
        with _item("settlement_dates"):
            if unused_seen:
                raise FormatError(f"{name} follows an unused (99 99 99) slot")
            month = decode_bcd(data[0:1], field=f"{name}.month", maximum=12)
            day = decode_bcd(data[1:2], field=f"{name}.day")
            hour = decode_bcd(data[2:3], field=f"{name}.hour")
            _check_settlement(month or None, day, hour, name=name)
        dates.append(SettlementDate(month=month or None, day=day, hour=hour))
    return tuple(dates)


class TariffSetFile(CardFile[TariffSet]):
    """Codec of EF03 and EF04 (body 252 B)."""

    def encode_body(self, value: TariffSet) -> bytes:
        v = expect_type(value, TariffSet, field="tariff_set")
        rates = _entries(v.rate_prices, MAX_RATES, name="rate_prices")
        periods = _entries(v.periods, MAX_PERIODS, name="periods")
        prices = _entries(v.tier_prices, MAX_TIERS, name="tier_prices")
        thresholds = _entries(v.tier_thresholds, MAX_TIERS - 1, name="tier_thresholds")
        dates = _entries(v.settlement_dates, MAX_SETTLEMENT_DATES, name="settlement_dates")
        if len(thresholds) != max(len(prices) - 1, 0):
            raise FormatError(
                f"{len(prices)} tier_prices need {max(len(prices) - 1, 0)} "
                f"tier_thresholds, not {len(thresholds)}",
                field="tier_thresholds",
            )
        threshold_bytes = _encode_prices(thresholds, MAX_TIERS - 1, name="tier_thresholds")
        _check_rising(thresholds)
        return b"".join(
            [
                bytes([len(rates)]),  # 0 rate count
                _encode_prices(rates, MAX_RATES, name="rate_prices"),  # 1
                bytes([len(periods)]),  # 129 period count
                _encode_periods(periods, len(rates)),  # 130
                bytes([len(prices)]),  # 172 tier count
                threshold_bytes,  # 173
                _encode_prices(prices, MAX_TIERS, name="tier_prices"),  # 197
                _encode_settlements(dates),  # 225
                encode_optional_time(v.switch_time, TimeFormat.MINUTES, field="switch_time"),
                bytes(10),  # 242 reserved
            ]
        )

    def decode_body(self, body: bytes) -> TariffSet:
        r = BodyReader(body)
        rate_count = _decode_count(r, MAX_RATES, name="rate_count")
        rate_prices = _decode_prices(r, rate_count, MAX_RATES, name="rate_prices")
        period_count = _decode_count(r, MAX_PERIODS, name="period_count")
        periods = _decode_periods(r, period_count, rate_count)
        tier_count = _decode_count(r, MAX_TIERS, name="tier_count")
        thresholds = _decode_prices(
            r, max(tier_count - 1, 0), MAX_TIERS - 1, name="tier_thresholds"
        )
        _check_rising(thresholds)
        tier_prices = _decode_prices(r, tier_count, MAX_TIERS, name="tier_prices")
        settlement_dates = _decode_settlements(r)
        switch_time = decode_optional_time(r.take(5), TimeFormat.MINUTES, field="switch_time")
        r.reserved(10)
        return TariffSet(
            rate_prices=rate_prices,
            periods=periods,
            tier_thresholds=thresholds,
            tier_prices=tier_prices,
            settlement_dates=settlement_dates,
            switch_time=switch_time,
        )


# Example 1 body, field by field (docs/card.md 3.3): a TOU + stepped tariff.
_TOU_STEPPED = TariffSet(
    rate_prices=(5283, 8000, 3000, 12345),
    periods=(DayPeriod(0, 0, 3), DayPeriod(8, 0, 2), DayPeriod(17, 30, 1), DayPeriod(22, 0, 3)),
    tier_thresholds=(240_000, 480_000),
    tier_prices=(4883, 5383, 7883),
    settlement_dates=(SettlementDate.yearly(1, 1, 0), SettlementDate.monthly(1, 0)),
)
_TOU_STEPPED_BODY = "".join(
    (
        "04",  # 0 rate count 4
        "00005283",  # 1 rate 1: 0.5283 per unit, BCD
        "00008000",  # 5 rate 2: 0.8000
        "00003000",  # 9 rate 3: 0.3000
        "00012345",  # 13 rate 4: 1.2345
        "00000000" * 28,  # 17 rates 5..32 unused
        "04",  # 129 period count 4
        "000003",  # 130 from 00:00 rate 3
        "080002",  # 133 from 08:00 rate 2
        "173001",  # 136 from 17:30 rate 1
        "220003",  # 139 from 22:00 rate 3
        "000000" * 10,  # 142 periods 5..14 unused
        "03",  # 172 tier count 3
        "00240000",  # 173 threshold 1: 2400.00 units
        "00480000",  # 177 threshold 2: 4800.00 units
        "00000000" * 4,  # 181 thresholds 3..6 unused
        "00004883",  # 197 tier 1 price 0.4883
        "00005383",  # 201 tier 2 price 0.5383
        "00007883",  # 205 tier 3 price 0.7883
        "00000000" * 4,  # 209 tier prices 4..7 unused
        "010100",  # 225 yearly on 1 January at 00h
        "000100",  # 228 monthly on the 1st at 00h
        "999999",  # 231 unused
        "999999",  # 234 unused
        "0000000000",  # 237 switch time: none
        "00" * 10,  # 242 reserved
    )
)

# Example 2: single rate 0.6000, monthly settlement on the 15th, switching 2026-01-01.
_SINGLE_RATE = TariffSet(
    rate_prices=(6000,),
    settlement_dates=(SettlementDate.monthly(15, 0),),
    switch_time=datetime(2026, 1, 1, 0, 0, tzinfo=UTC),
)
_SINGLE_RATE_BODY = "".join(
    (
        "01",  # 0 rate count 1
        "00006000",  # 1 rate 1: 0.6000
        "00000000" * 31,  # 5 rates 2..32 unused
        "00",  # 129 period count 0
        "000000" * 14,  # 130 periods unused
        "00",  # 172 tier count 0
        "00000000" * 6,  # 173 thresholds unused
        "00000000" * 7,  # 197 tier prices unused
        "001500",  # 225 monthly on the 15th at 00h
        "999999" * 3,  # 228 unused
        "2601010000",  # 237 switch time 2026-01-01 00:00 UTC
        "00" * 10,  # 242 reserved
    )
)

# Example 3: an empty tariff set (nothing used; settlement slots all 99 99 99).
_EMPTY = TariffSet()
_EMPTY_BODY = "".join(
    (
        "00",  # 0 rate count 0
        "00" * 128,  # 1 rate prices unused
        "00",  # 129 period count 0
        "00" * 42,  # 130 periods unused
        "00",  # 172 tier count 0
        "00" * 52,  # 173 thresholds and tier prices unused
        "999999" * 4,  # 225 settlement dates unused
        "00" * 5,  # 237 switch time: none
        "00" * 10,  # 242 reserved
    )
)


def _frame_hex(sfi: str, body: str, cs: str) -> str:
    """Start, cmd, length 252 (00fc), body, CS (worked out by hand), end."""
    return "68" + sfi + "00fc" + body + cs + "16"


TARIFF_SET_1 = TariffSetFile(
    name="tariff-set-1",
    sfi=3,
    body_size=252,
    examples=(
        Example(
            _TOU_STEPPED,
            _frame_hex("03", _TOU_STEPPED_BODY, "13"),
            "TOU + stepped; CS = (03 + 00 + fc + body bytes) mod 256",
        ),
        Example(
            _SINGLE_RATE,
            _frame_hex("03", _SINGLE_RATE_BODY, "fe"),
            "single rate; CS = (03+00+fc + 01 + 60 + 15 + 9*99 + 26+01+01) mod 256",
        ),
        Example(
            _EMPTY,
            _frame_hex("03", _EMPTY_BODY, "2b"),
            "empty; CS = (03+00+fc + 12*99) mod 256",
        ),
    ),
)
"""EF03, SFI 3, 258 bytes: the tariff in force."""

TARIFF_SET_2 = TariffSetFile(
    name="tariff-set-2",
    sfi=4,
    body_size=252,
    examples=(
        Example(
            _TOU_STEPPED,
            _frame_hex("04", _TOU_STEPPED_BODY, "14"),
            "the body of set 1's example: cmd one more, so CS one more",
        ),
        Example(_EMPTY, _frame_hex("04", _EMPTY_BODY, "2c"), "empty"),
    ),
)
"""EF04, SFI 4, 258 bytes: the backup tariff, taken over at its switch time."""
