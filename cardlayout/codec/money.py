"""Decimal text at the edges (command lines, CSV) to integer units inside.

People type "200.00" and "0.5283"; the system keeps integer minor units and
ten-thousandths. Parsing goes through :class:`decimal.Decimal`, never float,
and refuses more decimals than the unit holds rather than rounding money.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from cardlayout.errors import FormatError


def parse_decimal(text: str, places: int, *, field: str) -> int:
    """``"12.34"`` with ``places=2`` is 1234; negative, junk or too precise is refused."""
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise FormatError(f"{field} {text!r} is not a number", field=field) from None
    if not value.is_finite() or value < 0:
        raise FormatError(f"{field} {text!r} must be a finite number of 0 or more", field=field)
    scaled = value.scaleb(places)
    if scaled != scaled.to_integral_value():
        raise FormatError(f"{field} {text!r} has more than {places} decimal places", field=field)
    return int(scaled)
