"""The 16-bit amount field of a credit transfer token (STS.md).

``field = e << 14 | m``: a 2-bit exponent and a 14-bit mantissa, so small
amounts are exact and large ones step by 1, 10, 100 or 1000 tenths::

    e = 0:   0 .. 16 383 tenths, step 1
    e = 1:   16 384 .. 180 214, step 10
    e = 2:   180 224 .. 1 818 524, step 100
    e = 3:   1 818 624 .. 18 201 624, step 1000

The ranges follow one another in order, so the credited value grows with the
field and every amount has exactly one smallest representable value at or
above it.

The vending rule: an amount that is not representable is rounded UP to the
next representable value, so the meter never credits less than was paid for
(the customer's favour; the largest gift is 999 tenths, under 0.06 % of the
amount). The centre charges for what was asked and records what the meter
will credit. Integers only: a float would turn 0.1 kWh steps into guesses.
"""

from __future__ import annotations

from typing import Final

from cardlayout.errors import FormatError

__all__ = ["MAX_AMOUNT", "decode_amount", "encode_amount"]

_MANTISSA_BITS: Final = 14
_MANTISSA_MAX: Final = (1 << _MANTISSA_BITS) - 1
_OFFSETS: Final = (0, 16_384, 180_224, 1_818_624)
"""``sum_{n=1..e} 2^14 * 10^(n-1)``: where the range of exponent e starts."""
_STEPS: Final = (1, 10, 100, 1000)
"""``10^e``: the step of exponent e."""

MAX_AMOUNT: Final = _MANTISSA_MAX * 1000 + _OFFSETS[3]
"""The largest amount one token carries, in tenths (18 201 624)."""


def encode_amount(tenths: int) -> tuple[int, int]:
    """The field for ``tenths``, and the tenths the meter will credit (>= asked).

    The smallest exponent whose mantissa fits, rounding the mantissa up.
    """
    if isinstance(tenths, bool) or not isinstance(tenths, int):
        raise FormatError(f"an amount is a whole number of tenths, got {tenths!r}", field="amount")
    if not 0 <= tenths <= MAX_AMOUNT:
        raise FormatError(
            f"an amount is 0..{MAX_AMOUNT} tenths in one token, got {tenths}", field="amount"
        )
    for exponent, (offset, step) in enumerate(zip(_OFFSETS, _STEPS, strict=True)):
        mantissa = max(0, -(-(tenths - offset) // step))  # ceiling division, no float
        if mantissa <= _MANTISSA_MAX:
            return exponent << _MANTISSA_BITS | mantissa, mantissa * step + offset
    raise AssertionError("unreachable: MAX_AMOUNT fits exponent 3")  # pragma: no cover


def decode_amount(field: int) -> int:
    """The tenths a meter credits for amount ``field``."""
    if isinstance(field, bool) or not isinstance(field, int) or not 0 <= field <= 0xFFFF:
        raise FormatError(f"an amount field is 16 bits, got {field!r}", field="amount")
    exponent = field >> _MANTISSA_BITS
    return (field & _MANTISSA_MAX) * _STEPS[exponent] + _OFFSETS[exponent]
