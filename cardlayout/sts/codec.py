"""From a token to its 20 digits and back (STS.md).

Encoding: the token's 64-bit data block ``subclass(4) | payload(44) | CRC(16)``
(payload = ``RND(4) | TID(24) | amount or value(16)``, or a key change's 44
bits) is enciphered by the meter's algorithm under its decoder key (class 1
is not); the two class bits take bits 28 and 27 of the result, whose own two
bits move up to bits 65 and 64; the 66-bit number is written as 20 decimal
digits.

Decoding undoes that and believes nothing it has not checked: the digits,
the 66-bit range, the class, then the CRC (over the class too), then the
subclass. Every refusal is a :class:`TokenError` whose ``reason`` is the
sentence for the user and ``code`` a short name for programs. A token for
another meter, a wrong key or a mistyped digit all end in the CRC: after
decryption under the wrong key the block is noise, and a 16-bit CRC lets
about one noise block in 65 536 through, which is why the meter also checks
the TID.
"""

from __future__ import annotations

from typing import Final

from cardlayout.errors import FormatError
from cardlayout.sts.ciphers import block_cipher
from cardlayout.sts.crc import block_crc
from cardlayout.sts.identity import EncryptionAlgorithm
from cardlayout.sts.tables import StaTables
from cardlayout.sts.tokens import (
    EngineeringToken,
    KeyChangeToken,
    ManagementSubclass,
    ManagementToken,
    Token,
    TokenClass,
    TransferSubclass,
    TransferToken,
)

__all__ = [
    "CRC_MISMATCH",
    "TOKEN_DIGITS",
    "TokenError",
    "data_block",
    "decode_token",
    "encode_token",
    "token_class_of",
    "token_from_block",
]

TOKEN_DIGITS: Final = 20
TOKEN_LIMIT: Final = 1 << 66
CRC_MISMATCH: Final = "CRC does not match: not for this meter or mistyped"

_CLASS_SHIFT: Final = 27
_CLASS_BITS: Final = 3 << _CLASS_SHIFT
_MASK64: Final = (1 << 64) - 1
_SEPARATORS: Final = str.maketrans("", "", " -")


class TokenError(FormatError):
    """A token that cannot be read; ``reason`` says why, ``code`` names the check.

    Codes: ``digits`` (not decimal digits), ``length`` (not 20 digits),
    ``range`` (above 2^66 - 1), ``class`` (class 3), ``crc``, ``subclass``
    (no such subclass in its class).
    """

    def __init__(self, reason: str, *, code: str) -> None:
        super().__init__(reason, field="token")
        self.reason = reason
        self.code = code


def token_class_of(token: Token) -> TokenClass:
    """The class a token travels in."""
    return token.token_class


def data_block(token: Token) -> int:
    """The 64-bit data block of ``token``, CRC included, before encryption."""
    if isinstance(token, KeyChangeToken):
        if token.carries_attributes:
            payload = (
                token.ken << 40 | token.krn << 36 | int(token.ro) << 35 | token.kt << 32
            ) | token.key_part
        else:
            payload = token.ken << 40 | token.ti << 32 | token.key_part
    elif isinstance(token, TransferToken):
        payload = token.rnd << 40 | token.tid << 16 | token.amount
    elif isinstance(token, ManagementToken | EngineeringToken):
        payload = token.rnd << 40 | token.tid << 16 | token.value
    else:
        raise TypeError(f"not a token: {type(token).__name__}")
    head = int(token.subclass) << 44 | payload
    currency = isinstance(token, TransferToken) and token.subclass.is_currency
    return head << 16 | block_crc(token.token_class, head, currency=currency)


def token_from_block(block: int, token_class: TokenClass | None = None) -> Token:
    """The token whose data block is ``block``, after checking its CRC.

    The class is not in the data block (it travels in the token's clear
    bits), so a caller that has it passes it (:func:`decode_token` does);
    without it, the class is the first whose CRC matches. Over the same
    bytes at most one can (the classes differ in one byte, and a 16-bit CRC
    detects every error burst of up to 16 bits); only a block of subclass
    4..7, whose class 0 CRC covers the extra CRC_C byte, can match a second
    class, by a 1 in 65 536 chance.
    """
    if isinstance(block, bool) or not isinstance(block, int) or not 0 <= block <= _MASK64:
        raise TokenError(f"a data block is 64 bits, got {block!r}", code="range")
    head, crc = block >> 16, block & 0xFFFF
    subclass = head >> 44
    if token_class is None:
        for candidate in TokenClass:
            if _crc_matches(candidate, head, crc):
                token_class = candidate
                break
        else:
            raise TokenError(CRC_MISMATCH, code="crc")
    else:
        token_class = TokenClass(token_class)
        if not _crc_matches(token_class, head, crc):
            raise TokenError(CRC_MISMATCH, code="crc")
    rnd, tid, value = head >> 40 & 0xF, head >> 16 & 0xFFFFFF, head & 0xFFFF
    if token_class is TokenClass.TRANSFER:
        if subclass not in _TRANSFER_SUBCLASSES:
            raise TokenError(
                f"credit transfer subclass {subclass} does not exist (0..7)", code="subclass"
            )
        return TransferToken(TransferSubclass(subclass), rnd, tid, value)
    if token_class is TokenClass.ENGINEERING:
        return EngineeringToken(subclass, rnd, tid, value)
    if subclass not in _MANAGEMENT_SUBCLASSES:
        raise TokenError(f"management subclass {subclass} does not exist (0..9)", code="subclass")
    management = ManagementSubclass(subclass)
    if not management.is_key_section:
        return ManagementToken(management, rnd, tid, value)
    ken, key_part = head >> 40 & 0xF, head & 0xFFFFFFFF
    if management.section in (1, 3):
        krn, ro, kt = head >> 36 & 0xF, bool(head >> 35 & 1), head >> 32 & 0x3
        return KeyChangeToken(management, ken, krn, ro, kt, 0, key_part)
    return KeyChangeToken(management, ken, 0, False, 0, head >> 32 & 0xFF, key_part)


def encode_token(
    token: Token,
    decoder_key: bytes,
    ea: EncryptionAlgorithm,
    tables: StaTables | None = None,
) -> str:
    """The 20 digits of ``token`` for the meter with ``decoder_key``.

    ``tables`` is EA07's table set (default: the standard's sample tables).
    Class 1 is not encrypted, so its digits do not depend on the key.
    """
    block = data_block(token)
    token_class = token.token_class
    if token_class is TokenClass.ENGINEERING:
        enciphered = block
    else:
        enciphered = block_cipher(ea, decoder_key, tables).encrypt(block)
    moved = (enciphered & _CLASS_BITS) >> _CLASS_SHIFT
    number = moved << 64 | (enciphered & ~_CLASS_BITS) | int(token_class) << _CLASS_SHIFT
    return f"{number:0{TOKEN_DIGITS}d}"


def decode_token(
    digits: str,
    decoder_key: bytes,
    ea: EncryptionAlgorithm,
    tables: StaTables | None = None,
) -> Token:
    """The token behind 20 digits, for the meter with ``decoder_key``.

    Spaces and hyphens between the digits are ignored (tokens are printed in
    groups). Raises :class:`TokenError` with the reason for anything else (a
    decoder key of the wrong length for ``ea`` is the caller's
    :class:`~cardlayout.errors.FormatError`, field ``decoder_key``).
    """
    if not isinstance(digits, str):
        raise TokenError(
            f"a token is a string of digits, not {type(digits).__name__}", code="digits"
        )
    text = digits if len(digits) == TOKEN_DIGITS else digits.strip().translate(_SEPARATORS)
    if not (text.isascii() and text.isdigit()):
        text = text.translate(_SEPARATORS)
        bad = next((ch for ch in text if ch not in "0123456789"), None)
        if bad is not None:
            raise TokenError(f"a token is made of digits only, found {bad!r}", code="digits")
    if len(text) != TOKEN_DIGITS:
        raise TokenError(f"a token is {TOKEN_DIGITS} digits, got {len(text)}", code="length")
    number = int(text)
    if number >= TOKEN_LIMIT:
        raise TokenError(f"{text} is above 2^66 - 1, the largest token: mistyped", code="range")
    class_bits = (number & _CLASS_BITS) >> _CLASS_SHIFT
    if class_bits == 3:
        raise TokenError("token class 3 does not exist: mistyped", code="class")
    token_class = TokenClass(class_bits)
    enciphered = (number & _MASK64 & ~_CLASS_BITS) | (number >> 64) << _CLASS_SHIFT
    if token_class is TokenClass.ENGINEERING:
        block = enciphered
    else:
        block = block_cipher(ea, decoder_key, tables).decrypt(enciphered)
    return token_from_block(block, token_class)


def _crc_matches(token_class: TokenClass, head: int, crc: int) -> bool:
    # CRC_C: a currency transfer's CRC covers one more byte, and only that CRC is valid.
    currency = token_class is TokenClass.TRANSFER and (head >> 44) in _CURRENCY_SUBCLASSES
    return block_crc(token_class, head, currency=currency) == crc


_TRANSFER_SUBCLASSES: Final = frozenset(int(s) for s in TransferSubclass)
_MANAGEMENT_SUBCLASSES: Final = frozenset(int(s) for s in ManagementSubclass)
_CURRENCY_SUBCLASSES: Final = frozenset(int(s) for s in TransferSubclass if s.is_currency)
