"""Authentication and secure messaging: terminal and card agree, attacks fail.

Each test plays both ends with their own :class:`SecureMessaging` object, as
the card API and the virtual card's operating system do.
"""

from __future__ import annotations

import copy
import pickle

import pytest
from Crypto.Cipher import AES
from Crypto.Hash import CMAC
from hypothesis import given, settings
from hypothesis import strategies as st

from cardlayout.errors import FormatError, SecurityError
from cardlayout.security.keys import SecretKey
from cardlayout.security.session import (
    SecureMessaging,
    card_cryptogram,
    external_cryptogram,
    internal_auth_response,
    open_external_cryptogram,
    random_challenge,
    session_key,
    verify_card_cryptogram,
    verify_internal_auth_response,
)

KEY = SecretKey(bytes.fromhex("000102030405060708090A0B0C0D0E0F"))
RND_ICC = bytes.fromhex("1122334455667788")
RND_IFD = bytes.fromhex("99AABBCCDDEEFF00")
SERIAL = bytes.fromhex("0102030405060708")

keys = st.binary(min_size=16, max_size=16)
rnds = st.binary(min_size=8, max_size=8)


def pair(key: SecretKey = KEY) -> tuple[SecureMessaging, SecureMessaging]:
    """Terminal and card after a mutual authentication with ``key``."""
    terminal = SecureMessaging(session_key(key, RND_ICC, RND_IFD))
    card = SecureMessaging(session_key(key, RND_ICC, RND_IFD))
    return terminal, card


# -- authentication -------------------------------------------------------------------


def test_cryptograms_known_answer() -> None:
    aes = AES.new(KEY.value, AES.MODE_ECB)
    assert external_cryptogram(KEY, RND_ICC, RND_IFD) == aes.encrypt(RND_ICC + RND_IFD)
    assert card_cryptogram(KEY, RND_IFD, RND_ICC) == aes.encrypt(RND_IFD + RND_ICC)
    assert internal_auth_response(KEY, RND_IFD, SERIAL) == aes.encrypt(RND_IFD + SERIAL)
    sk = CMAC.new(KEY.value, b"\x02session\x00" + RND_ICC + RND_IFD, ciphermod=AES).digest()
    assert session_key(KEY, RND_ICC, RND_IFD).value == sk


def test_mutual_authentication_flow() -> None:
    cryptogram = external_cryptogram(KEY, RND_ICC, RND_IFD)
    # Card: decrypt, compare its challenge, learn RND.IFD, answer.
    rnd_icc, rnd_ifd = open_external_cryptogram(KEY.value, cryptogram)
    assert (rnd_icc, rnd_ifd) == (RND_ICC, RND_IFD)
    answer = card_cryptogram(KEY.value, rnd_ifd, rnd_icc)
    verify_card_cryptogram(KEY, RND_IFD, RND_ICC, answer)
    # A card with another key, or a reflected cryptogram, does not pass.
    other = SecretKey(bytes(16))
    with pytest.raises(SecurityError, match="card authentication failed"):
        verify_card_cryptogram(KEY, RND_IFD, RND_ICC, card_cryptogram(other, RND_IFD, RND_ICC))
    with pytest.raises(SecurityError):
        verify_card_cryptogram(KEY, RND_IFD, RND_ICC, cryptogram)
    # A terminal without the key makes the card read a wrong challenge.
    forged_icc, _ = open_external_cryptogram(KEY, external_cryptogram(other, RND_ICC, RND_IFD))
    assert forged_icc != RND_ICC


def test_internal_authentication() -> None:
    answer = internal_auth_response(KEY, RND_IFD, SERIAL)
    verify_internal_auth_response(KEY, RND_IFD, SERIAL, answer)
    with pytest.raises(SecurityError, match="0102030405060709"):
        verify_internal_auth_response(KEY, RND_IFD, SERIAL[:7] + b"\x09", answer)


def test_lengths_are_checked() -> None:
    with pytest.raises(FormatError) as info:
        external_cryptogram(KEY, RND_ICC[:7], RND_IFD)
    assert info.value.field == "rnd_icc"
    with pytest.raises(FormatError):
        open_external_cryptogram(KEY, bytes(15))
    with pytest.raises(ValueError, match="16 bytes, not 8"):
        external_cryptogram(bytes(8), RND_ICC, RND_IFD)
    assert len(random_challenge()) == 8
    assert random_challenge() != random_challenge()


# -- secure messaging -----------------------------------------------------------------


def test_command_mac_known_answer() -> None:
    terminal, _ = pair()
    sk = session_key(KEY, RND_ICC, RND_IFD).value
    data = b"\x68\x02\x00\x10"
    mac = terminal.command_mac(0x04, 0xD6, 0x82, 0x00, data)
    expected = CMAC.new(
        sk, (1).to_bytes(8, "big") + bytes((0x04, 0xD6, 0x82, 0x00)) + data, ciphermod=AES
    ).digest()[:8]
    assert mac == expected
    assert terminal.ssc == 1


def test_terminal_and_card_agree_over_a_session() -> None:
    terminal, card = pair()
    for n in range(1, 6):
        data = bytes([n]) * (n * 10)
        sent = terminal.protect(0x04, 0xD6, 0x80 | n, 0x00, data)
        assert card.verify_command_mac(0x04, 0xD6, 0x80 | n, 0x00, sent) == data
        assert terminal.ssc == card.ssc == 2 * n - 1
        # READ BINARY with MAC: no command MAC, both count it.
        terminal.next_command()
        card.next_command()
        answer = b"\x68" + data
        assert terminal.verify_response(answer + card.response_mac(answer)) == answer
        assert terminal.ssc == card.ssc == 2 * n


@pytest.mark.parametrize("position", [0, 3, 8, 12, 13, 19])
def test_flipped_bit_fails_and_ends_the_session(position: int) -> None:
    terminal, card = pair()
    sent = bytearray(terminal.protect(0x04, 0xD6, 0x81, 0x00, bytes(range(12))))
    sent[position] ^= 0x01  # 0..11 data, 12..19 MAC
    with pytest.raises(SecurityError, match="command MAC does not verify"):
        card.verify_command_mac(0x04, 0xD6, 0x81, 0x00, bytes(sent))
    assert card.ended
    with pytest.raises(SecurityError, match="ended"):
        card.verify_command_mac(0x04, 0xD6, 0x81, 0x00, bytes(sent))


def test_changed_header_fails() -> None:
    terminal, card = pair()
    sent = terminal.protect(0x04, 0xD6, 0x81, 0x00, b"data")
    with pytest.raises(SecurityError):
        card.verify_command_mac(0x04, 0xD6, 0x82, 0x00, sent)  # other file (SFI)


def test_flipped_response_bit_fails() -> None:
    terminal, card = pair()
    terminal.next_command()
    card.next_command()
    answer = bytearray(b"\x68payload" + card.response_mac(b"\x68payload"))
    answer[2] ^= 0x80
    with pytest.raises(SecurityError, match="response MAC does not verify"):
        terminal.verify_response(bytes(answer))
    assert terminal.ended


def test_replayed_command_fails() -> None:
    terminal, card = pair()
    first = terminal.protect(0x04, 0xD6, 0x82, 0x00, b"\x00" * 8)
    card.verify_command_mac(0x04, 0xD6, 0x82, 0x00, first)
    terminal.protect(0x04, 0xD6, 0x82, 0x00, b"\x68")  # SSC moves on; never delivered
    with pytest.raises(SecurityError):
        card.verify_command_mac(0x04, 0xD6, 0x82, 0x00, first)


def test_replayed_response_fails() -> None:
    terminal, card = pair()
    terminal.next_command()
    card.next_command()
    old = b"\x68old" + card.response_mac(b"\x68old")
    terminal.verify_response(old)
    terminal.next_command()
    card.next_command()
    with pytest.raises(SecurityError):
        terminal.verify_response(old)


def test_other_session_key_fails() -> None:
    terminal = SecureMessaging(session_key(KEY, RND_ICC, RND_IFD))
    card = SecureMessaging(session_key(KEY, RND_ICC, bytes(8)))  # other RND.IFD
    with pytest.raises(SecurityError):
        card.verify_command_mac(0x04, 0xD6, 0x81, 0, terminal.protect(0x04, 0xD6, 0x81, 0, b"x"))


def test_response_needs_a_command_and_a_mac() -> None:
    terminal, card = pair()
    with pytest.raises(SecurityError, match="SSC 0"):
        card.response_mac(b"data")
    terminal.next_command()
    with pytest.raises(SecurityError, match="no MAC"):
        terminal.verify_response(b"short")
    _, card = pair()
    with pytest.raises(SecurityError, match="no MAC"):
        card.verify_command_mac(0x04, 0xD6, 0x81, 0x00, b"1234567")


def test_ssc_exhaustion() -> None:
    sm = SecureMessaging(bytes(16), ssc=2**64 - 1)
    with pytest.raises(SecurityError, match="exhausted"):
        sm.command_mac(0x04, 0xD6, 0, 0, b"")


# -- WRITE KEY ------------------------------------------------------------------------


def test_wrap_key_known_answer_and_round_trip() -> None:
    terminal, card = pair()
    new_key = SecretKey(bytes.fromhex("F0E1D2C3B4A5968778695A4B3C2D1E0F"))
    wrapped = terminal.wrap_key(new_key, 3)
    sk = session_key(KEY, RND_ICC, RND_IFD).value
    block = new_key.value + b"\x03\x80" + bytes(14)
    assert wrapped == AES.new(sk, AES.MODE_CBC, iv=bytes(16)).encrypt(block)
    assert len(wrapped) == 32
    sent = terminal.protect(0x84, 0xD4, 0x00, 0x01, wrapped)
    ciphertext = card.verify_command_mac(0x84, 0xD4, 0x00, 0x01, sent)
    assert card.unwrap_key(ciphertext) == (new_key, 3)


def test_unwrap_refuses_garbage() -> None:
    _, card = pair()
    with pytest.raises(SecurityError, match="32 bytes"):
        card.unwrap_key(bytes(31))
    with pytest.raises(SecurityError, match="key block"):
        card.unwrap_key(bytes(32))
    with pytest.raises(ValueError):
        card.wrap_key(KEY, 256)


# -- key values stay hidden -------------------------------------------------------------


def test_secret_key_does_not_show_itself() -> None:
    value = bytes.fromhex("F0E1D2C3B4A5968778695A4B3C2D1E0F")
    key = SecretKey(value)
    sm = SecureMessaging(key)
    for text in (repr(key), str(key), f"{key}", f"{key!r:>40}", repr(sm), str([key])):
        assert value.hex() not in text.lower()
        assert "kcv=" in text
    with pytest.raises(TypeError, match="pickled"):
        pickle.dumps(key)
    assert copy.deepcopy(key) is key
    with pytest.raises(AttributeError):
        key._value = bytes(16)
    with pytest.raises(ValueError) as info:
        SecretKey(value[:15])
    assert value[:15].hex() not in str(info.value).lower()
    assert key == SecretKey(value) and key != SecretKey(bytes(16))
    assert len({key, SecretKey(value)}) == 1


# -- properties -----------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(key=keys, rnd_icc=rnds, rnd_ifd=rnds, serial=rnds)
def test_both_sides_agree_for_any_inputs(
    key: bytes, rnd_icc: bytes, rnd_ifd: bytes, serial: bytes
) -> None:
    k = SecretKey(key)
    assert open_external_cryptogram(key, external_cryptogram(k, rnd_icc, rnd_ifd)) == (
        rnd_icc,
        rnd_ifd,
    )
    verify_card_cryptogram(k, rnd_ifd, rnd_icc, card_cryptogram(key, rnd_ifd, rnd_icc))
    verify_internal_auth_response(k, rnd_ifd, serial, internal_auth_response(key, rnd_ifd, serial))
    assert session_key(k, rnd_icc, rnd_ifd) == session_key(key, rnd_icc, rnd_ifd)


@settings(max_examples=60, deadline=None)
@given(
    sk=keys,
    commands=st.lists(
        st.tuples(st.integers(0, 255), st.integers(0, 255), st.binary(max_size=247)),
        min_size=1,
        max_size=6,
    ),
)
def test_command_sequences_round_trip(sk: bytes, commands: list[tuple[int, int, bytes]]) -> None:
    terminal, card = SecureMessaging(sk), SecureMessaging(SecretKey(sk))
    for p1, p2, data in commands:
        sent = terminal.protect(0x04, 0xD6, p1, p2, data)
        assert card.verify_command_mac(0x04, 0xD6, p1, p2, sent) == data
        answer = card.response_mac(data)
        assert terminal.verify_response(data + answer) == data
    assert terminal.ssc == card.ssc == len(commands)


@settings(max_examples=60, deadline=None)
@given(sk=keys, new_key=keys, version=st.integers(0, 255))
def test_wrap_unwrap_round_trip(sk: bytes, new_key: bytes, version: int) -> None:
    terminal, card = SecureMessaging(sk), SecureMessaging(sk)
    sent = terminal.protect(0x84, 0xD4, 0, 2, terminal.wrap_key(SecretKey(new_key), version))
    ciphertext = card.verify_command_mac(0x84, 0xD4, 0, 2, sent)
    assert card.unwrap_key(ciphertext) == (SecretKey(new_key), version)
