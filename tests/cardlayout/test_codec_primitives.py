"""Known answers and properties of the byte-level codecs (BCD, binary, times, frames)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cardlayout.codec import (
    END,
    START,
    TORN_MARKER,
    TimeFormat,
    checksum,
    decode_bcd,
    decode_digits,
    decode_frame,
    decode_optional_time,
    decode_time,
    decode_uint,
    decode_year_month,
    encode_bcd,
    encode_digits,
    encode_frame,
    encode_optional_time,
    encode_time,
    encode_uint,
    encode_year_month,
)
from cardlayout.errors import BlankFileError, FormatError, TornFileError

BEIJING = timezone(timedelta(hours=8))


@contextmanager
def refused(field: str) -> Iterator[None]:
    """Expect a FormatError whose ``field`` is ``field`` and whose message names it."""
    with pytest.raises(FormatError) as info:
        yield
    assert info.value.field == field
    assert field in str(info.value)


# --- BCD --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "length", "expected"),
    [
        (0, 1, "00"),
        (9, 1, "09"),
        (23, 1, "23"),
        (1234, 2, "1234"),
        (5283, 4, "00005283"),
        (200_000, 4, "00200000"),
        (99_999_999, 4, "99999999"),
        (100, 3, "000100"),
    ],
)
def test_bcd_known_answers(value: int, length: int, expected: str) -> None:
    assert encode_bcd(value, length, field="x").hex() == expected
    assert decode_bcd(bytes.fromhex(expected), field="x") == value


def test_bcd_digits_keep_leading_zeros() -> None:
    assert encode_digits("000012345678", 6, field="meter_no") == bytes(
        [0x00, 0x00, 0x12, 0x34, 0x56, 0x78]
    )
    assert decode_digits(bytes([0x00, 0x00, 0x12, 0x34, 0x56, 0x78]), field="meter_no") == (
        "000012345678"
    )


@pytest.mark.parametrize("data", [b"\x1a", b"\xa1", b"\x00\x0f", b"\xff"])
def test_bcd_refuses_nibbles_above_nine(data: bytes) -> None:
    with pytest.raises(FormatError) as info:
        decode_bcd(data, field="alarm1")
    assert info.value.field == "alarm1"
    assert "alarm1" in str(info.value)


@pytest.mark.parametrize("value", [-1, 100, 10**9, 1.0, True, "12", None])
def test_bcd_refuses_values_that_do_not_fit(value: object) -> None:
    with pytest.raises(FormatError) as info:
        encode_bcd(value, 1, field="hour")  # type: ignore[arg-type]
    assert info.value.field == "hour"


def test_bcd_range_limits_apply_both_ways() -> None:
    with refused("ct_ratio"):
        encode_bcd(0, 3, field="ct_ratio", minimum=1)
    with refused("ct_ratio"):
        decode_bcd(bytes(3), field="ct_ratio", minimum=1)
    with refused("hour"):
        decode_bcd(b"\x24", field="hour", maximum=23)


@pytest.mark.parametrize(
    "text",
    [
        "3101010000421",
        "31010100004",
        "31010100004a",
        " 31010100004",
        "３１０１０１０００４２１"[:12],
        0,
    ],
)
def test_digits_refuse_anything_but_exactly_twelve_ascii_digits(text: object) -> None:
    with pytest.raises(FormatError) as info:
        encode_digits(text, 6, field="customer_no")  # type: ignore[arg-type]
    assert info.value.field == "customer_no"


@given(st.integers(0, 99_999_999))
def test_bcd_round_trip(value: int) -> None:
    assert decode_bcd(encode_bcd(value, 4, field="x"), field="x") == value


@given(st.binary(min_size=1, max_size=6))
def test_bcd_decode_raises_only_format_error(data: bytes) -> None:
    try:
        value = decode_bcd(data, field="x")
    except FormatError:
        return
    assert encode_bcd(value, len(data), field="x") == data


# --- binary -----------------------------------------------------------------------------


def test_uint_known_answers() -> None:
    assert encode_uint(10_000, 4, field="amount") == bytes([0, 0, 0x27, 0x10])
    assert encode_uint(6_000, 3, field="load_limit") == bytes([0, 0x17, 0x70])
    assert decode_uint(bytes([0, 0, 1, 0]), field="amount") == 256
    assert encode_uint(2**32 - 1, 4, field="amount") == b"\xff" * 4


@pytest.mark.parametrize("value", [-1, 2**32, 0.5, 10.0, False])
def test_uint_refuses_out_of_range_and_non_integers(value: object) -> None:
    with pytest.raises(FormatError) as info:
        encode_uint(value, 4, field="amount")  # type: ignore[arg-type]
    assert info.value.field == "amount"
    assert "amount" in str(info.value)


# --- times ------------------------------------------------------------------------------


def test_time_known_answers() -> None:
    t = datetime(2025, 3, 14, 15, 9, 26, tzinfo=UTC)
    assert encode_time(t, TimeFormat.SECONDS, field="t").hex() == "250314150926"
    assert encode_time(t.replace(second=0), TimeFormat.MINUTES, field="t").hex() == "2503141509"
    assert decode_time(bytes.fromhex("250314150926"), TimeFormat.SECONDS, field="t") == t


def test_time_is_converted_to_utc_and_decodes_aware() -> None:
    local = datetime(2025, 1, 1, 8, 0, tzinfo=BEIJING)
    data = encode_time(local, TimeFormat.MINUTES, field="t")
    assert data.hex() == "2501010000"
    decoded = decode_time(data, TimeFormat.MINUTES, field="t")
    assert decoded.tzinfo is UTC
    assert decoded == local


def test_all_zero_time_is_none() -> None:
    assert decode_optional_time(bytes(5), TimeFormat.MINUTES, field="t") is None
    assert encode_optional_time(None, TimeFormat.SECONDS, field="t") == bytes(6)
    with refused("written_at"):
        decode_time(bytes(6), TimeFormat.SECONDS, field="written_at")


@pytest.mark.parametrize(
    ("value", "fmt"),
    [
        (datetime(2025, 1, 1), TimeFormat.MINUTES),  # naive
        (datetime(2025, 1, 1, 0, 0, 1, tzinfo=UTC), TimeFormat.MINUTES),  # seconds
        (datetime(2025, 1, 1, 0, 0, 0, 5, tzinfo=UTC), TimeFormat.SECONDS),  # microseconds
        (datetime(2100, 1, 1, tzinfo=UTC), TimeFormat.MINUTES),
        (datetime(1999, 12, 31, 23, 59, tzinfo=UTC), TimeFormat.MINUTES),
        (datetime(2000, 1, 1, 7, 59, tzinfo=BEIJING), TimeFormat.MINUTES),  # 1999 in UTC
        (date(2025, 1, 1), TimeFormat.MINUTES),
    ],
)
def test_time_refusals_name_the_field(value: datetime, fmt: TimeFormat) -> None:
    with pytest.raises(FormatError) as info:
        encode_time(value, fmt, field="switch_time")
    assert info.value.field == "switch_time"
    assert "switch_time" in str(info.value)


@pytest.mark.parametrize(
    "data",
    ["2513010000", "2502300000", "2501012400", "2501010060", "250a010000", "0000000001"],
)
def test_time_decode_refuses_impossible_times(data: str) -> None:
    with refused("switch_time"):
        decode_optional_time(bytes.fromhex(data), TimeFormat.MINUTES, field="switch_time")


def test_leap_day() -> None:
    assert decode_time(bytes.fromhex("2402290000"), TimeFormat.MINUTES, field="t") == datetime(
        2024, 2, 29, tzinfo=UTC
    )
    with refused("t"):
        decode_time(bytes.fromhex("2502290000"), TimeFormat.MINUTES, field="t")


def test_year_month() -> None:
    assert encode_year_month(date(2025, 2, 1), field="m").hex() == "2502"
    assert decode_year_month(bytes.fromhex("2502"), field="m") == date(2025, 2, 1)
    assert decode_year_month(bytes(2), field="m") is None
    assert encode_year_month(None, field="m") == bytes(2)
    with refused("m"):
        encode_year_month(date(2025, 2, 3), field="m")
    with refused("m"):
        decode_year_month(bytes.fromhex("2513"), field="m")
    with refused("m"):
        decode_year_month(bytes.fromhex("2500"), field="m")


_ZONES = st.sampled_from([UTC, BEIJING, timezone(timedelta(hours=-5, minutes=-30))])


@settings(max_examples=200)
@given(
    st.datetimes(
        min_value=datetime(2000, 1, 2),
        max_value=datetime(2099, 12, 30),
        timezones=_ZONES,
    )
)
def test_time_round_trip(value: datetime) -> None:
    value = value.replace(microsecond=0)
    decoded = decode_time(
        encode_time(value, TimeFormat.SECONDS, field="t"), TimeFormat.SECONDS, field="t"
    )
    assert decoded == value
    assert decoded.utcoffset() == timedelta(0)


@given(st.binary(min_size=6, max_size=6))
def test_time_decode_raises_only_format_error(data: bytes) -> None:
    with suppress(FormatError):
        decode_optional_time(data, TimeFormat.SECONDS, field="t")


# --- frames -----------------------------------------------------------------------------


def test_checksum_known_answers() -> None:
    assert checksum(b"") == 0
    assert checksum(bytes([0x05, 0x00, 0x3A])) == 0x3F
    assert checksum(bytes([0xFF, 0x01])) == 0
    assert checksum(bytes([0x80, 0x80, 0x80])) == 0x80


def test_frame_known_answer() -> None:
    # 68 | cmd 05 | len 003a | 58 zero bytes | CS = 05 + 00 + 3a = 3f | 16
    frame = encode_frame(5, bytes(58))
    assert frame.hex() == "6805003a" + "00" * 58 + "3f16"
    assert decode_frame(5, frame, name="write-back") == bytes(58)
    # CS covers cmd, both length bytes and the body: 02 + 00 + 02 + ab + cd = 17c -> 7c
    assert encode_frame(2, bytes([0xAB, 0xCD])).hex() == "68020002abcd7c16"
    assert (START, END, TORN_MARKER) == (0x68, 0x16, 0x00)


def _frame_fault(data: bytes, field: str) -> None:
    with pytest.raises(FormatError) as info:
        decode_frame(2, data, name="purse")
    assert type(info.value) is FormatError
    assert info.value.field == field
    assert "purse" in str(info.value)


def test_frame_faults() -> None:
    good = encode_frame(2, bytes(range(16)))
    assert decode_frame(2, good, name="purse") == bytes(range(16))
    _frame_fault(bytes([0x69]) + good[1:], "start")
    _frame_fault(good[:1] + bytes([3]) + good[2:], "cmd")
    _frame_fault(good[:-2] + bytes([good[-2] ^ 1]) + good[-1:], "checksum")
    _frame_fault(good[:-1] + bytes([0x17]), "end")
    _frame_fault(good[:-3] + good[-2:], "length")
    _frame_fault(good + bytes(1), "length")
    _frame_fault(good[:4], "length")


def test_blank_and_torn_frames() -> None:
    good = encode_frame(2, bytes(range(16)))
    with pytest.raises(BlankFileError):
        decode_frame(2, bytes(len(good)), name="purse")
    with pytest.raises(TornFileError):
        decode_frame(2, bytes([TORN_MARKER]) + good[1:], name="purse")
    # Torn while writing an all-zero body: only the cmd and length bytes are nonzero.
    with pytest.raises(TornFileError):
        decode_frame(5, bytes([TORN_MARKER]) + encode_frame(5, bytes(58))[1:], name="write-back")


@settings(max_examples=200)
@given(st.integers(1, 255), st.binary(max_size=300))
def test_frame_round_trip(cmd: int, body: bytes) -> None:
    assert decode_frame(cmd, encode_frame(cmd, body), name="f") == body


@settings(max_examples=200)
@given(st.binary(max_size=300))
def test_frame_decode_raises_only_format_error(data: bytes) -> None:
    with suppress(FormatError):
        decode_frame(1, data, name="f")


@pytest.mark.parametrize(
    ("text", "places", "expected"),
    [("200.00", 2, 20000), ("0.5283", 4, 5283), ("7", 2, 700), (" 1.5 ", 2, 150), ("0", 4, 0)],
)
def test_parse_decimal_known_answers(text: str, places: int, expected: int) -> None:
    from cardlayout.codec.money import parse_decimal

    assert parse_decimal(text, places, field="amount") == expected


@pytest.mark.parametrize("text", ["1.234", "-1", "abc", "NaN", "Infinity", ""])
def test_parse_decimal_refusals_name_the_field(text: str) -> None:
    from cardlayout.codec.money import parse_decimal

    with pytest.raises(FormatError) as exc:
        parse_decimal(text, 2, field="amount")
    assert exc.value.field == "amount"
