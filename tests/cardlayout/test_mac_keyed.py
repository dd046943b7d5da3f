"""AES-CMAC of many messages each under its own key, and the bulk check built on it.

:func:`aes_cmacs_keyed` groups the messages by key and runs each group
through one scheduled key (:func:`aes_cmacs`), so it is pinned here by
published vectors (RFC 4493 / SP 800-38B D.1), by a property against
pycryptodome's CMAC, and :func:`verify_meter_files_many` by the one-record
check it batches.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from card_support import RFC4493, RFC4493_KEY, RFC4493_M
from Crypto.Cipher import AES
from Crypto.Hash import CMAC
from file_values import histories
from file_values import write_backs as write_back_values
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cardlayout.card.operations import (
    MeterFiles,
    seal_meter_report,
    verify_meter_files,
    verify_meter_files_many,
)
from cardlayout.files import HISTORY, WRITE_BACK, History, WriteBack
from cardlayout.security.diversify import CardKeys
from cardlayout.security.keys import SecretKey
from cardlayout.security.mac import aes_cmacs_keyed

# -- published vectors ------------------------------------------------------------------


@pytest.mark.parametrize("copies", [1, 16, 40], ids=["four", "sixty-four", "many"])
def test_aes_cmacs_keyed_gives_the_rfc4493_examples(copies: int) -> None:
    """4, 64 and 160 messages of one key (lengths 0, 16, 40, 64 mixed)."""
    messages = [RFC4493_M[:length] for length, _ in RFC4493] * copies
    keys: list[SecretKey | bytes] = [RFC4493_KEY] * len(messages)
    assert [tag.hex() for tag in aes_cmacs_keyed(keys, messages)] == [
        tag for _, tag in RFC4493
    ] * copies
    assert aes_cmacs_keyed([SecretKey(RFC4493_KEY)] * len(messages), messages) == (
        aes_cmacs_keyed(keys, messages)
    )


def test_aes_cmacs_keyed_refuses_a_key_that_is_not_aes128() -> None:
    """As :func:`aes_cmac` does, whether the wrong key comes alone or after many right ones."""
    for count in (1, 16):
        keys = [RFC4493_KEY] * (count - 1) + [bytes(range(32))]
        with pytest.raises(ValueError, match="16 bytes, not 32"):
            aes_cmacs_keyed(keys, [RFC4493_M] * count)


def test_aes_cmacs_keyed_of_nothing_is_nothing_and_counts_must_match() -> None:
    assert aes_cmacs_keyed([], []) == []
    with pytest.raises(ValueError, match="2 keys for 1 messages"):
        aes_cmacs_keyed([RFC4493_KEY, RFC4493_KEY], [b""])


# -- against pycryptodome ---------------------------------------------------------------

lengths = st.sampled_from([0, 1, 15, 16, 17, 21, 31, 32, 33, 47, 48, 83, 166, 200])
messages = lengths.flatmap(lambda n: st.binary(min_size=n, max_size=n))
keys = st.binary(min_size=16, max_size=16)


@settings(max_examples=150, deadline=None)
@given(
    pool=st.lists(keys, min_size=1, max_size=6),
    batch=st.lists(st.tuples(st.integers(0, 5), messages), max_size=48),
)
def test_aes_cmacs_keyed_equals_pycryptodome_cmac(
    pool: list[bytes], batch: list[tuple[int, bytes]]
) -> None:
    """Keys alone and repeated; mixed, whole-block and empty messages."""
    chosen: list[SecretKey | bytes] = [pool[i % len(pool)] for i, _ in batch]
    texts = [message for _, message in batch]
    expected = [
        CMAC.new(bytes(k), m, ciphermod=AES).digest()  # type: ignore[arg-type]
        for k, m in zip(chosen, texts, strict=True)
    ]
    assert aes_cmacs_keyed(chosen, texts) == expected


# -- many records' MACs at once ---------------------------------------------------------

SERIAL = bytes.fromhex("5A00000000000001")


def _outcome(call: Any) -> Any:
    try:
        return call()
    except Exception as exc:
        return type(exc), str(exc)


def _damaged(
    data: st.DataObject, key: bytes, raw: bytes, raw_history: bytes | None
) -> tuple[bytes, bytes, bytes, bytes | None]:
    """The sealed record as is, or made wrong in one of the ways the check must refuse."""
    how = data.draw(st.sampled_from(["none", "serial", "key", "write-back", "history", "size"]))
    serial = SERIAL
    if how == "serial":
        serial = SERIAL[::-1]
    elif how == "key":
        key = bytes(b ^ 1 for b in key)
    elif how == "write-back":
        raw = raw[:10] + bytes([raw[10] ^ 1]) + raw[11:]  # the MAC check reads raw bytes
    elif how == "history" and raw_history is not None:
        raw_history = raw_history[:10] + bytes([raw_history[10] ^ 4]) + raw_history[11:]
    elif how == "size":
        raw = raw[:-1]
    return key, serial, raw, raw_history


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    values=st.lists(st.tuples(write_back_values, st.none() | histories), min_size=1, max_size=8),
    copies=st.sampled_from([1, 12]),
    data=st.data(),
)
def test_verify_meter_files_many_is_verify_meter_files_one_by_one(
    card_keys: CardKeys,
    values: list[tuple[WriteBack, History | None]],
    copies: int,
    data: st.DataObject,
) -> None:
    """Sealed records, some damaged (card, key, either file's bytes, a file's size)."""
    records: list[MeterFiles] = []
    for write_back, history in values * copies:
        key = card_keys.writeback_keys([write_back.meter_no]).value(write_back.meter_no)
        sealed, sealed_history = seal_meter_report(SecretKey(key), SERIAL, write_back, history)
        raw = WRITE_BACK.encode(sealed)
        raw_history = HISTORY.encode(sealed_history) if sealed_history is not None else None
        key, serial, raw, raw_history = _damaged(data, key, raw, raw_history)
        records.append((key, serial, sealed, raw, sealed_history, raw_history))
    expected = [_outcome(lambda r=r: verify_meter_files(*r)) for r in records]
    got = [None if e is None else (type(e), str(e)) for e in verify_meter_files_many(records)]
    assert got == expected


def test_verify_meter_files_many_needs_the_history_bytes(card_keys: CardKeys) -> None:
    write_back, history = WRITE_BACK.examples[0].value, HISTORY.examples[0].value
    assert write_back is not None and history is not None
    key = card_keys.writeback_keys([write_back.meter_no]).value(write_back.meter_no)
    raw = WRITE_BACK.encode(write_back)
    with pytest.raises(ValueError, match="history's file bytes"):
        verify_meter_files_many([(key, SERIAL, write_back, raw, history, None)])
    good = dataclasses.replace(write_back)
    assert verify_meter_files_many([]) == []
    assert len(verify_meter_files_many([(key, SERIAL, good, raw, None, None)])) == 1
