"""The card files of docs/card.md section 3: examples, properties, refusals, tears."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from typing import Any

import pytest
from file_values import (
    BEIJING,
    bcd8,
    digits12,
    histories,
    macs,
    minute_times,
    write_backs,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from cardlayout.codec import encode_frame
from cardlayout.errors import BlankFileError, FormatError, TornFileError
from cardlayout.files import (
    ALL_FILES,
    ANY_METER,
    CARD_KINDS,
    HISTORY,
    PARAMETERS,
    PURSE,
    TARIFF_SET_1,
    TARIFF_SET_2,
    WRITE_BACK,
    CardFile,
    CardType,
    DayPeriod,
    Event,
    EventCode,
    FriendlyDays,
    History,
    Parameters,
    Purse,
    SettlementDate,
    TariffSet,
    UpdateFlags,
    UserType,
    Utility,
    file_by_fid,
    file_by_name,
    file_by_sfi,
)

FAST = settings(max_examples=200, deadline=None)
MONTH_DAYS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)

EXAMPLES = [
    pytest.param(card_file, example, id=f"{card_file.name}-{index}")
    for card_file in ALL_FILES
    for index, example in enumerate(card_file.examples)
]
FILES = [pytest.param(card_file, id=card_file.name) for card_file in ALL_FILES]


@contextmanager
def refused(card_file: CardFile[Any], field: str) -> Iterator[None]:
    """Expect a FormatError naming ``field`` (as .field and in the text) and the file."""
    with pytest.raises(FormatError) as info:
        yield
    assert type(info.value) is FormatError
    assert info.value.field == field
    assert field in str(info.value)
    assert card_file.name in str(info.value)


def example(card_file: CardFile[Any], index: int = 0) -> Any:
    return card_file.examples[index].value


def reframed(card_file: CardFile[Any], data: bytes, offset: int, new: bytes) -> bytes:
    """``data`` with ``new`` at body ``offset`` and a correct checksum again."""
    body = bytearray(data[4:-2])
    body[offset : offset + len(new)] = new
    return encode_frame(card_file.sfi, bytes(body))


# --- the declarations -------------------------------------------------------------------


def test_files_match_the_table_of_section_3() -> None:
    table = {(f.name, f.fid, f.sfi, f.size, f.body_size) for f in ALL_FILES}
    assert table == {
        ("parameters", 1, 1, 64, 58),
        ("purse", 2, 2, 22, 16),
        ("tariff-set-1", 3, 3, 258, 252),
        ("tariff-set-2", 4, 4, 258, 252),
        ("write-back", 5, 5, 64, 58),
        ("history", 6, 6, 150, 144),
    }
    assert [f.fid for f in ALL_FILES] == [1, 2, 3, 4, 5, 6]
    for card_file in ALL_FILES:
        assert file_by_fid(card_file.fid) is card_file
        assert file_by_sfi(card_file.sfi) is card_file
        assert file_by_name(card_file.name) is card_file
    with pytest.raises(KeyError):
        file_by_fid(7)
    with pytest.raises(KeyError):
        file_by_sfi(0)


def test_card_kinds_match_section_3_6() -> None:
    every = (PARAMETERS, PURSE, TARIFF_SET_1, TARIFF_SET_2, WRITE_BACK, HISTORY)
    expected = {
        CardType.OPENING: (True, every),
        CardType.PURCHASE: (True, every),
        CardType.REPLACEMENT: (True, every),
        CardType.PARAMETER_SETTING: (False, (PARAMETERS, TARIFF_SET_1, TARIFF_SET_2, WRITE_BACK)),
        CardType.READING: (False, (PARAMETERS, WRITE_BACK, HISTORY)),
        CardType.TEST_CLEAR: (False, (PARAMETERS, WRITE_BACK)),
    }
    assert {t: (k.user_card, k.files) for t, k in CARD_KINDS.items()} == expected
    assert all(kind.card_type is t for t, kind in CARD_KINDS.items())
    assert [int(t) for t in CardType] == [1, 2, 3, 4, 5, 6]
    assert all(t.is_user_card == CARD_KINDS[t].user_card for t in CardType)


def test_utilities() -> None:
    assert [(u.df, u.unit) for u in Utility] == [(0xDF01, "kWh"), (0xDF02, "m3"), (0xDF03, "m3")]
    assert Utility.from_df(0xDF02) is Utility.WATER
    assert Utility("gas") is Utility.GAS


def test_every_file_has_two_examples_and_mac_files_have_a_cleared_one() -> None:
    assert all(len(f.examples) >= 2 for f in ALL_FILES)
    assert any(e.value is None for e in WRITE_BACK.examples)
    assert any(e.value is None for e in HISTORY.examples)


# --- worked examples --------------------------------------------------------------------


@pytest.mark.parametrize(("card_file", "example"), EXAMPLES)
def test_examples_round_trip(card_file: CardFile[Any], example: Any) -> None:
    assert card_file.decode(bytes.fromhex(example.hex)) == example.value
    assert card_file.encode(example.value).hex() == example.hex


def test_parameters_example_byte_by_byte() -> None:
    # The first EF01 example, written out field by field against the table of 3.1.
    data = bytes.fromhex(PARAMETERS.examples[0].hex)
    body = data[4:-2]
    assert data[:4] == bytes([0x68, 0x01, 0x00, 58])
    assert body[0] == UserType.TOU_STEPPED
    assert body[1] == 0b1000_0101  # parameters, current tier set, current TOU set
    assert body[3:8] == bytes([0x25, 0x07, 0x01, 0x00, 0x00])  # 2025-07-01 00:00 UTC
    assert body[8:12] == bytes([0x00, 0x20, 0x00, 0x00])  # alarm 1 = 200000, BCD
    assert body[22:28] == bytes([0x00, 0x00, 0x12, 0x34, 0x56, 0x78])
    assert body[34] == CardType.PURCHASE
    assert int.from_bytes(body[39:43], "big") == 500_000  # hoarding limit, binary
    assert int.from_bytes(body[47:50], "big") == 6_000  # load limit, watts
    assert body[50:53] == bytes([0x22, 0x06, 0x07])
    assert data[-2] == sum(data[1:-2]) % 256
    assert data[-1] == 0x16


def test_decoded_times_are_utc_and_encode_accepts_other_zones() -> None:
    value = example(PARAMETERS)
    assert value.tariff_switch_time.tzinfo is UTC
    local = dataclasses.replace(
        value, tariff_switch_time=datetime(2025, 7, 1, 8, 0, tzinfo=BEIJING)
    )
    assert PARAMETERS.encode(local) == PARAMETERS.encode(value)


# --- strategies -------------------------------------------------------------------------


@st.composite
def parameters(draw: st.DrawFn) -> Parameters:
    card_type = draw(st.sampled_from(CardType))
    meter = draw(digits12.filter(lambda m: m != ANY_METER) if card_type.is_user_card else digits12)
    return Parameters(
        user_type=draw(st.sampled_from(UserType)),
        card_type=card_type,
        meter_no=meter,
        customer_no=draw(digits12),
        update_flags=UpdateFlags(draw(st.sampled_from([0, 1, 2, 4, 8, 128, 0x8F]))),
        parameter_version=draw(st.integers(0, 255)),
        tariff_switch_time=draw(st.none() | minute_times),
        alarm1=draw(bcd8),
        alarm2=draw(bcd8),
        ct_ratio=draw(st.integers(1, 999_999)),
        pt_ratio=draw(st.integers(1, 999_999)),
        overdraft_limit=draw(st.integers(0, 2**32 - 1)),
        hoarding_limit=draw(st.none() | st.integers(1, 2**32 - 1)),
        close_allow_threshold=draw(st.integers(0, 2**32 - 1)),
        load_limit=draw(st.none() | st.integers(1, 2**24 - 1)),
        friendly_start_hour=draw(st.integers(0, 23)),
        friendly_end_hour=draw(st.integers(0, 23)),
        friendly_days=FriendlyDays(draw(st.integers(0, 7))),
    )


purses = st.builds(
    Purse, amount=st.integers(0, 2**32 - 1), purchase_count=st.integers(0, 2**32 - 1), mac=macs
)


@st.composite
def settlement_dates(draw: st.DrawFn) -> SettlementDate:
    hour = draw(st.integers(0, 23))
    if draw(st.booleans()):
        return SettlementDate.monthly(draw(st.integers(1, 28)), hour)
    month = draw(st.integers(1, 12))
    return SettlementDate.yearly(month, draw(st.integers(1, MONTH_DAYS[month - 1])), hour)


@st.composite
def tariff_sets(draw: st.DrawFn) -> TariffSet:
    rates = draw(st.lists(bcd8, max_size=32))
    periods: list[DayPeriod] = []
    if rates:
        period = st.builds(
            DayPeriod, st.integers(0, 23), st.integers(0, 59), st.integers(1, len(rates))
        )
        periods = draw(st.lists(period, max_size=14))
    tiers = draw(st.integers(0, 7))
    thresholds = sorted(
        draw(
            st.sets(
                st.integers(1, 99_999_999), min_size=max(tiers - 1, 0), max_size=max(tiers - 1, 0)
            )
        )
    )
    return TariffSet(
        rate_prices=tuple(rates),
        periods=tuple(periods),
        tier_thresholds=tuple(thresholds),
        tier_prices=tuple(draw(st.lists(bcd8, min_size=tiers, max_size=tiers))),
        settlement_dates=tuple(draw(st.lists(settlement_dates(), max_size=4))),
        switch_time=draw(st.none() | minute_times),
    )


VALUES: dict[str, st.SearchStrategy[Any]] = {
    PARAMETERS.name: parameters(),
    PURSE.name: purses,
    TARIFF_SET_1.name: tariff_sets(),
    TARIFF_SET_2.name: tariff_sets(),
    WRITE_BACK.name: st.none() | write_backs,
    HISTORY.name: st.none() | histories,
}


# --- properties -------------------------------------------------------------------------


@FAST
@pytest.mark.parametrize("card_file", FILES)
@given(data=st.data())
def test_decode_inverts_encode(card_file: CardFile[Any], data: st.DataObject) -> None:
    value = data.draw(VALUES[card_file.name])
    encoded = card_file.encode(value)
    assert len(encoded) == card_file.size
    assert card_file.decode(encoded) == value


def _decode_only_format_errors(card_file: CardFile[Any], data: bytes) -> None:
    """Decoding ``data`` succeeds canonically or raises FormatError, nothing else."""
    try:
        value = card_file.decode(data)
    except FormatError:
        return
    assert card_file.encode(value) == data  # one value, one encoding


@FAST
@pytest.mark.parametrize("card_file", FILES)
@given(data=st.data())
def test_random_bytes_raise_only_format_error(
    card_file: CardFile[Any], data: st.DataObject
) -> None:
    size = data.draw(
        st.sampled_from([card_file.size, 0, 1, card_file.size - 1, card_file.size + 1])
    )
    _decode_only_format_errors(card_file, data.draw(st.binary(min_size=size, max_size=size)))


@FAST
@pytest.mark.parametrize("card_file", FILES)
@given(data=st.data())
def test_random_bodies_raise_only_format_error(
    card_file: CardFile[Any], data: st.DataObject
) -> None:
    body = data.draw(st.binary(min_size=card_file.body_size, max_size=card_file.body_size))
    _decode_only_format_errors(card_file, encode_frame(card_file.sfi, body))


@FAST
@pytest.mark.parametrize("card_file", FILES)
@given(data=st.data())
def test_damaged_valid_bodies_raise_only_format_error(
    card_file: CardFile[Any], data: st.DataObject
) -> None:
    body = bytearray(card_file.encode(data.draw(VALUES[card_file.name]))[4:-2])
    for _ in range(data.draw(st.integers(1, 3))):
        body[data.draw(st.integers(0, len(body) - 1))] = data.draw(st.integers(0, 255))
    _decode_only_format_errors(card_file, encode_frame(card_file.sfi, bytes(body)))


# --- blank, torn, misplaced -------------------------------------------------------------


@pytest.mark.parametrize("card_file", FILES)
def test_all_zero_file_is_blank(card_file: CardFile[Any]) -> None:
    with pytest.raises(BlankFileError):
        card_file.decode(bytes(card_file.size))


@pytest.mark.parametrize(("card_file", "example"), EXAMPLES)
def test_first_byte_zero_is_torn(card_file: CardFile[Any], example: Any) -> None:
    data = bytes.fromhex(example.hex)
    with pytest.raises(TornFileError):
        card_file.decode(b"\x00" + data[1:])


def test_a_frame_in_the_wrong_file_does_not_decode() -> None:
    pairs: list[tuple[CardFile[Any], CardFile[Any]]] = [
        (PARAMETERS, WRITE_BACK),  # both 64 bytes
        (WRITE_BACK, PARAMETERS),
        (TARIFF_SET_1, TARIFF_SET_2),  # same size, same layout
    ]
    for source, target in pairs:
        with refused(target, "cmd"):
            target.decode(source.encode(example(source)))


@pytest.mark.parametrize("card_file", FILES)
def test_wrong_size_is_refused(card_file: CardFile[Any]) -> None:
    data = card_file.encode(example(card_file))
    with refused(card_file, "length"):
        card_file.decode(data + b"\x00")
    with refused(card_file, "length"):
        card_file.decode(data[:-1])


def test_bad_checksum_and_end_are_refused() -> None:
    data = bytearray(PURSE.encode(example(PURSE)))
    data[-2] ^= 1
    with refused(PURSE, "checksum"):
        PURSE.decode(bytes(data))
    data = bytearray(PURSE.encode(example(PURSE)))
    data[-1] = 0x17
    with refused(PURSE, "end"):
        PURSE.decode(bytes(data))


# --- MACs -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "card_file", [pytest.param(f, id=f.name) for f in (PURSE, WRITE_BACK, HISTORY)]
)
def test_mac_message_is_the_body_without_the_mac(card_file: Any) -> None:
    value = example(card_file)
    data = card_file.encode(value)
    assert card_file.mac_message(value) == data[4 : 4 + card_file.body_size - 8]
    assert data[4 + card_file.body_size - 8 : -2] == value.mac
    other = value.with_mac(bytes(range(8)))
    assert other.mac == bytes(range(8))
    assert card_file.mac_message(other) == card_file.mac_message(value)
    assert card_file.decode(card_file.encode(other)) == other


def test_history_that_would_read_as_cleared_is_refused() -> None:
    with refused(HISTORY, "mac"):
        HISTORY.encode(History())
    assert HISTORY.decode(HISTORY.encode(History().with_mac(b"\x00" * 7 + b"\x01"))) is not None


def test_cleared_files_decode_to_none() -> None:
    assert WRITE_BACK.decode(WRITE_BACK.encode(None)) is None
    assert HISTORY.decode(HISTORY.encode(None)) is None


# --- refusals on encode -----------------------------------------------------------------

_P = example(PARAMETERS)
_T = example(TARIFF_SET_1)
_W = example(WRITE_BACK)
_H = example(HISTORY)
NAIVE = datetime(2025, 7, 1, 0, 0)

ENCODE_REFUSALS: list[tuple[CardFile[Any], Any, dict[str, Any], str]] = [
    (PARAMETERS, _P, {"customer_no": "3101010000421"}, "customer_no"),
    (PARAMETERS, _P, {"customer_no": "31010100004X"}, "customer_no"),
    (PARAMETERS, _P, {"meter_no": 12345678}, "meter_no"),
    (PARAMETERS, _P, {"meter_no": ANY_METER}, "meter_no"),  # any meter on a user card
    (PARAMETERS, _P, {"alarm1": 100_000_000}, "alarm1"),
    (PARAMETERS, _P, {"alarm2": -1}, "alarm2"),
    (PARAMETERS, _P, {"alarm1": 1000.0}, "alarm1"),
    (PARAMETERS, _P, {"tariff_switch_time": NAIVE}, "tariff_switch_time"),
    (
        PARAMETERS,
        _P,
        {"tariff_switch_time": datetime(2025, 7, 1, 0, 0, 30, tzinfo=UTC)},
        "tariff_switch_time",
    ),
    (
        PARAMETERS,
        _P,
        {"tariff_switch_time": datetime(2100, 1, 1, tzinfo=UTC)},
        "tariff_switch_time",
    ),
    (PARAMETERS, _P, {"ct_ratio": 0}, "ct_ratio"),
    (PARAMETERS, _P, {"pt_ratio": 1_000_000}, "pt_ratio"),
    (PARAMETERS, _P, {"hoarding_limit": 0}, "hoarding_limit"),
    (PARAMETERS, _P, {"load_limit": 2**24}, "load_limit"),
    (PARAMETERS, _P, {"overdraft_limit": 2**32}, "overdraft_limit"),
    (PARAMETERS, _P, {"friendly_start_hour": 24}, "friendly_start_hour"),
    (PARAMETERS, _P, {"friendly_days": 8}, "friendly_days"),
    (PARAMETERS, _P, {"update_flags": 16}, "update_flags"),
    (PARAMETERS, _P, {"parameter_version": 256}, "parameter_version"),
    (PARAMETERS, _P, {"user_type": 5}, "user_type"),
    (PARAMETERS, _P, {"card_type": 7}, "card_type"),
    (PURSE, example(PURSE), {"amount": -1}, "amount"),
    (PURSE, example(PURSE), {"amount": 12.5}, "amount"),
    (PURSE, example(PURSE), {"purchase_count": 2**32}, "purchase_count"),
    (PURSE, example(PURSE), {"mac": bytes(7)}, "mac"),
    (TARIFF_SET_1, _T, {"rate_prices": (1,) * 33}, "rate_prices"),
    (TARIFF_SET_1, _T, {"rate_prices": (1, 2, 3, 100_000_000)}, "rate_prices"),
    (TARIFF_SET_1, _T, {"tier_thresholds": (480_000, 240_000)}, "tier_thresholds"),
    (TARIFF_SET_1, _T, {"tier_thresholds": (240_000, 240_000)}, "tier_thresholds"),
    (TARIFF_SET_1, _T, {"tier_thresholds": (0, 240_000)}, "tier_thresholds"),
    (TARIFF_SET_1, _T, {"tier_thresholds": (240_000,)}, "tier_thresholds"),
    (
        TARIFF_SET_1,
        _T,
        {"tier_prices": (1,) * 8, "tier_thresholds": tuple(range(1, 8))},
        "tier_prices",
    ),
    (TARIFF_SET_1, _T, {"periods": (DayPeriod(8, 0, 5),)}, "periods"),
    (TARIFF_SET_1, _T, {"periods": (DayPeriod(24, 0, 1),)}, "periods"),
    (TARIFF_SET_1, _T, {"periods": (DayPeriod(8, 60, 1),)}, "periods"),
    (TARIFF_SET_1, _T, {"periods": (DayPeriod(8, 0, 1),) * 15}, "periods"),
    (
        TARIFF_SET_1,
        _T,
        {"settlement_dates": (SettlementDate.yearly(2, 29, 0),)},
        "settlement_dates",
    ),
    (TARIFF_SET_1, _T, {"settlement_dates": (SettlementDate.monthly(29, 0),)}, "settlement_dates"),
    (
        TARIFF_SET_1,
        _T,
        {"settlement_dates": (SettlementDate.yearly(13, 1, 0),)},
        "settlement_dates",
    ),
    (TARIFF_SET_1, _T, {"settlement_dates": (SettlementDate.monthly(1, 24),)}, "settlement_dates"),
    (
        TARIFF_SET_1,
        _T,
        {"settlement_dates": (SettlementDate.monthly(1, 0),) * 5},
        "settlement_dates",
    ),
    (
        TARIFF_SET_1,
        _T,
        {"switch_time": datetime(2025, 1, 1, 0, 0, 0, 1, tzinfo=UTC)},
        "switch_time",
    ),
    (WRITE_BACK, _W, {"written_at": NAIVE}, "written_at"),
    (WRITE_BACK, _W, {"written_at": None}, "written_at"),
    (WRITE_BACK, _W, {"illegal_card_count": 2**16}, "illegal_card_count"),
    (WRITE_BACK, _W, {"meter_status": 64}, "meter_status"),
    (WRITE_BACK, _W, {"insertion_result": 12}, "insertion_result"),
    (WRITE_BACK, _W, {"remaining_amount": -5}, "remaining_amount"),
    (WRITE_BACK, _W, {"meter_no": "12345678901"}, "meter_no"),
    (HISTORY, _H, {"monthly_usages": (0,) * 11}, "monthly_usages"),
    (HISTORY, _H, {"monthly_usages": (-1,) + (0,) * 11}, "monthly_usages"),
    (HISTORY, _H, {"events": (_H.events[0],) * 9}, "events"),
    (
        HISTORY,
        _H,
        {"events": (Event(EventCode.ILLEGAL_CARD, 12, datetime(2025, 1, 1, tzinfo=UTC)),)},
        "events",
    ),
    (HISTORY, _H, {"events": (Event(EventCode.COVER_OPEN, 0, NAIVE),)}, "events"),
    (HISTORY, _H, {"latest_frozen_month": date(2025, 2, 2)}, "latest_frozen_month"),
    (HISTORY, _H, {"cumulative_quantity": 2**40}, "cumulative_quantity"),
    (HISTORY, _H, {"status": 256}, "status"),
]


@pytest.mark.parametrize(
    ("card_file", "base", "changes", "field"),
    [pytest.param(*r, id=f"{r[0].name}-{r[3]}-{i}") for i, r in enumerate(ENCODE_REFUSALS)],
)
def test_encode_refuses_values_that_do_not_fit(
    card_file: CardFile[Any], base: Any, changes: dict[str, Any], field: str
) -> None:
    with refused(card_file, field):
        card_file.encode(dataclasses.replace(base, **changes))


def test_encode_refuses_the_wrong_type() -> None:
    with refused(PURSE, "purse"):
        PURSE.encode(_P)


# --- refusals on decode -----------------------------------------------------------------

DECODE_REFUSALS: list[tuple[CardFile[Any], int, int, str, str | None]] = [
    (PARAMETERS, 0, 0, "05", "user_type"),
    (PARAMETERS, 0, 1, "10", "update_flags"),
    (PARAMETERS, 0, 4, "13", "tariff_switch_time"),  # month 13
    (PARAMETERS, 0, 8, "0a", "alarm1"),  # nibble above 9
    (PARAMETERS, 0, 16, "000000", "ct_ratio"),
    (PARAMETERS, 0, 22, "000000000000", "meter_no"),  # any meter on a purchase card
    (PARAMETERS, 0, 34, "07", "card_type"),
    (PARAMETERS, 0, 47, "000000", None),  # load limit 0 = none: fine
    (PARAMETERS, 0, 50, "24", "friendly_start_hour"),
    (PARAMETERS, 0, 52, "08", "friendly_days"),
    (PARAMETERS, 0, 57, "01", "reserved"),
    (TARIFF_SET_1, 0, 0, "21", "rate_count"),  # 33 rates
    (TARIFF_SET_1, 0, 20, "01", "rate_prices"),  # unused rate 5 not zero
    (TARIFF_SET_1, 0, 129, "0f", "period_count"),
    (TARIFF_SET_1, 0, 132, "05", "periods"),  # rate 5 beyond the rate count 4
    (TARIFF_SET_1, 0, 132, "00", "periods"),  # rate 0
    (TARIFF_SET_1, 0, 130, "24", "periods"),  # hour 24
    (TARIFF_SET_1, 0, 142, "000001", "periods"),  # unused slot not zero
    (TARIFF_SET_1, 0, 172, "08", "tier_count"),
    (TARIFF_SET_1, 0, 177, "00200000", "tier_thresholds"),  # not rising
    (TARIFF_SET_1, 0, 181, "00500000", "tier_thresholds"),  # unused not zero
    (TARIFF_SET_1, 0, 209, "00000001", "tier_prices"),
    (TARIFF_SET_1, 0, 225, "023000", "settlement_dates"),  # 30 February
    (TARIFF_SET_1, 0, 225, "999999", "settlement_dates"),  # gap before a used slot
    (TARIFF_SET_1, 0, 231, "000000", "settlement_dates"),  # day 0
    (TARIFF_SET_1, 0, 237, "2513010000", "switch_time"),
    (TARIFF_SET_1, 0, 251, "01", "reserved"),
    (WRITE_BACK, 0, 0, "00", "user_type"),
    (WRITE_BACK, 0, 1, "00000a", "ct_ratio"),
    (WRITE_BACK, 0, 33, "40", "meter_status"),
    (WRITE_BACK, 0, 34, "0c", "insertion_result"),
    (WRITE_BACK, 0, 35, "251314150926", "written_at"),
    (WRITE_BACK, 0, 35, "000000000000", "written_at"),
    (WRITE_BACK, 0, 41, "01", "reserved"),
    (HISTORY, 0, 17, "01", "status"),  # reserved high byte
    (HISTORY, 0, 18, "80", "status"),
    (HISTORY, 0, 19, "2513", "latest_frozen_month"),
    (HISTORY, 0, 69, "0a", "events"),  # event code 10
    (HISTORY, 0, 70, "0c", "events"),  # illegal card with detail 0c
    (HISTORY, 0, 77, "00", "events"),  # unused slot with a time in it
    (HISTORY, 0, 69, "0000000000000000", "events"),  # gap before a used slot
    (HISTORY, 0, 77, "0000000000000000", None),  # dropping the last event: fine
    (HISTORY, 0, 133, "01", "reserved"),
]


@pytest.mark.parametrize(
    ("card_file", "index", "offset", "new", "field"),
    [pytest.param(*r, id=f"{r[0].name}-{r[2]}-{r[4]}") for r in DECODE_REFUSALS],
)
def test_decode_refuses_bad_fields(
    card_file: CardFile[Any], index: int, offset: int, new: str, field: str | None
) -> None:
    data = reframed(
        card_file, bytes.fromhex(card_file.examples[index].hex), offset, bytes.fromhex(new)
    )
    if field is None:
        card_file.decode(data)
        return
    with refused(card_file, field):
        card_file.decode(data)
