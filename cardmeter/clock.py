"""Local time for the meter: time zone, friendly window, settlement dates, months.

The meter keeps its clock in UTC (:attr:`MeterState.clock`, event times) but
bills in local time: TOU periods, settlement dates, friendly hours and months
are all wall-clock notions of the place the meter is installed
(:attr:`MeterState.timezone`, an IANA name). Everything that turns a UTC
instant into a local notion lives here so that the rules of docs/meter.md are
applied the same way by :mod:`cardmeter.metering`, :mod:`cardmeter.credit` and
the numpy fleet.

Comparisons are always made between UTC instants: Python compares two aware
datetimes that share a ``tzinfo`` by their wall-clock fields, which is wrong
across a daylight-saving fold.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, date, datetime, time
from functools import lru_cache
from zoneinfo import ZoneInfo

from cardlayout.files import FriendlyDays, Parameters, SettlementDate, TariffSet

__all__ = [
    "SATURDAY",
    "SUNDAY",
    "add_months",
    "in_friendly_window",
    "latest_settlement",
    "local_instant",
    "month_of",
    "months_between",
    "require_aware",
    "to_local",
    "zone",
]

SATURDAY = 5
SUNDAY = 6
"""``datetime.weekday()`` of the two weekend days."""


@lru_cache(maxsize=64)
def zone(name: str) -> ZoneInfo:
    """The IANA zone ``name``; cached because a run converts every interval."""
    return ZoneInfo(name)


def require_aware(when: datetime, what: str = "time") -> datetime:
    """Refuse a naive datetime: the meter cannot guess which zone it meant."""
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError(f"{what} {when.isoformat()} has no time zone; give an aware datetime")
    return when


def to_local(timezone: str, when: datetime) -> datetime:
    """``when`` (aware) as wall-clock time in the meter's zone."""
    return require_aware(when).astimezone(zone(timezone))


def local_instant(timezone: str, day: date, hour: int, minute: int = 0) -> datetime:
    """The UTC instant at which the meter's wall clock shows ``day hour:minute``.

    In a daylight-saving gap (a wall time that does not exist) the pre-transition
    offset applies (``fold=0``), so the instant is the one a clock that was not
    yet put forward would show; in a fold the first occurrence is taken.
    """
    local = datetime.combine(day, time(hour, minute), tzinfo=zone(timezone))
    return local.astimezone(UTC)


def month_of(local: datetime | date) -> date:
    """The first day of the month of a local date or time."""
    return date(local.year, local.month, 1)


def add_months(month: date, count: int) -> date:
    """The first day of the month ``count`` months after ``month`` (may be negative)."""
    index = month.year * 12 + month.month - 1 + count
    return date(index // 12, index % 12 + 1, 1)


def months_between(earlier: date, later: date) -> int:
    """Whole months from the month of ``earlier`` to the month of ``later``."""
    return (later.year - earlier.year) * 12 + later.month - earlier.month


def in_friendly_window(params: Parameters, local: datetime, holidays: Collection[date]) -> bool:
    """True if a credit trip at local time ``local`` must be held (docs/meter.md 3).

    The hours window runs from ``friendly_start_hour`` (inclusive) to
    ``friendly_end_hour`` (exclusive) and wraps midnight when start > end
    (22..06 holds 22:00 up to 05:59:59); equal hours mean no hours window. The
    day flags hold the whole local day: Saturday, Sunday, or a date in
    ``holidays`` (the meter's holiday list, local dates).
    """
    if params.has_friendly_hours:
        start, end, hour = params.friendly_start_hour, params.friendly_end_hour, local.hour
        inside = start <= hour < end if start < end else hour >= start or hour < end
        if inside:
            return True
    days = params.friendly_days
    weekday = local.weekday()
    if FriendlyDays.SATURDAY in days and weekday == SATURDAY:
        return True
    if FriendlyDays.SUNDAY in days and weekday == SUNDAY:
        return True
    return FriendlyDays.HOLIDAYS in days and local.date() in holidays


def _candidates(settlement: SettlementDate, local: datetime) -> list[date]:
    """The dates of ``settlement`` in the local period containing ``local`` and the one before.

    The latest settlement at or before ``local`` is always one of them: a
    yearly date this year or last year, a monthly date this month or last
    month (the codec allows only dates that exist every year or month).
    """
    if settlement.month is None:
        this = month_of(local)
        return [add_months(this, back).replace(day=settlement.day) for back in (0, -1)]
    return [date(local.year - back, settlement.month, settlement.day) for back in (0, 1)]


def latest_settlement(tariff: TariffSet, timezone: str, when: datetime) -> datetime | None:
    """The latest settlement instant of ``tariff`` at or before ``when`` (UTC), if any.

    Settlement dates are local wall-clock times ``MM DD hh:00`` (yearly) or
    ``DD hh:00`` (monthly); the latest over all of the set's dates is taken.
    """
    when_utc = require_aware(when).astimezone(UTC)
    local = when_utc.astimezone(zone(timezone))
    latest: datetime | None = None
    for settlement in tariff.settlement_dates:
        for day in _candidates(settlement, local):
            instant = local_instant(timezone, day, settlement.hour)
            if instant <= when_utc and (latest is None or instant > latest):
                latest = instant
    return latest
