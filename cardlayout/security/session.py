"""Authentication and secure messaging: one implementation for both ends.

The terminal (card API, centre, meter) and the virtual card's operating
system both import this module, so the two sides cannot drift apart: each
computes with the same functions what the other will check (docs/card.md 4.4,
6.2, 6.4).

Authentication (GET CHALLENGE, then MUTUAL AUTHENTICATE with key K)::

    card → terminal   RND.ICC (8)
    terminal → card   external_cryptogram = AES_K(RND.ICC ‖ RND.IFD)
    card → terminal   card_cryptogram     = AES_K(RND.IFD ‖ RND.ICC)
    both              SK = AES-CMAC(K, 02 ‖ "session" ‖ 00 ‖ RND.ICC ‖ RND.IFD)

Each side's cryptogram covers the other side's fresh challenge, so neither a
recorded terminal nor a recorded card can be replayed. INTERNAL AUTHENTICATE
answers AES_K(RND.IFD ‖ serial): proof that the card holds K for its serial.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Final

from Crypto.Cipher import AES

from cardlayout.errors import FormatError, SecurityError
from cardlayout.security.keys import KEY_SIZE, SecretKey, key_bytes
from cardlayout.security.mac import SERIAL_SIZE, aes_cmac

RND_SIZE: Final = 8
SSC_SIZE: Final = 8
SM_MAC_SIZE: Final = 8
CRYPTOGRAM_SIZE: Final = 16
WRAPPED_KEY_SIZE: Final = 32
SESSION_PREFIX: Final = b"\x02"
SESSION_LABEL: Final = b"session"
_MAX_SSC: Final = 2 ** (8 * SSC_SIZE) - 1
_KEY_BLOCK_PAD: Final = b"\x80" + bytes(14)


def random_challenge() -> bytes:
    """8 bytes from the operating system's CSPRNG, for RND.ICC or RND.IFD."""
    return secrets.token_bytes(RND_SIZE)


def _check(value: bytes, size: int, name: str) -> bytes:
    if not isinstance(value, bytes | bytearray) or len(value) != size:
        got = len(value) if isinstance(value, bytes | bytearray) else type(value).__name__
        raise FormatError(f"{name} is {size} bytes, got {got}", field=name)
    return bytes(value)


def _aes_block(key: SecretKey | bytes, block: bytes) -> bytes:
    return AES.new(key_bytes(key), AES.MODE_ECB).encrypt(block)


def external_cryptogram(key: SecretKey | bytes, rnd_icc: bytes, rnd_ifd: bytes) -> bytes:
    """Terminal to card: AES_K(RND.ICC ‖ RND.IFD), 16 bytes."""
    return _aes_block(
        key, _check(rnd_icc, RND_SIZE, "rnd_icc") + _check(rnd_ifd, RND_SIZE, "rnd_ifd")
    )


def card_cryptogram(key: SecretKey | bytes, rnd_ifd: bytes, rnd_icc: bytes) -> bytes:
    """Card to terminal: AES_K(RND.IFD ‖ RND.ICC), 16 bytes (the order is swapped
    so that the card's answer is never the terminal's cryptogram reflected)."""
    return _aes_block(
        key, _check(rnd_ifd, RND_SIZE, "rnd_ifd") + _check(rnd_icc, RND_SIZE, "rnd_icc")
    )


def internal_auth_response(key: SecretKey | bytes, rnd_ifd: bytes, serial: bytes) -> bytes:
    """INTERNAL AUTHENTICATE answer: AES_K(RND.IFD ‖ card serial), 16 bytes."""
    return _aes_block(
        key, _check(rnd_ifd, RND_SIZE, "rnd_ifd") + _check(serial, SERIAL_SIZE, "serial")
    )


def _verify(expected: bytes, got: bytes, what: str) -> None:
    if len(got) != len(expected) or not hmac.compare_digest(expected, bytes(got)):
        raise SecurityError(what)


def open_external_cryptogram(key: SecretKey | bytes, cryptogram: bytes) -> tuple[bytes, bytes]:
    """Card side: decrypt the terminal's cryptogram into (RND.ICC, RND.IFD).

    The card learns RND.IFD only this way. It must then compare RND.ICC with
    the challenge it gave (in constant time, ``hmac.compare_digest``): a
    terminal without the key produces a block that decrypts to noise.
    """
    block = AES.new(key_bytes(key), AES.MODE_ECB).decrypt(
        _check(cryptogram, CRYPTOGRAM_SIZE, "cryptogram")
    )
    return block[:RND_SIZE], block[RND_SIZE:]


def verify_card_cryptogram(
    key: SecretKey | bytes, rnd_ifd: bytes, rnd_icc: bytes, cryptogram: bytes
) -> None:
    """Terminal side: check the card's answer; a card that fails is forged or foreign."""
    _verify(
        card_cryptogram(key, rnd_ifd, rnd_icc),
        cryptogram,
        "card authentication failed: the card does not hold the expected key "
        "(forged, foreign, or keyed with another master version)",
    )


def verify_internal_auth_response(
    key: SecretKey | bytes, rnd_ifd: bytes, serial: bytes, response: bytes
) -> None:
    """Terminal side: check an INTERNAL AUTHENTICATE answer."""
    _verify(
        internal_auth_response(key, rnd_ifd, serial),
        response,
        f"internal authentication of card {bytes(serial).hex().upper()} failed",
    )


def session_key(key: SecretKey | bytes, rnd_icc: bytes, rnd_ifd: bytes) -> SecretKey:
    """SK = AES-CMAC(K, 02 ‖ "session" ‖ 00 ‖ RND.ICC ‖ RND.IFD).

    Fresh per authentication, so a MAC from one session is worthless in any
    other. The ``02`` prefix keeps this input apart from diversification's
    ``01`` ones (docs/card.md 6.1) should K ever be a diversification master.
    """
    message = (
        SESSION_PREFIX
        + SESSION_LABEL
        + b"\x00"
        + _check(rnd_icc, RND_SIZE, "rnd_icc")
        + _check(rnd_ifd, RND_SIZE, "rnd_ifd")
    )
    return SecretKey(aes_cmac(key, message))


class SecureMessaging:
    """The MACs of one authenticated session (docs/card.md 6.4), either side.

    Holds the session key SK and the send sequence counter SSC (8 bytes,
    big-endian, starting at 0). **Both sides must make the same calls in the
    same order**, one per CLA 04 / 84 command, since every command moves the
    counter on both sides:

    - UPDATE BINARY with MAC: terminal ``protect(...)`` (or ``command_mac``);
      card ``verify_command_mac(...)``.
    - WRITE KEY (CLA 84): terminal ``wrap_key``, then ``protect`` over the
      ciphertext; card ``verify_command_mac``, then ``unwrap_key``.
    - READ BINARY with MAC (no data, so no command MAC): terminal
      ``next_command()``, send, then ``verify_response(answer)``; card
      ``next_command()``, then ``response_mac(data)``.

    ``command_mac`` = AES-CMAC(SK, SSC ‖ CLA INS P1 P2 ‖ data)[0:8] after
    incrementing SSC; ``response_mac`` = AES-CMAC(SK, SSC ‖ data)[0:8] with the
    SSC of the command it answers (not incremented again). Because SSC only
    grows, a MAC recorded earlier in the session never verifies again.

    After a failed verification the object refuses all further work, as the
    card ends the session (``6988``): the caller must authenticate again.
    """

    def __init__(self, session_key: SecretKey | bytes, ssc: int = 0) -> None:
        self._key = session_key if isinstance(session_key, SecretKey) else SecretKey(session_key)
        if not 0 <= ssc <= _MAX_SSC:
            raise ValueError(f"SSC {ssc} is outside 0..2^64-1")
        self._ssc = ssc
        self._ended = False

    def __repr__(self) -> str:
        state = "ended" if self._ended else f"ssc={self._ssc}"
        return f"SecureMessaging(key={self._key!r}, {state})"

    @property
    def ssc(self) -> int:
        """The current send sequence counter."""
        return self._ssc

    @property
    def ended(self) -> bool:
        """True after a MAC failure: authenticate again."""
        return self._ended

    def next_command(self) -> int:
        """Increment SSC for a command; return the new value.

        Called on its own only for a CLA 04 command that carries no data and
        so no command MAC (READ BINARY with MAC); the MAC methods call it.
        """
        self._check_live()
        if self._ssc >= _MAX_SSC:
            self._ended = True
            raise SecurityError("secure messaging counter exhausted: authenticate again")
        self._ssc += 1
        return self._ssc

    def _ssc_bytes(self) -> bytes:
        return self._ssc.to_bytes(SSC_SIZE, "big")

    def _command_input(self, cla: int, ins: int, p1: int, p2: int, data: bytes) -> bytes:
        try:
            header = bytes((cla, ins, p1, p2))
        except ValueError:
            raise FormatError(f"APDU header {cla}, {ins}, {p1}, {p2} is not four bytes") from None
        return self._ssc_bytes() + header + bytes(data)

    def command_mac(self, cla: int, ins: int, p1: int, p2: int, data: bytes) -> bytes:
        """Terminal: increment SSC, return the 8-byte MAC of this command."""
        self.next_command()
        return aes_cmac(self._key, self._command_input(cla, ins, p1, p2, data))[:SM_MAC_SIZE]

    def protect(self, cla: int, ins: int, p1: int, p2: int, data: bytes) -> bytes:
        """Terminal: ``data ‖ command_mac(...)``, the data field to send."""
        return bytes(data) + self.command_mac(cla, ins, p1, p2, data)

    def verify_command_mac(
        self, cla: int, ins: int, p1: int, p2: int, data_with_mac: bytes
    ) -> bytes:
        """Card: increment SSC, check the trailing 8-byte MAC, return the data.

        :class:`SecurityError` (the card answers ``6988``) if it does not verify.
        """
        self.next_command()
        if len(data_with_mac) < SM_MAC_SIZE:
            self._ended = True
            raise SecurityError("secure messaging command has no MAC")
        data, mac = bytes(data_with_mac[:-SM_MAC_SIZE]), bytes(data_with_mac[-SM_MAC_SIZE:])
        expected = aes_cmac(self._key, self._command_input(cla, ins, p1, p2, data))
        self._verify(expected[:SM_MAC_SIZE], mac, f"command MAC does not verify (SSC {self._ssc})")
        return data

    def response_mac(self, data: bytes) -> bytes:
        """Card: the 8-byte MAC of response ``data`` under the current SSC."""
        self._check_answering()
        return aes_cmac(self._key, self._ssc_bytes() + bytes(data))[:SM_MAC_SIZE]

    def verify_response(self, data_with_mac: bytes) -> bytes:
        """Terminal: check a response's trailing 8-byte MAC, return the data."""
        self._check_answering()
        if len(data_with_mac) < SM_MAC_SIZE:
            self._ended = True
            raise SecurityError("secure messaging response has no MAC")
        data, mac = bytes(data_with_mac[:-SM_MAC_SIZE]), bytes(data_with_mac[-SM_MAC_SIZE:])
        expected = aes_cmac(self._key, self._ssc_bytes() + data)[:SM_MAC_SIZE]
        self._verify(expected, mac, f"response MAC does not verify (SSC {self._ssc})")
        return data

    def wrap_key(self, new_key: SecretKey | bytes, version: int) -> bytes:
        """WRITE KEY data before its MAC: AES-CBC_SK, zero IV, of
        ``key (16) ‖ version (1) ‖ 80 ‖ 00 × 14`` (32 bytes).

        Encrypted because the value must not cross the reader in clear; the
        MAC that ``protect`` adds over this ciphertext authenticates it, and
        the card checks that MAC before decrypting.
        """
        self._check_live()
        if isinstance(version, bool) or not 0 <= version <= 0xFF:
            raise ValueError(f"key version {version} is not a byte")
        block = key_bytes(new_key) + bytes((version,)) + _KEY_BLOCK_PAD
        return AES.new(self._key.value, AES.MODE_CBC, iv=bytes(16)).encrypt(block)

    def unwrap_key(self, ciphertext: bytes) -> tuple[SecretKey, int]:
        """Card: decrypt a WRITE KEY block into (key, version).

        Call after :meth:`verify_command_mac` has accepted the ciphertext;
        :class:`SecurityError` if the padding is wrong (wrong session key).
        """
        self._check_live()
        if len(ciphertext) != WRAPPED_KEY_SIZE:
            raise SecurityError(f"a wrapped key is {WRAPPED_KEY_SIZE} bytes, got {len(ciphertext)}")
        block = AES.new(self._key.value, AES.MODE_CBC, iv=bytes(16)).decrypt(bytes(ciphertext))
        if not hmac.compare_digest(block[KEY_SIZE + 1 :], _KEY_BLOCK_PAD):
            raise SecurityError("wrapped key does not decrypt to a key block")
        return SecretKey(block[:KEY_SIZE]), block[KEY_SIZE]

    def _verify(self, expected: bytes, got: bytes, what: str) -> None:
        if not hmac.compare_digest(expected, got):
            self._ended = True
            raise SecurityError(what)

    def _check_live(self) -> None:
        if self._ended:
            raise SecurityError("secure messaging session ended after a MAC failure")

    def _check_answering(self) -> None:
        self._check_live()
        if self._ssc == 0:
            raise SecurityError("no secure messaging command to answer yet (SSC 0)")
