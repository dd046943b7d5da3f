"""The token identifier: minutes since the base date, 24 bits (STS.md).

The TID stamps a token with the minute it was issued, in UTC, and a meter
refuses a TID it has already seen: so the TID is both the date on the token
and what makes it usable once. 2^24 minutes is about 31.9 years, which is why
each base date runs out (1993's last minute was 2024-11-24 20:15 UTC) and meters are moved
to the next one with a rollover key change.

Seconds are dropped (floor), not refused: a vending server issues "now", and
every instant of one minute belongs to that minute's TID.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from cardlayout.errors import FormatError
from cardlayout.sts.identity import BaseDate

__all__ = ["TID_LIMIT", "last_minute_of", "tid_of", "time_of"]

TID_LIMIT = 1 << 24
"""The first TID that no longer fits: minutes a base date lasts."""

_MINUTE = timedelta(minutes=1)


def tid_of(at: datetime, base: BaseDate) -> int:
    """The TID of instant ``at`` (timezone-aware) on ``base``."""
    if not isinstance(at, datetime):
        raise FormatError(f"a token's time is a datetime, not {type(at).__name__}", field="tid")
    if at.tzinfo is None or at.utcoffset() is None:
        raise FormatError(
            f"{at.isoformat()} has no time zone: STS time is UTC, give an aware time", field="tid"
        )
    base = BaseDate(base)
    minutes = (at - base.start) // _MINUTE
    if not 0 <= minutes < TID_LIMIT:
        raise FormatError(
            f"{at.isoformat()} is outside the {int(base)} base date's TID range "
            f"({base.start:%Y-%m-%d %H:%M} to {last_minute_of(base):%Y-%m-%d %H:%M} UTC)",
            field="tid",
        )
    return minutes


def time_of(tid: int, base: BaseDate) -> datetime:
    """The UTC instant (start of the minute) TID ``tid`` stands for on ``base``."""
    if isinstance(tid, bool) or not isinstance(tid, int) or not 0 <= tid < TID_LIMIT:
        raise FormatError(f"a TID is a number in 0..{TID_LIMIT - 1}, got {tid!r}", field="tid")
    return BaseDate(base).start + tid * _MINUTE


def last_minute_of(base: BaseDate) -> datetime:
    """The last minute ``base`` can express (TID FFFFFF): its rollover instant.

    For 1993 that is 2024-11-24 20:15 UTC, the date STS.md gives for the
    "TID rollover"; one minute later no TID on that base date exists.
    """
    return BaseDate(base).start + (TID_LIMIT - 1) * _MINUTE
