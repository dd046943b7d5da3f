"""The bulk path of a meter's reports, each fast way against the plain one it stands for.

A bulk import checks two MACs for each of 100 000 meters, so the security
layer has batch forms: AES-CMAC of many messages under one key
(:func:`aes_cmacs`), many derivations under one master
(:meth:`KeyStore.master_cmac_many`, :meth:`CardKeys.writeback_keys`), a
quick decoding of the two files (:func:`decode_write_back`,
:func:`decode_history`) and the MAC check over the files' own bytes
(:func:`verify_meter_files`). None may differ from the plain way in any
result or error, which is what these tests check: published vectors where
they exist, pycryptodome's CMAC and the card codecs otherwise.
"""

from __future__ import annotations

import copy
import dataclasses
import pickle
from collections.abc import Callable
from functools import partial
from typing import Any

import pytest
from card_support import RFC4493, RFC4493_KEY, RFC4493_M
from Crypto.Cipher import AES
from Crypto.Hash import CMAC
from file_values import digits12, histories, write_backs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cardlayout.card.operations import (
    decode_history,
    decode_write_back,
    seal_meter_report,
    verify_meter_files,
    verify_meter_report,
)
from cardlayout.codec import encode_frame
from cardlayout.errors import FormatError, KeyStoreError, SecurityError
from cardlayout.files import (
    HISTORY,
    WRITE_BACK,
    History,
    WriteBack,
)
from cardlayout.security.diversify import CardKeys, MeterKeys
from cardlayout.security.keys import KeyInfo, KeyRef, Purpose, SecretKey
from cardlayout.security.keystore import KeyStore
from cardlayout.security.mac import aes_cmac, aes_cmacs

SERIAL = bytes.fromhex("5A00000000000001")
STORE = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
"""For properties over a key store fixture (it is only read, so sharing it is fine)."""
CODEC = settings(max_examples=300, deadline=None)


# -- AES-CMAC of many messages ----------------------------------------------------------


@pytest.mark.parametrize("copies", [1, 2, 5], ids=["four", "eight", "twenty"])
def test_aes_cmacs_gives_the_rfc4493_examples(copies: int) -> None:
    """The four examples, and repeated: each message's MAC starts from the scheduled key."""
    messages = [RFC4493_M[:length] for length, _ in RFC4493] * copies
    tags = [tag.hex() for tag in aes_cmacs(RFC4493_KEY, messages)]
    assert tags == [tag for _, tag in RFC4493] * copies
    assert aes_cmacs(SecretKey(RFC4493_KEY), messages) == aes_cmacs(RFC4493_KEY, messages)


lengths = st.sampled_from([0, 1, 15, 16, 17, 21, 31, 32, 33, 47, 48, 83, 166])
messages = lengths.flatmap(lambda n: st.binary(min_size=n, max_size=n))


@settings(max_examples=300, deadline=None)
@given(key=st.binary(min_size=16, max_size=16), batch=st.lists(messages, max_size=24))
def test_aes_cmacs_equals_pycryptodome_cmac(key: bytes, batch: list[bytes]) -> None:
    """Mixed lengths, block multiples, empty; a key with no message too."""
    expected = [CMAC.new(key, message, ciphermod=AES).digest() for message in batch]
    assert aes_cmacs(key, batch) == expected
    assert [aes_cmac(key, message) for message in batch] == expected


def test_aes_cmacs_of_nothing_is_nothing() -> None:
    assert aes_cmacs(RFC4493_KEY, []) == []


# -- many derivations under one master --------------------------------------------------


@STORE
@given(batch=st.lists(digits12, max_size=40))
def test_master_cmac_many_equals_one_by_one(keystore: KeyStore, batch: list[str]) -> None:
    ref = KeyRef(Purpose.WRITEBACK_MAC, 1)
    inputs = [b"\x01writeback-mac\x00" + bytes.fromhex(no) for no in batch] + [b"", bytes(16)]
    assert keystore.master_cmac_many(ref, inputs) == [
        keystore.master_cmac(ref, message) for message in inputs
    ]


def test_master_cmac_many_names_a_missing_master(keystore: KeyStore) -> None:
    with pytest.raises(KeyStoreError, match="no master key writeback-mac v9 in key file"):
        keystore.master_cmac_many(KeyRef(Purpose.WRITEBACK_MAC, 9), [b"x"] * 10)


class _Counting(KeyStore):
    """A store that only has the required methods: the protocol's default batch applies."""

    def __init__(self, inner: KeyStore) -> None:
        self.inner = inner
        self.calls = 0

    @property
    def location(self) -> str:
        return "counting store"

    def list_keys(self) -> list[KeyInfo]:
        return self.inner.list_keys()

    def generate(self, purpose: Purpose, version: int) -> KeyInfo:
        raise NotImplementedError

    def master_cmac(self, ref: KeyRef, message: bytes) -> bytes:
        self.calls += 1
        return self.inner.master_cmac(ref, message)

    def close(self) -> None:
        pass


def test_the_default_batch_asks_one_mac_after_the_other(keystore: KeyStore) -> None:
    store = _Counting(keystore)
    assert store.forkable is False  # a store must say that a fork may use it
    ref = KeyRef(Purpose.WRITEBACK_MAC, 1)
    inputs = [bytes([n]) * 21 for n in range(12)]
    assert store.master_cmac_many(ref, inputs) == keystore.master_cmac_many(ref, inputs)
    assert store.calls == 12


@STORE
@given(batch=st.lists(digits12, max_size=30))
def test_writeback_keys_equal_writeback_key_one_by_one(
    card_keys: CardKeys, batch: list[str]
) -> None:
    keys = card_keys.writeback_keys(batch + batch[:3])  # a meter named twice is derived once
    assert list(keys) == list(dict.fromkeys(batch))
    assert len(keys) == len(set(batch))
    for meter_no in batch:
        one = card_keys.writeback_key(meter_no)
        assert keys.value(meter_no) == one.value
        assert keys[meter_no] == one
        assert meter_no in keys
    assert keys.ref == card_keys.ref(Purpose.WRITEBACK_MAC)


def test_meter_keys_show_no_value_and_are_never_pickled(card_keys: CardKeys) -> None:
    keys = card_keys.writeback_keys(["000012345678", "000012345679"])
    assert isinstance(keys, MeterKeys)
    shown = f"{keys} {keys!r}"
    assert shown == "MeterKeys(writeback-mac v1, 2 meters) MeterKeys(writeback-mac v1, 2 meters)"
    for meter_no in keys:
        assert keys.value(meter_no).hex() not in shown.lower()
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(keys)
    assert copy.copy(keys) is keys and copy.deepcopy(keys) is keys  # immutable, as SecretKey
    with pytest.raises(KeyError):
        keys["000000000000"]


def test_writeback_keys_refuse_a_number_that_is_not_twelve_digits(card_keys: CardKeys) -> None:
    with pytest.raises(FormatError, match="meter_no must be exactly 12 decimal digits"):
        card_keys.writeback_keys(["000012345678", "12345"])


# -- the two files, decoded quickly -----------------------------------------------------

QUICK: list[tuple[Any, Callable[[bytes], Any], st.SearchStrategy[Any]]] = [
    (WRITE_BACK, decode_write_back, write_backs),
    (HISTORY, decode_history, histories),
]
IDS = ["write-back", "history"]


def _outcome(call: Callable[[], Any]) -> Any:
    """What ``call`` returns, or the error's type and sentence."""
    try:
        return call()
    except Exception as exc:
        return type(exc), str(exc)


@pytest.mark.parametrize(("card_file", "quick", "values"), QUICK, ids=IDS)
def test_quick_decoding_gives_the_codec_examples(
    card_file: Any, quick: Callable[[bytes], Any], values: Any
) -> None:
    for example in card_file.examples:  # a cleared one among them
        data = bytes.fromhex(example.hex)
        assert quick(data) == card_file.decode(data) == example.value


@CODEC
@pytest.mark.parametrize(("card_file", "quick", "values"), QUICK, ids=IDS)
@given(data=st.data())
def test_quick_decoding_equals_the_codec(
    card_file: Any, quick: Callable[[bytes], Any], values: Any, data: st.DataObject
) -> None:
    value = data.draw(values)
    encoded = card_file.encode(value)
    decoded = quick(encoded)
    assert decoded == value
    assert type(decoded) is type(value)


@CODEC
@pytest.mark.parametrize(("card_file", "quick", "values"), QUICK, ids=IDS)
@given(data=st.data())
def test_quick_decoding_of_a_damaged_file_is_the_codecs_value_or_error(
    card_file: Any, quick: Callable[[bytes], Any], values: Any, data: st.DataObject
) -> None:
    """Bytes changed in the body (framed again, so the fields are reached) or anywhere."""
    encoded = bytearray(card_file.encode(data.draw(st.none() | values)))
    reframe = data.draw(st.booleans())
    start, end = (4, len(encoded) - 2) if reframe else (0, len(encoded))
    for _ in range(data.draw(st.integers(1, 3))):
        encoded[data.draw(st.integers(start, end - 1))] = data.draw(
            st.sampled_from([0, 0x09, 0x10, 0x13, 0x40, 0x99, 0xA0, 0xFF]) | st.integers(0, 255)
        )
    damaged = bytes(encoded)
    if reframe:
        damaged = encode_frame(card_file.sfi, damaged[4:-2])
    assert _outcome(partial(quick, damaged)) == _outcome(partial(card_file.decode, damaged))


@pytest.mark.parametrize(("card_file", "quick", "values"), QUICK, ids=IDS)
def test_quick_decoding_of_short_blank_and_torn_files_is_the_codecs(
    card_file: Any, quick: Callable[[bytes], Any], values: Any
) -> None:
    whole = bytes.fromhex(card_file.examples[0].hex)
    for damaged in (b"", whole[:-1], whole + b"\x16", bytes(card_file.size), b"\x00" + whole[1:]):
        assert _outcome(partial(quick, damaged)) == _outcome(partial(card_file.decode, damaged))


# -- the MACs over the files' bytes -----------------------------------------------------


def _both(
    card_keys: CardKeys, serial: bytes, raw_write_back: bytes, raw_history: bytes | None
) -> tuple[Any, Any]:
    """verify_meter_report's and verify_meter_files' outcome on the same files."""
    write_back = WRITE_BACK.decode(raw_write_back)
    history = HISTORY.decode(raw_history) if raw_history is not None else None
    assert write_back is not None
    key = card_keys.writeback_keys([write_back.meter_no]).value(write_back.meter_no)
    return (
        _outcome(lambda: verify_meter_report(card_keys, serial, write_back, history)),
        _outcome(
            lambda: verify_meter_files(
                key, serial, write_back, raw_write_back, history, raw_history
            )
        ),
    )


@STORE
@given(write_back=write_backs, history=st.none() | histories, data=st.data())
def test_the_check_over_the_bytes_is_verify_meter_report(
    card_keys: CardKeys, write_back: WriteBack, history: History | None, data: st.DataObject
) -> None:
    sealed, sealed_history = seal_meter_report(
        card_keys.writeback_key(write_back.meter_no), SERIAL, write_back, history
    )
    raw = WRITE_BACK.encode(sealed)
    raw_history = HISTORY.encode(sealed_history) if sealed_history is not None else None
    assert _both(card_keys, SERIAL, raw, raw_history) == (None, None)
    # another card, another write-back field, another history field: the same refusal
    assert _both(card_keys, SERIAL[::-1], raw, raw_history)[0][0] is SecurityError
    assert len(set(_both(card_keys, SERIAL[::-1], raw, raw_history))) == 1
    changed = dataclasses.replace(sealed, remaining_amount=sealed.remaining_amount ^ 1)
    outcomes = _both(card_keys, SERIAL, WRITE_BACK.encode(changed), raw_history)
    assert outcomes[0][0] is SecurityError and "write-back MAC" in outcomes[0][1]
    assert outcomes[0] == outcomes[1]
    if sealed_history is not None:
        other = dataclasses.replace(
            sealed_history, cumulative_used=sealed_history.cumulative_used ^ 1
        )
        outcomes = _both(card_keys, SERIAL, raw, HISTORY.encode(other))
        assert outcomes[0][0] is SecurityError and "history MAC" in outcomes[0][1]
        assert outcomes[0] == outcomes[1]


def test_the_check_over_the_bytes_needs_the_history_bytes(card_keys: CardKeys) -> None:
    write_back, history = WRITE_BACK.examples[0].value, HISTORY.examples[0].value
    assert write_back is not None
    key = card_keys.writeback_key(write_back.meter_no)
    with pytest.raises(ValueError, match="history's file bytes"):
        verify_meter_files(key, SERIAL, write_back, WRITE_BACK.encode(write_back), history, None)
    with pytest.raises(FormatError, match="write-back file is 63 bytes, not 64"):
        verify_meter_files(key, SERIAL, write_back, WRITE_BACK.encode(write_back)[:-1], None, None)
