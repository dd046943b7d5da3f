"""A meter taking cards: the purchase-count rule to the letter, and its attacks.

Cards are real virtual cards written by the card API as the centre writes
them; the meter reads them through the same channel it uses through PC/SC.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import pytest

from cardlayout.card.operations import (
    PurchaseWrite,
    personalise,
    verified_history,
    verified_write_back,
    write_purchase,
    write_tool_card,
)
from cardlayout.card.snapshot import FileStatus, read_snapshot
from cardlayout.errors import CardRemovedError
from cardlayout.files import (
    ANY_METER,
    PARAMETERS,
    PURSE,
    TARIFF_SET_1,
    WRITE_BACK,
    CardType,
    EventCode,
    InsertionResult,
    Parameters,
    Purse,
    UpdateFlags,
    UserType,
)
from cardlayout.security.diversify import CardKeys
from cardlayout.security.keystore import init_master_keys, open_keystore
from cardlayout.transport.channel import CardChannel
from cardlayout.transport.inprocess import InProcessTransport
from cardlayout.vcard.cos import VirtualCard, new_image
from cardlayout.vcard.image import CardImage
from cardmeter.insertion import Insertion, Outcome
from cardmeter.registers import MeterState
from cardmeter.security import SecurityModule

METER = "000012345678"
CUSTOMER = "310101000042"
SERIAL = bytes.fromhex("5A000000000000A1")
SERIAL_2 = bytes.fromhex("5A000000000000A2")


def make_keys(path: Path) -> CardKeys:
    store = open_keystore(str(path), passphrase="meter tests", create=True, scrypt_n=2**10)
    init_master_keys(store)
    return CardKeys(store)


@pytest.fixture
def keys(tmp_path: Path) -> CardKeys:
    return make_keys(tmp_path / "keys.json")


@pytest.fixture
def sam(keys: CardKeys) -> SecurityModule:
    return SecurityModule.provision(keys, METER)


def params(card_type: CardType = CardType.OPENING, **changes: object) -> Parameters:
    base = PARAMETERS.examples[0].value
    fields: dict[str, object] = {
        "card_type": card_type,
        "meter_no": METER,
        "customer_no": CUSTOMER,
        "user_type": UserType.SINGLE_RATE,
        "update_flags": UpdateFlags.PARAMETERS | UpdateFlags.CURRENT_TOU,
        "hoarding_limit": 1_000_000,
        "alarm1": 2000,
        "alarm2": 1000,
        "close_allow_threshold": 0,
        "tariff_switch_time": None,
        "load_limit": None,
        **changes,
    }
    return dataclasses.replace(base, **fields)


def connect(card: VirtualCard) -> CardChannel:
    channel = CardChannel(InProcessTransport(card))
    channel.connect()
    return channel


class Centre:
    """The centre's side of the story, through the card API."""

    def __init__(self, keys: CardKeys) -> None:
        self.keys = keys

    def card(self, serial: bytes = SERIAL) -> VirtualCard:
        card = VirtualCard(new_image(serial))
        personalise(connect(card), self.keys)
        return card

    def sell(
        self,
        card: VirtualCard,
        amount: int,
        count: int,
        card_type: CardType = CardType.PURCHASE,
        *,
        clear: bool = True,
        bind: bool = False,
        **changes: object,
    ) -> None:
        channel = connect(card)
        write_purchase(
            channel,
            self.keys,
            read_snapshot(channel),
            PurchaseWrite(
                parameters=params(card_type, **changes),
                purse=Purse(amount=amount, purchase_count=count),
                tariff_set_1=TARIFF_SET_1.examples[1].value,
                clear_write_back=clear,
                bind_meter=bind,
            ),
        )

    def open_account(
        self, amount: int = 10000, serial: bytes = SERIAL, **changes: object
    ) -> VirtualCard:
        card = self.card(serial)
        self.sell(card, amount, 1, CardType.OPENING, bind=True, **changes)
        return card


@pytest.fixture
def centre(keys: CardKeys) -> Centre:
    return Centre(keys)


class Meter:
    """A meter whose every save is kept, as its non-volatile memory would be."""

    def __init__(self, sam: SecurityModule) -> None:
        self.sam = sam
        self.state = MeterState(meter_no=METER)
        self.saved: MeterState = copy.deepcopy(self.state)

    def save(self, state: MeterState) -> None:
        self.saved = copy.deepcopy(state)

    def insert(self, card: VirtualCard, step: object = None) -> Outcome:
        return Insertion(self.state, self.sam, self.save, step=step).take(connect(card))  # type: ignore[arg-type]

    def power_cycle(self) -> None:
        """Lose RAM: the meter comes back from what it last saved."""
        self.state = copy.deepcopy(self.saved)


@pytest.fixture
def meter(sam: SecurityModule) -> Meter:
    return Meter(sam)


def card_write_back(keys: CardKeys, card: VirtualCard):  # type: ignore[no-untyped-def]
    return verified_write_back(keys, read_snapshot(connect(card)))


# -- the count rule, row by row ----------------------------------------------------


def test_opening_card_binds_and_loads(centre: Centre, meter: Meter, keys: CardKeys) -> None:
    card = centre.open_account(10000)
    outcome = meter.insert(card)
    assert outcome.accepted and outcome.result is InsertionResult.LOADED
    assert (outcome.loaded, outcome.remaining) == (10000, 10000)
    st = meter.state
    assert (st.customer_no, st.card_serial, st.last_purchase_count) == (CUSTOMER, SERIAL, 1)
    assert st.pending is None and st.cumulative_purchased == 10000
    wb = card_write_back(keys, card)
    assert wb is not None and (wb.purchase_count, wb.remaining_amount) == (1, 10000)
    assert wb.insertion_result is InsertionResult.LOADED
    snapshot = read_snapshot(connect(card))
    history = verified_history(keys, snapshot, wb)
    assert history is not None and history.cumulative_purchased == 10000


def test_equal_count_loads_nothing_and_writes_back(
    centre: Centre, meter: Meter, keys: CardKeys
) -> None:
    card = centre.open_account(10000)
    meter.insert(card)
    again = meter.insert(card)
    assert not again.accepted and again.result is InsertionResult.NOTHING_TO_LOAD
    assert meter.state.remaining == 10000 and again.written_back
    wb = card_write_back(keys, card)
    assert wb is not None and wb.insertion_result is InsertionResult.NOTHING_TO_LOAD


def test_next_purchase_after_the_centre_cleared_the_write_back(
    centre: Centre, meter: Meter
) -> None:
    card = centre.open_account(10000)
    meter.insert(card)
    centre.sell(card, 5000, 2)
    outcome = meter.insert(card)
    assert outcome.result is InsertionResult.LOADED and meter.state.remaining == 15000
    assert meter.state.last_purchase_count == 2


def test_count_one_higher_but_write_back_not_cleared_is_refused(
    centre: Centre, meter: Meter
) -> None:
    card = centre.open_account(10000)
    meter.insert(card)
    centre.sell(card, 5000, 2, clear=False)
    outcome = meter.insert(card)
    assert outcome.result is InsertionResult.WRITE_BACK_NOT_EMPTY and not outcome.accepted
    assert "write-back" in outcome.reason and meter.state.remaining == 10000


def test_count_two_higher_is_refused(centre: Centre, meter: Meter) -> None:
    card = centre.open_account(10000)
    meter.insert(card)
    centre.sell(card, 5000, 3)
    outcome = meter.insert(card)
    assert outcome.result is InsertionResult.COUNT_TOO_HIGH and meter.state.remaining == 10000
    assert meter.state.illegal_card_count == 0  # a reason, not an attack


def test_count_lower_is_refused(centre: Centre, meter: Meter) -> None:
    card = centre.open_account(10000)
    meter.insert(card)
    meter.state.last_purchase_count = 5
    centre.sell(card, 5000, 4)
    outcome = meter.insert(card)
    assert outcome.result is InsertionResult.COUNT_LOWER and meter.state.remaining == 10000


def test_hoarding_limit(centre: Centre, meter: Meter) -> None:
    card = centre.open_account(10000, hoarding_limit=12000)
    meter.insert(card)
    centre.sell(card, 5000, 2, hoarding_limit=12000)
    outcome = meter.insert(card)
    assert outcome.result is InsertionResult.HOARDING_LIMIT and meter.state.remaining == 10000
    assert meter.state.last_purchase_count == 1


# -- binding, foreign, forged and replayed cards -----------------------------------------


def test_card_of_another_meter_is_illegal(centre: Centre, meter: Meter) -> None:
    card = centre.card()
    centre.sell(card, 10000, 1, CardType.OPENING, bind=True, meter_no="000099999999")
    outcome = meter.insert(card)
    assert outcome.result is InsertionResult.WRONG_METER and not outcome.written_back
    assert meter.state.illegal_card_count == 1 and not meter.state.opened
    assert meter.state.events[-1].code is EventCode.ILLEGAL_CARD


def test_purchase_card_on_an_unopened_meter_is_refused(centre: Centre, meter: Meter) -> None:
    card = centre.card()
    centre.sell(card, 10000, 1, CardType.PURCHASE, bind=True)
    assert meter.insert(card).result is InsertionResult.WRONG_CUSTOMER
    assert meter.state.remaining == 0


def test_another_customers_card_and_another_card_are_illegal(centre: Centre, meter: Meter) -> None:
    meter.insert(centre.open_account(10000))
    stranger = centre.card(SERIAL_2)
    centre.sell(stranger, 10000, 2, CardType.PURCHASE, bind=True, customer_no="310101000099")
    assert meter.insert(stranger).result is InsertionResult.WRONG_CUSTOMER
    copycat = centre.card(SERIAL_2)
    centre.sell(copycat, 10000, 2, CardType.PURCHASE, bind=True)
    assert meter.insert(copycat).result is InsertionResult.WRONG_CARD
    assert meter.state.illegal_card_count == 2 and meter.state.remaining == 10000


def test_replacement_card_reregisters_and_the_old_card_is_refused(
    centre: Centre, meter: Meter
) -> None:
    old = centre.open_account(10000)
    meter.insert(old)
    new = centre.card(SERIAL_2)
    centre.sell(new, 3000, 2, CardType.REPLACEMENT, bind=True)
    outcome = meter.insert(new)
    assert outcome.result is InsertionResult.LOADED and meter.state.card_serial == SERIAL_2
    centre.sell(old, 5000, 3)
    assert meter.insert(old).result is InsertionResult.WRONG_CARD
    assert meter.state.remaining == 13000


def test_foreign_system_card_is_refused(tmp_path: Path, meter: Meter) -> None:
    foreign = Centre(make_keys(tmp_path / "foreign.json"))
    outcome = meter.insert(foreign.open_account(10000))
    assert not outcome.accepted and "forged or from another system" in outcome.reason
    assert meter.state.illegal_card_count == 1 and meter.state.remaining == 0


def test_altered_purse_is_refused(centre: Centre, meter: Meter, keys: CardKeys) -> None:
    card = centre.open_account(10000)
    meter.insert(card)
    centre.sell(card, 5000, 2)
    ef = card.image.dfs[0xDF01].efs[0x0002].data
    ef[4 + 2] += 1  # 5000 -> 5000 + 256: the amount's second-lowest byte
    ef[-2] = (ef[-2] + 1) & 0xFF  # and the frame checksum fixed
    outcome = meter.insert(card)
    assert outcome.result is InsertionResult.PURSE_MAC_BAD and meter.state.remaining == 10000
    assert meter.state.illegal_card_count == 1


def test_purse_replayed_from_an_earlier_sale_loads_nothing(centre: Centre, meter: Meter) -> None:
    card = centre.open_account(10000)
    old_purse = bytes(card.image.dfs[0xDF01].efs[0x0002].data)
    meter.insert(card)
    centre.sell(card, 5000, 2)
    meter.insert(card)
    card.image.dfs[0xDF01].efs[0x0002].data[:] = old_purse
    assert meter.insert(card).result is InsertionResult.COUNT_LOWER
    assert meter.state.remaining == 15000


def test_a_torn_or_blank_card_is_refused_and_changes_nothing(centre: Centre, meter: Meter) -> None:
    blank = centre.card()
    outcome = meter.insert(blank)
    assert not outcome.accepted and "cannot be read" in outcome.reason
    card = centre.open_account(10000)
    meter.insert(card)
    # The next sale writes write-back, tariff set, parameters (each frame plus its
    # start byte) and then the purse: pull the card 3 bytes into the purse.
    before_purse = sum(f.size + 1 for f in (WRITE_BACK, TARIFF_SET_1, PARAMETERS))
    card.arm_tear(before_purse + 3)
    with pytest.raises(CardRemovedError):
        centre.sell(card, 5000, 2)
    assert read_snapshot(connect(card)).state(PURSE).status is FileStatus.TORN
    before = copy.deepcopy(meter.state)
    image = card.image.to_json()
    outcome = meter.insert(card)
    assert not outcome.accepted and "torn" in outcome.reason and "service hall" in outcome.reason
    assert meter.state == before and card.image.to_json() == image


# -- tool cards ---------------------------------------------------------------------------


def tool_card(
    centre: Centre, kind: CardType, meter_no: str = ANY_METER, **changes: object
) -> VirtualCard:
    card = VirtualCard(new_image(SERIAL_2))
    channel = connect(card)
    personalise(channel, centre.keys, card_type=kind)
    write_tool_card(
        channel,
        centre.keys,
        read_snapshot(channel),
        params(kind, meter_no=meter_no, customer_no=ANY_METER, **changes),
        TARIFF_SET_1.examples[0].value,
    )
    return card


def test_parameter_setting_card_for_any_meter(centre: Centre, meter: Meter, keys: CardKeys) -> None:
    meter.insert(centre.open_account(10000))
    outcome = meter.insert(tool_card(centre, CardType.PARAMETER_SETTING, alarm1=4321))
    assert outcome.result is InsertionResult.PARAMETERS_ONLY
    taken = meter.state.parameters
    assert taken is not None and taken.alarm1 == 4321 and taken.customer_no == CUSTOMER
    assert meter.state.current_tariff == TARIFF_SET_1.examples[0].value


def test_reading_card_collects_without_a_purchase(
    centre: Centre, meter: Meter, keys: CardKeys
) -> None:
    meter.insert(centre.open_account(10000))
    card = tool_card(centre, CardType.READING, METER)
    outcome = meter.insert(card)
    assert outcome.result is InsertionResult.READ_ONLY and meter.state.remaining == 10000
    snapshot = read_snapshot(connect(card))
    wb = verified_write_back(keys, snapshot)
    assert wb is not None and wb.remaining_amount == 10000
    assert verified_history(keys, snapshot, wb) is not None


def test_test_clear_card_clears_events_and_illegal_count(centre: Centre, meter: Meter) -> None:
    meter.insert(centre.open_account(10000))
    meter.state.illegal_card_count = 3
    meter.state.tamper = True
    meter.insert(tool_card(centre, CardType.TEST_CLEAR))
    assert meter.state.illegal_card_count == 0 and not meter.state.tamper
    assert meter.state.remaining == 10000


def test_tool_card_for_another_meter_is_illegal(centre: Centre, meter: Meter) -> None:
    outcome = meter.insert(tool_card(centre, CardType.READING, "000099999999"))
    assert outcome.result is InsertionResult.WRONG_METER and meter.state.illegal_card_count == 1


# -- pulled cards and power loss ------------------------------------------------------------


def credit_on_meter(meter: Meter) -> int:
    st = meter.state
    return st.remaining + st.cumulative_used


def test_a_pull_at_every_byte_of_the_meters_write_loads_exactly_once(
    centre: Centre, sam: SecurityModule
) -> None:
    card = centre.open_account(10000)
    reference = Meter(sam)
    image: CardImage = card.image.copy()
    probe = VirtualCard(image.copy())
    reference.insert(probe)
    total = probe.bytes_written
    assert total > 100
    for n in range(total):
        meter = Meter(sam)
        card = VirtualCard(image.copy())
        card.arm_tear(n)
        with pytest.raises(CardRemovedError):
            meter.insert(card)
        meter.power_cycle()
        outcome = meter.insert(card)  # the customer tries again
        assert credit_on_meter(meter) == 10000, n
        assert meter.state.pending is None and meter.state.last_purchase_count == 1
        assert outcome.remaining == 10000
        assert read_snapshot(connect(card)).state(WRITE_BACK).status is FileStatus.OK


@pytest.mark.parametrize("step", ["saved", "card-written", "committed"])
def test_power_lost_after_each_step_loads_exactly_once(
    step: str, centre: Centre, meter: Meter
) -> None:
    card = centre.open_account(10000)

    def kill(name: str) -> None:
        if name == step:
            raise SystemExit("power lost")

    with pytest.raises(SystemExit):
        meter.insert(card, kill)
    meter.power_cycle()
    meter.insert(card)
    assert credit_on_meter(meter) == 10000 and meter.state.pending is None
    # and the next sale still works
    centre.sell(card, 5000, 2)
    assert meter.insert(card).result is InsertionResult.LOADED
    assert credit_on_meter(meter) == 15000


def test_centre_adds_to_a_purchase_whose_write_back_never_came(
    centre: Centre, meter: Meter
) -> None:
    """Pulled before the write-back: the centre sees a cleared write-back and
    adds the new money to the same purchase count; the meter loads the card's
    amount for that count once, not the old amount and then nothing."""
    card = centre.open_account(10000)
    card.arm_tear(0)
    with pytest.raises(CardRemovedError):
        meter.insert(card)
    meter.power_cycle()
    assert meter.state.pending is not None
    centre.sell(card, 15000, 1, CardType.OPENING)  # 10000 + 5000 on count 1
    outcome = meter.insert(card)
    assert outcome.result is InsertionResult.LOADED and credit_on_meter(meter) == 15000


def test_centre_saw_the_write_back_before_the_meter_committed(
    centre: Centre, meter: Meter, keys: CardKeys
) -> None:
    card = centre.open_account(10000)

    def kill(name: str) -> None:
        if name == "card-written":
            raise SystemExit("power lost")

    with pytest.raises(SystemExit):
        meter.insert(card, kill)
    meter.power_cycle()
    wb = card_write_back(keys, card)
    assert wb is not None and wb.purchase_count == 1  # the centre reconciles count 1 ...
    centre.sell(card, 5000, 2)  # ... and sells count 2
    outcome = meter.insert(card)
    assert outcome.result is InsertionResult.LOADED and credit_on_meter(meter) == 15000
    assert meter.state.last_purchase_count == 2


def test_a_pending_load_waits_for_its_own_user_card(centre: Centre, meter: Meter) -> None:
    """A reading card or a refused card must not commit someone's pending load
    (review finding): the centre may still add to that purchase."""
    card = centre.open_account(10000)
    card.arm_tear(0)
    with pytest.raises(CardRemovedError):
        meter.insert(card)
    meter.power_cycle()
    assert meter.state.pending is not None
    meter.insert(tool_card(centre, CardType.READING, METER))
    stranger = centre.card(SERIAL_2)
    centre.sell(stranger, 1, 1, CardType.OPENING, bind=True, customer_no="310101000099")
    assert meter.insert(stranger).result is InsertionResult.WRONG_CUSTOMER
    assert meter.state.pending is not None and credit_on_meter(meter) == 0
    centre.sell(card, 15000, 1, CardType.OPENING)  # the centre adds 5000 to purchase 1
    assert meter.insert(card).result is InsertionResult.LOADED
    assert credit_on_meter(meter) == 15000 and meter.state.pending is None


def test_a_test_card_does_not_act_as_the_user_card(centre: Centre, meter: Meter) -> None:
    meter.insert(centre.open_account(10000))
    meter.state.remaining = 0
    meter.state.relay_closed = False
    meter.state.trip_reason = "zero"
    meter.insert(tool_card(centre, CardType.TEST_CLEAR))
    assert not meter.state.relay_closed and not meter.state.overdraft_enabled
