"""The keypad meter model: each token taken once, by its own meter, as its class says."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cardlayout.sts.amount import encode_amount
from cardlayout.sts.codec import encode_token
from cardlayout.sts.identity import BaseDate, EncryptionAlgorithm, KeyGeneration, MeterIdentity
from cardlayout.sts.tid import tid_of
from cardlayout.sts.tokens import (
    EngineeringToken,
    KeyChangeToken,
    ManagementSubclass,
    ManagementToken,
    Token,
    TransferSubclass,
    TransferToken,
    key_change_tokens,
    split_key,
)
from cardmeter.keypad import TID_MEMORY, KeypadMeter, KeypadOutcome, decoder_key_check

IDENTITY = MeterIdentity(
    pan="600727000000000009",
    sgc="123456",
    ti=1,
    krn=1,
    kt=2,
    base_date=BaseDate.Y1993,
    ea=EncryptionAlgorithm.EA07,
    dkga=KeyGeneration.DKGA02,
)
DK = bytes.fromhex("0ABC12DEF3456789")
NEW_DK = bytes.fromhex("1122334455667788")
OTHER_DK = bytes.fromhex("8877665544332211")

EA11_IDENTITY = dataclasses.replace(
    IDENTITY, ea=EncryptionAlgorithm.EA11, dkga=KeyGeneration.DKGA04, base_date=BaseDate.Y2014
)
DK16 = bytes(range(16))
NEW_DK16 = bytes(range(100, 116))

TID_2023 = tid_of(datetime(2023, 6, 1, tzinfo=UTC), BaseDate.Y1993)


def meter(identity: MeterIdentity = IDENTITY, key: bytes = DK) -> KeypadMeter:
    return KeypadMeter.new(identity, key)


def credit(tid: int, tenths: int = 256, rnd: int = 5) -> TransferToken:
    field, _ = encode_amount(tenths)
    return TransferToken(TransferSubclass.ELECTRICITY, rnd, tid, field)


def manage(subclass: ManagementSubclass, tid: int, value: int = 0) -> ManagementToken:
    return ManagementToken(subclass, 3, tid, value)


def digits(
    token: Token, key: bytes = DK, ea: EncryptionAlgorithm = EncryptionAlgorithm.EA07
) -> str:
    return encode_token(token, key, ea)


def enter(m: KeypadMeter, token: Token, key: bytes | None = None) -> KeypadOutcome:
    return m.enter(digits(token, m.decoder_key if key is None else key, m.identity.ea))


# -- credit and the TID rule ---------------------------------------------------


def test_a_credit_token_is_taken_once() -> None:
    m = meter()
    token = credit(TID_2023, 256)
    first = enter(m, token)
    assert first.accepted and first.credited == 256 and m.credit == 256
    assert first.reason == "25.6 kWh credited"
    assert first.as_dict() == {
        "accepted": True,
        "reason": "25.6 kWh credited",
        "class": "transfer",
        "subclass": "electricity",
        "tid": TID_2023,
        "credited": 256,
        "changed": {"credit": {"from": 0, "to": 256}},
        "credit": 256,
    }
    again = enter(m, token)
    assert not again.accepted and again.credited == 0 and m.credit == 256
    assert "used already" in again.reason and again.tid == TID_2023
    # the same TID with another amount or RND is the same token number: refused too
    assert not enter(m, credit(TID_2023, 999, rnd=9)).accepted
    assert m.credit == 256


def test_the_worked_example_token_credits_25_6_kwh() -> None:
    outcome = meter().enter("51043465443420856213")
    assert outcome.accepted, outcome.reason
    assert outcome.credited == 256 and outcome.tid == 0x19EB23


def test_tokens_may_arrive_out_of_order_until_the_memory_is_full() -> None:
    m = meter()
    assert enter(m, credit(TID_2023 + 10)).accepted
    assert enter(m, credit(TID_2023)).accepted  # bought second, typed first: fine
    assert m.tids == [TID_2023, TID_2023 + 10]


def test_a_tid_older_than_the_oldest_of_the_last_50_is_refused() -> None:
    m = meter()
    for i in range(TID_MEMORY):  # TIDs +100, +102, ... +198: gaps of one minute
        assert enter(m, credit(TID_2023 + 100 + 2 * i, 10)).accepted
    assert m.credit == 10 * TID_MEMORY and len(m.tids) == TID_MEMORY
    old = enter(m, credit(TID_2023 + 99))  # never used, but older than all 50 held
    assert not old.accepted and "older than the oldest of the last 50" in old.reason
    assert enter(m, credit(TID_2023 + 200)).accepted  # pushes TID_2023 + 100 out
    assert m.tids[0] == TID_2023 + 102 and len(m.tids) == TID_MEMORY
    evicted = enter(m, credit(TID_2023 + 100))  # used, then forgotten: still refused
    assert not evicted.accepted and "older than the oldest" in evicted.reason
    gap = enter(m, credit(TID_2023 + 101))  # never used, older than the oldest held
    assert not gap.accepted and "older than the oldest" in gap.reason
    between = enter(m, credit(TID_2023 + 103))  # never used, newer than the oldest held
    assert between.accepted
    assert m.credit == 10 * TID_MEMORY + 256 * 2


def test_another_meters_token_fails_the_crc_and_changes_nothing() -> None:
    m = meter()
    before = m.to_json()
    outcome = enter(m, credit(TID_2023), key=OTHER_DK)
    assert not outcome.accepted and "CRC" in outcome.reason
    assert outcome.token_class is None and outcome.tid is None
    assert m.to_json() == before


@pytest.mark.parametrize(
    ("typed", "words"),
    [
        ("5104346544342085621", "20"),  # a digit short
        ("51043465443420856214", "CRC"),  # last digit mistyped
        ("5104346544342085621X", "digit"),
        ("99999999999999999999", ""),  # above 2^66
        ("", "20"),
    ],
)
def test_malformed_tokens_are_refused_with_a_reason(typed: str, words: str) -> None:
    m = meter()
    outcome = m.enter(typed)
    assert not outcome.accepted and outcome.reason
    assert words in outcome.reason
    assert m.credit == 0 and m.tids == []


def test_a_credit_token_of_another_utility_is_refused() -> None:
    m = meter()
    water = TransferToken(TransferSubclass.WATER, 1, TID_2023, 100)
    outcome = enter(m, water)
    assert not outcome.accepted and "water" in outcome.reason and "electricity" in outcome.reason
    assert m.credit == 0 and m.tids == []
    water_meter = KeypadMeter.new(IDENTITY, DK, transfer=TransferSubclass.WATER)
    taken = enter(water_meter, water)
    assert taken.accepted and taken.reason == "10.0 m3 credited" and water_meter.credit == 100


# -- management tokens -----------------------------------------------------------


def test_management_tokens_set_their_registers() -> None:
    m = meter()
    tid = TID_2023
    out = enter(m, manage(ManagementSubclass.SET_MAX_POWER, tid, 5000))
    assert out.accepted and m.max_power == 5000
    assert out.changed == {"max_power": {"from": None, "to": 5000}}
    assert out.reason == "maximum power limit set to 5000"
    assert enter(m, manage(ManagementSubclass.SET_PHASE_UNBALANCE, tid + 1, 800)).accepted
    assert m.phase_unbalance == 800
    assert enter(m, manage(ManagementSubclass.SET_WATER_FACTOR, tid + 2, 1234)).accepted
    assert m.water_factor == 1234
    assert enter(m, manage(ManagementSubclass.SET_TARIFF_RATE, tid + 3, 42)).accepted
    assert m.tariff_rate == 42
    m.set_tamper()
    cleared = enter(m, manage(ManagementSubclass.CLEAR_TAMPER, tid + 4))
    assert cleared.accepted and m.tamper is False
    assert cleared.changed == {"tamper": {"from": True, "to": False}}
    # management tokens carry TIDs like credit tokens: once only
    again = enter(m, manage(ManagementSubclass.SET_MAX_POWER, tid, 5000))
    assert not again.accepted and "used already" in again.reason


@pytest.mark.parametrize("register", [0xFFFF, int(TransferSubclass.ELECTRICITY)])
def test_clear_credit_empties_the_register(register: int) -> None:
    m = meter()
    assert enter(m, credit(TID_2023, 1000)).accepted
    out = enter(m, manage(ManagementSubclass.CLEAR_CREDIT, TID_2023 + 1, register))
    assert out.accepted and m.credit == 0 and out.credit == 0
    assert out.changed == {"credit": {"from": 1000, "to": 0}}


def test_clear_credit_of_a_register_the_meter_has_not_is_refused() -> None:
    m = meter()
    assert enter(m, credit(TID_2023, 1000)).accepted
    out = enter(m, manage(ManagementSubclass.CLEAR_CREDIT, TID_2023 + 1, 1))
    assert not out.accepted and "register 1" in out.reason
    assert m.credit == 1000 and TID_2023 + 1 not in m.tids


# -- engineering tokens ------------------------------------------------------------


def test_the_meter_test_token_works_on_any_meter_any_time() -> None:
    m = meter()
    token = EngineeringToken(0, 0, 0, 0)
    for key in (DK, OTHER_DK, DK):
        out = m.enter(encode_token(token, key, EncryptionAlgorithm.EA07))
        assert out.accepted and out.token_class == "engineering" and "test" in out.reason
    assert m.tids == [] and m.credit == 0
    reserved = m.enter(encode_token(EngineeringToken(1, 0, 0, 0), DK, EncryptionAlgorithm.EA07))
    assert not reserved.accepted and "reserved" in reserved.reason


# -- key change ------------------------------------------------------------------


def _sections(
    old: MeterIdentity, new: MeterIdentity, key: bytes, *, rollover: bool = False
) -> list[KeyChangeToken]:
    return key_change_tokens(old, new, key, rollover=rollover)


def test_a_two_section_key_change_under_the_old_key() -> None:
    m = meter()
    new_identity = dataclasses.replace(IDENTITY, krn=2, ti=7)
    first, second = _sections(IDENTITY, new_identity, NEW_DK)
    one = enter(m, first)
    assert one.accepted and "section(s) 2 arrive" in one.reason
    assert m.decoder_key == DK and m.identity == IDENTITY  # half a key change does nothing yet
    assert one.changed == {"key_change_sections": {"from": [], "to": [1]}}
    repeat = enter(m, first)
    assert not repeat.accepted and "entered already" in repeat.reason
    # a credit token under the old key still works in between
    assert enter(m, credit(TID_2023)).accepted
    done = enter(m, second)
    assert done.accepted and "key change complete" in done.reason
    assert m.decoder_key == NEW_DK and m.identity == new_identity
    assert done.changed["decoder_key"] == {
        "from": decoder_key_check(DK),
        "to": decoder_key_check(NEW_DK),
    }
    assert done.changed["krn"] == {"from": 1, "to": 2}
    assert done.changed["ti"] == {"from": 1, "to": 7}
    assert DK.hex().upper() not in json.dumps(done.as_dict())
    assert NEW_DK.hex().upper() not in json.dumps(done.as_dict())
    old_key = enter(m, credit(TID_2023 + 1), key=DK)
    assert not old_key.accepted and "CRC" in old_key.reason
    assert enter(m, credit(TID_2023 + 1), key=NEW_DK).accepted
    # the sections cannot be replayed: they are under the old key
    replay = enter(m, second, key=DK)
    assert not replay.accepted and "CRC" in replay.reason
    assert enter(m, credit(TID_2023), key=NEW_DK).reason.startswith("token ID")  # TIDs kept


def test_sections_in_any_order_and_a_same_key_change_is_refused() -> None:
    m = meter()
    first, second = _sections(IDENTITY, IDENTITY, DK)
    assert enter(m, second).accepted
    same = enter(m, first)
    assert not same.accepted and "already has" in same.reason
    assert m.pending_key.keys() == {2}  # the refusal changed nothing


def test_a_four_section_key_change_for_a_128_bit_key() -> None:
    m = meter(EA11_IDENTITY, DK16)
    new_identity = dataclasses.replace(EA11_IDENTITY, krn=3)
    sections = _sections(EA11_IDENTITY, new_identity, NEW_DK16)
    assert len(sections) == 4
    for section in sections[:3]:
        assert enter(m, section).accepted
        assert m.decoder_key == DK16 and m.identity == EA11_IDENTITY
    tid = tid_of(datetime(2026, 1, 1, tzinfo=UTC), BaseDate.Y2014)
    assert enter(m, credit(tid), key=DK16).accepted  # old key still in force
    done = enter(m, sections[3])
    assert done.accepted and m.decoder_key == NEW_DK16 and m.identity == new_identity
    assert not enter(m, credit(tid + 1), key=DK16).accepted
    assert enter(m, credit(tid + 1), key=NEW_DK16).accepted


def test_a_64_bit_meter_refuses_a_third_section() -> None:
    sections = _sections(EA11_IDENTITY, EA11_IDENTITY, NEW_DK16)
    m = meter()
    out = enter(m, sections[2])
    assert not out.accepted and "3rd" in out.reason and "64 bits" in out.reason


def test_a_rollover_key_change_moves_to_the_2014_base_date() -> None:
    m = meter()
    last_1993 = tid_of(datetime(2024, 11, 1, tzinfo=UTC), BaseDate.Y1993)
    for i in range(TID_MEMORY):  # the memory is full of late 1993-based TIDs
        assert enter(m, credit(last_1993 + i, 10)).accepted
    new_identity = dataclasses.replace(IDENTITY, krn=2, base_date=BaseDate.Y2014)
    sections = _sections(IDENTITY, new_identity, NEW_DK, rollover=True)
    assert [enter(m, s).accepted for s in sections] == [True, True]
    assert m.identity.base_date is BaseDate.Y2014 and m.decoder_key == NEW_DK
    # the history is now expressed on the 2014 base: the same instants, other numbers
    shift = tid_of(datetime(2014, 1, 1, tzinfo=UTC), BaseDate.Y1993)
    assert (
        m.tids[0]
        == last_1993 - shift
        == tid_of(datetime(2024, 11, 1, tzinfo=UTC), m.identity.base_date)
    )
    after = tid_of(datetime(2024, 12, 1, tzinfo=UTC), BaseDate.Y2014)
    assert after < last_1993  # a smaller number than every TID held before ...
    out = enter(m, credit(after, 10))
    assert out.accepted, out.reason  # ... yet a later time, so accepted
    assert out.tid == after
    # a 2014-based TID for a time before the tokens held is still too old
    early = tid_of(datetime(2024, 10, 1, tzinfo=UTC), BaseDate.Y2014)
    refused = enter(m, credit(early, 10))
    assert not refused.accepted and "older than the oldest" in refused.reason


def test_no_rollover_after_2035() -> None:
    identity = dataclasses.replace(IDENTITY, base_date=BaseDate.Y2035)
    m = meter(identity)
    # key_change_tokens will not make it (there is no later base date): a forged pair
    sections = split_key(NEW_DK, ken=0xFF, krn=2, kt=identity.kt, ti=identity.ti, rollover=True)
    assert enter(m, sections[0]).accepted
    out = enter(m, sections[1])
    assert not out.accepted and "after 2035" in out.reason
    assert m.decoder_key == DK and m.identity == identity


# -- state ---------------------------------------------------------------------


def test_the_state_round_trips_with_a_half_key_change() -> None:
    m = meter()
    assert enter(m, credit(TID_2023, 123)).accepted
    assert enter(m, manage(ManagementSubclass.SET_MAX_POWER, TID_2023 + 1, 3000)).accepted
    new_identity = dataclasses.replace(IDENTITY, krn=2)
    first, second = _sections(IDENTITY, new_identity, NEW_DK)
    assert enter(m, first).accepted
    m.set_tamper()
    doc = json.loads(json.dumps(m.to_json()))
    back = KeypadMeter.from_json(doc)
    assert back == m
    assert enter(back, second).accepted and back.decoder_key == NEW_DK


def test_status_shows_a_check_value_not_the_key() -> None:
    m = meter()
    status = m.status()
    assert "decoder_key" not in status and status["decoder_key_check"] == decoder_key_check(DK)
    assert DK.hex().upper() not in json.dumps(status) and DK.hex() not in json.dumps(status)
    assert "0ABC12DEF3456789" not in repr(m)


def test_bad_state_documents_and_keys_are_sentences() -> None:
    with pytest.raises(ValueError, match="not a keypad meter state"):
        KeypadMeter.from_json({"format": "cardmeter-state/1"})
    doc = meter().to_json()
    del doc["credit"]
    with pytest.raises(ValueError, match="lacks 'credit'"):
        KeypadMeter.from_json(doc)
    with pytest.raises(ValueError, match="16 bytes"):
        KeypadMeter.new(EA11_IDENTITY, DK)


# -- property: accepted once, refused the second time --------------------------

_tids = st.integers(min_value=TID_2023, max_value=TID_2023 + 200)
_transfers = st.builds(
    lambda tid, tenths, rnd: credit(tid, tenths, rnd),
    _tids,
    st.integers(min_value=0, max_value=200_000),
    st.integers(min_value=0, max_value=15),
)
_management = st.builds(
    lambda sub, tid, value: ManagementToken(sub, 0, tid, value),
    st.sampled_from(
        [
            ManagementSubclass.SET_MAX_POWER,
            ManagementSubclass.CLEAR_CREDIT,
            ManagementSubclass.SET_TARIFF_RATE,
            ManagementSubclass.CLEAR_TAMPER,
            ManagementSubclass.SET_PHASE_UNBALANCE,
            ManagementSubclass.SET_WATER_FACTOR,
        ]
    ),
    _tids,
    st.sampled_from([0, 1, 500, 0xFFFF]),
)
_key_sections = st.builds(
    lambda krn, which, ro: _sections(
        IDENTITY,
        dataclasses.replace(
            IDENTITY, krn=krn, base_date=BaseDate.Y2014 if ro else IDENTITY.base_date
        ),
        NEW_DK,
        rollover=ro,
    )[which],
    st.integers(min_value=2, max_value=9),
    st.integers(min_value=0, max_value=1),
    st.booleans(),
)
_meter_specific = st.one_of(_transfers, _management, _key_sections)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=st.lists(_meter_specific, max_size=60), token=_meter_specific)
def test_any_meter_specific_token_accepted_once_is_refused_the_second_time(
    history: list[Token], token: Token
) -> None:
    """Classes 0 and 2. (Class 1 test tokens are for every meter, any number of times.)"""
    m = meter()
    key = m.decoder_key
    for earlier in history:
        m.enter(digits(earlier, key))
        key = m.decoder_key
    typed = digits(token, m.decoder_key)
    if m.enter(typed).accepted:
        before = m.to_json()
        second = m.enter(typed)
        assert not second.accepted and second.reason
        assert m.to_json() == before
