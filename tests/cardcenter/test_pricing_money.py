"""How a card sale is priced and planned: quote against sale, card against books.

Each test runs the centre's real desk against virtual cards and the cardmeter
model (tests/centre_world.py), so what the meter charges is the meter's own
arithmetic, not the centre's idea of it.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from centre_support import Database
from centre_world import START, World, connect
from sqlalchemy import select

from cardcenter.core.db import transaction
from cardcenter.core.errors import ConflictError, InvalidInputError
from cardcenter.customers.models import Customer
from cardcenter.customers.services import change_parameters
from cardcenter.reconciliation.models import Finding, FindingKind
from cardcenter.sales import ledger
from cardcenter.sales.models import SaleStatus
from cardcenter.tariffs.models import TariffKind
from cardcenter.tariffs.services import add_tariff
from cardlayout.files import InsertionResult, UserType
from cardlayout.security.diversify import CardKeys

SAME = (
    "tendered",
    "fixed_charge",
    "tax",
    "credit",
    "card_amount",
    "purchase_count",
    "added_to_pending",
    "breakdown",
)


def quote_then_sell(world: World, card: Any, amount: int) -> dict[str, Any]:
    """Quote ``amount``, sell it with nothing changed in between; they must agree."""
    quoted = world.desk.quote(connect(card), amount)
    sold = world.sell(card, amount)
    assert {k: quoted[k] for k in SAME} == {k: sold[k] for k in SAME}
    return sold


def add_version(world: World, kind: TariffKind, structure: dict[str, Any], **kw: Any) -> None:
    with transaction(world.db.sessions) as session:
        add_tariff(session, "flat", kind, structure, category="residential", now=world.now, **kw)


def own_tariff(world: World, name: str, kind: TariffKind, structure: dict, **kw: Any) -> None:
    """Give the customer a tariff of their own (first version in force since before START)."""
    with transaction(world.db.sessions) as session:
        version = add_tariff(
            session,
            name,
            kind,
            structure,
            active_from=START - timedelta(days=60),
            now=world.now,
            **kw,
        )
        session.get_one(Customer, world.customer_id).tariff_id = version.tariff_id


def findings(world: World, kind: FindingKind | None = None) -> list[str]:
    with world.db.sessions() as session:
        rows = session.scalars(select(Finding).order_by(Finding.id))
        return [f.detail for f in rows if kind is None or f.kind is kind]


def fixed_world(db: Database, keys: CardKeys, **kw: Any) -> World:
    """A world whose tariff (from START) has 13 % tax and 5.00 a month of fixed charge."""
    world = World(db, keys, **kw)
    add_version(
        world,
        TariffKind.FLAT,
        {"rate_prices": [5283]},
        active_from=START,
        tax_rate=1300,
        fixed_monthly=500,
    )
    return world


# ---------------------------------------------------------------- 1. quote = sale


@pytest.mark.parametrize(
    ("kind", "structure"),
    [
        (TariffKind.FLAT, {"rate_prices": [5283]}),
        (TariffKind.TOU, {"rate_prices": [3000, 6000, 9000], "periods": [[0, 0, 1], [8, 0, 2]]}),
        (TariffKind.STEPPED, {"tier_thresholds": [216000], "tier_prices": [5283, 5783]}),
        (
            TariffKind.TOU_STEPPED,
            {
                "rate_prices": [3000, 6000],
                "periods": [[0, 0, 1], [8, 0, 2]],
                "tier_thresholds": [216000],
                "tier_prices": [0, 500],
            },
        ),
    ],
)
def test_quote_equals_sale_for_every_kind_with_rounding(
    db: Database, keys: CardKeys, kind: TariffKind, structure: dict
) -> None:
    world = World(db, keys)
    own_tariff(world, f"own-{kind.value}", kind, structure, tax_rate=1300, fixed_monthly=333)
    card = world.blank()
    world.issue(card, 10000)  # pays 2026-01's fixed charge
    world.meter.insert(card)
    for amount in (1, 2, 3, 7, 113, 1001, 9999, 10001):  # tax 13 %: rounding both ways
        world.use(1)
        world.meter.insert(card)
        sold = quote_then_sell(world, card, amount)
        tax, credit = (int(sold[k].replace(".", "")) for k in ("tax", "credit"))
        assert tax + credit == amount and credit >= 1
        # half up: the exact tax amount*1300/11300 is never more than half a unit away
        assert abs(tax * 11300 - amount * 1300) * 2 <= 11300
        world.meter.insert(card)
    world.check_conservation()


def test_quote_equals_sale_across_a_version_that_became_active_and_a_scheduled_one(
    db: Database, keys: CardKeys
) -> None:
    world = World(db, keys, tax_rate=900)
    card = world.blank()
    world.issue(card, 10000)
    world.meter.insert(card)
    add_version(
        world,
        TariffKind.FLAT,
        {"rate_prices": [6000]},
        active_from=world.now + timedelta(days=2),
        tax_rate=1300,
        fixed_monthly=250,
    )
    world.use(5)
    world.meter.insert(card)
    add_version(
        world,
        TariffKind.FLAT,
        {"rate_prices": [7000]},
        active_from=world.now + timedelta(days=9),
        tax_rate=1700,
    )
    sold = quote_then_sell(world, card, 12345)
    assert sold["breakdown"]["tariff"] == "flat v2" and sold["breakdown"]["tax_rate"] == 1300
    # 2026-01 was paid (at 0.00 a month) by the opening sale under v1
    assert sold["fixed_charge"] == "0.00" and sold["breakdown"]["months"] == []
    world.meter.insert(card)
    world.check_conservation()


def test_quote_equals_sale_with_fixed_charges_unpaid_over_a_year_boundary(
    db: Database, keys: CardKeys
) -> None:
    world = fixed_world(db, keys)
    card = world.blank()
    world.issue(card, 10000)  # pays 2026-01
    world.meter.insert(card)
    world.now = START.replace(year=2027, month=2, day=1, hour=0)  # 2026-02 .. 2027-02 due
    sold = quote_then_sell(world, card, 20000)
    months = sold["breakdown"]["months"]
    assert months[0] == "2026-02" and months[-1] == "2027-02" and len(months) == 13
    assert sold["fixed_charge"] == "65.00"
    assert sold["tax"] == "15.53" and sold["credit"] == "119.47"  # 135.00 incl. 13 % tax
    world.check_conservation()
    with world.db.sessions() as session:
        assert session.get_one(Customer, world.customer_id).fixed_paid_through == "2027-02"
        assert ledger.balance(session, ledger.FIXED) == 500 + 6500
    # the next sale in the same month owes no month again
    assert quote_then_sell(world, card, 1000)["fixed_charge"] == "0.00"


def test_an_amount_below_the_fixed_charges_owed_is_refused_by_quote_and_sale_alike(
    db: Database, keys: CardKeys
) -> None:
    world = fixed_world(db, keys)
    card = world.blank()
    world.issue(card, 10000)
    world.meter.insert(card)
    world.now = START.replace(year=2027, month=2)
    before = [(s.id, s.status) for s in world.sales()]
    for amount in (1, 499, 6500):  # 65.00 covers the months and buys nothing
        with pytest.raises(InvalidInputError, match=r"65\.01 is needed") as quoted:
            world.desk.quote(connect(card), amount)
        with pytest.raises(InvalidInputError) as sold:
            world.sell(card, amount)
        assert str(quoted.value) == str(sold.value)
    assert [(s.id, s.status) for s in world.sales()] == before
    assert quote_then_sell(world, card, 6501)["credit"] == "0.01"
    world.check_conservation()


# ---------------------------------------------------------------- 2. add to pending


def test_add_to_pending_loads_the_sum_once_and_charges_fixed_months_once(
    db: Database, keys: CardKeys
) -> None:
    world = fixed_world(db, keys, hoarding_limit=40000)
    card = world.blank()
    world.issue(card, 10000)  # 2026-01
    world.meter.insert(card)
    world.use(3)
    world.meter.insert(card)
    world.now = START.replace(month=3)  # 2026-02 and 03 due
    first = quote_then_sell(world, card, 11000)  # count 2, never taken to the meter
    assert first["fixed_charge"] == "10.00" and not first["added_to_pending"]
    second = quote_then_sell(world, card, 5650)
    assert second["purchase_count"] == first["purchase_count"] and second["added_to_pending"]
    assert second["fixed_charge"] == "0.00" and second["credit"] == "50.00"
    assert first["credit"] == "88.50"
    assert second["card_amount"] == "138.50"  # 88.50 + 50.00
    world.check_conservation()
    # the hoarding limit counts the meter's balance and both sales in transit
    balance = world.meter.state.remaining
    room = 40000 - balance - 13850
    with pytest.raises(InvalidInputError, match="hoarding limit"):
        world.sell(card, (room + 1) * 113 // 100 + 2)
    outcome = world.meter.insert(card)
    assert outcome.result is InsertionResult.LOADED and outcome.loaded == 13850
    assert world.meter.insert(card).result is InsertionResult.NOTHING_TO_LOAD
    world.sell(card, 1000)  # reads the write-back: both sales delivered
    assert [s.status for s in world.sales()][1:3] == [SaleStatus.DELIVERED] * 2
    world.check_conservation()
    with world.db.sessions() as session:
        assert ledger.balance(session, ledger.FIXED) == 1500


def test_add_to_pending_up_to_the_hoarding_limit_is_loaded_by_the_meter(
    db: Database, keys: CardKeys
) -> None:
    world = World(db, keys, hoarding_limit=30000)
    card = world.blank()
    world.issue(card, 10000)
    world.meter.insert(card)
    world.sell(card, 10000)  # pending at the meter
    with pytest.raises(InvalidInputError, match=r"at most 100\.00"):
        world.sell(card, 10001)
    world.sell(card, 10000)  # exactly at the limit
    assert world.meter.insert(card).result is InsertionResult.LOADED
    assert world.meter.state.remaining == 30000
    world.check_conservation()


# ---------------------------------------------------------------- 3. card against books


def test_a_scheduled_price_change_is_charged_on_time_and_reconciles(
    db: Database, keys: CardKeys
) -> None:
    world = World(db, keys)
    card = world.opened()
    switch = world.now + timedelta(days=2, hours=5, minutes=7)
    add_version(world, TariffKind.FLAT, {"rate_prices": [8000]}, active_from=switch)
    world.sell(card, 20000)
    assert world.meter.insert(card).result is InsertionResult.LOADED
    assert world.meter.state.backup_tariff is not None
    world.use(5)  # over the switch
    assert world.meter.state.current_tariff.rate_prices == (8000,)
    world.meter.insert(card)
    result = world.sell(card, 1000)
    assert result["reconciliation"]["findings"] == []
    assert findings(world) == []
    world.meter.insert(card)
    world.use(3)
    world.meter.insert(card)
    world.sell(card, 1000)
    assert findings(world) == []
    world.check_conservation()


def test_add_to_pending_across_a_scheduled_switch_reconciles(db: Database, keys: CardKeys) -> None:
    world = World(db, keys)
    card = world.opened()
    switch = world.now + timedelta(days=1)
    add_version(world, TariffKind.FLAT, {"rate_prices": [8000]}, active_from=switch)
    world.sell(card, 5000)  # carries the backup set; never taken to the meter
    world.use(3)  # the meter switches nothing: it never saw the backup
    world.sell(card, 5000)  # added to the pending purchase, now under v2
    assert world.meter.insert(card).loaded == 10000
    assert world.meter.state.current_tariff.rate_prices == (8000,)
    world.use(3)
    world.meter.insert(card)
    world.sell(card, 1000)
    assert findings(world) == []
    world.check_conservation()


TOU_RATE_2_ALL_DAY = {"rate_prices": [1000, 6000], "periods": [[0, 0, 2]]}
"""Every interval is in rate 2 (0.6000); a meter pricing single-rate charges rate 1 (0.1000)."""


def test_a_new_version_of_another_kind_is_priced_by_the_meter_as_that_kind(
    db: Database, keys: CardKeys
) -> None:
    """Flat -> TOU in force now: the card carries user type TOU, does the meter use it?"""
    world = World(db, keys)
    card = world.opened()
    add_version(world, TariffKind.TOU, TOU_RATE_2_ALL_DAY, active_from=world.now)
    world.sell(card, 20000)
    assert world.meter.insert(card).result is InsertionResult.LOADED
    assert world.meter.state.current_tariff.rate_prices == (1000, 6000)
    used, quantity = world.meter.state.cumulative_used, world.meter.state.cumulative_quantity
    world.use(2)
    charged = world.meter.state.cumulative_used - used
    energy = world.meter.state.cumulative_quantity - quantity
    assert world.meter.state.parameters.user_type is UserType.TOU
    assert charged == energy * 6000 // 10000  # (+- the residue carry)


def test_a_scheduled_version_of_another_kind_reaches_the_meter_with_the_next_card(
    db: Database, keys: CardKeys
) -> None:
    """Flat now, TOU scheduled. The meter switches sets at the switch time but keeps the
    user type one card holds for both, so the TOU version is not written ahead as the
    backup set (the meter would price its rate 1 as flat): it goes as the current set,
    with the parameters, on the first card written after it starts. Meanwhile the meter
    charges the flat price, which the reconciliation accepts (both versions were in force
    over the period), and credit is conserved."""
    world = World(db, keys)
    card = world.opened()
    add_version(
        world, TariffKind.TOU, TOU_RATE_2_ALL_DAY, active_from=world.now + timedelta(days=1)
    )
    world.sell(card, 20000)
    assert world.meter.insert(card).result is InsertionResult.LOADED
    assert world.meter.state.backup_tariff is None
    world.use(3)
    assert world.meter.state.parameters.user_type is UserType.SINGLE_RATE
    world.meter.insert(card)
    world.sell(card, 1000)
    assert world.meter.insert(card).result is InsertionResult.LOADED
    assert world.meter.state.parameters.user_type is UserType.TOU
    assert world.meter.state.current_tariff.rate_prices == (1000, 6000)
    world.use(2)
    world.meter.insert(card)
    world.sell(card, 1000)
    world.check_conservation()
    assert findings(world, FindingKind.MISMATCH) == []


# ---------------------------------------------------------------- 4. paid, not loaded


def test_a_raised_hoarding_limit_does_not_strand_a_paid_sale(db: Database, keys: CardKeys) -> None:
    """The centre checks the new limit; the meter checks the one it holds until it loads."""
    world = World(db, keys, hoarding_limit=15000)
    card = world.opened()
    with transaction(world.db.sessions) as session:
        change_parameters(
            session, session.get_one(Customer, world.customer_id), hoarding_limit=50000
        )
    sold = world.sell(card, 20000)  # the centre allows it under the new limit
    assert sold["status"] == "written"
    outcome = world.meter.insert(card)
    if outcome.result is InsertionResult.HOARDING_LIMIT:
        # the next sale adds to the refused purchase; the meter, which took no parameters
        # with the refused card, refuses it again: the money stays stranded
        world.sell(card, 100)
        again = world.meter.insert(card)
        assert again.result is InsertionResult.HOARDING_LIMIT
    assert outcome.result is InsertionResult.LOADED, (
        f"{outcome.reason}: {sold['credit']} paid does not reach the meter"
    )
    world.check_conservation()


def test_a_switch_time_with_seconds_does_not_stop_every_sale(db: Database, keys: CardKeys) -> None:
    """A version may start at any instant (add_tariff takes it); the card holds minutes.

    The backup set's switch time is rounded up to the minute (pricing.card_minute),
    EF01's tariff switch time is not.
    """
    world = World(db, keys)
    card = world.opened()
    switch = world.now + timedelta(days=2, hours=5, minutes=7, seconds=30)
    add_version(world, TariffKind.FLAT, {"rate_prices": [8000]}, active_from=switch)
    sold = world.sell(card, 20000)
    assert sold["status"] == "written"
    assert world.meter.insert(card).result is InsertionResult.LOADED
    world.use(5)
    assert world.meter.state.current_tariff.rate_prices == (8000,)
    world.check_conservation()


def test_a_sale_whose_fixed_months_a_later_sale_followed_is_reversed_after_that_one(
    db: Database, keys: CardKeys
) -> None:
    """Sale 1 pays 2026-02, sale 2 (added to it, in March) pays 2026-03. The books hold
    one "paid through" month, so refunding February while March stays paid would leave a
    month nobody charges again: sale 1 is refused until sale 2 is reversed, and then
    both months are unpaid again and the next sale collects them."""
    world = fixed_world(db, keys)
    card = world.opened()  # pays 2026-01
    world.now = START.replace(month=2)
    first = world.sell(card, 3000)
    assert first["breakdown"]["months"] == ["2026-02"]
    world.now = START.replace(month=3)
    second = world.sell(card, 3000)
    assert second["added_to_pending"] and second["breakdown"]["months"] == ["2026-03"]
    with pytest.raises(ConflictError, match="reverse that sale first"):
        world.desk.reverse(connect(card), first["sale"], "wrong account")
    world.desk.reverse(connect(card), second["sale"], "wrong account")
    world.desk.reverse(connect(card), first["sale"], "wrong account")
    world.check_conservation()
    with world.db.sessions() as session:
        assert ledger.balance(session, ledger.FIXED) == 500  # January's alone
        assert session.get_one(Customer, world.customer_id).fixed_paid_through == "2026-01"
    nxt = world.sell(card, 3000)
    assert nxt["breakdown"]["months"] == ["2026-02", "2026-03"]
    world.check_conservation()
