"""Big-endian unsigned integers (money, counts, quantities).

The card stores money, counts and quantities as plain binary of a fixed width.
Python integers have no width, so every write checks the value fits: a purse
amount that silently wrapped modulo 2**32 would create or destroy credit.
"""

from __future__ import annotations

from cardlayout.errors import FormatError

__all__ = ["check_int", "decode_uint", "encode_uint", "uint_max"]


def uint_max(length: int) -> int:
    """Return the largest value an unsigned field of ``length`` bytes holds."""
    return (1 << (8 * length)) - 1


def check_int(value: object, *, field: str, minimum: int, maximum: int) -> int:
    """Return ``value`` if it is an ``int`` (not a bool, never a float) within range.

    Floats are refused outright: money and quantities are integer units.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise FormatError(
            f"{field} must be an integer, not {type(value).__name__}",
            field=field,
        )
    if not minimum <= value <= maximum:
        raise FormatError(
            f"{field} is {value}, outside the allowed {minimum}..{maximum}",
            field=field,
        )
    return value


def encode_uint(
    value: int, length: int, *, field: str, minimum: int = 0, maximum: int | None = None
) -> bytes:
    """Encode ``value`` as ``length`` big-endian bytes, refusing what does not fit."""
    top = uint_max(length) if maximum is None else min(maximum, uint_max(length))
    return check_int(value, field=field, minimum=minimum, maximum=top).to_bytes(length, "big")


def decode_uint(data: bytes, *, field: str, minimum: int = 0, maximum: int | None = None) -> int:
    """Decode big-endian bytes; a value outside ``minimum..maximum`` is a FormatError."""
    value = int.from_bytes(data, "big")
    top = uint_max(len(data)) if maximum is None else maximum
    if not minimum <= value <= top:
        raise FormatError(
            f"{field} is {value}, outside the allowed {minimum}..{top}",
            field=field,
        )
    return value
