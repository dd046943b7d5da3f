"""Parameter and tariff changes reaching the meter, meter swaps and account closing."""

from __future__ import annotations

from datetime import timedelta

import pytest
from centre_support import Database
from centre_world import PRICE, Meter, World, connect

from cardcenter.core.db import transaction
from cardcenter.core.errors import CardRefusedError, ConflictError, InvalidInputError
from cardcenter.customers.lifecycle import close_account, swap_meter
from cardcenter.customers.models import Customer
from cardcenter.customers.services import change_parameters
from cardcenter.operators.models import Operator, Role
from cardcenter.operators.services import NotAllowedError
from cardcenter.sales import ledger
from cardcenter.sales.models import SaleKind
from cardcenter.tariffs.models import TariffKind
from cardcenter.tariffs.services import add_tariff
from cardlayout.files import InsertionResult, UpdateFlags
from cardlayout.security.diversify import CardKeys
from cardlayout.vcard.cos import VirtualCard

NEW_METER = "000087654321"


@pytest.fixture
def world(db: Database, keys: CardKeys) -> World:
    return World(db, keys)


def opened(world: World) -> VirtualCard:
    card = world.blank()
    world.issue(card, 10000)
    world.meter.insert(card)
    return card


def customer_of(world: World, session) -> Customer:  # type: ignore[no-untyped-def]
    return session.get_one(Customer, world.customer_id)


def test_parameter_change_reaches_the_meter_with_the_next_card(world: World) -> None:
    card = opened(world)
    assert world.meter.state.parameters.alarm1 == 2000
    with transaction(world.db.sessions) as session:
        change_parameters(session, customer_of(world, session), alarm1=5000, overdraft_limit=1000)
    world.sell(card, 1000)
    world.meter.insert(card)
    params = world.meter.state.parameters
    assert (params.alarm1, params.overdraft_limit) == (5000, 1000)
    # once the meter confirmed the version, the next card no longer flags it
    world.use(1)
    world.meter.insert(card)
    world.sell(card, 1000)
    from cardcenter.cards.reading import read_card

    reading = read_card(connect(card), world.keys)
    assert reading.parameters is not None
    assert UpdateFlags.PARAMETERS not in reading.parameters.update_flags


def test_bad_parameter_values_are_refused_and_change_nothing(world: World) -> None:
    with transaction(world.db.sessions) as session:
        customer = customer_of(world, session)
        version = customer.parameter_version
        with pytest.raises(InvalidInputError, match="alarm2"):
            change_parameters(session, customer, alarm1=1000, alarm2=3000)
        with pytest.raises(InvalidInputError, match="friendly_start_hour"):
            change_parameters(session, customer, friendly_start_hour=24)
        assert customer.parameter_version == version


def test_a_scheduled_tariff_travels_as_the_backup_set_and_the_meter_switches(
    world: World,
) -> None:
    card = opened(world)
    switch = world.now + timedelta(days=3)
    with transaction(world.db.sessions) as session:
        add_tariff(
            session, "flat", TariffKind.FLAT, {"rate_prices": [PRICE * 2]},
            active_from=switch, now=world.now,
        )  # fmt: skip
    world.sell(card, 5000)
    world.meter.insert(card)
    backup = world.meter.state.backup_tariff
    assert backup is not None and backup.rate_prices == (PRICE * 2,)
    world.use(5)  # crosses the switch time: the meter bills the new price
    world.meter.insert(card)
    current = world.meter.state.current_tariff
    assert current is not None and current.rate_prices == (PRICE * 2,)
    result = world.sell(card, 1000)
    assert result["reconciliation"]["findings"] == []  # the charge fits the two prices
    world.check_conservation()


def test_swap_meter_carries_the_balance_to_the_new_meter(world: World) -> None:
    card = opened(world)
    world.use(5)
    world.sell(card, 3000)
    world.meter.insert(card)
    world.use(5)
    world.meter.insert(card)  # the final reading of the old meter
    balance = world.meter.state.remaining
    result = swap_meter(world.desk, connect(card), NEW_METER, request_id="swap-1")
    assert result["kind"] == SaleKind.CARRY_OVER and result["purchase_count"] == 1
    assert result["card_amount"] == f"{balance / 100:.2f}"
    new = Meter(world.keys, NEW_METER)
    outcome = new.insert(card)
    assert outcome.result is InsertionResult.LOADED and new.state.remaining == balance
    assert world.meter.insert(card).result is InsertionResult.WRONG_METER
    world.later(1)
    world.meter = new
    after = world.sell(card, 1000)
    assert after["meter_no"] == NEW_METER and after["purchase_count"] == 2
    assert new.insert(card).loaded == 1000
    with world.db.sessions() as session:
        books = sum(
            ledger.balance(session, account(world.customer_id))
            for account in (ledger.meter, ledger.consumed, ledger.transit)
        )
    paid = sum(s.credit for s in world.sales() if s.kind is not SaleKind.CARRY_OVER)
    assert books == paid


def test_close_account_refunds_the_meter_credit_and_retires_the_card(world: World) -> None:
    card = opened(world)
    world.use(5)
    world.meter.insert(card)
    remaining = world.meter.state.remaining
    result = close_account(world.desk, connect(card), "moved away")
    assert result["refund"] == f"{remaining / 100:.2f}"
    with world.db.sessions() as session:
        assert ledger.balance(session, ledger.meter(world.customer_id)) == 0
        assert ledger.balance(session, ledger.transit(world.customer_id)) == 0
    with pytest.raises(CardRefusedError, match="closed"):
        world.sell(card, 1000)


def test_close_needs_the_final_write_back(world: World) -> None:
    card = opened(world)
    world.use(2)
    world.meter.insert(card)
    world.sell(card, 1000)  # the card has not been in the meter since
    with pytest.raises(ConflictError, match="insert it into meter"):
        close_account(world.desk, connect(card))
    world.meter.insert(card)
    close_account(world.desk, connect(card))


def test_a_cashier_may_not_reverse_replace_swap_or_close(world: World) -> None:
    card = opened(world)
    with transaction(world.db.sessions) as session:
        session.add(Operator(username="carol", name="Carol", role=Role.CASHIER, site="HQ"))
    world.desk.operator = "carol"
    sale = world.sell(card, 1000)  # cashiers sell
    with pytest.raises(NotAllowedError, match="supervisor"):
        world.desk.reverse(connect(card), sale["sale"])
    with pytest.raises(NotAllowedError, match="supervisor"):
        world.replace(world.blank())
    with pytest.raises(NotAllowedError, match="supervisor"):
        close_account(world.desk, connect(card))
