"""EA07, the standard transfer algorithm (STA), written for speed (STS.md).

The algorithm: K = NOT DK rotated right by 12 bits; sixteen rounds, each of
which substitutes every data nibble i through S2 if bit 3 of key nibble i is
set (S1 otherwise), moves bit i to bit P[i], and rotates K left by one.
Decryption runs the rounds backwards with the inverse tables.

Done bit by bit that is over a thousand Python operations a block; the
vending target is 20 000 tokens a second on one core. So the work is moved
out of the block loop into tables, computed once per table set:

* a round's substitution of one data byte depends only on that byte and the
  two key bits that select S1 or S2 for its nibbles (4 choices), and
* the permutation is linear over the bits, so P(x) is the OR of P applied to
  each byte of x in its place.

Substitution and permutation of byte j therefore fuse into one table
``fused[j][choice]`` of 256 entries, each the 64-bit image of that byte
(8 x 4 x 256 entries per table set), and a round is 8 lookups OR-ed
together. Per key, only the 16 x 8 choices are computed (which table each
round uses for each byte). Decryption fuses the inverse substitution of
round r with the inverse permutation of round r - 1 the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from operator import getitem
from typing import Final

from cardlayout.errors import FormatError
from cardlayout.sts.tables import StaTables

__all__ = ["ROUNDS", "StaCipher"]

ROUNDS: Final = 16
_MASK: Final = (1 << 64) - 1
_BYTES: Final = range(8)

_Table = Sequence[int]
_Round = tuple[_Table, ...]
"""A round's 8 tables, one per data byte, least significant byte first."""

_SELECTOR_BITS: Final = 0x1111111111111111
_CHOICE_CODES: Final = (0x00, 0x01, 0x10, 0x11)
_CODES: Final = 0x12


class _TableMaterial:
    """Everything STA needs from one table set, as byte-indexed lookup tables.

    Each row of :attr:`fused`, :attr:`inverse_fused` and
    :attr:`inverse_substitution` is indexed by a byte's *choice code*: the
    byte's two S-box selector key bits where the key has them, bit 0 (low
    nibble) and bit 4 (high nibble), so 00, 01, 10 or 11 hex. A key schedule
    then picks a round's tables with one C-level ``map`` over the key's bytes.
    """

    __slots__ = ("fused", "inverse_fused", "inverse_permutation", "inverse_substitution")

    def __init__(self, tables: StaTables) -> None:
        inverse_s1 = _inverse(tables.s1)
        inverse_s2 = _inverse(tables.s2)
        inverse_p = _inverse(tables.p)
        # permute[j][b]: where P sends the bits of value b at byte position j.
        permute = [_byte_images(tables.p, j) for j in _BYTES]
        self.inverse_permutation: Final[_Round] = tuple(
            tuple(_byte_images(inverse_p, j)) for j in _BYTES
        )
        fused: list[tuple[_Table, ...]] = []
        inverse_fused: list[tuple[_Table, ...]] = []
        inverse_substitution: list[tuple[_Table, ...]] = []
        for j in _BYTES:
            forward_row: list[_Table] = [()] * _CODES
            backward_row: list[_Table] = [()] * _CODES
            plain_row: list[_Table] = [()] * _CODES
            for code in _CHOICE_CODES:
                low = tables.s2 if code & 0x01 else tables.s1
                high = tables.s2 if code & 0x10 else tables.s1
                inverse_low = inverse_s2 if code & 0x01 else inverse_s1
                inverse_high = inverse_s2 if code & 0x10 else inverse_s1
                substituted = [high[b >> 4] << 4 | low[b & 15] for b in range(256)]
                restored = [inverse_high[b >> 4] << 4 | inverse_low[b & 15] for b in range(256)]
                forward_row[code] = tuple(permute[j][v] for v in substituted)
                backward_row[code] = tuple(_permute_bits(inverse_p, v << 8 * j) for v in restored)
                plain_row[code] = tuple(v << 8 * j for v in restored)
            fused.append(tuple(forward_row))
            inverse_fused.append(tuple(backward_row))
            inverse_substitution.append(tuple(plain_row))
        self.fused: Final = tuple(fused)
        self.inverse_fused: Final = tuple(inverse_fused)
        self.inverse_substitution: Final = tuple(inverse_substitution)


@lru_cache(maxsize=8)
def _material(tables: StaTables) -> _TableMaterial:
    return _TableMaterial(tables)


class StaCipher:
    """EA07 under one decoder key and one table set; blocks are 64-bit ints.

    Build one per key and reuse it: the constructor does the per-key work
    (which table each round uses for each byte), each block then costs 128
    lookups. The decryption rounds are made on the first :meth:`decrypt`,
    since a vending server only encrypts.
    """

    __slots__ = ("_backward", "_codes", "_forward", "_last", "_material")

    def __init__(self, decoder_key: bytes, tables: StaTables) -> None:
        if len(decoder_key) != 8:
            raise FormatError(
                f"an EA07 decoder key is 8 bytes, not {len(decoder_key)}", field="decoder_key"
            )
        material = _material(tables)
        key = _rotate_right(~int.from_bytes(decoder_key, "big") & _MASK, 12)
        codes = []
        for _ in range(ROUNDS):
            # Data nibble i is substituted by S2 when key bit 4i + 3 is set: shifting
            # those bits down to 4i leaves byte j of the result as byte j's choice code.
            codes.append((key >> 3 & _SELECTOR_BITS).to_bytes(8, "little"))
            key = _rotate_left(key, 1)
        self._material = material
        self._codes: tuple[bytes, ...] = tuple(codes)
        self._forward: tuple[_Round, ...] = tuple(
            tuple(map(getitem, material.fused, code)) for code in codes
        )
        self._backward: tuple[_Round, ...] = ()
        self._last: _Round = ()

    def _prepare_decryption(self) -> None:
        # Round r's inverse substitution fused with round r - 1's inverse permutation.
        # _last is set before _backward, which decrypt() tests: a thread that sees
        # _backward set also sees _last.
        material = self._material
        self._last = tuple(map(getitem, material.inverse_substitution, self._codes[0]))
        self._backward = tuple(
            tuple(map(getitem, material.inverse_fused, code)) for code in reversed(self._codes[1:])
        )

    def encrypt(self, block: int) -> int:
        """The enciphered 64-bit block."""
        x = block
        for t0, t1, t2, t3, t4, t5, t6, t7 in self._forward:
            x = (
                t0[x & 255] | t1[x >> 8 & 255] | t2[x >> 16 & 255] | t3[x >> 24 & 255]
                | t4[x >> 32 & 255] | t5[x >> 40 & 255] | t6[x >> 48 & 255] | t7[x >> 56]
            )  # fmt: skip
        return x

    def decrypt(self, block: int) -> int:
        """The deciphered 64-bit block."""
        if not self._backward:
            self._prepare_decryption()
        t0, t1, t2, t3, t4, t5, t6, t7 = self._material.inverse_permutation
        x = block
        x = (
            t0[x & 255] | t1[x >> 8 & 255] | t2[x >> 16 & 255] | t3[x >> 24 & 255]
            | t4[x >> 32 & 255] | t5[x >> 40 & 255] | t6[x >> 48 & 255] | t7[x >> 56]
        )  # fmt: skip
        for t0, t1, t2, t3, t4, t5, t6, t7 in self._backward:
            x = (
                t0[x & 255] | t1[x >> 8 & 255] | t2[x >> 16 & 255] | t3[x >> 24 & 255]
                | t4[x >> 32 & 255] | t5[x >> 40 & 255] | t6[x >> 48 & 255] | t7[x >> 56]
            )  # fmt: skip
        t0, t1, t2, t3, t4, t5, t6, t7 = self._last
        return (
            t0[x & 255] | t1[x >> 8 & 255] | t2[x >> 16 & 255] | t3[x >> 24 & 255]
            | t4[x >> 32 & 255] | t5[x >> 40 & 255] | t6[x >> 48 & 255] | t7[x >> 56]
        )  # fmt: skip


def _inverse(permutation: Sequence[int]) -> list[int]:
    inverse = [0] * len(permutation)
    for index, value in enumerate(permutation):
        inverse[value] = index
    return inverse


def _permute_bits(p: Sequence[int], value: int) -> int:
    """Move bit i of ``value`` to bit ``p[i]``."""
    result = 0
    for i in range(64):
        if value >> i & 1:
            result |= 1 << p[i]
    return result


def _byte_images(p: Sequence[int], j: int) -> list[int]:
    return [_permute_bits(p, b << 8 * j) for b in range(256)]


def _rotate_right(value: int, count: int) -> int:
    return (value >> count | value << (64 - count)) & _MASK


def _rotate_left(value: int, count: int) -> int:
    return (value << count | value >> (64 - count)) & _MASK
