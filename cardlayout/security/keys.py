"""Key values, their names and their check values (docs/card.md 6.1).

A key value must never reach a log line, a CLI output, an exception message or
a database row; only its name (purpose and version) and its key check value
(KCV) may. So every key value outside a key store travels wrapped in
:class:`SecretKey`, whose ``repr`` and ``str`` show the KCV only: an f-string,
a logging call or a traceback that meets one prints nothing secret. Getting at
the bytes takes an explicit ``.value``.
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final, NoReturn, final

from Crypto.Cipher import AES
from Crypto.Hash import CMAC

KEY_SIZE: Final = 16
"""Every key of the card profile is AES-128 (docs/card.md 4.3)."""

KCV_SIZE: Final = 3
MAX_VERSION: Final = 255
"""A key version travels as one byte (WRITE KEY, docs/card.md 4.4)."""


class Purpose(StrEnum):
    """What a master key is for; its value is the name used everywhere.

    The value is part of the diversification input (docs/card.md 6.1) and of
    the PKCS#11 object label, so a member's value must never change once keys
    exist. New purposes (the STS vending keys, for example) are added as new
    members; nothing else in the security layer lists the purposes by hand.
    """

    CARD_ISSUER = "card-issuer"
    CARD_METER = "card-meter"
    PURSE_MAC = "purse-mac"
    WRITEBACK_MAC = "writeback-mac"
    STS_VENDING = "sts-vending"


_PURPOSE_NAME = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
for _purpose in Purpose:  # guard the invariant the label and KDF formats rely on
    assert _PURPOSE_NAME.match(_purpose.value), _purpose


def kcv(key: SecretKey | bytes) -> bytes:
    """Key check value: the first 3 bytes of AES-CMAC(key, 16 zero bytes).

    The CMAC form (ANSI X9.24-1:2017) rather than the older "encrypt a zero
    block" one: the old form reveals a full cipher block of the key, usable
    as a known plaintext/ciphertext pair, while a CMAC prefix is not.
    """
    return CMAC.new(key_bytes(key), bytes(16), ciphermod=AES).digest()[:KCV_SIZE]


def key_bytes(key: SecretKey | bytes) -> bytes:
    """The 16 key bytes of ``key``, checked, whichever form it came in.

    The card operating system keeps raw bytes in its image while the terminal
    side holds :class:`SecretKey` objects; the primitives accept both so the
    two sides share one implementation. The error names the length only.
    """
    if isinstance(key, SecretKey):
        return key.value
    if not isinstance(key, bytes | bytearray):
        raise TypeError(f"a key is SecretKey or bytes, not {type(key).__name__}")
    if len(key) != KEY_SIZE:
        raise ValueError(f"an AES-128 key is {KEY_SIZE} bytes, not {len(key)}")
    return bytes(key)


@final
class SecretKey:
    """An AES-128 key value that does not show itself.

    ``repr`` and ``str`` give ``SecretKey(kcv=1A2B3C)``; equality is compared
    in constant time; the object is immutable and refuses to be pickled, so a
    key cannot slip into a cache, a queue or a file by accident.
    """

    __slots__ = ("_kcv", "_value")
    _value: bytes
    _kcv: bytes

    def __init__(self, value: bytes) -> None:
        if not isinstance(value, bytes | bytearray):
            raise TypeError(f"a key value is bytes, not {type(value).__name__}")
        if len(value) != KEY_SIZE:
            raise ValueError(f"an AES-128 key is {KEY_SIZE} bytes, not {len(value)}")
        raw = bytes(value)
        object.__setattr__(self, "_value", raw)
        object.__setattr__(self, "_kcv", kcv(raw))

    @property
    def value(self) -> bytes:
        """The 16 key bytes. Use them for cryptography only, never for output."""
        return self._value

    @property
    def kcv(self) -> bytes:
        """The 3-byte key check value (safe to show)."""
        return self._kcv

    @property
    def kcv_hex(self) -> str:
        """The key check value as 6 upper-case hex digits, the usual display."""
        return self._kcv.hex().upper()

    def __repr__(self) -> str:
        return f"SecretKey(kcv={self.kcv_hex})"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return format(repr(self), spec)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SecretKey):
            return NotImplemented
        return hmac.compare_digest(self._value, other._value)

    def __hash__(self) -> int:
        # Equal keys have equal KCVs; hashing the KCV keeps the value out of it.
        return hash((SecretKey, self._kcv))

    def __setattr__(self, name: str, value: Any) -> NoReturn:
        raise AttributeError("SecretKey is immutable")

    def __delattr__(self, name: str) -> NoReturn:
        raise AttributeError("SecretKey is immutable")

    def __copy__(self) -> SecretKey:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> SecretKey:
        return self

    def __reduce_ex__(self, protocol: Any) -> NoReturn:
        raise TypeError("a SecretKey cannot be pickled: key values are never stored")


@dataclass(frozen=True, slots=True)
class KeyRef:
    """The name of one master key: purpose and version (1..255)."""

    purpose: Purpose
    version: int

    def __post_init__(self) -> None:
        if not isinstance(self.purpose, Purpose):
            object.__setattr__(self, "purpose", Purpose(self.purpose))
        if isinstance(self.version, bool) or not isinstance(self.version, int):
            raise TypeError(f"a key version is an int, not {type(self.version).__name__}")
        if not 1 <= self.version <= MAX_VERSION:
            raise ValueError(f"key version {self.version} is outside 1..{MAX_VERSION}")

    @property
    def label(self) -> str:
        """``<purpose>.v<version>``: the PKCS#11 label and the name in messages."""
        return f"{self.purpose.value}.v{self.version}"

    def __str__(self) -> str:
        return f"{self.purpose.value} v{self.version}"


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """What may be shown about a master key: name, KCV and where it lives."""

    purpose: Purpose
    version: int
    kcv: bytes
    backend: str

    @property
    def ref(self) -> KeyRef:
        """The key's name, to ask the store for it."""
        return KeyRef(self.purpose, self.version)

    @property
    def kcv_hex(self) -> str:
        """The KCV as 6 upper-case hex digits."""
        return self.kcv.hex().upper()

    def __str__(self) -> str:
        return f"{self.purpose.value} v{self.version} KCV {self.kcv_hex}"
