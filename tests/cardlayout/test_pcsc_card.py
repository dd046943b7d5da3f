"""The card API through pcscd, the vpcd reader driver and the virtual card.

The same bytes a USB reader would carry: PC/SC calls through pyscard, pcscd,
vpcd, the bridge, the card OS. The stories run here end to end; tears are
sampled (the exhaustive sweeps run in-process, tests/cardlayout/test_tearing.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest
from card_support import CUSTOMER_NO, METER_NO, SERIAL, opening_write, sample_parameters

from cardlayout.card.operations import (
    PurchaseWrite,
    clear_write_back,
    open_meter_session,
    personalise,
    verified_write_back,
    verify_purse,
    write_meter_write_back,
    write_purchase,
)
from cardlayout.card.snapshot import FileStatus, read_snapshot
from cardlayout.errors import CardRemovedError
from cardlayout.files import WRITE_BACK, CardType, Purse, Utility
from cardlayout.security.diversify import CardKeys
from cardlayout.transport.channel import CardChannel
from cardlayout.transport.pcsc import PcscTransport
from cardlayout.vcard.cos import VirtualCard, new_image
from cardlayout.vcard.vpcd import VpcdBridge

pytestmark = pytest.mark.pcsc


@pytest.fixture
def inserted(vpcd_reader: str) -> Iterator[tuple[VirtualCard, VpcdBridge]]:
    card = VirtualCard(new_image(SERIAL))
    bridge = VpcdBridge(card, port=35963)
    bridge.insert()
    try:
        yield card, bridge
    finally:
        bridge.remove()


def pcsc_channel(reader: str) -> CardChannel:
    channel = CardChannel(PcscTransport(reader, timeout=10))
    channel.connect()
    return channel


def test_sale_story_through_pcscd(
    inserted: tuple[VirtualCard, VpcdBridge], vpcd_reader: str, card_keys: CardKeys
) -> None:
    card, _ = inserted
    channel = pcsc_channel(vpcd_reader)
    assert channel.atr[4:] == SERIAL
    personalise(channel, card_keys)
    snapshot = write_purchase(channel, card_keys, read_snapshot(channel), opening_write(20000, 1))
    assert snapshot.purse is not None and snapshot.parameters is not None
    verify_purse(snapshot.purse, snapshot.parameters, SERIAL, card_keys.purse_key(METER_NO))

    # The meter takes the card and writes back.
    session = open_meter_session(channel, card_keys.meter_card_key(METER_NO), Utility.ELECTRICITY)
    wb = dataclasses.replace(
        WRITE_BACK.examples[0].value,
        meter_no=METER_NO,
        customer_no=CUSTOMER_NO,
        remaining_amount=20000,
        purchase_count=1,
    )
    write_meter_write_back(session, card_keys.writeback_key(METER_NO), SERIAL, wb, None)

    # The next sale reads it back, trusts it, clears it.
    before_sale = read_snapshot(channel)
    read_back = verified_write_back(card_keys, before_sale)
    assert read_back is not None and read_back.remaining_amount == 20000
    clear_write_back(channel, card_keys, before_sale)
    assert read_snapshot(channel).state(WRITE_BACK).status is FileStatus.CLEARED
    channel.close()
    assert card.image.life_cycle == "operational"


def test_sampled_tears_through_pcscd(
    inserted: tuple[VirtualCard, VpcdBridge], vpcd_reader: str, card_keys: CardKeys
) -> None:
    card, bridge = inserted
    channel = pcsc_channel(vpcd_reader)
    personalise(channel, card_keys)
    write_purchase(channel, card_keys, read_snapshot(channel), opening_write())
    channel.close()
    issued = card.image.copy()
    write = PurchaseWrite(
        parameters=sample_parameters(CardType.PURCHASE, alarm1=30000),
        purse=Purse(amount=5000, purchase_count=2, mac=bytes(8)),
    )

    # Learn how many bytes the purchase writes, then pull the card at a sample of them.
    card.image = issued.copy()
    written = card.bytes_written
    channel = pcsc_channel(vpcd_reader)
    old = read_snapshot(channel)
    new = write_purchase(channel, card_keys, old, write)
    total = card.bytes_written - written
    channel.close()
    for n in sorted({0, 1, 2, total // 3, total // 2, total - 23, total - 2, total - 1}):
        bridge.remove()
        card.image = issued.copy()
        card.arm_tear(n)
        bridge.insert()
        channel = pcsc_channel(vpcd_reader)
        with pytest.raises(CardRemovedError):
            write_purchase(channel, card_keys, read_snapshot(channel), write)
        channel.close()
        assert bridge.power_lost
        bridge.insert()  # the customer puts the card back
        channel = pcsc_channel(vpcd_reader)
        torn = read_snapshot(channel)
        for name, state in torn.files.items():
            if state.status is not FileStatus.TORN:
                assert state.value in (old.files[name].value, new.files[name].value), (n, name)
        again = write_purchase(channel, card_keys, torn, write)
        assert again.purse is not None and again.purse.purchase_count == 2
        channel.close()
