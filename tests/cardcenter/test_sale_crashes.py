"""Crashes and pulled cards at every step of a sale: nothing is sold twice or lost.

A sale is three steps (record pending, write the card, confirm). The desk is
crashed between each pair of steps, and the card is pulled after every byte
of its write; each time the sale is then recovered the way an operator would
(repeat the request, or sell again, or `sale recover`), the meter takes the
card, and credit conservation is checked against the meter's own registers.
"""

from __future__ import annotations

import copy

import pytest
from centre_support import Database
from centre_world import Crash, World, connect, crash_at, no_crash

from cardcenter.core.errors import ConflictError, SaleInterruptedError
from cardcenter.customers.models import Customer
from cardcenter.customers.services import change_parameters
from cardcenter.sales.models import SaleStatus
from cardlayout.files import InsertionResult
from cardlayout.security.diversify import CardKeys
from cardlayout.vcard.cos import VirtualCard


@pytest.fixture
def world(db: Database, keys: CardKeys) -> World:
    w = World(db, keys)
    return w


@pytest.mark.parametrize("step", ["pending", "written"])
def test_crash_then_repeat_the_request(world: World, step: str) -> None:
    card = world.opened()
    world.desk.checkpoint = crash_at(step)
    with pytest.raises(Crash):
        world.sell(card, 3000, "req-1")
    world.desk.checkpoint = no_crash
    result = world.sell(card, 3000, "req-1")
    assert result["status"] == "written" and result["purchase_count"] == 2
    assert [s.request_id for s in world.sales()].count("req-1") == 1
    world.check_conservation()
    assert world.meter.insert(card).loaded == 3000
    world.check_conservation()


@pytest.mark.parametrize("step", ["pending", "written"])
def test_crash_then_the_customer_goes_to_the_meter_then_buys_again(world: World, step: str) -> None:
    card = world.opened()
    world.desk.checkpoint = crash_at(step)
    with pytest.raises(Crash):
        world.sell(card, 3000, "req-1")
    world.desk.checkpoint = no_crash
    outcome = world.meter.insert(card)
    # written before the crash: the meter loads it; never written: nothing to load
    assert outcome.loaded == (3000 if step == "written" else 0)
    world.use(2)
    world.meter.insert(card)
    if step == "pending":
        # The card shows the old purse, but this reading could be older than a
        # write in flight at another desk: the sale waits for `sale recover`.
        with pytest.raises(ConflictError, match="sale recover"):
            world.sell(card, 2000, "req-2")
        assert world.desk.recover(connect(card))["settled"] == "cancelled"
    result = world.sell(card, 2000, "req-2")
    first = next(s for s in world.sales() if s.request_id == "req-1")
    if step == "written":
        assert first.status is SaleStatus.DELIVERED and result["purchase_count"] == 3
    else:
        assert first.status is SaleStatus.VOID and result["purchase_count"] == 2
    world.check_conservation()
    assert world.meter.insert(card).loaded == 2000
    world.check_conservation()


@pytest.mark.parametrize("step", ["pending", "personalised", "written"])
def test_crash_while_issuing_the_opening_card(world: World, step: str) -> None:
    card = world.blank()
    world.desk.checkpoint = crash_at(step)
    with pytest.raises(Crash):
        world.issue(card, 10000, request_id="open-1")
    world.desk.checkpoint = no_crash
    result = world.issue(card, 10000, request_id="open-1")
    assert result["status"] == "written"
    world.check_conservation()
    assert world.meter.insert(card).result is InsertionResult.LOADED
    world.check_conservation()


def test_two_desks_on_one_card_only_one_succeeds(world: World) -> None:
    """Desk B read the card, desk A sold meanwhile: B's sale is refused, not doubled."""
    card = world.opened()
    copy_of_card = copy.deepcopy(card)  # B's view of the card, read before A wrote
    world.sell(card, 3000)
    with pytest.raises(ConflictError):
        world.desk.sell(connect(copy_of_card), 3000)
    world.check_conservation()


def tear_sweep(
    world: World, card: VirtualCard, positions: range, *, alternate: bool, to_the_end: bool
) -> int:
    """Pull the card after byte n of a sale's write, for every n, then recover.

    Returns how many tears there were. With ``to_the_end`` the sweep must go
    on until a sale's write no longer reaches byte n (the last byte passed).
    """
    tears = 0
    for n in positions:
        with world.db.sessions.begin() as session:
            customer = session.get_one(Customer, world.customer_id)
            change_parameters(session, customer, alarm1=2000 + n)  # parameters travel too
        request = f"tear-{n}"
        card.arm_tear(n)
        try:
            world.sell(card, 1000, request)
            torn = False
        except SaleInterruptedError:
            torn = True
        card.disarm_tear()
        if not torn:
            world.meter.insert(card)
            world.check_conservation()
            return tears  # n is past the last byte written: the sweep is complete
        tears += 1
        if alternate and n % 2:
            # the customer walks to the meter with the pulled card first
            world.meter.insert(card)
            try:
                world.sell(card, 1000, f"after-{n}")
            except ConflictError:
                world.desk.recover(connect(card))
                world.sell(card, 1000, f"after-{n}")
        else:
            world.sell(card, 1000, request)  # the operator repeats the request
        world.check_conservation()
        world.meter.insert(card)
        world.check_conservation()
    assert not to_the_end, "the sweep ended before a sale's write was passed untorn"
    return tears


def test_card_pulled_after_every_byte_of_a_sale(sqlite_db: Database, keys: CardKeys) -> None:
    """Exhaustive, once (SQLite: the desk's logic does not depend on the database);
    PostgreSQL gets the sample below."""
    world = World(sqlite_db, keys)
    card = world.opened()
    tears = tear_sweep(world, card, range(0, 2000), alternate=True, to_the_end=True)
    assert tears > 150  # write-back clear, parameters and purse at least
    assert all(s.status is not SaleStatus.PENDING for s in world.sales())


def test_card_pulled_at_a_sample_of_bytes_on_both_databases(world: World) -> None:
    card = world.opened()
    for n in (0, 5, 63, 64, 130, 140, 149):
        assert tear_sweep(world, card, range(n, n + 1), alternate=False, to_the_end=False) == 1


def test_two_desks_racing_on_one_reading_only_one_begins(world: World) -> None:
    """Two operators press "sell" at once on the same card state: one wins, one is refused."""
    import threading

    from cardcenter.cards.reading import read_card
    from cardcenter.sales.desk import Desk, SaleStart

    card = world.opened()
    reading = read_card(connect(card), world.keys)
    desks = [
        Desk(world.db.sessions, world.keys, operator=name, site="HQ", clock=world.clock)
        for name in ("alice", "bob")
    ]
    barrier = threading.Barrier(2)
    outcomes: list[object] = []

    def press(desk: Desk, request: str) -> None:
        barrier.wait()
        try:
            outcomes.append(desk.begin_sale(reading, 3000, request))
        except ConflictError as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=press, args=(d, f"race-{i}")) for i, d in enumerate(desks)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    started = [o for o in outcomes if isinstance(o, SaleStart)]
    refused = [o for o in outcomes if isinstance(o, ConflictError)]
    assert len(started) == 1 and len(refused) == 1, outcomes
    assert [s.status for s in world.sales()].count(SaleStatus.PENDING) == 1
