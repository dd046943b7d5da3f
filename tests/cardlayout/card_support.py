"""Sample values and helpers shared by the card tests (imported by name, not via conftest).

A test module importing from ``conftest`` gets whichever conftest module
pytest loaded last under that name (there is one per test directory), so
shared values live here instead.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from cardlayout.card.operations import PurchaseWrite
from cardlayout.files import PARAMETERS, TARIFF_SET_1, CardType, Parameters, Purse
from cardlayout.security.keystore import KeyStore, init_master_keys, open_keystore
from cardlayout.transport.channel import CardChannel
from cardlayout.transport.inprocess import InProcessTransport
from cardlayout.vcard.cos import VirtualCard

SERIAL = bytes.fromhex("5A00000000000001")
METER_NO = "000012345678"
CUSTOMER_NO = "310101000042"


def make_store(path: Path) -> KeyStore:
    """A key file with every master key, at a low scrypt cost for speed."""
    store = open_keystore(str(path), passphrase="test passphrase", create=True, scrypt_n=2**10)
    init_master_keys(store)
    return store


def connect(card: VirtualCard) -> CardChannel:
    channel = CardChannel(InProcessTransport(card))
    channel.connect()
    return channel


def reconnect(channel: CardChannel) -> CardChannel:
    """Put a pulled card back and power it again (new RAM state)."""
    transport = channel.transport
    assert isinstance(transport, InProcessTransport)
    transport.reinsert()
    channel.atr = b""
    channel.connect()
    return channel


def sample_parameters(card_type: CardType = CardType.OPENING, **changes: object) -> Parameters:
    base = PARAMETERS.examples[0].value
    return dataclasses.replace(
        base, card_type=card_type, meter_no=METER_NO, customer_no=CUSTOMER_NO, **changes
    )


def opening_write(amount: int = 10000, count: int = 1) -> PurchaseWrite:
    return PurchaseWrite(
        parameters=sample_parameters(),
        purse=Purse(amount=amount, purchase_count=count, mac=bytes(8)),
        tariff_set_1=TARIFF_SET_1.examples[0].value,
        bind_meter=True,
    )


# -- AES-CMAC: RFC 4493 section 4 (= NIST SP 800-38B appendix D.1) ----------------

RFC4493_KEY = bytes.fromhex("2b7e151628aed2a6abf7158809cf4f3c")
RFC4493_M = bytes.fromhex(
    "6bc1bee22e409f96e93d7e117393172a"
    "ae2d8a571e03ac9c9eb76fac45af8e51"
    "30c81c46a35ce411e5fbc1191a0a52ef"
    "f69f2445df4f9b17ad2b417be66c3710"
)
RFC4493 = [
    (0, "bb1d6929e95937287fa37d129b756746"),  # Example 1
    (16, "070a16b46b4d4144f79bdd9dd04a287c"),  # Example 2
    (40, "dfa66747de9ae63030ca32611497c827"),  # Example 3
    (64, "51f0bebf7e3b9d92fc49741779363cfe"),  # Example 4
]
"""(message length, tag): the RFC's four examples, each a prefix of ``RFC4493_M``."""
