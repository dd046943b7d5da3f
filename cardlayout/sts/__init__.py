"""STS tokens (IEC 62055-41): the 20-digit numbers keypad meters accept.

The carrier both sides agree on, as the card files are for card meters: the
centre vends a token with :func:`encode_token`, the meter reads it with
:func:`decode_token`. Written from the facts in the project's STS notes
(shared/STS.md), one job per module:

* :mod:`~cardlayout.sts.identity`: the meter's PAN and key attributes;
* :mod:`~cardlayout.sts.tid`: token identifiers, minutes since a base date;
* :mod:`~cardlayout.sts.amount`: the 16-bit amount field (no floats);
* :mod:`~cardlayout.sts.crc`: the token CRC;
* :mod:`~cardlayout.sts.tokens`: classes, subclasses, key change sections;
* :mod:`~cardlayout.sts.keys`: decoder key generation (DKGA02, DKGA04);
* :mod:`~cardlayout.sts.vending`: vending keys from the project's key store;
* :mod:`~cardlayout.sts.tables`, :mod:`~cardlayout.sts.sta`: EA07;
* :mod:`~cardlayout.sts.misty1`: EA11's cipher;
* :mod:`~cardlayout.sts.ciphers`: EA07, EA09 and EA11 behind one interface;
* :mod:`~cardlayout.sts.codec`: data blocks, digits, and the decoder's checks.
"""

from cardlayout.sts.amount import MAX_AMOUNT, decode_amount, encode_amount
from cardlayout.sts.codec import (
    TokenError,
    data_block,
    decode_token,
    encode_token,
    token_from_block,
)
from cardlayout.sts.identity import BaseDate, EncryptionAlgorithm, KeyGeneration, MeterIdentity
from cardlayout.sts.keys import decoder_key, dkga02, dkga04
from cardlayout.sts.tables import SAMPLE_TABLES, StaTables, load_tables
from cardlayout.sts.tid import tid_of, time_of
from cardlayout.sts.tokens import (
    EngineeringToken,
    KeyChange,
    KeyChangeToken,
    ManagementSubclass,
    ManagementToken,
    Token,
    TokenClass,
    TransferSubclass,
    TransferToken,
    assemble_key_change,
    key_change_tokens,
)

__all__ = [
    "MAX_AMOUNT",
    "SAMPLE_TABLES",
    "BaseDate",
    "EncryptionAlgorithm",
    "EngineeringToken",
    "KeyChange",
    "KeyChangeToken",
    "KeyGeneration",
    "ManagementSubclass",
    "ManagementToken",
    "MeterIdentity",
    "StaTables",
    "Token",
    "TokenClass",
    "TokenError",
    "TransferSubclass",
    "TransferToken",
    "assemble_key_change",
    "data_block",
    "decode_amount",
    "decode_token",
    "decoder_key",
    "dkga02",
    "dkga04",
    "encode_amount",
    "encode_token",
    "key_change_tokens",
    "load_tables",
    "tid_of",
    "time_of",
    "token_from_block",
]
