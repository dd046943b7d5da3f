"""STS token classes and the values each one carries (STS.md).

A token is one of four kinds, by class and subclass:

* class 0, credit transfer (:class:`TransferToken`): electricity, water,
  gas, time and four currency subclasses; the amount is the 16-bit field of
  :mod:`cardlayout.sts.amount`.
* class 1, non-meter-specific engineering (:class:`EngineeringToken`): not
  encrypted, so any meter reads it (subclass 0 initiates a meter test or
  display; 1 and up are reserved for others and accepted as they are).
* class 2, meter-specific management (:class:`ManagementToken`): a 16-bit
  value such as a power limit, or the register to clear (FFFF: all).
* class 2 subclasses 3, 4, 8, 9, the sections of a key change
  (:class:`KeyChangeToken`), whose 44-bit payload replaces RND, TID and value.

Key change payloads, most significant bit first. Sections 1 and 2 are as
STS.md gives them; sections 3 and 4 (128-bit keys only) are this project's
layout, as STS.md is silent on them::

    section 1 (KEY_1): KENHO(4) | KRN(4) | RO(1) | reserved(1) | KT(2) | key bits 127..96 or 63..32
    section 2 (KEY_2): KENLO(4) | TI(8)                             | key bits  95..64 or 31..0
    section 3 (KEY_3): KENHO(4) | KRN(4) | RO(1) | reserved(1) | KT(2) | key bits  63..32
    section 4 (KEY_4): KENLO(4) | TI(8)                             | key bits  31..0

(the first column of key bits for a 128-bit key, the second for 64 bits).
Sections 1 and 2 keep their meaning whatever the key size: they carry the
high 64 bits, so a 64-bit key is exactly the first half of the scheme, and
sections 3 and 4 carry the remaining 64 bits, 32 each. They repeat the
attributes of sections 1 and 2 in the same places instead of spending the
12 bits on nothing: the meter checks that all four sections agree, so the
sections of two different key changes (a lost token re-vended after a
second change, say) can never be mixed into a key nobody issued.

``KEN`` (key expiry number) is one byte split in two nibbles: KENHO in
sections 1 and 3, KENLO in 2 and 4. :attr:`KeyChangeToken.ken` holds the
nibble its section carries; fields a section does not carry are 0.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum
from typing import ClassVar, Final, TypeAlias, TypeVar

from cardlayout.errors import FormatError
from cardlayout.sts.amount import decode_amount
from cardlayout.sts.identity import MeterIdentity

__all__ = [
    "KEY_SECTIONS",
    "NO_EXPIRY",
    "EngineeringToken",
    "KeyChange",
    "KeyChangeToken",
    "ManagementSubclass",
    "ManagementToken",
    "Token",
    "TokenClass",
    "TransferSubclass",
    "TransferToken",
    "assemble_key_change",
    "key_change_tokens",
    "split_key",
]

NO_EXPIRY: Final = 0xFF
"""The key expiry number of a key that does not expire (the default KEN)."""


class TokenClass(IntEnum):
    """The 2 class bits, carried in the clear in token bits 28 and 27."""

    TRANSFER = 0
    ENGINEERING = 1
    MANAGEMENT = 2


class TransferSubclass(IntEnum):
    """What a credit transfer token credits."""

    ELECTRICITY = 0
    WATER = 1
    GAS = 2
    TIME = 3
    CURRENCY_4 = 4
    CURRENCY_5 = 5
    CURRENCY_6 = 6
    CURRENCY_7 = 7

    @property
    def is_currency(self) -> bool:
        """Currency subclasses add the CRC_C byte to their CRC."""
        return self >= TransferSubclass.CURRENCY_4

    @property
    def unit(self) -> str:
        """The unit an amount is given in; the token carries tenths of it."""
        return _UNITS.get(self, "currency unit")


_UNITS: Final = {
    TransferSubclass.ELECTRICITY: "kWh",
    TransferSubclass.WATER: "m3",
    TransferSubclass.GAS: "m3",
    TransferSubclass.TIME: "h",
}


class ManagementSubclass(IntEnum):
    """What a meter-specific management token does."""

    SET_MAX_POWER = 0
    CLEAR_CREDIT = 1
    SET_TARIFF_RATE = 2
    KEY_1 = 3
    KEY_2 = 4
    CLEAR_TAMPER = 5
    SET_PHASE_UNBALANCE = 6
    SET_WATER_FACTOR = 7
    KEY_3 = 8
    KEY_4 = 9

    @property
    def is_key_section(self) -> bool:
        """Whether the subclass is a section of a key change."""
        return self in KEY_SECTIONS

    @property
    def section(self) -> int:
        """1..4 for a key change section, 0 otherwise."""
        return KEY_SECTIONS.index(self) + 1 if self in KEY_SECTIONS else 0


KEY_SECTIONS: Final = (
    ManagementSubclass.KEY_1,
    ManagementSubclass.KEY_2,
    ManagementSubclass.KEY_3,
    ManagementSubclass.KEY_4,
)
"""The key change subclasses in section order."""


@dataclass(frozen=True, slots=True)
class TransferToken:
    """Class 0: credit. ``amount`` is the 16-bit field (see :attr:`credited`)."""

    token_class: ClassVar[TokenClass] = TokenClass.TRANSFER
    subclass: TransferSubclass
    rnd: int
    tid: int
    amount: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "subclass", _subclass(TransferSubclass, self.subclass, "transfer"))
        _head_fields(self.rnd, self.tid)
        _bits(self.amount, 16, "amount", "an amount field")

    @property
    def credited(self) -> int:
        """The tenths of :attr:`TransferSubclass.unit` the meter credits."""
        return decode_amount(self.amount)


@dataclass(frozen=True, slots=True)
class ManagementToken:
    """Class 2 other than a key change: one 16-bit value for the meter."""

    token_class: ClassVar[TokenClass] = TokenClass.MANAGEMENT
    subclass: ManagementSubclass
    rnd: int
    tid: int
    value: int

    def __post_init__(self) -> None:
        subclass = _subclass(ManagementSubclass, self.subclass, "management")
        if subclass.is_key_section:
            raise FormatError(
                f"management subclass {int(subclass)} is a key change section: use KeyChangeToken",
                field="subclass",
            )
        object.__setattr__(self, "subclass", subclass)
        _head_fields(self.rnd, self.tid)
        _bits(self.value, 16, "value", "a management value")


@dataclass(frozen=True, slots=True)
class KeyChangeToken:
    """One section of a key change (class 2, subclass 3, 4, 8 or 9).

    Sections 1 and 3 carry ``ken`` (KENHO), ``krn``, ``ro`` and ``kt``;
    sections 2 and 4 carry ``ken`` (KENLO) and ``ti``. ``key_part`` is the
    section's 32 key bits. Fields a section does not carry must be 0.
    """

    token_class: ClassVar[TokenClass] = TokenClass.MANAGEMENT
    subclass: ManagementSubclass
    ken: int
    krn: int
    ro: bool
    kt: int
    ti: int
    key_part: int

    def __post_init__(self) -> None:
        subclass = _subclass(ManagementSubclass, self.subclass, "management")
        if not subclass.is_key_section:
            raise FormatError(
                f"management subclass {int(subclass)} is not a key change section (3, 4, 8 or 9)",
                field="subclass",
            )
        object.__setattr__(self, "subclass", subclass)
        _bits(self.ken, 4, "ken", "a KEN nibble")
        _bits(self.krn, 4, "krn", "a key revision number")
        _bits(self.kt, 2, "kt", "a key type")
        _bits(self.ti, 8, "ti", "a tariff index")
        _bits(self.key_part, 32, "key_part", "a key part")
        if not isinstance(self.ro, bool):
            raise FormatError(f"the rollover flag is a bool, got {self.ro!r}", field="ro")
        if self.carries_attributes:
            if self.ti:
                raise FormatError(
                    f"key change section {self.section} does not carry the tariff index",
                    field="ti",
                )
        elif self.krn or self.kt or self.ro:
            raise FormatError(
                f"key change section {self.section} does not carry KRN, KT or RO", field="krn"
            )

    @property
    def section(self) -> int:
        """1..4."""
        return self.subclass.section

    @property
    def carries_attributes(self) -> bool:
        """Sections 1 and 3 carry KENHO, KRN, RO and KT; 2 and 4 KENLO and TI."""
        return self.section in (1, 3)


@dataclass(frozen=True, slots=True)
class EngineeringToken:
    """Class 1, not meter-specific and not encrypted.

    STS.md gives class 1 the common layout (subclass, RND, TID, a 16-bit
    value); subclass 0 initiates a meter test or display, the meaning of
    ``value`` is the meter's.
    """

    token_class: ClassVar[TokenClass] = TokenClass.ENGINEERING
    subclass: int
    rnd: int
    tid: int
    value: int

    def __post_init__(self) -> None:
        _bits(self.subclass, 4, "subclass", "an engineering subclass")
        _head_fields(self.rnd, self.tid)
        _bits(self.value, 16, "value", "an engineering value")


Token: TypeAlias = TransferToken | ManagementToken | KeyChangeToken | EngineeringToken


@dataclass(frozen=True, slots=True)
class KeyChange:
    """A complete key change, put together from all of its sections."""

    new_key: bytes
    ken: int
    krn: int
    kt: int
    ti: int
    rollover: bool


def key_change_tokens(
    old: MeterIdentity,
    new: MeterIdentity,
    new_key: bytes,
    *,
    rollover: bool,
    ken: int = NO_EXPIRY,
) -> list[KeyChangeToken]:
    """The sections that move the meter from ``old`` to ``new`` with ``new_key``.

    Two sections for an 8-byte key, four for 16 bytes. They are to be
    encrypted under the OLD decoder key (the meter knows no other yet).
    ``rollover`` is required exactly when the base date moves on: a rollover
    clears the meter's TID memory, which only a later base date makes safe
    (older tokens then no longer decrypt).
    """
    if old.pan != new.pan:
        raise FormatError(
            f"a key change is for one meter: PAN {old.pan} is not {new.pan}", field="pan"
        )
    if old.ea is not new.ea:
        raise FormatError(
            f"a key change keeps the meter's algorithm (EA{old.ea.value}, not "
            f"EA{new.ea.value}): the tokens do not carry it",
            field="ea",
        )
    if new.base_date < old.base_date:
        raise FormatError(
            f"the base date cannot go back from {int(old.base_date)} to {int(new.base_date)}",
            field="base_date",
        )
    moved = new.base_date != old.base_date
    if rollover != moved:
        reason = (
            f"a new base date ({int(old.base_date)} to {int(new.base_date)}) needs a rollover"
            if moved
            else "a rollover clears the meter's TID memory and needs a new base date"
        )
        raise FormatError(reason, field="rollover")
    if not isinstance(new_key, bytes | bytearray) or len(new_key) != new.ea.key_size:
        size = len(new_key) if isinstance(new_key, bytes | bytearray) else "not bytes"
        raise FormatError(
            f"an EA{new.ea.value} decoder key is {new.ea.key_size} bytes, got {size}",
            field="new_key",
        )
    _bits(ken, 8, "ken", "a key expiry number")
    return split_key(bytes(new_key), ken=ken, krn=new.krn, kt=new.kt, ti=new.ti, rollover=rollover)


def split_key(
    new_key: bytes, *, ken: int, krn: int, kt: int, ti: int, rollover: bool
) -> list[KeyChangeToken]:
    """The key change sections for raw attributes (used by the CLI and the tests)."""
    if len(new_key) not in (8, 16):
        raise FormatError(f"a decoder key is 8 or 16 bytes, got {len(new_key)}", field="new_key")
    parts = [int.from_bytes(new_key[i : i + 4], "big") for i in range(0, len(new_key), 4)]
    sections = []
    for index, part in enumerate(parts):
        subclass = KEY_SECTIONS[index]
        if index % 2 == 0:
            token = KeyChangeToken(subclass, ken >> 4, krn, rollover, kt, 0, part)
        else:
            token = KeyChangeToken(subclass, ken & 0xF, 0, False, 0, ti, part)
        sections.append(token)
    return sections


def assemble_key_change(sections: Iterable[KeyChangeToken], key_size: int) -> KeyChange:
    """The key change the sections make, once the meter holds all of them.

    ``key_size`` is the meter's decoder key length (8, or 16 for EA11), which
    says how many sections make a key. Missing, repeated or disagreeing
    sections are refused with the reason.
    """
    if key_size not in (8, 16):
        raise FormatError(f"a decoder key is 8 or 16 bytes, not {key_size}", field="key_size")
    count = key_size // 4
    by_section: dict[int, KeyChangeToken] = {}
    for token in sections:
        if token.section > count:
            raise FormatError(
                f"key change section {token.section} does not exist for a {key_size * 8}-bit key",
                field="subclass",
            )
        if token.section in by_section and by_section[token.section] != token:
            raise FormatError(
                f"two different key change sections {token.section}", field="subclass"
            )
        by_section[token.section] = token
    missing = [str(n) for n in range(1, count + 1) if n not in by_section]
    if missing:
        raise FormatError(
            "key change incomplete: section(s) " + ", ".join(missing) + " missing",
            field="subclass",
        )
    first, second = by_section[1], by_section[2]
    for later, model in ((by_section.get(3), first), (by_section.get(4), second)):
        if later is not None and (later.ken, later.krn, later.ro, later.kt, later.ti) != (
            model.ken,
            model.krn,
            model.ro,
            model.kt,
            model.ti,
        ):
            raise FormatError(
                f"key change section {later.section} disagrees with section {model.section}: "
                "they belong to different key changes",
                field="subclass",
            )
    new_key = b"".join(by_section[n].key_part.to_bytes(4, "big") for n in range(1, count + 1))
    return KeyChange(
        new_key=new_key,
        ken=first.ken << 4 | second.ken,
        krn=first.krn,
        kt=first.kt,
        ti=second.ti,
        rollover=first.ro,
    )


_S = TypeVar("_S", TransferSubclass, ManagementSubclass)


def _subclass(kind: type[_S], value: object, name: str) -> _S:
    try:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError
        return kind(value)
    except (ValueError, TypeError):
        raise FormatError(f"{name} subclass {value!r} does not exist", field="subclass") from None


def _head_fields(rnd: object, tid: object) -> None:
    _bits(rnd, 4, "rnd", "RND")
    _bits(tid, 24, "tid", "a TID")


def _bits(value: object, width: int, field: str, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << width:
        raise FormatError(
            f"{name} is a number in 0..{(1 << width) - 1} ({width} bits), got {value!r}",
            field=field,
        )
