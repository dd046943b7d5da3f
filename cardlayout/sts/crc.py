"""The token CRC: CRC-16/MODBUS over class, subclass and payload (STS.md).

Reflected polynomial 0xA001, initial value FFFF, over the 7 bytes
``class | subclass RND | TID | amount`` (plus one byte 01 for the currency
subclasses, "CRC_C"), then the two CRC bytes swapped into the data block.
The class is inside the CRC but not inside the data block (it travels in the
clear in the token's bits 28 and 27), so a token whose class bits were
changed fails the check.

Table-driven (one lookup per byte) because every token encoded and decoded
runs it, and the bench wants tens of thousands a second.
"""

from __future__ import annotations

from typing import Final

__all__ = ["CRC_C_SUFFIX", "block_crc", "crc16"]

_POLY: Final = 0xA001
CRC_C_SUFFIX: Final = b"\x01"
"""Appended before the CRC of a currency transfer token (class 0, subclass 4..7)."""


def _table() -> tuple[int, ...]:
    rows = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ _POLY if crc & 1 else crc >> 1
        rows.append(crc)
    return tuple(rows)


_TABLE: Final = _table()


def crc16(data: bytes) -> int:
    """CRC-16/MODBUS of ``data`` as computed (low byte first on the wire)."""
    crc = 0xFFFF
    table = _TABLE
    for byte in data:
        crc = (crc >> 8) ^ table[(crc ^ byte) & 0xFF]
    return crc


def block_crc(token_class: int, head: int, *, currency: bool = False) -> int:
    """The 16 bits the data block carries after ``head``, bytes swapped.

    ``head`` is the 48 bits ``subclass | RND | TID | amount`` (or the key
    change payload in their place); ``currency`` adds the CRC_C byte.
    """
    data = (token_class << 48 | head).to_bytes(7, "big")
    if currency:
        data += CRC_C_SUFFIX
    crc = crc16(data)
    return (crc & 0xFF) << 8 | crc >> 8
