"""A pulled card at every byte of every write (docs/card.md section 5).

Each sweep runs an operation once untorn to learn how many bytes it writes,
then again on a fresh copy of the card for every byte count, pulling the card
there. After each pull every file must read as its old value, its new value,
or torn (never a value that is neither), and running the operation again must
finish the job. This runs in-process; the PC/SC path tears a sample
(tests/cardlayout/test_pcsc_card.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest
from card_support import CUSTOMER_NO, METER_NO, SERIAL, connect, reconnect, sample_parameters

from cardlayout.card.operations import (
    PurchaseWrite,
    clear_write_back,
    open_meter_session,
    personalise,
    verified_write_back,
    write_meter_write_back,
    write_purchase,
    write_tool_card,
)
from cardlayout.card.snapshot import CardSnapshot, FileStatus, read_snapshot
from cardlayout.errors import CardRemovedError
from cardlayout.files import HISTORY, TARIFF_SET_1, WRITE_BACK, CardType, Purse, Utility
from cardlayout.security.diversify import CardKeys
from cardlayout.transport.channel import CardChannel
from cardlayout.vcard.cos import VirtualCard, new_image
from cardlayout.vcard.image import CardImage

Operation = Callable[[CardChannel], Any]


def written_units(image: CardImage, operation: Operation) -> int:
    card = VirtualCard(image.copy())
    operation(connect(card))
    return card.bytes_written


def sweep(
    image: CardImage,
    operation: Operation,
    check: Callable[[CardSnapshot, CardSnapshot, CardSnapshot], None],
) -> int:
    """Tear ``operation`` at every byte; ``check(old, new, torn)`` each result."""
    old = read_snapshot(connect(VirtualCard(image.copy())))
    reference = VirtualCard(image.copy())
    operation(connect(reference))
    new = read_snapshot(connect(reference))
    total = reference.bytes_written
    assert total > 0
    for n in range(total):
        card = VirtualCard(image.copy())
        channel = connect(card)
        card.arm_tear(n)
        with pytest.raises(CardRemovedError):
            operation(channel)
        torn = read_snapshot(reconnect(channel))
        check(old, new, torn)
        operation(channel)  # a second run finishes the job
        assert read_snapshot(channel).files.keys() == new.files.keys()
        for name, state in read_snapshot(channel).files.items():
            assert (state.status, state.value) == (new.files[name].status, new.files[name].value), (
                name
            )
    return total


def each_file_old_torn_or_new(
    old: CardSnapshot,
    new: CardSnapshot,
    torn: CardSnapshot,
    *,
    no_value: frozenset[FileStatus] = frozenset(),
) -> None:
    """Every file of ``torn`` is old, new, torn, or a state in ``no_value``."""
    for name, state in torn.files.items():
        if state.status is FileStatus.TORN or state.status in no_value:
            continue
        before, after = old.state(state.file), new.state(state.file)
        assert (state.status, state.value) in {
            (before.status, before.value),
            (after.status, after.value),
        }, f"{name} reads as neither its old nor its new content"


def test_purchase_torn_at_every_byte(card_keys: CardKeys, issued_image: CardImage) -> None:
    write = PurchaseWrite(
        parameters=sample_parameters(CardType.PURCHASE, alarm1=30000),
        purse=Purse(amount=5000, purchase_count=2, mac=bytes(8)),
        tariff_set_2=dataclasses.replace(TARIFF_SET_1.examples[1].value),
    )

    def operation(channel: CardChannel) -> None:
        write_purchase(channel, card_keys, read_snapshot(channel), write)

    def check(old: CardSnapshot, new: CardSnapshot, torn: CardSnapshot) -> None:
        each_file_old_torn_or_new(old, new, torn)
        # The purse is the commit: once it is new, everything else is new.
        if torn.purse == new.purse:
            for name in ("parameters", "tariff-set-2", "write-back"):
                assert torn.files[name].value == new.files[name].value

    assert sweep(issued_image, operation, check) > 300


def test_personalisation_torn_at_every_byte(card_keys: CardKeys) -> None:
    image = new_image(SERIAL)

    def operation(channel: CardChannel) -> None:
        personalise(channel, card_keys)

    def check(old: CardSnapshot, new: CardSnapshot, torn: CardSnapshot) -> None:
        # Files made but not yet written read blank: no value, and the next run writes them.
        each_file_old_torn_or_new(old, new, torn, no_value=frozenset({FileStatus.BLANK}))

    sweep(image, operation, check)


def test_meter_write_back_torn_at_every_byte(card_keys: CardKeys, issued_image: CardImage) -> None:
    wb = dataclasses.replace(
        WRITE_BACK.examples[0].value, meter_no=METER_NO, customer_no=CUSTOMER_NO, purchase_count=1
    )
    history = HISTORY.examples[0].value

    def operation(channel: CardChannel) -> None:
        session = open_meter_session(
            channel, card_keys.meter_card_key(METER_NO), Utility.ELECTRICITY
        )
        write_meter_write_back(session, card_keys.writeback_key(METER_NO), SERIAL, wb, history)

    def check(old: CardSnapshot, new: CardSnapshot, torn: CardSnapshot) -> None:
        each_file_old_torn_or_new(old, new, torn)
        # A write-back that reads as written always verifies: never a torn MAC'd value.
        if torn.state(WRITE_BACK).status is FileStatus.OK:
            assert verified_write_back(card_keys, torn) is not None
            assert torn.history == new.history  # history goes first

    sweep(issued_image, operation, check)


def test_write_back_clear_torn_at_every_byte(card_keys: CardKeys, issued_image: CardImage) -> None:
    card = VirtualCard(issued_image.copy())
    channel = connect(card)
    wb = dataclasses.replace(
        WRITE_BACK.examples[0].value, meter_no=METER_NO, customer_no=CUSTOMER_NO, purchase_count=1
    )
    session = open_meter_session(channel, card_keys.meter_card_key(METER_NO), Utility.ELECTRICITY)
    write_meter_write_back(session, card_keys.writeback_key(METER_NO), SERIAL, wb, None)

    def operation(channel: CardChannel) -> None:
        clear_write_back(channel, card_keys, read_snapshot(channel))

    sweep(card.image, operation, each_file_old_torn_or_new)


def test_tool_card_write_torn_at_every_byte(card_keys: CardKeys) -> None:
    card = VirtualCard(new_image(SERIAL))
    personalise(connect(card), card_keys, card_type=CardType.PARAMETER_SETTING)
    tariff = TARIFF_SET_1.examples[0].value

    def operation(channel: CardChannel) -> None:
        write_tool_card(
            channel,
            card_keys,
            read_snapshot(channel),
            sample_parameters(CardType.PARAMETER_SETTING),
            tariff,
            tariff,
        )

    sweep(card.image, operation, each_file_old_torn_or_new)
