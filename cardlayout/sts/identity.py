"""Who a token is for: the meter's STS identity and key attributes (STS.md).

A decoder key is derived from the meter's PAN and the key attributes of its
supply group (SGC, TI, KRN, KT, base date, EA), so the same numbers travel
from the centre's meter record to the key generation and into key change
tokens. They are validated once, here, with an error that names the field:
a wrong digit count found later would surface as "CRC does not match", which
tells an operator nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum, IntEnum, StrEnum
from typing import TypeVar

from cardlayout.errors import FormatError

__all__ = [
    "BaseDate",
    "EncryptionAlgorithm",
    "KeyGeneration",
    "MeterIdentity",
]

_E = TypeVar("_E", bound=Enum)

PAN_DIGITS = 18
SGC_DIGITS = 6


class BaseDate(IntEnum):
    """The instant TIDs count minutes from; a 24-bit TID lasts about 31.9 years."""

    Y1993 = 1993
    Y2014 = 2014
    Y2035 = 2035

    @property
    def start(self) -> datetime:
        """00:00 UTC on 1 January of the base year (STS edition 3 says UTC)."""
        return datetime(int(self), 1, 1, tzinfo=UTC)

    @property
    def code(self) -> str:
        """The two digits DKGA04 puts in its message: ``"93"``, ``"14"``, ``"35"``."""
        return f"{int(self) % 100:02d}"


class EncryptionAlgorithm(StrEnum):
    """How the data block is enciphered; the value is the STS code."""

    EA07 = "07"
    """STA, the standard transfer algorithm, with a 64-bit key and table sets."""
    EA09 = "09"
    """DEA: single DES in ECB mode with a 64-bit key."""
    EA11 = "11"
    """MISTY1 with a 128-bit key."""

    @property
    def key_size(self) -> int:
        """The decoder key length in bytes this algorithm takes."""
        return 16 if self is EncryptionAlgorithm.EA11 else 8


class KeyGeneration(StrEnum):
    """How the decoder key is derived from the vending key (DKGA)."""

    DKGA02 = "02"
    """DES-based, 64-bit keys only (EA07 and EA09)."""
    DKGA04 = "04"
    """HMAC-SHA-256, 64- or 128-bit keys (STS edition 2 onwards)."""


@dataclass(frozen=True, slots=True)
class MeterIdentity:
    """The meter's PAN and the key attributes its decoder key depends on.

    ``pan`` is IIN (6) + DRN (11) + check digit (1); ``sgc`` the supply group
    code; ``ti`` the tariff index; ``krn`` the key revision number; ``kt`` the
    key type. The check digit is not verified: STS.md does not give its
    algorithm, and a mistyped PAN already yields another key (CRC failure).
    """

    pan: str
    sgc: str
    ti: int
    krn: int
    kt: int
    base_date: BaseDate
    ea: EncryptionAlgorithm
    dkga: KeyGeneration

    def __post_init__(self) -> None:
        _digits(self.pan, PAN_DIGITS, "pan", "PAN")
        _digits(self.sgc, SGC_DIGITS, "sgc", "supply group code")
        _in_range(self.ti, 0, 99, "ti", "tariff index")
        _in_range(self.krn, 1, 9, "krn", "key revision number")
        _in_range(self.kt, 0, 3, "kt", "key type")
        object.__setattr__(self, "base_date", _member(BaseDate, self.base_date, "base_date"))
        object.__setattr__(self, "ea", _member(EncryptionAlgorithm, self.ea, "ea"))
        object.__setattr__(self, "dkga", _member(KeyGeneration, self.dkga, "dkga"))
        if self.dkga is KeyGeneration.DKGA02 and self.ea is EncryptionAlgorithm.EA11:
            raise FormatError(
                "DKGA02 makes 64-bit keys and EA11 needs a 128-bit key: use DKGA04", field="dkga"
            )


def _digits(value: object, count: int, field: str, name: str) -> None:
    if not isinstance(value, str) or len(value) != count or not value.isascii():
        raise FormatError(f"the {name} is {count} digits, got {value!r}", field=field)
    if not value.isdigit():
        raise FormatError(f"the {name} is {count} digits, got {value!r}", field=field)


def _in_range(value: object, low: int, high: int, field: str, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise FormatError(f"the {name} is a number in {low}..{high}, got {value!r}", field=field)


def _member(kind: type[_E], value: object, field: str) -> _E:
    try:
        return kind(value)
    except (ValueError, TypeError):
        allowed = ", ".join(str(member.value) for member in kind)
        raise FormatError(f"{field} is one of {allowed}, got {value!r}", field=field) from None
