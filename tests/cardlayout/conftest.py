"""Fixtures for card tests: key stores, virtual cards, channels (values in card_support)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from card_support import SERIAL, connect, make_store, opening_write

from cardlayout.card.operations import personalise, write_purchase
from cardlayout.card.snapshot import read_snapshot
from cardlayout.security.diversify import CardKeys
from cardlayout.security.keystore import KeyStore
from cardlayout.vcard.cos import VirtualCard, new_image
from cardlayout.vcard.image import CardImage


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
