"""Decoder key generation: a meter's own key from its supply group's vending key.

Every meter has its own decoder key (DK), so a token opens one meter only and
a key read out of one meter opens no other. The vending server derives the DK
on the fly from the vending key and the meter's identity (STS.md):

* DKGA02 (DES): PANBlock = the 16 middle digits of the PAN read as hex,
  CONTROLBlock = ``KT | SGC | TI | KRN | FFFFFF`` read as hex,
  X = PANBlock xor CONTROLBlock, ``DK = DES_VK(X) xor X xor VK``. The
  feed-forward makes the step one-way even to someone who knows X.
* DKGA04 (HMAC-SHA-256): the first 64 (EA07, EA09) or 128 (EA11) bits of
  HMAC-SHA-256(VK, M), M spelling out every attribute as length-prefixed
  text, so two identities never share a message.

The vending key is a secret of the supply group; these functions never put a
key in a message.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Final

from Crypto.Cipher import DES

from cardlayout.errors import FormatError
from cardlayout.sts.identity import KeyGeneration, MeterIdentity

__all__ = [
    "DKGA04_KEY_SIZES",
    "control_block",
    "decoder_key",
    "dkga02",
    "dkga04",
    "dkga04_message",
    "pan_block",
]

DKGA02_KEY_SIZE: Final = 8
DKGA04_KEY_SIZES: Final = range(16, 65)
"""Vending key lengths DKGA04 accepts: 128 bits up to HMAC-SHA-256's block size."""


def pan_block(identity: MeterIdentity) -> bytes:
    """DKGA02's PANBlock: the PAN without its first and last digit, as 8 bytes."""
    return bytes.fromhex(identity.pan[1:-1])


def control_block(identity: MeterIdentity) -> bytes:
    """DKGA02's CONTROLBlock: ``KT | SGC(6) | TI(2) | KRN | FFFFFF`` as 8 bytes."""
    return bytes.fromhex(f"{identity.kt:X}{identity.sgc}{identity.ti:02d}{identity.krn:X}FFFFFF")


def dkga02(vending_key: bytes, identity: MeterIdentity) -> bytes:
    """The 8-byte decoder key by DKGA02 from an 8-byte vending key."""
    vk = _key(vending_key)
    if len(vk) != DKGA02_KEY_SIZE:
        raise FormatError(
            f"a DKGA02 vending key is {DKGA02_KEY_SIZE} bytes, not {len(vk)}", field="vending_key"
        )
    x = bytes(a ^ b for a, b in zip(pan_block(identity), control_block(identity), strict=True))
    enciphered = DES.new(vk, DES.MODE_ECB).encrypt(x)
    return bytes(e ^ a ^ k for e, a, k in zip(enciphered, x, vk, strict=True))


def dkga04_message(identity: MeterIdentity) -> bytes:
    """The message DKGA04 MACs for ``identity`` (layout in STS.md)."""
    bits = identity.ea.key_size * 8
    return b"".join(
        (
            b"\x04",
            _lv("04"),
            _lv(identity.base_date.code),
            _lv(identity.ea.value),
            _lv(f"{identity.ti:02d}"),
            b"\x00\x04",
            _lv(identity.sgc),
            _lv(f"{identity.kt:X}"),
            _lv(f"{identity.krn:X}"),
            _lv(identity.pan),
            bits.to_bytes(4, "big"),
        )
    )


def dkga04(vending_key: bytes, identity: MeterIdentity) -> bytes:
    """The decoder key by DKGA04: 8 bytes for EA07 and EA09, 16 for EA11."""
    vk = _key(vending_key)
    if len(vk) not in DKGA04_KEY_SIZES:
        raise FormatError(
            f"a DKGA04 vending key is {DKGA04_KEY_SIZES.start} to {DKGA04_KEY_SIZES.stop - 1} "
            f"bytes, not {len(vk)}",
            field="vending_key",
        )
    digest = hmac.new(vk, dkga04_message(identity), hashlib.sha256).digest()
    return digest[: identity.ea.key_size]


def decoder_key(vending_key: bytes, identity: MeterIdentity) -> bytes:
    """The decoder key of ``identity`` by its own DKGA.

    For DKGA02 a 16-byte vending key (this project's key store hands out
    16 bytes, :mod:`cardlayout.sts.vending`) contributes its first 8 bytes;
    an 8-byte key is used as it is.
    """
    vk = _key(vending_key)
    if identity.dkga is KeyGeneration.DKGA02:
        if len(vk) == 16:
            vk = vk[:DKGA02_KEY_SIZE]
        return dkga02(vk, identity)
    return dkga04(vk, identity)


def _key(value: bytes) -> bytes:
    if not isinstance(value, bytes | bytearray):
        raise TypeError(f"a vending key is bytes, not {type(value).__name__}")
    return bytes(value)


def _lv(text: str) -> bytes:
    data = text.encode("ascii")
    return len(data).to_bytes(1, "big") + data
