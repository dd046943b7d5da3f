"""Known-answer tests for the MACs, the KCV and diversification.

Published vectors where they exist (RFC 4493, ISO/IEC 9797-1, ICAO 9303);
for this project's own formulas (docs/card.md 6.1-6.3) the expected value is
computed here from the document with pycryptodome primitives, not by calling
the code under test, and pinned as hex so a change to both is noticed too.
"""

from __future__ import annotations

import pytest
from card_support import RFC4493, RFC4493_KEY, RFC4493_M
from Crypto.Cipher import AES
from Crypto.Hash import CMAC

from cardlayout.errors import FormatError, KeyStoreError, SecurityError
from cardlayout.security.diversify import (
    FACTORY_TRANSPORT_MASTER,
    CardKeys,
    diversify,
    transport_key,
)
from cardlayout.security.keys import KeyInfo, KeyRef, Purpose, SecretKey, kcv
from cardlayout.security.keystore import KeyStore
from cardlayout.security.mac import (
    MacLabel,
    aes_cmac,
    data_mac,
    number_bcd,
    retail_mac,
    verify_data_mac,
)

# -- AES-CMAC: RFC 4493 section 4 (= NIST SP 800-38B appendix D.1) ----------------


@pytest.mark.parametrize(("length", "tag"), RFC4493)
def test_aes_cmac_rfc4493(length: int, tag: str) -> None:
    assert aes_cmac(RFC4493_KEY, RFC4493_M[:length]).hex() == tag
    assert aes_cmac(SecretKey(RFC4493_KEY), RFC4493_M[:length]).hex() == tag


# -- Retail MAC: ISO/IEC 9797-1 MAC algorithm 3 ------------------------------------

ISO9797_KEY = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")


@pytest.mark.parametrize(
    ("message", "prefix"),
    [
        # ISO/IEC 9797-1:2011 Annex B.4, MAC algorithm 3, padding method 1, as
        # quoted (first 4 bytes) in openemv/crypto test/crypto_tdes2_retail_mac_test.c.
        (b"Now is the time for all ", "A1C72E74"),
        (b"Now is the time for it", "2E2B1428"),
    ],
)
def test_retail_mac_iso9797_annex_b4(message: bytes, prefix: str) -> None:
    mac = retail_mac(ISO9797_KEY, message, padding=1)
    assert len(mac) == 8
    assert mac[:4].hex().upper() == prefix


def test_retail_mac_bouncy_castle_vector() -> None:
    # Bouncy Castle core/src/test/java/org/bouncycastle/crypto/test/ISO9797Alg3MacTest.java
    # (ISO9797Alg3Mac with DESEngine, no padding object = zero padding, method 1).
    key = bytes.fromhex("7CA110454A1A6E570131D9619DC1376E")
    assert retail_mac(key, b"Hello World !!!!", padding=1).hex().upper() == "F09B856213BAB83B"


@pytest.mark.parametrize(
    ("key", "message", "mac"),
    [
        # ICAO Doc 9303 Part 11, Appendix D.3 (BAC mutual authentication): M_IFD
        # over E_IFD with K_MAC, MAC algorithm 3 and padding method 2.
        (
            "7962D9ECE03D1ACD4C76089DCE131543",
            "72C29C2371CC9BDB65B779B8E8D37B29ECC154AA56A8799FAE2F498F76ED92F2",
            "5F1448EEA8AD90A7",
        ),
        # Same appendix: M_IC over E_IC.
        (
            "7962D9ECE03D1ACD4C76089DCE131543",
            "46B9342A41396CD7386BF5803104D7CEDC122B9132139BAF2EEDC94EE178534F",
            "2F2D235D074D7449",
        ),
        # ICAO Doc 9303 Part 11, Appendix D.4.1 (secure messaging, SELECT EF.COM):
        # N = SSC ‖ padded header ‖ DO87 ... with KS_MAC.
        (
            "F1CB1F1FB5ADF208806B89DC579DC1F8",
            "887022120C06C2270CA4020C800000008709016375432908C044F6",
            "BF8B92D635FF24F8",
        ),
    ],
)
def test_retail_mac_icao_9303_padding_method_2(key: str, message: str, mac: str) -> None:
    assert retail_mac(bytes.fromhex(key), bytes.fromhex(message)).hex().upper() == mac


def test_retail_mac_padding_edges() -> None:
    # Method 1 pads an empty message to one zero block; method 2 always adds 80.
    assert retail_mac(ISO9797_KEY, b"", padding=1) == retail_mac(ISO9797_KEY, bytes(8), padding=1)
    assert retail_mac(ISO9797_KEY, b"", padding=2) == retail_mac(
        ISO9797_KEY, b"\x80" + bytes(7), padding=1
    )
    with pytest.raises(ValueError, match="padding method 3"):
        retail_mac(ISO9797_KEY, b"x", padding=3)  # type: ignore[arg-type]


# -- KCV ------------------------------------------------------------------------------


def test_kcv_of_rfc4493_key() -> None:
    # CMAC of one complete zero block is AES_K(0 xor K1) = AES_K(K1), with the
    # subkey K1 = fbeed618... that RFC 4493 section 4 publishes for this key.
    k1 = bytes.fromhex("fbeed618357133667c85e08f7236a8de")
    expected = AES.new(RFC4493_KEY, AES.MODE_ECB).encrypt(k1)[:3]
    assert expected.hex().upper() == "7AD386"
    assert kcv(RFC4493_KEY) == expected
    assert SecretKey(RFC4493_KEY).kcv == expected
    assert repr(SecretKey(RFC4493_KEY)) == "SecretKey(kcv=7AD386)"


# -- Diversification (docs/card.md 6.1) ---------------------------------------------


class FixedStore(KeyStore):
    """A store holding known master keys, to test the formula around it."""

    backend = "test"

    def __init__(self, masters: dict[KeyRef, bytes]) -> None:
        self.masters = masters

    @property
    def location(self) -> str:
        return "test store"

    def list_keys(self) -> list[KeyInfo]:
        return [
            KeyInfo(r.purpose, r.version, kcv(v), self.backend) for r, v in self.masters.items()
        ]

    def generate(self, purpose: Purpose, version: int) -> KeyInfo:
        raise NotImplementedError

    def master_cmac(self, ref: KeyRef, message: bytes) -> bytes:
        if ref not in self.masters:
            raise KeyStoreError(f"no master key {ref}")
        return CMAC.new(self.masters[ref], message, ciphermod=AES).digest()

    def close(self) -> None:
        pass


MASTERS = {
    KeyRef(Purpose.CARD_ISSUER, 1): bytes.fromhex("00112233445566778899AABBCCDDEEFF"),
    KeyRef(Purpose.CARD_METER, 1): bytes.fromhex("101112131415161718191A1B1C1D1E1F"),
    KeyRef(Purpose.PURSE_MAC, 1): bytes.fromhex("202122232425262728292A2B2C2D2E2F"),
    KeyRef(Purpose.WRITEBACK_MAC, 1): bytes.fromhex("303132333435363738393A3B3C3D3E3F"),
    KeyRef(Purpose.PURSE_MAC, 2): bytes.fromhex("404142434445464748494A4B4C4D4E4F"),
}
SERIAL = bytes.fromhex("0102030405060708")
METER = "000012345678"
CUSTOMER = "987654321012"


def reference_diversify(master: bytes, purpose: str, factor: bytes) -> bytes:
    """docs/card.md 6.1, written out: AES-CMAC(master, 01 ‖ purpose ‖ 00 ‖ factor)."""
    message = bytes([0x01]) + purpose.encode("ascii") + bytes([0x00]) + factor
    return CMAC.new(master, message, ciphermod=AES).digest()


def test_diversify_known_answer() -> None:
    store = FixedStore(MASTERS)
    ref = KeyRef(Purpose.CARD_ISSUER, 1)
    expected = reference_diversify(MASTERS[ref], "card-issuer", SERIAL)
    assert diversify(store, ref, SERIAL).value == expected
    assert expected.hex().upper() == "9AAE7E882C1B878A75764A3F037A0F61"


def test_card_keys_known_answers() -> None:
    keys = CardKeys(FixedStore(MASTERS))
    meter_bcd = bytes.fromhex(METER)  # 00 00 12 34 56 78
    assert keys.issuer_key(SERIAL).value == reference_diversify(
        MASTERS[KeyRef(Purpose.CARD_ISSUER, 1)], "card-issuer", SERIAL
    )
    assert keys.meter_card_key(METER).value == reference_diversify(
        MASTERS[KeyRef(Purpose.CARD_METER, 1)], "card-meter", meter_bcd
    )
    assert keys.writeback_key(METER).value == reference_diversify(
        MASTERS[KeyRef(Purpose.WRITEBACK_MAC, 1)], "writeback-mac", meter_bcd
    )
    # Unpinned: the latest version (2) of purse-mac.
    assert keys.version_of(Purpose.PURSE_MAC) == 2
    assert keys.purse_key(METER).value == reference_diversify(
        MASTERS[KeyRef(Purpose.PURSE_MAC, 2)], "purse-mac", meter_bcd
    )
    pinned = CardKeys(FixedStore(MASTERS), {Purpose.PURSE_MAC: 1})
    assert pinned.ref(Purpose.PURSE_MAC) == KeyRef(Purpose.PURSE_MAC, 1)
    assert pinned.purse_key(METER).value == reference_diversify(
        MASTERS[KeyRef(Purpose.PURSE_MAC, 1)], "purse-mac", meter_bcd
    )


def test_card_keys_refuse_bad_factors() -> None:
    keys = CardKeys(FixedStore(MASTERS))
    with pytest.raises(FormatError) as info:
        keys.issuer_key(SERIAL[:7])
    assert info.value.field == "serial"
    for bad in (
        "12345678901",
        "1234567890123",
        "12345678901a",
        " 12345678901",
        "１２３４５６７８９０１２",
    ):
        with pytest.raises(FormatError) as info:
            keys.purse_key(bad)
        assert info.value.field == "meter_no"


def test_missing_master_is_a_keystore_error() -> None:
    keys = CardKeys(FixedStore({}))
    with pytest.raises(KeyStoreError, match="no card-meter master key"):
        keys.meter_card_key(METER)


def test_transport_key_known_answer() -> None:
    assert bytes.fromhex("000102030405060708090A0B0C0D0E0F") == FACTORY_TRANSPORT_MASTER
    expected = reference_diversify(bytes(range(16)), "transport", SERIAL)
    assert transport_key(SERIAL).value == expected
    assert expected.hex().upper() == "4E870EAF20EB27956652BA013471857B"


# -- Data MACs (docs/card.md 6.3) ---------------------------------------------------


def reference_data_mac(key: bytes, label: str, body: bytes) -> bytes:
    message = (
        label.encode("ascii")
        + b"\x00"
        + len(body).to_bytes(2, "big")
        + body
        + bytes.fromhex(METER)
        + bytes.fromhex(CUSTOMER)
        + SERIAL
    )
    return CMAC.new(key, message, ciphermod=AES).digest()[:8]


def test_data_mac_known_answer() -> None:
    key = bytes.fromhex("2B7E151628AED2A6ABF7158809CF4F3C")
    body = bytes.fromhex("000186A000000007")  # 1000.00 bought, purchase 7
    expected = reference_data_mac(key, "purse", body)
    assert data_mac(SecretKey(key), MacLabel.PURSE, body, METER, CUSTOMER, SERIAL) == expected
    assert expected.hex().upper() == "A986D20122ED0527"
    verify_data_mac(key, "purse", body, METER, CUSTOMER, SERIAL, expected)


def test_data_mac_binds_every_input() -> None:
    key = SecretKey(RFC4493_KEY)
    body = bytes(range(50))
    mac = data_mac(key, "write-back", body, METER, CUSTOMER, SERIAL)
    variants = [
        ("history", body, METER, CUSTOMER, SERIAL),
        ("write-back", body[:-1] + b"\x00", METER, CUSTOMER, SERIAL),
        ("write-back", body, "000012345679", CUSTOMER, SERIAL),
        ("write-back", body, METER, "987654321013", SERIAL),
        ("write-back", body, METER, CUSTOMER, SERIAL[:7] + b"\x09"),
    ]
    for label, b, meter, customer, serial in variants:
        with pytest.raises(SecurityError, match=label):
            verify_data_mac(key, label, b, meter, customer, serial, mac)
    with pytest.raises(SecurityError, match="write-back MAC does not verify"):
        verify_data_mac(key, "write-back", body, METER, CUSTOMER, SERIAL, mac[:7])


def test_number_bcd() -> None:
    assert number_bcd("000012345678", "meter_no") == bytes.fromhex("000012345678")
    with pytest.raises(FormatError) as info:
        number_bcd("12345", "customer_no")
    assert info.value.field == "customer_no"
    assert isinstance(info.value, ValueError)
