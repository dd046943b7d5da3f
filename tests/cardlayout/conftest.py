"""Fixtures for card tests: key stores, virtual cards, channels, sample values."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from cardlayout.card.operations import PurchaseWrite, personalise, write_purchase
from cardlayout.card.snapshot import read_snapshot
from cardlayout.files import PARAMETERS, TARIFF_SET_1, CardType, Parameters, Purse
from cardlayout.security.diversify import CardKeys
from cardlayout.security.keystore import KeyStore, init_master_keys, open_keystore
from cardlayout.transport.channel import CardChannel
from cardlayout.transport.inprocess import InProcessTransport
from cardlayout.vcard.cos import VirtualCard, new_image
from cardlayout.vcard.image import CardImage

SERIAL = bytes.fromhex("5A00000000000001")
METER_NO = "000012345678"
CUSTOMER_NO = "310101000042"


def make_store(path: Path) -> KeyStore:
    """A key file with every master key, at a low scrypt cost for speed."""
    store = open_keystore(str(path), passphrase="test passphrase", create=True, scrypt_n=2**10)
    init_master_keys(store)
    return store


@pytest.fixture
def keystore(tmp_path: Path) -> Iterator[KeyStore]:
    with make_store(tmp_path / "keys.json") as store:
        yield store


@pytest.fixture
def card_keys(keystore: KeyStore) -> CardKeys:
    return CardKeys(keystore)


@pytest.fixture
def other_keys(tmp_path: Path) -> Iterator[CardKeys]:
    """Keys of another utility (a foreign system)."""
    with make_store(tmp_path / "other-keys.json") as store:
        yield CardKeys(store)


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


@pytest.fixture
def blank_card() -> VirtualCard:
    return VirtualCard(new_image(SERIAL))


@pytest.fixture
def personalised_image(card_keys: CardKeys) -> CardImage:
    card = VirtualCard(new_image(SERIAL))
    personalise(connect(card), card_keys)
    return card.image


@pytest.fixture
def issued_image(card_keys: CardKeys, personalised_image: CardImage) -> CardImage:
    """An opening card bound to METER_NO with a first purchase on it."""
    card = VirtualCard(personalised_image.copy())
    channel = connect(card)
    write_purchase(channel, card_keys, read_snapshot(channel), opening_write())
    return card.image
