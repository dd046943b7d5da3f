"""Message authentication codes: AES-CMAC, the DES retail MAC, data MACs.

AES-CMAC (NIST SP 800-38B, RFC 4493) is the MAC of this card profile. The
ISO/IEC 9797-1 MAC algorithm 3 ("retail MAC", ANSI X9.19) is here for card
profiles that still use 2-key triple DES, such as the memory-card carriers
DESIGN.md plans for later.

Data MACs (docs/card.md 6.3) protect a file body end to end: the card only
carries them, the centre writes the purse MAC and the meter checks it, the
meter writes the write-back and history MACs and the centre checks them.
"""

from __future__ import annotations

import functools
import hmac
import re
from collections.abc import Sequence
from enum import StrEnum
from typing import Final, Literal

from Crypto.Cipher import DES
from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.cmac import CMAC

from cardlayout.errors import FormatError, SecurityError
from cardlayout.security.keys import SecretKey, key_bytes

CMAC_SIZE: Final = 16
DATA_MAC_SIZE: Final = 8
SERIAL_SIZE: Final = 8
MAX_BODY: Final = 0xFFFF

_TWELVE_DIGITS = re.compile(r"^[0-9]{12}$")
_LABEL = re.compile(r"^[\x21-\x7e]{1,32}$")


class MacLabel(StrEnum):
    """The domain labels of docs/card.md 6.3 (any ``str`` is accepted too)."""

    PURSE = "purse"
    WRITE_BACK = "write-back"
    HISTORY = "history"


def aes_cmac(key: SecretKey | bytes, message: bytes) -> bytes:
    """AES-CMAC of ``message`` (16 bytes), RFC 4493 (see :func:`aes_cmacs`)."""
    mac = _cmac(key_bytes(key))
    mac.update(message)
    return mac.finalize()


def aes_cmacs(key: SecretKey | bytes, messages: Sequence[bytes]) -> list[bytes]:
    """AES-CMAC of each of ``messages`` under one key (16 bytes each), RFC 4493.

    OpenSSL's CMAC through the ``cryptography`` package: AES-NI where the
    processor has it, and a table-free, constant-time AES where not, so no
    key leaks through cache timing. The key is scheduled once and copied for
    each message: about 0.3 us a message, 1.2 us for a lone one, where
    pycryptodome's ``CMAC`` costs about 30 us (its Python around each call)
    and the CBC and ECB arrangements this module had in its place 1 to 12 us.
    A centre checks two MACs for each of 100 000 meters in one import and
    derives each one's key. The RFC 4493 / SP 800-38B examples pin it, and
    property tests compare it with pycryptodome's own CMAC
    (tests/cardlayout/test_mac_vectors.py and test_meter_report_bulk.py).
    """
    if not messages:
        key_bytes(key)  # a wrong key is refused even with nothing to MAC
        return []
    keyed = _cmac(key_bytes(key))
    tags: list[bytes] = []
    for message in messages:
        mac = keyed.copy()
        mac.update(message)
        tags.append(mac.finalize())
    return tags


def _cmac(key: bytes) -> CMAC:
    return CMAC(algorithms.AES(key))


def aes_cmacs_keyed(keys: Sequence[SecretKey | bytes], messages: Sequence[bytes]) -> list[bytes]:
    """AES-CMAC of ``messages[i]`` under ``keys[i]`` (16 bytes each), RFC 4493.

    For many meters' MACs, each under the meter's own key: the messages of
    one key go through :func:`aes_cmacs` together (the key scheduled once).
    Equal to ``aes_cmac(keys[i], messages[i])`` for every ``i``.
    """
    if len(keys) != len(messages):
        raise ValueError(f"{len(keys)} keys for {len(messages)} messages")
    by_key: dict[bytes, list[int]] = {}
    for index, key in enumerate(keys):
        by_key.setdefault(key_bytes(key), []).append(index)
    tags: list[bytes] = [b""] * len(messages)
    for key, indexes in by_key.items():
        for index, tag in zip(indexes, aes_cmacs(key, [messages[i] for i in indexes]), strict=True):
            tags[index] = tag
    return tags


def retail_mac(key: SecretKey | bytes, message: bytes, *, padding: Literal[1, 2] = 2) -> bytes:
    """ISO/IEC 9797-1 MAC algorithm 3 with a 2-key triple-DES key (8 bytes).

    ``key`` is K ‖ K' (8 bytes each). The padded message is DES-CBC encrypted
    under K with a zero IV; the last block is then decrypted under K' and
    encrypted again under K. That final triple-DES step is what makes an
    exhaustive search cost 2^112 instead of the 2^56 of a plain DES CBC-MAC,
    while the bulk of the message costs one DES per block.

    ``padding`` 2 (the default, ISO/IEC 9797-1 padding method 2, also
    ISO/IEC 7816-4's): append ``80`` then ``00`` up to a multiple of 8, always.
    ``padding`` 1 (method 1): append ``00`` up to a multiple of 8, none if the
    message already is one, one zero block if it is empty. Method 1 is
    ambiguous for messages of varying length (``AB`` and ``AB 00`` collide),
    so use it only where a card profile fixes the lengths.
    """
    raw = key_bytes(key)
    k1, k2 = raw[:8], raw[8:]
    data = bytes(message)
    if padding == 2:
        data += b"\x80"
        data += bytes(-len(data) % 8)
    elif padding == 1:
        data += bytes(-len(data) % 8) if data else bytes(8)
    else:
        raise ValueError(f"ISO/IEC 9797-1 padding method {padding} is not 1 or 2")
    last = DES.new(k1, DES.MODE_CBC, iv=bytes(8)).encrypt(data)[-8:]
    return DES.new(k1, DES.MODE_ECB).encrypt(DES.new(k2, DES.MODE_ECB).decrypt(last))


def number_bcd(number: str, field: str) -> bytes:
    """A 12-digit meter or customer number as its 6 packed-BCD bytes.

    Anything but exactly twelve ASCII decimal digits is refused with a
    :class:`FormatError` naming ``field``: a number that silently became some
    other bytes would yield a MAC or a key that nobody can check.
    """
    if not isinstance(number, str) or not _TWELVE_DIGITS.match(number):
        raise FormatError(f"{field} must be exactly 12 decimal digits, got {number!r}", field=field)
    return bytes.fromhex(number)


def data_mac_input(
    label: str, body: bytes, meter_no: str, customer_no: str, serial: bytes
) -> bytes:
    """The exact bytes a data MAC covers (docs/card.md 6.3)::

        label (ASCII) ‖ 00 ‖ len(body) (2, big-endian) ‖ body
          ‖ meter number (6, BCD) ‖ customer number (6, BCD) ‖ card serial (8)

    The ``00`` after the label and the body length make the split between
    the variable-length parts unambiguous, so no (label, body) pair can be
    re-read as another one with the same MAC; the three identifiers after
    the body have fixed lengths. They bind a file to its meter, its customer
    and its card: a purse copied to another card or meter does not verify.
    """
    return _label_part(label, body) + _identity_part(meter_no, customer_no, serial)


@functools.lru_cache(maxsize=16)
def _label_bytes(label: str) -> bytes | None:
    """The label's bytes with its ``00``, or None if it is not a label (cached: a card
    profile has a handful of labels, and a MAC check is made for each file read)."""
    return label.encode("ascii") + b"\x00" if _LABEL.match(label) else None


def _label_part(label: str, body: bytes) -> bytes:
    """``label ‖ 00 ‖ len(body) ‖ body``: the part of :func:`data_mac_input` before the identity."""
    prefix = _label_bytes(label) if isinstance(label, str) else None
    if prefix is None:
        raise FormatError(
            f"a data MAC label is 1..32 printable ASCII characters, got {label!r}", field="label"
        )
    if len(body) > MAX_BODY:
        raise FormatError(f"a MAC'd body is at most {MAX_BODY} bytes, got {len(body)}")
    return prefix + len(body).to_bytes(2, "big") + bytes(body)


def _identity_part(meter_no: str, customer_no: str, serial: bytes) -> bytes:
    """``meter number ‖ customer number ‖ card serial``: the end of :func:`data_mac_input`."""
    if len(serial) != SERIAL_SIZE:
        raise FormatError(
            f"a card serial is {SERIAL_SIZE} bytes, got {len(serial)}", field="serial"
        )
    return number_bcd(meter_no, "meter_no") + number_bcd(customer_no, "customer_no") + bytes(serial)


def data_mac(
    key: SecretKey | bytes,
    label: str,
    body: bytes,
    meter_no: str,
    customer_no: str,
    serial: bytes,
) -> bytes:
    """The 8-byte data MAC of a file body: AES-CMAC over :func:`data_mac_input`.

    ``body`` is the file body without its MAC field. ``key`` is the diversified
    ``purse-mac`` key for label ``purse`` and the ``writeback-mac`` key for
    ``write-back`` and ``history`` (both by meter number).
    """
    return aes_cmac(key, data_mac_input(label, body, meter_no, customer_no, serial))[:DATA_MAC_SIZE]


def verify_data_mac(
    key: SecretKey | bytes,
    label: str,
    body: bytes,
    meter_no: str,
    customer_no: str,
    serial: bytes,
    mac: bytes,
) -> None:
    """Check a data MAC in constant time; :class:`SecurityError` names the label."""
    verify_data_macs(key, meter_no, customer_no, serial, ((label, body, mac),))


def verify_data_macs(
    key: SecretKey | bytes,
    meter_no: str,
    customer_no: str,
    serial: bytes,
    macs: Sequence[tuple[str, bytes, bytes]],
) -> None:
    """Check several data MACs of one meter, customer and card: (label, body, mac) each.

    As :func:`verify_data_mac` for each, in order (the first that does not
    verify raises), with one cipher for all of them (:func:`aes_cmacs`): a
    meter's write-back and history are checked under the same key, and the
    key schedule is a good part of the cost of a short MAC.
    """
    messages = data_mac_inputs(meter_no, customer_no, serial, [(lb, body) for lb, body, _ in macs])
    check_data_macs(
        meter_no, customer_no, serial, [(lb, mac) for lb, _, mac in macs], aes_cmacs(key, messages)
    )


def data_mac_inputs(
    meter_no: str, customer_no: str, serial: bytes, bodies: Sequence[tuple[str, bytes]]
) -> list[bytes]:
    """:func:`data_mac_input` of each (label, body) of one meter, customer and card.

    Raises :class:`FormatError` as :func:`data_mac_input` does (labels and
    bodies first, in order, then the identity).
    """
    parts = [_label_part(label, body) for label, body in bodies]
    identity = _identity_part(meter_no, customer_no, serial)
    return [part + identity for part in parts]


def check_data_macs(
    meter_no: str,
    customer_no: str,
    serial: bytes,
    macs: Sequence[tuple[str, bytes]],
    tags: Sequence[bytes],
) -> None:
    """Compare each (label, mac) with its computed AES-CMAC ``tags`` in constant time.

    The first that differs raises the :class:`SecurityError` of
    :func:`verify_data_macs`: the MAC computed one way or another (one key
    at a time, or many meters at once with :func:`aes_cmacs_keyed`), the
    check and its message are this one.
    """
    for (label, mac), tag in zip(macs, tags, strict=True):
        if len(mac) != DATA_MAC_SIZE or not hmac.compare_digest(tag[:DATA_MAC_SIZE], bytes(mac)):
            raise SecurityError(
                f"{label} MAC does not verify (meter {meter_no}, customer {customer_no}, "
                f"card {bytes(serial).hex().upper()}): forged, copied or written with another key"
            )
