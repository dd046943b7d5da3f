"""Packed BCD: two decimal digits per byte, most significant digit first.

Identifiers, prices, alarm levels, ratios and dates are BCD on the card (the
State Grid convention that meters expect). A nibble above 9 is never silently
read as a number: it means the bytes are not what they claim to be.
"""

from __future__ import annotations

from cardlayout.codec.binary import check_int
from cardlayout.errors import FormatError

__all__ = [
    "bcd_max",
    "decode_bcd",
    "decode_bcd_digits",
    "decode_digits",
    "encode_bcd",
    "encode_digits",
]

_DIGITS = frozenset("0123456789")
_NIBBLE = 4
_LOW_NIBBLE = 15


def bcd_max(length: int) -> int:
    """Return the largest number ``length`` BCD bytes hold (all nines)."""
    nines: int = 10 ** (2 * length) - 1  # int ** int is typed Any (it can be a float)
    return nines


def decode_bcd_digits(data: bytes, *, field: str) -> str:
    """Return the decimal digits of ``data``; any nibble above 9 is a FormatError."""
    digits: list[str] = []
    for index, byte in enumerate(data):
        for nibble in (byte >> _NIBBLE, byte & _LOW_NIBBLE):
            if nibble > 9:
                raise FormatError(
                    f"{field} is not BCD: byte {index} holds nibble {nibble} (digits are 0..9)",
                    field=field,
                )
            digits.append(str(nibble))
    return "".join(digits)


def encode_digits(text: str, length: int, *, field: str) -> bytes:
    """Encode a string of exactly ``2 * length`` ASCII digits as packed BCD.

    Identifiers are strings, not ints, so leading zeros are part of the value.
    """
    width = 2 * length
    if not isinstance(text, str) or len(text) != width or not set(text) <= _DIGITS:
        raise FormatError(
            f"{field} must be exactly {width} digits 0-9, not {text!r}",
            field=field,
        )
    return bytes((int(text[i]) << _NIBBLE) | int(text[i + 1]) for i in range(0, width, 2))


def decode_digits(data: bytes, *, field: str) -> str:
    """Decode packed BCD into its digit string (leading zeros kept)."""
    return decode_bcd_digits(data, field=field)


def encode_bcd(
    value: int, length: int, *, field: str, minimum: int = 0, maximum: int | None = None
) -> bytes:
    """Encode a non-negative integer as ``length`` bytes of packed BCD."""
    top = bcd_max(length) if maximum is None else min(maximum, bcd_max(length))
    number = check_int(value, field=field, minimum=minimum, maximum=top)
    return encode_digits(str(number).zfill(2 * length), length, field=field)


def decode_bcd(data: bytes, *, field: str, minimum: int = 0, maximum: int | None = None) -> int:
    """Decode packed BCD into an integer, checking digits and range."""
    value = int(decode_bcd_digits(data, field=field))
    top = bcd_max(len(data)) if maximum is None else maximum
    if not minimum <= value <= top:
        raise FormatError(
            f"{field} is {value}, outside the allowed {minimum}..{top}",
            field=field,
        )
    return value
