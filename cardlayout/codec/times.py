"""Instants on the card: BCD ``YYMMDDhhmm`` or ``YYMMDDhhmmss``, always UTC.

Meters in different time zones and a centre in a third must agree on "when",
so the card carries UTC and Python carries timezone-aware datetimes. Encoding
refuses a naive datetime (its zone is a guess) and refuses precision the field
cannot hold (silently dropping seconds would make decode(encode(t)) != t).
All-zero bytes mean "none" and decode to ``None`` where the field allows it.
"""

from __future__ import annotations

import enum
from datetime import UTC, date, datetime

from cardlayout.codec.bcd import decode_bcd_digits, encode_digits
from cardlayout.errors import FormatError

__all__ = [
    "FIRST_YEAR",
    "LAST_YEAR",
    "TimeFormat",
    "decode_optional_time",
    "decode_time",
    "decode_year_month",
    "encode_optional_time",
    "encode_time",
    "encode_year_month",
]

FIRST_YEAR = 2000
LAST_YEAR = 2099
_CENTURY = 2000


class TimeFormat(enum.Enum):
    """The two instant layouts; the value is the field's length in bytes."""

    MINUTES = 5
    """``YYMMDDhhmm``: seconds must be zero."""
    SECONDS = 6
    """``YYMMDDhhmmss``."""

    @property
    def size(self) -> int:
        """Length of the field in bytes."""
        return int(self.value)


def _to_utc(value: datetime, *, field: str) -> datetime:
    if not isinstance(value, datetime):
        raise FormatError(
            f"{field} must be a datetime, not {type(value).__name__}",
            field=field,
        )
    if value.tzinfo is None or value.utcoffset() is None:
        raise FormatError(
            f"{field} is a naive datetime; give a timezone-aware one (the card holds UTC)",
            field=field,
        )
    utc = value.astimezone(UTC)
    if not FIRST_YEAR <= utc.year <= LAST_YEAR:
        raise FormatError(
            f"{field} is in {utc.year} (UTC); the card holds years {FIRST_YEAR}..{LAST_YEAR}",
            field=field,
        )
    return utc


def encode_time(value: datetime, fmt: TimeFormat, *, field: str) -> bytes:
    """Encode an aware datetime in UTC, refusing precision the field cannot hold."""
    utc = _to_utc(value, field=field)
    if utc.microsecond:
        raise FormatError(f"{field} has microseconds; the card holds whole seconds", field=field)
    if fmt is TimeFormat.MINUTES and utc.second:
        raise FormatError(
            f"{field} has {utc.second} seconds; the field holds whole minutes (YYMMDDhhmm)",
            field=field,
        )
    text = utc.strftime("%y%m%d%H%M%S" if fmt is TimeFormat.SECONDS else "%y%m%d%H%M")
    return encode_digits(text, fmt.size, field=field)


def encode_optional_time(value: datetime | None, fmt: TimeFormat, *, field: str) -> bytes:
    """Like :func:`encode_time`; ``None`` becomes all-zero bytes ("none")."""
    if value is None:
        return bytes(fmt.size)
    return encode_time(value, fmt, field=field)


def decode_time(data: bytes, fmt: TimeFormat, *, field: str) -> datetime:
    """Decode a required instant; all zeros (none) is a FormatError here."""
    result = decode_optional_time(data, fmt, field=field)
    if result is None:
        raise FormatError(f"{field} is all zero (none), but a time is required", field=field)
    return result


def decode_optional_time(data: bytes, fmt: TimeFormat, *, field: str) -> datetime | None:
    """Decode an instant to an aware UTC datetime; all zeros gives ``None``."""
    if len(data) != fmt.size:
        raise FormatError(f"{field} must be {fmt.size} bytes, not {len(data)}", field=field)
    if not any(data):
        return None
    digits = decode_bcd_digits(data, field=field)
    parts = [int(digits[i : i + 2]) for i in range(0, len(digits), 2)]
    year, month, day, hour, minute = parts[:5]
    second = parts[5] if fmt is TimeFormat.SECONDS else 0
    try:
        return datetime(_CENTURY + year, month, day, hour, minute, second, tzinfo=UTC)
    except ValueError as exc:
        raise FormatError(f"{field} is not a valid time ({digits}): {exc}", field=field) from exc


def encode_year_month(value: date | None, *, field: str) -> bytes:
    """Encode a month as BCD ``YYMM`` (given as the first day of it); ``None`` is 0000."""
    if value is None:
        return bytes(2)
    if not isinstance(value, date) or isinstance(value, datetime):
        raise FormatError(
            f"{field} must be a date (the first of the month), not {type(value).__name__}",
            field=field,
        )
    if value.day != 1:
        raise FormatError(f"{field} must be the first day of a month, not {value}", field=field)
    if not FIRST_YEAR <= value.year <= LAST_YEAR:
        raise FormatError(
            f"{field} is in {value.year}; the card holds years {FIRST_YEAR}..{LAST_YEAR}",
            field=field,
        )
    return encode_digits(value.strftime("%y%m"), 2, field=field)


def decode_year_month(data: bytes, *, field: str) -> date | None:
    """Decode BCD ``YYMM`` to the first day of that month; 0000 gives ``None``."""
    if not any(data):
        return None
    digits = decode_bcd_digits(data, field=field)
    month = int(digits[2:4])
    if not 1 <= month <= 12:
        raise FormatError(f"{field} has month {month} (months are 01..12)", field=field)
    return date(_CENTURY + int(digits[0:2]), month, 1)
