"""Every malformed token, identity, table file or value gets its own reason."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cardlayout.errors import FormatError
from cardlayout.sts.amount import encode_amount
from cardlayout.sts.codec import (
    CRC_MISMATCH,
    TokenError,
    data_block,
    decode_token,
    encode_token,
    token_from_block,
)
from cardlayout.sts.identity import BaseDate, EncryptionAlgorithm, KeyGeneration, MeterIdentity
from cardlayout.sts.keys import dkga02, dkga04
from cardlayout.sts.tables import SAMPLE_TABLES, load_tables
from cardlayout.sts.tid import tid_of, time_of
from cardlayout.sts.tokens import (
    EngineeringToken,
    KeyChangeToken,
    ManagementSubclass,
    ManagementToken,
    TransferSubclass,
    TransferToken,
    key_change_tokens,
)

EA07 = EncryptionAlgorithm.EA07
DK = bytes.fromhex("0ABC12DEF3456789")
TOKEN = "51043465443420856213"


# -- Malformed tokens -------------------------------------------------------------


@pytest.mark.parametrize(
    ("digits", "code", "reason"),
    [
        ("5104346544342085621", "length", "a token is 20 digits, got 19"),
        ("510434654434208562130", "length", "a token is 20 digits, got 21"),
        ("", "length", "a token is 20 digits, got 0"),
        ("5104346544342085621x", "digits", "a token is made of digits only, found 'x'"),
        ("51043465443420856.13", "digits", "found '.'"),
        ("５1043465443420856213", "digits", "found '５'"),  # a full-width digit
        ("73786976294838206464", "range", "above 2^66 - 1"),  # exactly 2^66
        ("99999999999999999999", "range", "above 2^66 - 1"),
        (f"{3 << 27:020d}", "class", "token class 3 does not exist"),
        ("51043465443420856214", "crc", CRC_MISMATCH),  # last digit mistyped
    ],
)
def test_malformed_token_reason(digits: str, code: str, reason: str) -> None:
    with pytest.raises(TokenError) as caught:
        decode_token(digits, DK, EA07)
    assert caught.value.code == code
    assert reason in caught.value.reason
    assert str(caught.value) == caught.value.reason
    assert isinstance(caught.value, FormatError)


def test_largest_66_bit_number_is_not_refused_for_its_range() -> None:
    with pytest.raises(TokenError) as caught:
        decode_token(f"{(1 << 66) - 1:020d}", DK, EA07)
    assert caught.value.code != "range"


def test_wrong_key_is_a_crc_failure() -> None:
    with pytest.raises(TokenError, match="CRC does not match: not for this meter or mistyped"):
        decode_token(TOKEN, bytes.fromhex("0ABC12DEF3456788"), EA07)


def test_wrong_algorithm_is_a_crc_failure() -> None:
    with pytest.raises(TokenError) as caught:
        decode_token(TOKEN, DK, EncryptionAlgorithm.EA09)
    assert caught.value.code == "crc"


def test_changed_class_bits_fail_the_crc() -> None:
    as_management = int(TOKEN) | 2 << 27  # class 0 -> 2, same enciphered bits
    with pytest.raises(TokenError) as caught:
        decode_token(f"{as_management:020d}", DK, EA07)
    assert caught.value.code == "crc"


def test_grouped_digits_are_accepted() -> None:
    assert decode_token("5104-3465-4434-2085-6213", DK, EA07) == decode_token(TOKEN, DK, EA07)
    assert decode_token(" 5104 3465 4434 2085 6213 ", DK, EA07) == decode_token(TOKEN, DK, EA07)


def test_unknown_subclass_with_a_good_crc() -> None:
    from cardlayout.sts.crc import block_crc

    for token_class, subclass, word in ((0, 8, "credit transfer"), (2, 10, "management")):
        head = subclass << 44 | 0x123456789
        block = head << 16 | block_crc(token_class, head)
        with pytest.raises(TokenError, match=f"{word} subclass {subclass} does not exist") as e:
            token_from_block(block)
        assert e.value.code == "subclass"


def test_currency_without_crc_c_is_refused() -> None:
    from cardlayout.sts.crc import block_crc

    head = 5 << 44 | 0x0B19EB230100
    plain_crc = head << 16 | block_crc(0, head)  # a CRC without the 01 byte
    with pytest.raises(TokenError):
        token_from_block(plain_crc, 0)  # type: ignore[arg-type]
    good = head << 16 | block_crc(0, head, currency=True)
    assert token_from_block(good) == TransferToken(TransferSubclass.CURRENCY_5, 0xB, 0x19EB23, 256)
    assert data_block(TransferToken(TransferSubclass.CURRENCY_5, 0xB, 0x19EB23, 256)) == good


@pytest.mark.parametrize(
    ("ea", "size"), [(EA07, 8), (EncryptionAlgorithm.EA09, 8), (EncryptionAlgorithm.EA11, 16)]
)
def test_decoder_key_of_the_wrong_length(ea: EncryptionAlgorithm, size: int) -> None:
    token = TransferToken(TransferSubclass.ELECTRICITY, 0, 0, 0)
    wrong = bytes(24 - size)
    with pytest.raises(FormatError, match=f"EA{ea.value} decoder key is {size} bytes") as caught:
        encode_token(token, wrong, ea)
    assert caught.value.field == "decoder_key"
    with pytest.raises(FormatError, match=f"is {size} bytes"):
        decode_token(TOKEN, wrong, ea)


# -- Token fields -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: TransferToken(TransferSubclass.ELECTRICITY, 16, 0, 0), "rnd"),
        (lambda: TransferToken(TransferSubclass.ELECTRICITY, 0, 1 << 24, 0), "tid"),
        (lambda: TransferToken(TransferSubclass.ELECTRICITY, 0, 0, 1 << 16), "amount"),
        (lambda: TransferToken(8, 0, 0, 0), "subclass"),
        (lambda: ManagementToken(ManagementSubclass.KEY_1, 0, 0, 0), "subclass"),
        (lambda: ManagementToken(ManagementSubclass.CLEAR_CREDIT, 0, 0, -1), "value"),
        (lambda: EngineeringToken(16, 0, 0, 0), "subclass"),
        (lambda: KeyChangeToken(ManagementSubclass.CLEAR_TAMPER, 0, 0, False, 0, 0, 0), "subclass"),
        (lambda: KeyChangeToken(ManagementSubclass.KEY_1, 0, 0, False, 0, 5, 0), "ti"),
        (lambda: KeyChangeToken(ManagementSubclass.KEY_2, 0, 1, False, 0, 5, 0), "krn"),
        (lambda: KeyChangeToken(ManagementSubclass.KEY_1, 0, 0, False, 4, 0, 0), "kt"),
        (lambda: KeyChangeToken(ManagementSubclass.KEY_1, 16, 0, False, 0, 0, 0), "ken"),
        (lambda: KeyChangeToken(ManagementSubclass.KEY_3, 0, 0, False, 0, 0, 1 << 32), "key_part"),
    ],
)
def test_token_fields_are_checked(make: object, field: str) -> None:
    with pytest.raises(FormatError) as caught:
        make()  # type: ignore[operator]
    assert caught.value.field == field


@pytest.mark.parametrize(
    ("tenths", "message"),
    [(-1, "0..18201624 tenths"), (18201625, "0..18201624 tenths"), (1.5, "whole number")],
)
def test_amount_out_of_range(tenths: object, message: str) -> None:
    with pytest.raises(FormatError, match=message):
        encode_amount(tenths)  # type: ignore[arg-type]


# -- Identity and keys ------------------------------------------------------------


def make_identity(**changes: object) -> MeterIdentity:
    values: dict[str, object] = {
        "pan": "600727000000000009",
        "sgc": "123456",
        "ti": 1,
        "krn": 1,
        "kt": 2,
        "base_date": BaseDate.Y1993,
        "ea": EA07,
        "dkga": KeyGeneration.DKGA02,
    }
    values.update(changes)
    return MeterIdentity(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"pan": "60072700000000009"}, "pan", "PAN is 18 digits"),
        ({"pan": "60072700000000000A"}, "pan", "PAN is 18 digits"),
        ({"sgc": "12345"}, "sgc", "supply group code is 6 digits"),
        ({"ti": 100}, "ti", "tariff index is a number in 0..99"),
        ({"krn": 0}, "krn", "key revision number is a number in 1..9"),
        ({"krn": 10}, "krn", "key revision number"),
        ({"kt": 4}, "kt", "key type is a number in 0..3"),
        ({"base_date": 2000}, "base_date", "base_date is one of 1993, 2014, 2035"),
        ({"ea": "08"}, "ea", "ea is one of 07, 09, 11"),
        ({"dkga": "03"}, "dkga", "dkga is one of 02, 04"),
        ({"ea": EncryptionAlgorithm.EA11}, "dkga", "DKGA02 makes 64-bit keys"),
    ],
)
def test_identity_fields_are_checked(changes: dict[str, object], field: str, message: str) -> None:
    with pytest.raises(FormatError, match=message) as caught:
        make_identity(**changes)
    assert caught.value.field == field


def test_identity_accepts_plain_values() -> None:
    meter = make_identity(base_date=2014, ea="09", dkga="04")
    assert meter.base_date is BaseDate.Y2014
    assert meter.ea is EncryptionAlgorithm.EA09
    assert meter.dkga is KeyGeneration.DKGA04


def test_vending_key_lengths() -> None:
    with pytest.raises(FormatError, match="DKGA02 vending key is 8 bytes, not 7"):
        dkga02(bytes(7), make_identity())
    with pytest.raises(FormatError, match="DKGA04 vending key is 16 to 64 bytes, not 8"):
        dkga04(bytes(8), make_identity(dkga="04"))


# -- TID --------------------------------------------------------------------------


def test_naive_time_is_refused() -> None:
    with pytest.raises(FormatError, match="no time zone"):
        tid_of(datetime(2020, 1, 1), BaseDate.Y2014)


@pytest.mark.parametrize(
    ("at", "base"),
    [
        (datetime(1992, 12, 31, 23, 59, tzinfo=UTC), BaseDate.Y1993),
        (datetime(2024, 11, 24, 20, 16, tzinfo=UTC), BaseDate.Y1993),
        (datetime(2013, 12, 31, 23, 59, 59, tzinfo=UTC), BaseDate.Y2014),
    ],
)
def test_time_outside_the_base_date(at: datetime, base: BaseDate) -> None:
    with pytest.raises(FormatError, match=f"outside the {int(base)} base date's TID range"):
        tid_of(at, base)


def test_tid_out_of_range() -> None:
    with pytest.raises(FormatError, match=r"a TID is a number in 0\.\.16777215"):
        time_of(1 << 24, BaseDate.Y1993)


# -- Tables -----------------------------------------------------------------------


def write(tmp_path: Path, document: object) -> Path:
    path = tmp_path / "tables.json"
    path.write_text(json.dumps(document) if not isinstance(document, str) else document)
    return path


def sample_document() -> dict[str, list[int]]:
    return {
        "s1": list(SAMPLE_TABLES.s1),
        "s2": list(SAMPLE_TABLES.s2),
        "p": list(SAMPLE_TABLES.p),
    }


def test_tables_load(tmp_path: Path) -> None:
    assert load_tables(write(tmp_path, sample_document())) == SAMPLE_TABLES


def _with(**changes: object) -> dict[str, object]:
    document: dict[str, object] = dict(sample_document())
    document.update(changes)
    return document


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("{not json", "is not JSON"),
        ([1, 2, 3], "must hold an object with keys s1, s2 and p"),
        ({"s1": list(range(16)), "s2": list(range(16))}, "misses p"),
        (_with(P=list(range(64))), "has unknown keys P"),
        (_with(s1=list(range(15))), "table s1 has 15 entries, not 16"),
        (_with(p=list(range(63))), "table p has 63 entries, not 64"),
        (_with(s2=[*range(15), 16]), "table s2 entry 15 is 16, not a number in 0..15"),
        (_with(s1=[*range(15), "15"]), "table s1 entry 15 is '15'"),
        (_with(s1=[0, *range(15)]), "table s1 is not a permutation: 0 appears at entries 0 and 1"),
        (_with(p=[*range(63), 0]), "table p is not a permutation: 0 appears at entries 0 and 63"),
        (_with(p="0 1 2"), "table p is a list of 64 numbers, got str"),
    ],
)
def test_bad_tables_are_refused(tmp_path: Path, document: object, message: str) -> None:
    path = write(tmp_path, document)
    with pytest.raises(FormatError) as caught:
        load_tables(path)
    assert message in str(caught.value)
    assert str(path) in str(caught.value)
    assert caught.value.field == "tables"


def test_missing_table_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_tables(tmp_path / "none.json")


# -- Key change -------------------------------------------------------------------


def test_key_change_checks() -> None:
    old = make_identity(dkga="04")
    with pytest.raises(FormatError, match="one meter"):
        key_change_tokens(old, make_identity(pan="600727000000000019"), bytes(8), rollover=False)
    with pytest.raises(FormatError, match="keeps the meter's algorithm"):
        key_change_tokens(old, make_identity(ea="09"), bytes(8), rollover=False)
    with pytest.raises(FormatError, match="needs a rollover"):
        key_change_tokens(old, make_identity(base_date=2014, dkga="04"), bytes(8), rollover=False)
    with pytest.raises(FormatError, match="needs a new base date"):
        key_change_tokens(old, make_identity(krn=2), bytes(8), rollover=True)
    with pytest.raises(FormatError, match="cannot go back"):
        key_change_tokens(make_identity(base_date=2014), old, bytes(8), rollover=True)
    with pytest.raises(FormatError, match="EA07 decoder key is 8 bytes, got 16"):
        key_change_tokens(old, make_identity(krn=2), bytes(16), rollover=False)
    with pytest.raises(FormatError, match="key expiry number"):
        key_change_tokens(old, make_identity(krn=2), bytes(8), rollover=False, ken=256)
