"""APDU encoding (ISO/IEC 7816-4 5.1 cases), builders and status words."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cardlayout.apdu import commands
from cardlayout.apdu.apdu import CommandApdu, ResponseApdu
from cardlayout.apdu.status import (
    AuthenticationBlockedError,
    AuthenticationFailedError,
    FileNotFoundOnCardError,
    SecureMessagingError,
    SecurityStatusError,
    StatusError,
    check_status,
    status_meaning,
)
from cardlayout.errors import FormatError


@pytest.mark.parametrize(
    ("apdu", "encoded"),
    [
        (CommandApdu(0x00, 0xA4, 0x00, 0x0C, bytes.fromhex("3F00")), "00A4000C023F00"),  # case 3
        (CommandApdu(0x00, 0x84, 0x00, 0x00, le=8), "0084000008"),  # case 2
        (CommandApdu(0x00, 0xB0, 0x81, 0x00, le=256), "00B0810000"),  # Le 256 coded 00
        (CommandApdu(0x00, 0x88, 0x00, 0x01, bytes(8), le=16), "0088000108000000000000000010"),
        (CommandApdu(0x00, 0x44, 0x00, 0x00), "00440000"),  # case 1
    ],
)
def test_command_cases_encode_and_parse(apdu: CommandApdu, encoded: str) -> None:
    assert apdu.to_bytes().hex().upper() == encoded.upper()
    assert CommandApdu.from_bytes(bytes.fromhex(encoded)) == apdu


@given(
    st.integers(0, 255),
    st.integers(0, 255),
    st.integers(0, 255),
    st.integers(0, 255),
    st.binary(max_size=255),
    st.one_of(st.none(), st.integers(1, 256)),
)
def test_command_round_trip(
    cla: int, ins: int, p1: int, p2: int, data: bytes, le: int | None
) -> None:
    apdu = CommandApdu(cla, ins, p1, p2, data, le)
    assert CommandApdu.from_bytes(apdu.to_bytes()) == apdu


@given(st.binary(max_size=300))
def test_random_command_bytes_parse_or_raise_format_error(raw: bytes) -> None:
    with contextlib.suppress(FormatError):
        CommandApdu.from_bytes(raw)


def test_oversized_and_bad_fields_refused_with_field_name() -> None:
    with pytest.raises(FormatError) as exc:
        CommandApdu(0, 0xD6, 0, 0, bytes(256))
    assert exc.value.field == "data"
    with pytest.raises(FormatError) as exc:
        CommandApdu(0, 0xB0, 0, 0, le=257)
    assert exc.value.field == "le"
    with pytest.raises(FormatError) as exc:
        CommandApdu(0x100, 0, 0, 0)
    assert exc.value.field == "cla"


def test_read_binary_by_sfi_and_by_offset() -> None:
    assert commands.read_binary(0, 256, sfi=3).to_bytes().hex().upper() == "00B0830000"
    assert commands.read_binary(256, 2).to_bytes().hex().upper() == "00B0010002"
    with pytest.raises(FormatError) as exc:
        commands.read_binary(256, 2, sfi=3)
    assert exc.value.field == "offset"
    with pytest.raises(FormatError):
        commands.read_binary(0, 1, sfi=31)


def test_update_binary_with_mac_uses_proprietary_sm_class() -> None:
    apdu = commands.update_binary(5, b"\x68" + bytes(8), sfi=2)
    assert apdu.header.hex().upper() == "04D68205"


def test_response_split() -> None:
    r = ResponseApdu.from_bytes(bytes.fromhex("0102039000"))
    assert r.data == b"\x01\x02\x03" and r.ok and r.sw == 0x9000
    with pytest.raises(FormatError):
        ResponseApdu.from_bytes(b"\x90")


@pytest.mark.parametrize(
    ("sw", "error", "words"),
    [
        (0x6982, SecurityStatusError, "security status not satisfied"),
        (0x6983, AuthenticationBlockedError, "blocked"),
        (0x63C3, AuthenticationFailedError, "3 tries left"),
        (0x6988, SecureMessagingError, "bad MAC"),
        (0x6A82, FileNotFoundOnCardError, "not found"),
        (0x6F00, StatusError, "no precise diagnosis"),
        (0x6123, StatusError, "35 response bytes"),
    ],
)
def test_status_words_become_typed_errors_with_meaning(
    sw: int, error: type[StatusError], words: str
) -> None:
    with pytest.raises(error) as exc:
        check_status(ResponseApdu.status(sw), "UPDATE BINARY of purse")
    message = str(exc.value)
    assert words in message
    assert "UPDATE BINARY of purse" in message
    assert f"{sw:04X}" in message


def test_tries_left_and_unknown_status() -> None:
    with pytest.raises(AuthenticationFailedError) as exc:
        check_status(ResponseApdu.status(0x63C5), "auth")
    assert exc.value.tries_left == 5
    assert status_meaning(0x6C10) == "wrong Le: 16 bytes available"
    assert status_meaning(0x9999) == "unknown status word"
