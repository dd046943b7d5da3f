"""Selling to a card: the purchase-count rule, reconciliation, idempotency, reversal."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import pytest
from centre_support import Database, make_keystore
from centre_world import PRICE, World, connect

from cardcenter.cards.issuing import issue_card
from cardcenter.cards.reading import read_card
from cardcenter.core.db import transaction
from cardcenter.core.errors import CardRefusedError, ConflictError, InvalidInputError
from cardcenter.customers.services import open_account
from cardcenter.sales.desk import Desk
from cardcenter.sales.models import SaleStatus
from cardcenter.tariffs.models import TariffKind
from cardcenter.tariffs.services import add_tariff
from cardlayout.card.operations import personalise, write_purchase, write_tool_card
from cardlayout.card.snapshot import read_snapshot
from cardlayout.files import ANY_METER, PARAMETERS, WRITE_BACK, CardType, InsertionResult, Utility
from cardlayout.security.diversify import CardKeys


@pytest.fixture
def world(db: Database, keys: CardKeys) -> World:
    return World(db, keys)


def test_opening_card_with_first_purchase_is_loaded_by_the_meter(world: World) -> None:
    card = world.blank()
    result = world.issue(card, 10000)
    assert result["status"] == "written" and result["purchase_count"] == 1
    assert result["credit"] == "100.00"
    world.check_conservation()
    outcome = world.meter.insert(card)
    assert outcome.result is InsertionResult.LOADED and world.meter.state.remaining == 10000
    world.check_conservation()


def test_purchase_reconciles_the_write_back_and_goes_to_the_next_count(world: World) -> None:
    card = world.blank()
    world.issue(card, 10000)
    world.meter.insert(card)
    world.use(14)
    world.meter.insert(card)
    world.check_conservation()
    result = world.sell(card, 5000)
    assert result["purchase_count"] == 2 and not result["added_to_pending"]
    rec = result["reconciliation"]
    assert rec is not None and rec["delivered"] == "100.00"
    assert rec["consumed"] == f"{world.meter.state.cumulative_used / 100:.2f}"
    assert world.sales()[0].status is SaleStatus.DELIVERED
    world.check_conservation()
    assert world.meter.insert(card).result is InsertionResult.LOADED
    world.check_conservation()


def test_a_purchase_that_never_reached_the_meter_is_added_to(world: World) -> None:
    card = world.blank()
    world.issue(card, 10000)
    world.meter.insert(card)
    world.sell(card, 3000)  # count 2, not taken to the meter
    world.check_conservation()
    result = world.sell(card, 2000)
    assert result["purchase_count"] == 2 and result["added_to_pending"]
    assert result["card_amount"] == "50.00"
    world.check_conservation()
    outcome = world.meter.insert(card)
    assert outcome.result is InsertionResult.LOADED and outcome.loaded == 5000
    world.check_conservation()


def test_a_repeated_request_id_returns_the_first_result(world: World) -> None:
    card = world.blank()
    world.issue(card, 10000)
    first = world.sell(card, 3000, "till-7-0001")
    again = world.sell(card, 3000, "till-7-0001")
    assert again["sale"] == first["sale"] and again["replayed"]
    assert len(world.sales()) == 2
    with pytest.raises(ConflictError, match=r"was a sale of 30\.00, not 40\.00"):
        world.sell(card, 4000, "till-7-0001")
    assert len(world.sales()) == 2
    world.check_conservation()


def test_a_tariff_version_added_while_the_desk_is_open_prices_the_next_sale(
    world: World,
) -> None:
    """The desk keeps tariff versions it has loaded, never which one is in force."""
    card = world.blank()
    world.issue(card, 10000)  # the desk has loaded version 1
    with transaction(world.db.sessions) as session:
        add_tariff(
            session, "flat", TariffKind.FLAT, {"rate_prices": [PRICE * 2]},
            active_from=world.now, tax_rate=1000, now=world.now,
        )  # fmt: skip
    result = world.sell(card, 11000)
    assert result["breakdown"]["tariff"] == "flat v2"
    assert result["tax"] != "0.00" and result["credit"] != "110.00"
    world.meter.insert(card)
    current = world.meter.state.current_tariff
    assert current is not None and current.rate_prices == (PRICE * 2,)
    world.check_conservation()


def test_a_sale_confirmed_meanwhile_is_not_confirmed_twice(world: World) -> None:
    """The card was written, then recovered at another desk before this one confirmed."""
    card = world.blank()
    world.issue(card, 10000)
    reading = read_card(connect(card), world.keys)
    started = world.desk.begin_sale(reading, 3000, "slow-desk")
    assert not isinstance(started, dict)
    write_purchase(connect(card), world.keys, reading.snapshot, started.write)
    assert world.desk.recover(connect(card))["settled"] == "confirmed"
    with pytest.raises(ConflictError, match="settled by another desk"):
        world.desk.finish_sale(started)
    again = world.sell(card, 3000, "slow-desk")
    assert again["sale"] == started.sale_id and again["status"] == "written"
    world.check_conservation()


def test_quote_changes_nothing(world: World) -> None:
    card = world.blank()
    world.issue(card, 10000)
    world.meter.insert(card)
    world.use(7)
    world.meter.insert(card)
    before = world.sales()
    quote = world.desk.quote(connect(card), 4000)
    assert quote["status"] == "quote" and quote["credit"] == "40.00"
    assert [(s.id, s.status) for s in world.sales()] == [(s.id, s.status) for s in before]
    result = world.sell(card, 4000)
    assert result["reconciliation"] is not None  # the quote did not swallow the write-back


def test_amount_must_be_positive(world: World) -> None:
    card = world.blank()
    world.issue(card, 10000)
    with pytest.raises(InvalidInputError, match="amount"):
        world.sell(card, 0)


def test_a_stale_copy_of_a_card_is_refused(world: World) -> None:
    card = world.blank()
    world.issue(card, 10000)
    stale = copy.deepcopy(card)
    world.sell(card, 1000)
    with pytest.raises(ConflictError, match="stale"):
        world.sell(stale, 1000)
    world.check_conservation()


def test_hoarding_limit_refuses_a_sale_the_meter_would_refuse(db: Database, keys: CardKeys) -> None:
    world = World(db, keys, hoarding_limit=15000)
    card = world.blank()
    world.issue(card, 10000)
    with pytest.raises(InvalidInputError, match="hoarding limit"):
        world.sell(card, 6000)
    world.sell(card, 5000)


def test_a_desk_sells_after_its_first_request_was_refused(db: Database, keys: CardKeys) -> None:
    """The refused request loaded the operator and the tariff, then rolled back."""
    world = World(db, keys, hoarding_limit=15000)
    card = world.blank()
    world.issue(card, 10000)
    world.desk = Desk(db.sessions, keys, operator="bob", site="HQ", clock=world.clock)
    with pytest.raises(InvalidInputError, match="hoarding limit"):
        world.sell(card, 6000)
    assert world.sell(card, 5000)["status"] == "written"
    world.check_conservation()


def test_reverse_a_sale_that_has_not_reached_the_meter(world: World) -> None:
    card = world.blank()
    world.issue(card, 10000)
    world.meter.insert(card)
    sale = world.sell(card, 3000)
    result = world.desk.reverse(connect(card), sale["sale"], "customer changed mind")
    assert result["status"] == "reversed"
    world.check_conservation()
    outcome = world.meter.insert(card)
    assert outcome.loaded == 0
    world.check_conservation()


def test_a_sale_that_reached_the_meter_cannot_be_reversed(world: World) -> None:
    card = world.blank()
    world.issue(card, 10000)
    world.meter.insert(card)
    sale = world.sell(card, 3000)
    world.meter.insert(card)
    with pytest.raises(ConflictError, match="reached the meter"):
        world.desk.reverse(connect(card), sale["sale"])
    world.check_conservation()


def test_replacement_card_carries_credit_the_lost_card_never_delivered(world: World) -> None:
    lost = world.blank()
    world.issue(lost, 10000)
    world.meter.insert(lost)
    world.use(7)
    world.meter.insert(lost)
    world.sell(lost, 3000)  # count 2 on the lost card only
    world.check_conservation()
    new = world.blank()
    result = world.replace(new)
    assert result["purchase_count"] == 2 and result["carried"] == "30.00"
    world.check_conservation()
    outcome = world.meter.insert(new)
    assert outcome.result is InsertionResult.LOADED and outcome.loaded == 3000
    world.check_conservation()
    refused = world.meter.insert(lost)
    assert not refused.accepted
    with pytest.raises(CardRefusedError, match="lost"):
        world.sell(lost, 1000)
    world.sell(new, 1000)
    world.check_conservation()


# -- forged, foreign and odd cards ------------------------------------------------------


def test_a_card_of_another_system_is_refused(world: World, tmp_path: Path) -> None:
    card = world.blank()
    world.issue(card, 10000)
    with (
        make_keystore(tmp_path / "other.json") as store,
        pytest.raises(CardRefusedError, match="forged or from another system"),
    ):
        read_card(connect(card), CardKeys(store))


def test_a_write_back_copied_from_another_card_is_refused(world: World) -> None:
    first, second = world.blank(), world.blank()
    world.issue(first, 10000)
    world.meter.insert(first)  # first now carries a genuine write-back
    with transaction(world.db.sessions) as session:
        other = open_account(session, name="Zhang San", meter_no="000099990000", category_id=1)
        other_no = other.customer_no
    issue_card(world.desk, connect(second), other_no, 5000)
    genuine = first.image.dfs[Utility.ELECTRICITY.df].efs[WRITE_BACK.fid].data
    second.image.dfs[Utility.ELECTRICITY.df].efs[WRITE_BACK.fid].data[:] = genuine
    before = world.sales()
    with pytest.raises(CardRefusedError, match="forged or was copied"):
        world.sell(second, 1000)
    assert [(s.id, s.status) for s in world.sales()] == [(s.id, s.status) for s in before]


def test_a_tool_card_is_not_sold_to(world: World) -> None:
    card = world.blank()
    channel = connect(card)
    personalise(channel, world.keys, card_type=CardType.READING)
    params = dataclasses.replace(
        PARAMETERS.examples[0].value, card_type=CardType.READING, meter_no=ANY_METER
    )
    write_tool_card(channel, world.keys, read_snapshot(channel), params)
    with pytest.raises(CardRefusedError, match="tool card"):
        world.sell(card, 1000)


def test_a_blank_card_is_not_sold_to(world: World) -> None:
    with pytest.raises(CardRefusedError, match="blank"):
        world.sell(world.blank(), 1000)
