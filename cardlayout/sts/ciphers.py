"""The three token ciphers behind one interface: 64-bit block in, 64-bit block out.

EA07 is STA (:mod:`cardlayout.sts.sta`), EA09 single DES in ECB mode
(pycryptodome), EA11 MISTY1 (:mod:`cardlayout.sts.misty1`) with a 128-bit key.
All three see the data block as a 64-bit integer, most significant byte first.

:func:`block_cipher` keeps the last few keyed ciphers: a vending server or a
meter issues and reads many tokens under one key, and building a cipher (STA's
per-key table choices, DES's and MISTY1's key schedules) costs more than
running it. The cache holds key material only in this process's memory, as
the cipher objects themselves do.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Protocol

from Crypto.Cipher import DES

from cardlayout.errors import FormatError
from cardlayout.sts.identity import EncryptionAlgorithm
from cardlayout.sts.misty1 import Misty1
from cardlayout.sts.sta import StaCipher
from cardlayout.sts.tables import SAMPLE_TABLES, StaTables

__all__ = ["BlockCipher", "block_cipher"]


class BlockCipher(Protocol):
    """Enciphers and deciphers 64-bit blocks given as integers."""

    def encrypt(self, block: int) -> int:
        """The enciphered block."""
        ...

    def decrypt(self, block: int) -> int:
        """The deciphered block."""
        ...


class _DesCipher:
    """EA09: DES-ECB of the data block under the 8-byte decoder key."""

    __slots__ = ("_des",)

    def __init__(self, decoder_key: bytes) -> None:
        self._des = DES.new(decoder_key, DES.MODE_ECB)

    def encrypt(self, block: int) -> int:
        return int.from_bytes(self._des.encrypt(block.to_bytes(8, "big")), "big")

    def decrypt(self, block: int) -> int:
        return int.from_bytes(self._des.decrypt(block.to_bytes(8, "big")), "big")


class _MistyCipher:
    """EA11: MISTY1 of the data block under the 16-byte decoder key."""

    __slots__ = ("_misty",)

    def __init__(self, decoder_key: bytes) -> None:
        self._misty = Misty1(decoder_key)

    def encrypt(self, block: int) -> int:
        return int.from_bytes(self._misty.encrypt_block(block.to_bytes(8, "big")), "big")

    def decrypt(self, block: int) -> int:
        return int.from_bytes(self._misty.decrypt_block(block.to_bytes(8, "big")), "big")


def block_cipher(
    ea: EncryptionAlgorithm, decoder_key: bytes, tables: StaTables | None = None
) -> BlockCipher:
    """The cipher of ``ea`` under ``decoder_key`` (EA07: ``tables``, default the sample set)."""
    ea = EncryptionAlgorithm(ea)
    if not isinstance(decoder_key, bytes | bytearray):
        raise TypeError(f"a decoder key is bytes, not {type(decoder_key).__name__}")
    if len(decoder_key) != ea.key_size:
        raise FormatError(
            f"an EA{ea.value} decoder key is {ea.key_size} bytes, not {len(decoder_key)}",
            field="decoder_key",
        )
    if ea is not EncryptionAlgorithm.EA07:
        tables = None  # only STA has tables; keep one cache entry per key
    elif tables is None:
        tables = SAMPLE_TABLES
    return _cached(ea, bytes(decoder_key), tables)


@lru_cache(maxsize=64)
def _cached(ea: EncryptionAlgorithm, decoder_key: bytes, tables: StaTables | None) -> BlockCipher:
    if ea is EncryptionAlgorithm.EA07:
        assert tables is not None
        return StaCipher(decoder_key, tables)
    if ea is EncryptionAlgorithm.EA09:
        return _DesCipher(decoder_key)
    return _MistyCipher(decoder_key)
