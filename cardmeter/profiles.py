"""Load profiles: what a customer draws, as (interval start UTC, quantity) pairs.

A profile feeds :func:`cardmeter.metering.run`: one pair per 15-minute
interval, the quantity *measured* by the meter (secondary, 0.01 units;
the meter applies CT x PT). The synthetic profiles are integer-only and
deterministic for a seed (``random.Random``), so a simulation can be
repeated bill for bill; :func:`from_csv` reads a recorded one.

Daily shapes follow the local hour of ``start`` (its own time zone), which
should be the meter's zone: a household's evening peak is at 19:00 on the
wall clock, whatever UTC says.
"""

from __future__ import annotations

import csv
import random
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path

from cardmeter.clock import SATURDAY, SUNDAY

__all__ = [
    "INTERVALS_PER_DAY",
    "PROFILES",
    "Interval",
    "Profile",
    "ProfileError",
    "commercial",
    "from_csv",
    "residential",
]

Interval = tuple[datetime, int]
Profile = Callable[[datetime, int, int], Iterator[Interval]]

INTERVAL = timedelta(minutes=15)
INTERVALS_PER_DAY = 96
_PERCENT = 100
_MAX_DECIMALS = 2
_HEADER = ("timestamp", "quantity")

# Mean quantity per 15 minutes (0.01 kWh) for each local hour 0..23.
# fmt: off
_RESIDENTIAL_WEEKDAY = (
    4, 3, 3, 3, 3, 4, 8, 14, 10, 5, 5, 5,  # 00..11: night base, morning bump at 07
    6, 5, 5, 5, 7, 14, 26, 32, 30, 22, 12, 6,  # 12..23: evening peak 18..21
)
_RESIDENTIAL_WEEKEND = (
    4, 4, 3, 3, 3, 3, 4, 9, 13, 10, 9, 10,  # later morning
    14, 9, 9, 9, 10, 16, 27, 32, 30, 24, 14, 7,  # lunch at home, same evening
)
# fmt: on
_RESIDENTIAL_CAP = 50
"""0.5 kWh per 15 minutes (2 kW on average): the top of a household's evening."""
_RESIDENTIAL_NOISE = (60, 140)
"""Each interval is the hour's mean times 60..140 %."""
_APPLIANCE_CHANCE = 12
"""One waking interval in 12 on average has an appliance (kettle, oven, washer) on."""
_APPLIANCE = (5, 20)

# fmt: off
_COMMERCIAL_WEEKDAY = (
    30, 30, 30, 30, 30, 30, 45, 110, 220, 220, 220, 220,  # base load, opening at 07..08
    200, 230, 230, 230, 230, 180, 100, 60, 35, 35, 35, 30,  # closing 17..19
)
_COMMERCIAL_SATURDAY = (
    30, 30, 30, 30, 30, 30, 30, 30, 30, 120, 120, 120,  # open 09..13
    120, 120, 35, 35, 35, 35, 35, 35, 35, 35, 35, 35,
)
# fmt: on
_COMMERCIAL_SUNDAY = (30,) * 24
_COMMERCIAL_NOISE = (85, 115)


class ProfileError(ValueError):
    """A recorded profile cannot be used; the message names the file and line."""


def _intervals(start: datetime, days: int) -> Iterator[tuple[datetime, datetime]]:
    """(UTC start, local start) of every 15-minute interval of ``days`` days."""
    if start.tzinfo is None or start.utcoffset() is None:
        raise ValueError(f"profile start {start.isoformat()} has no time zone")
    if days < 0:
        raise ValueError(f"days must not be negative, not {days}")
    first = start.astimezone(UTC)
    for index in range(days * INTERVALS_PER_DAY):
        when = first + index * INTERVAL
        yield when, when.astimezone(start.tzinfo)


def residential(start: datetime, days: int, seed: int) -> Iterator[Interval]:
    """A household: low night base, morning bump, evening peak (0.05..0.5 kWh per 15 min).

    Weekends get up later and stay in at lunch. Appliances add random bursts
    while people are awake (07..22 local); no interval exceeds 0.50 kWh.
    """
    rng = random.Random(seed)
    for when, local in _intervals(start, days):
        weekend = local.weekday() in (SATURDAY, SUNDAY)
        mean = (_RESIDENTIAL_WEEKEND if weekend else _RESIDENTIAL_WEEKDAY)[local.hour]
        quantity = mean * rng.randint(*_RESIDENTIAL_NOISE) // _PERCENT
        if 7 <= local.hour <= 22 and rng.randrange(_APPLIANCE_CHANCE) == 0:
            quantity += rng.randint(*_APPLIANCE)
        yield when, min(quantity, _RESIDENTIAL_CAP)


def commercial(start: datetime, days: int, seed: int) -> Iterator[Interval]:
    """A small shop or office: weekday business hours 08..17, short Saturday, base load Sunday.

    The base (fridges, servers, lighting) is about 1.2 kW, business hours
    about 9 kW (2.2 kWh per 15 min), +-15 % from interval to interval.
    """
    rng = random.Random(seed)
    for when, local in _intervals(start, days):
        weekday = local.weekday()
        if weekday == SATURDAY:
            shape = _COMMERCIAL_SATURDAY
        elif weekday == SUNDAY:
            shape = _COMMERCIAL_SUNDAY
        else:
            shape = _COMMERCIAL_WEEKDAY
        yield when, shape[local.hour] * rng.randint(*_COMMERCIAL_NOISE) // _PERCENT


PROFILES: dict[str, Profile] = {"residential": residential, "commercial": commercial}
"""The synthetic profiles by name: ``PROFILES[name](start, days, seed)``."""


def _timestamp(text: str) -> datetime:
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"timestamp {text!r} is not ISO 8601") from None
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError(f"timestamp {text!r} has no UTC offset (e.g. +08:00 or Z)")
    return when.astimezone(UTC)


MAX_INTERVAL_QUANTITY = 1_000_000
"""A reading above this (units per interval, before CT and PT) is a typo or an attack."""


def _quantity(text: str) -> int:
    """``"0.25"`` (units) -> 25 (0.01 units), exactly."""
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise ValueError(f"quantity {text!r} is not a decimal number") from None
    if not value.is_finite():
        raise ValueError(f"quantity {text!r} is not a finite number")
    if value < 0:
        raise ValueError(f"quantity {text!r} is negative")
    if value > MAX_INTERVAL_QUANTITY:
        raise ValueError(
            f"quantity {text!r} is more than {MAX_INTERVAL_QUANTITY} units in one interval"
        )
    _sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)  # finite, checked above
    if exponent < -_MAX_DECIMALS:
        raise ValueError(f"quantity {text!r} has more than {_MAX_DECIMALS} decimals")
    scale = int(10 ** (exponent + _MAX_DECIMALS))  # exponent >= -2: an integer power
    return int("".join(map(str, digits)) or "0") * scale


def from_csv(path: str | Path) -> list[Interval]:
    """Read a recorded profile: rows ``timestamp,quantity``.

    ``timestamp`` is ISO 8601 with a UTC offset (the interval start; returned
    in UTC), ``quantity`` a decimal in units with at most 2 decimals
    (``0.25`` kWh -> 25). An optional first line ``timestamp,quantity`` is a
    header; blank lines are skipped; timestamps must rise strictly (a repeated
    row would be billed twice). The whole file is checked before anything is
    returned, so a bad last line never leaves a meter half-advanced; an error
    names the file and line.
    """
    path = Path(path)
    rows: list[Interval] = []
    previous_line = 0
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        for row in reader:
            line = reader.line_num
            if not any(cell.strip() for cell in row):
                continue
            if not rows and previous_line == 0 and tuple(c.strip().lower() for c in row) == _HEADER:
                previous_line = line
                continue
            try:
                rows.append(_row(row, rows[-1][0] if rows else None, previous_line))
            except ValueError as exc:
                raise ProfileError(f"{path}, line {line}: {exc}") from None
            previous_line = line
    return rows


def _row(row: list[str], previous: datetime | None, previous_line: int) -> Interval:
    if len(row) != len(_HEADER):
        raise ValueError(f"expected 2 fields (timestamp,quantity), found {len(row)}")
    when = _timestamp(row[0])
    if previous is not None and when <= previous:
        raise ValueError(
            f"timestamp {row[0].strip()} is not after {previous.isoformat()} (line {previous_line})"
        )
    return when, _quantity(row[1])
