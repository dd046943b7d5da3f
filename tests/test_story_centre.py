"""The billing centre's whole story through pcscd, as issue 4 asks, with conservation checked.

Issue → meter insert → a month of use → purchase with reconciliation → lost
card → replacement → purchase; every card operation of the centre *and* the
meter goes through pcscd and the vpcd virtual reader, the path a USB reader
takes. After every step: paid = on the meter + consumed + in transit,
taken from the meter model's own registers.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from centre_support import Database
from centre_world import World

from cardcenter.core.errors import CardRefusedError
from cardcenter.sales.models import SaleStatus
from cardlayout.files import InsertionResult
from cardlayout.security.diversify import CardKeys
from cardlayout.transport.channel import CardChannel
from cardlayout.transport.pcsc import PcscTransport
from cardlayout.vcard.cos import VirtualCard
from cardlayout.vcard.vpcd import VpcdBridge

pytestmark = pytest.mark.pcsc


class Reader:
    """One vpcd reader: puts the wanted virtual card in it, one channel open at a time."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.bridge: VpcdBridge | None = None
        self.card: VirtualCard | None = None
        self.channel: CardChannel | None = None

    def connect(self, card: VirtualCard) -> CardChannel:
        if self.channel is not None:
            self.channel.close()
            self.channel = None
        if self.card is not card:
            if self.bridge is not None:
                self.bridge.remove()
            self.bridge = VpcdBridge(card, port=35963)
            self.bridge.insert()
            self.card = card
        self.channel = CardChannel(PcscTransport(self.name, timeout=10))
        self.channel.connect()
        return self.channel

    def put_back(self) -> None:
        """The customer puts the pulled card back into the reader."""
        if self.channel is not None:
            self.channel.close()
            self.channel = None
        assert self.bridge is not None and self.bridge.power_lost
        self.bridge.insert()

    def close(self) -> None:
        if self.channel is not None:
            self.channel.close()
        if self.bridge is not None:
            self.bridge.remove()


@pytest.fixture
def reader(vpcd_reader: str) -> Iterator[Reader]:
    r = Reader(vpcd_reader)
    try:
        yield r
    finally:
        r.close()


def test_issue_use_purchase_loss_replacement_purchase(
    db: Database, keys: CardKeys, reader: Reader
) -> None:
    world = World(db, keys, tax_rate=1300, connect=reader.connect)
    card = world.blank()

    opened = world.issue(card, 11300)  # 113.00 paid, 13 % tax included: 100.00 credit
    assert (opened["credit"], opened["tax"]) == ("100.00", "13.00")
    world.check_conservation()

    assert world.meter.insert(card).result is InsertionResult.LOADED
    world.check_conservation()

    world.use(30)
    assert world.meter.insert(card).result is InsertionResult.NOTHING_TO_LOAD
    world.check_conservation()

    sale = world.sell(card, 5650)  # 50.00 credit
    rec = sale["reconciliation"]
    assert rec is not None and rec["delivered"] == "100.00" and rec["energy"] > 0
    assert rec["findings"] == []
    assert sale["purchase_count"] == 2 and not sale["added_to_pending"]
    world.check_conservation()
    assert world.meter.insert(card).loaded == 5000
    world.check_conservation()

    world.use(10)
    world.sell(card, 2260)  # 20.00 credit, count 3, never taken to the meter
    world.check_conservation()

    # the card is lost with purchase 3 on it; the replacement carries it
    new = world.blank()
    replaced = world.replace(new)
    assert replaced["purchase_count"] == 3 and replaced["carried"] == "20.00"
    world.check_conservation()
    assert world.meter.insert(new).loaded == 2000
    world.check_conservation()
    refused = world.meter.insert(card)
    assert not refused.accepted
    with pytest.raises(CardRefusedError, match="lost"):
        world.sell(card, 1130)

    world.use(5)
    last = world.sell(new, 1130)
    assert last["purchase_count"] == 4 and last["reconciliation"] is not None
    world.check_conservation()
    assert world.meter.insert(new).loaded == 1000
    world.check_conservation()
    assert {s.status for s in world.sales()} == {SaleStatus.DELIVERED, SaleStatus.WRITTEN}


def test_a_card_pulled_mid_sale_through_pcsc_is_finished_by_repeating_the_request(
    db: Database, keys: CardKeys, reader: Reader
) -> None:
    """A sample of tears on the real path: pcscd reports the pulled card, nothing is lost."""
    from cardcenter.core.errors import SaleInterruptedError

    world = World(db, keys, connect=reader.connect)
    card = world.blank()
    world.issue(card, 10000)
    world.meter.insert(card)
    for n, tear_at in enumerate((3, 70, 140)):  # early, middle and late in the write
        request = f"pcsc-tear-{n}"
        card.arm_tear(tear_at)
        with pytest.raises(SaleInterruptedError, match=request):
            world.sell(card, 1000, request)
        card.disarm_tear()
        reader.put_back()
        result = world.sell(card, 1000, request)
        assert result["status"] == "written"
        world.check_conservation()
        assert world.meter.insert(card).loaded == 1000
        world.check_conservation()
