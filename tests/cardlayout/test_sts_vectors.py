"""Known answers for the STS token carrier, from the worked examples in STS.md.

Each value here was typed from STS.md (or, for DES and HMAC, recomputed with
the library primitives from STS.md's formula), never produced by the code
under test.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime

import pytest
from Crypto.Cipher import DES

from cardlayout.sts.amount import MAX_AMOUNT, decode_amount, encode_amount
from cardlayout.sts.codec import data_block, decode_token, encode_token, token_from_block
from cardlayout.sts.crc import block_crc, crc16
from cardlayout.sts.identity import BaseDate, EncryptionAlgorithm, KeyGeneration, MeterIdentity
from cardlayout.sts.keys import (
    control_block,
    decoder_key,
    dkga02,
    dkga04,
    dkga04_message,
    pan_block,
)
from cardlayout.sts.misty1 import Misty1
from cardlayout.sts.sta import StaCipher
from cardlayout.sts.tables import SAMPLE_TABLES
from cardlayout.sts.tid import last_minute_of, tid_of, time_of
from cardlayout.sts.tokens import TransferSubclass, TransferToken

EA07, EA09, EA11 = EncryptionAlgorithm.EA07, EncryptionAlgorithm.EA09, EncryptionAlgorithm.EA11

EXAMPLE_DK = bytes.fromhex("0ABC12DEF3456789")
EXAMPLE_BLOCK = 0x0B19EB230100C207
EXAMPLE_CIPHER = 0xC45ED1619406DF95
EXAMPLE_TOKEN = "51043465443420856213"
EXAMPLE_TRANSFER = TransferToken(TransferSubclass.ELECTRICITY, rnd=0xB, tid=0x19EB23, amount=256)


def identity(
    *,
    dkga: KeyGeneration = KeyGeneration.DKGA02,
    ea: EncryptionAlgorithm = EA07,
    base: BaseDate = BaseDate.Y1993,
) -> MeterIdentity:
    """STS.md's example meter: PAN 600727000000000009, KT 2, SGC 123456, TI 01, KRN 1."""
    return MeterIdentity("600727000000000009", "123456", 1, 1, 2, base, ea, dkga)


# -- CRC -------------------------------------------------------------------------


def test_crc_of_the_worked_example() -> None:
    assert block_crc(0, 0x0B19EB230100) == 0xC207
    assert crc16(bytes.fromhex("000B19EB230100")) == 0x07C2  # before the byte swap


def test_crc_is_modbus() -> None:
    # The CRC-16/MODBUS catalogue check value: "123456789" -> 4B37.
    assert crc16(b"123456789") == 0x4B37


def test_currency_crc_covers_one_more_byte() -> None:
    head = 0x4B19EB230100
    swapped = crc16(bytes.fromhex("004B19EB23010001"))
    assert block_crc(0, head, currency=True) == (swapped & 0xFF) << 8 | swapped >> 8
    assert block_crc(0, head, currency=True) != block_crc(0, head)


# -- TID ---------------------------------------------------------------------------


def test_tid_of_the_worked_example() -> None:
    at = datetime(1996, 3, 25, 13, 55, tzinfo=UTC)
    assert tid_of(at, BaseDate.Y1993) == 0x19EB23
    assert time_of(0x19EB23, BaseDate.Y1993) == at


def test_seconds_belong_to_their_minute() -> None:
    assert tid_of(datetime(1996, 3, 25, 13, 55, 59, tzinfo=UTC), BaseDate.Y1993) == 0x19EB23


def test_the_1993_rollover_instant() -> None:
    assert last_minute_of(BaseDate.Y1993) == datetime(2024, 11, 24, 20, 15, tzinfo=UTC)
    assert time_of(0xFFFFFF, BaseDate.Y1993) == datetime(2024, 11, 24, 20, 15, tzinfo=UTC)


def test_base_dates_start_at_midnight_utc() -> None:
    assert BaseDate.Y2014.start == datetime(2014, 1, 1, tzinfo=UTC)
    assert tid_of(datetime(2014, 1, 1, 0, 1, tzinfo=UTC), BaseDate.Y2014) == 1
    assert tid_of(datetime(2035, 1, 1, tzinfo=UTC), BaseDate.Y2035) == 0


# -- Amount ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tenths", "field", "credited"),
    [
        (0, 0x0000, 0),
        (256, 0x0100, 256),  # the worked example: 25.6 kWh
        (16383, 0x3FFF, 16383),  # e = 0 ends
        (16384, 0x4000, 16384),  # e = 1 starts
        (16385, 0x4001, 16394),  # rounded up to the next step of 10
        (16394, 0x4001, 16394),
        (180214, 0x7FFF, 180214),  # e = 1 ends
        (180215, 0x8000, 180224),  # between e = 1 and e = 2: up to e = 2's first value
        (180224, 0x8000, 180224),
        (180225, 0x8001, 180324),
        (1818524, 0xBFFF, 1818524),  # e = 2 ends
        (1818525, 0xC000, 1818624),
        (1818624, 0xC000, 1818624),  # e = 3 starts
        (18201624, 0xFFFF, 18201624),  # the maximum
    ],
)
def test_amount_boundaries(tenths: int, field: int, credited: int) -> None:
    assert encode_amount(tenths) == (field, credited)
    assert decode_amount(field) == credited


def test_the_largest_amount() -> None:
    assert MAX_AMOUNT == 18201624
    assert decode_amount(0xFFFF) == MAX_AMOUNT


# -- Decoder keys ------------------------------------------------------------------


def test_dkga02_blocks_of_the_example() -> None:
    assert pan_block(identity()) == bytes.fromhex("0072700000000000")
    assert control_block(identity()) == bytes.fromhex("2123456011FFFFFF")


def test_dkga02_key_follows_the_formula() -> None:
    vk = bytes.fromhex("0123456789ABCDEF")
    x = bytes(
        a ^ b
        for a, b in zip(
            bytes.fromhex("0072700000000000"), bytes.fromhex("2123456011FFFFFF"), strict=True
        )
    )
    expected = bytes(
        e ^ a ^ k for e, a, k in zip(DES.new(vk, DES.MODE_ECB).encrypt(x), x, vk, strict=True)
    )
    assert dkga02(vk, identity()) == expected
    assert decoder_key(vk, identity()) == expected
    # The project's 16-byte vending keys contribute their first 8 bytes to DKGA02.
    assert decoder_key(vk + bytes(8), identity()) == expected


def test_dkga02_ignores_base_date_and_ea() -> None:
    vk = bytes.fromhex("0123456789ABCDEF")
    assert dkga02(vk, identity(base=BaseDate.Y2014, ea=EA09)) == dkga02(vk, identity())


def test_dkga04_message_layout() -> None:
    message = dkga04_message(identity(dkga=KeyGeneration.DKGA04))
    expected = (
        b"\x04"
        + b"\x02" + b"04"
        + b"\x02" + b"93"
        + b"\x02" + b"07"
        + b"\x02" + b"01"
        + b"\x00\x04"
        + b"\x06" + b"123456"
        + b"\x01" + b"2"
        + b"\x01" + b"1"
        + b"\x12" + b"600727000000000009"
        + (64).to_bytes(4, "big")
    )  # fmt: skip
    assert message == expected


@pytest.mark.parametrize(("ea", "size"), [(EA07, 8), (EA09, 8), (EA11, 16)])
def test_dkga04_key_is_the_hmac_prefix(ea: EncryptionAlgorithm, size: int) -> None:
    vk = bytes(range(32))
    meter = identity(dkga=KeyGeneration.DKGA04, ea=ea, base=BaseDate.Y2014)
    digest = hmac.new(vk, dkga04_message(meter), hashlib.sha256).digest()
    assert dkga04(vk, meter) == digest[:size]
    assert decoder_key(vk, meter) == digest[:size]
    assert dkga04_message(meter)[-4:] == (size * 8).to_bytes(4, "big")
    assert dkga04_message(meter)[4:7] == b"\x0214"


def test_dkga04_depends_on_every_attribute() -> None:
    vk = bytes(range(16))
    base = identity(dkga=KeyGeneration.DKGA04)
    variants = [
        MeterIdentity("600727000000000019", "123456", 1, 1, 2, base.base_date, EA07, base.dkga),
        MeterIdentity(base.pan, "123457", 1, 1, 2, base.base_date, EA07, base.dkga),
        MeterIdentity(base.pan, "123456", 2, 1, 2, base.base_date, EA07, base.dkga),
        MeterIdentity(base.pan, "123456", 1, 2, 2, base.base_date, EA07, base.dkga),
        MeterIdentity(base.pan, "123456", 1, 1, 3, base.base_date, EA07, base.dkga),
        MeterIdentity(base.pan, "123456", 1, 1, 2, BaseDate.Y2014, EA07, base.dkga),
        MeterIdentity(base.pan, "123456", 1, 1, 2, base.base_date, EA09, base.dkga),
    ]
    keys = {dkga04(vk, meter) for meter in [base, *variants]}
    assert len(keys) == len(variants) + 1


# -- Ciphers and the token ---------------------------------------------------------


def test_ea07_worked_example_block() -> None:
    cipher = StaCipher(EXAMPLE_DK, SAMPLE_TABLES)
    assert cipher.encrypt(EXAMPLE_BLOCK) == EXAMPLE_CIPHER
    assert cipher.decrypt(EXAMPLE_CIPHER) == EXAMPLE_BLOCK


def test_data_block_of_the_worked_example() -> None:
    assert data_block(EXAMPLE_TRANSFER) == EXAMPLE_BLOCK
    assert token_from_block(EXAMPLE_BLOCK) == EXAMPLE_TRANSFER


def test_ea07_worked_example_token() -> None:
    assert encode_token(EXAMPLE_TRANSFER, EXAMPLE_DK, EA07) == EXAMPLE_TOKEN
    assert encode_token(EXAMPLE_TRANSFER, EXAMPLE_DK, EA07, SAMPLE_TABLES) == EXAMPLE_TOKEN
    assert decode_token(EXAMPLE_TOKEN, EXAMPLE_DK, EA07) == EXAMPLE_TRANSFER


def test_class_bits_transposition() -> None:
    # E = C45ED1619406DF95: its bits 28 and 27 move to 65 and 64, the class takes 28 and 27.
    moved = (EXAMPLE_CIPHER >> 27) & 3
    expected = moved << 64 | (EXAMPLE_CIPHER & ~(3 << 27))
    assert int(EXAMPLE_TOKEN) == expected


def test_ea09_is_single_des_ecb() -> None:
    dk = bytes.fromhex("133457799BBCDFF1")
    enciphered = DES.new(dk, DES.MODE_ECB).encrypt(EXAMPLE_BLOCK.to_bytes(8, "big"))
    e = int.from_bytes(enciphered, "big")
    expected = ((e >> 27) & 3) << 64 | (e & ~(3 << 27))
    assert encode_token(EXAMPLE_TRANSFER, dk, EA09) == f"{expected:020d}"
    assert decode_token(f"{expected:020d}", dk, EA09) == EXAMPLE_TRANSFER


def test_ea11_is_misty1_under_a_128_bit_key() -> None:
    dk = bytes.fromhex("00112233445566778899aabbccddeeff")  # RFC 2994's example key
    e = int.from_bytes(Misty1(dk).encrypt_block(EXAMPLE_BLOCK.to_bytes(8, "big")), "big")
    expected = ((e >> 27) & 3) << 64 | (e & ~(3 << 27))
    assert encode_token(EXAMPLE_TRANSFER, dk, EA11) == f"{expected:020d}"
    assert decode_token(f"{expected:020d}", dk, EA11) == EXAMPLE_TRANSFER


def test_engineering_tokens_are_not_encrypted() -> None:
    from cardlayout.sts.tokens import EngineeringToken

    token = EngineeringToken(0, rnd=3, tid=0x19EB23, value=0x0001)
    block = data_block(token)
    # class 1 goes into bits 28 and 27; the block's own bits 28, 27 move to 65, 64.
    expected = ((block >> 27) & 3) << 64 | (block & ~(3 << 27)) | 1 << 27
    for ea, key in ((EA07, EXAMPLE_DK), (EA09, bytes(8)), (EA11, bytes(16))):
        assert encode_token(token, key, ea) == f"{expected:020d}"
        assert decode_token(f"{expected:020d}", b"\x55" * len(key), ea) == token  # any key
