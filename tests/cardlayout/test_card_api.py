"""The card API against the in-process virtual card: the stories and the attacks."""

from __future__ import annotations

import dataclasses

import pytest
from card_support import CUSTOMER_NO, METER_NO, SERIAL, connect, opening_write, sample_parameters

from cardlayout.apdu.status import AuthenticationFailedError
from cardlayout.card.operations import (
    CardStateError,
    PurchaseWrite,
    clear_write_back,
    open_meter_session,
    personalise,
    verified_history,
    verified_write_back,
    verify_purse,
    write_meter_write_back,
    write_purchase,
    write_tool_card,
)
from cardlayout.card.snapshot import FileStatus, read_snapshot
from cardlayout.errors import SecurityError
from cardlayout.files import (
    HISTORY,
    WRITE_BACK,
    CardType,
    Purse,
    Utility,
)
from cardlayout.security.diversify import CardKeys
from cardlayout.vcard.cos import VirtualCard, new_image
from cardlayout.vcard.image import CardImage


def meter_write_back(remaining: int = 9000, count: int = 1):  # type: ignore[no-untyped-def]
    wb = WRITE_BACK.examples[0].value
    return dataclasses.replace(
        wb,
        meter_no=METER_NO,
        customer_no=CUSTOMER_NO,
        remaining_amount=remaining,
        purchase_count=count,
    )


def test_blank_card_snapshot_is_not_personalised(blank_card: VirtualCard) -> None:
    snapshot = read_snapshot(connect(blank_card))
    assert snapshot.serial == SERIAL
    assert not snapshot.personalised and snapshot.files == {}


def test_personalise_makes_the_kind_files(blank_card: VirtualCard, card_keys: CardKeys) -> None:
    channel = connect(blank_card)
    assert personalise(channel, card_keys, utility=Utility.WATER) == SERIAL
    snapshot = read_snapshot(channel)
    assert snapshot.utility is Utility.WATER
    states = {name: st.status for name, st in snapshot.files.items()}
    assert states == {
        "parameters": FileStatus.BLANK,
        "purse": FileStatus.BLANK,
        "tariff-set-1": FileStatus.BLANK,
        "tariff-set-2": FileStatus.BLANK,
        "write-back": FileStatus.CLEARED,
        "history": FileStatus.CLEARED,
    }
    with pytest.raises(CardStateError, match="already personalised"):
        personalise(channel, card_keys, utility=Utility.WATER)


def test_a_card_personalised_elsewhere_is_refused(
    personalised_image: CardImage, card_keys: CardKeys
) -> None:
    channel = connect(VirtualCard(personalised_image))
    with pytest.raises(CardStateError, match="not a blank card"):
        personalise(channel, card_keys, utility=Utility.GAS)


def test_purchase_is_written_read_back_and_verifies_at_the_meter(
    personalised_image: CardImage, card_keys: CardKeys
) -> None:
    channel = connect(VirtualCard(personalised_image))
    after = write_purchase(channel, card_keys, read_snapshot(channel), opening_write(12345, 1))
    purse = after.purse
    params = after.parameters
    assert purse is not None and params is not None
    assert (purse.amount, purse.purchase_count) == (12345, 1)
    assert params.card_type is CardType.OPENING and params.meter_no == METER_NO
    verify_purse(purse, params, SERIAL, card_keys.purse_key(METER_NO))
    with pytest.raises(SecurityError, match="purse MAC"):
        verify_purse(
            dataclasses.replace(purse, amount=99999), params, SERIAL, card_keys.purse_key(METER_NO)
        )
    assert read_snapshot(channel).files == after.files


def test_a_purse_copied_to_another_card_fails_at_the_meter(
    card_keys: CardKeys, issued_image: CardImage
) -> None:
    """Replay: the purse MAC binds the card serial, so a copy is worthless."""
    original = read_snapshot(connect(VirtualCard(issued_image)))
    other = VirtualCard(new_image(bytes.fromhex("5A00000000000002")))
    channel = connect(other)
    personalise(channel, card_keys)
    write_purchase(channel, card_keys, read_snapshot(channel), opening_write(1, 1))
    other.image.dfs[0xDF01].efs[0x0002].data[:] = issued_image.dfs[0xDF01].efs[0x0002].data
    copied = read_snapshot(connect(other))
    assert copied.purse == original.purse
    assert copied.purse is not None and copied.parameters is not None
    with pytest.raises(SecurityError):
        verify_purse(copied.purse, copied.parameters, copied.serial, card_keys.purse_key(METER_NO))


def test_a_card_of_another_system_refuses_our_key(
    card_keys: CardKeys, other_keys: CardKeys
) -> None:
    card = VirtualCard(new_image(SERIAL))
    channel = connect(card)
    personalise(channel, other_keys)
    with pytest.raises(AuthenticationFailedError):
        write_purchase(channel, card_keys, read_snapshot(channel), opening_write())
    assert read_snapshot(channel).purse is None


class ForgedCard(VirtualCard):
    """An emulator that accepts any terminal cryptogram and answers garbage."""

    def _external_authenticate(self, c):  # type: ignore[no-untyped-def, override]
        from cardlayout.apdu.apdu import ResponseApdu

        self._ram.authenticated = c.p2
        return self._case4(bytes(16)) if c.le else ResponseApdu.status(0x9000)


def test_a_forged_card_is_caught_before_anything_is_written(
    card_keys: CardKeys, personalised_image: CardImage
) -> None:
    forged = ForgedCard(personalised_image)
    channel = connect(forged)
    before = forged.image.to_json()
    with pytest.raises(SecurityError, match="forged or belongs to another system"):
        write_purchase(channel, card_keys, read_snapshot(channel), opening_write())
    assert forged.image.to_json() == before


def test_meter_write_back_round_trip_and_tampering(
    card_keys: CardKeys, issued_image: CardImage
) -> None:
    card = VirtualCard(issued_image)
    channel = connect(card)
    session = open_meter_session(channel, card_keys.meter_card_key(METER_NO), Utility.ELECTRICITY)
    history = dataclasses.replace(HISTORY.examples[0].value, cumulative_purchased=10000)
    write_meter_write_back(
        session, card_keys.writeback_key(METER_NO), SERIAL, meter_write_back(), history
    )
    snapshot = read_snapshot(channel)
    wb = verified_write_back(card_keys, snapshot)
    assert wb is not None and wb.remaining_amount == 9000
    assert verified_history(card_keys, snapshot, wb) is not None

    # Someone raises the remaining amount and fixes the frame checksum: the MAC catches it.
    raw = bytearray(snapshot.state(WRITE_BACK).raw)
    raw[4 + 19 + 3] += 1
    raw[-2] = (raw[-2] + 1) & 0xFF
    card.image.dfs[0xDF01].efs[0x0005].data[:] = raw
    with pytest.raises(SecurityError, match="write-back MAC"):
        verified_write_back(card_keys, read_snapshot(connect(card)))


def test_a_meter_key_of_another_meter_cannot_write_back(
    card_keys: CardKeys, issued_image: CardImage
) -> None:
    channel = connect(VirtualCard(issued_image))
    with pytest.raises(AuthenticationFailedError):
        open_meter_session(channel, card_keys.meter_card_key("000099999999"), Utility.ELECTRICITY)


def test_clear_write_back(card_keys: CardKeys, issued_image: CardImage) -> None:
    channel = connect(VirtualCard(issued_image))
    session = open_meter_session(channel, card_keys.meter_card_key(METER_NO), Utility.ELECTRICITY)
    write_meter_write_back(
        session, card_keys.writeback_key(METER_NO), SERIAL, meter_write_back(), None
    )
    assert read_snapshot(channel).write_back is not None
    clear_write_back(channel, card_keys, read_snapshot(channel))
    snapshot = read_snapshot(channel)
    assert snapshot.state(WRITE_BACK).status is FileStatus.CLEARED
    assert verified_write_back(card_keys, snapshot) is None


def test_second_purchase_keeps_the_binding(card_keys: CardKeys, issued_image: CardImage) -> None:
    channel = connect(VirtualCard(issued_image))
    write = PurchaseWrite(
        parameters=sample_parameters(CardType.PURCHASE),
        purse=Purse(amount=5000, purchase_count=2, mac=bytes(8)),
    )
    after = write_purchase(channel, card_keys, read_snapshot(channel), write)
    assert after.purse is not None and after.purse.purchase_count == 2
    assert after.card_type is CardType.PURCHASE
    open_meter_session(channel, card_keys.meter_card_key(METER_NO), Utility.ELECTRICITY)


@pytest.mark.parametrize(
    ("kind", "files"),
    [
        (CardType.PARAMETER_SETTING, {"parameters", "tariff-set-1", "tariff-set-2", "write-back"}),
        (CardType.READING, {"parameters", "write-back", "history"}),
        (CardType.TEST_CLEAR, {"parameters", "write-back"}),
    ],
)
def test_tool_cards_carry_their_files(kind: CardType, files: set[str], card_keys: CardKeys) -> None:
    card = VirtualCard(new_image(SERIAL))
    channel = connect(card)
    personalise(channel, card_keys, card_type=kind)
    snapshot = read_snapshot(channel)
    after = write_tool_card(channel, card_keys, snapshot, sample_parameters(kind))
    assert after.card_type is kind
    assert set(read_snapshot(channel).files) == files
    with pytest.raises(CardStateError):
        write_tool_card(channel, card_keys, after, sample_parameters(CardType.PURCHASE))


def test_a_user_card_cannot_become_a_tool_card(
    card_keys: CardKeys, issued_image: CardImage
) -> None:
    channel = connect(VirtualCard(issued_image))
    with pytest.raises(CardStateError, match="opening card, not reading"):
        write_tool_card(
            channel, card_keys, read_snapshot(channel), sample_parameters(CardType.READING)
        )


def test_internal_authentication_tells_genuine_from_foreign(
    card_keys: CardKeys, other_keys: CardKeys, issued_image: CardImage
) -> None:
    from cardlayout.card.session import prove_card

    channel = connect(VirtualCard(issued_image))
    prove_card(channel, 1, card_keys.issuer_key(SERIAL), SERIAL, who="issuer key")
    prove_card(channel, 2, card_keys.meter_card_key(METER_NO), SERIAL, who="meter key")
    with pytest.raises(SecurityError, match="forged or belongs to another system"):
        prove_card(channel, 1, other_keys.issuer_key(SERIAL), SERIAL, who="issuer key")
    # A card that copies another card's serial into its ATR does not know its key.
    with pytest.raises(SecurityError):
        prove_card(channel, 1, card_keys.issuer_key(bytes(8)), bytes(8), who="issuer key")
