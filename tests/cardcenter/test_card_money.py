"""Where card operations could create, lose or count money twice, and do not.

Reversal, replacement, recovery, meter swap and closing, one after another
and two desks at once. On PostgreSQL two sessions meet inside their
transactions (a barrier at the step that matters); on SQLite, whose
transactions take the write lock at BEGIN, the same two run one after the
other, and the outcome must be the same. Conservation is checked against the
meter model's own registers (``World.check_conservation``) and the journal.
"""

from __future__ import annotations

import contextlib
import copy
import threading
from typing import Any

import pytest
from centre_support import Database, in_threads
from centre_world import Crash, World, connect, crash_at, no_crash
from sqlalchemy import func, select

import cardcenter.cards.issuing as issuing
import cardcenter.customers.lifecycle as lifecycle
import cardcenter.sales.desk as desk_module
from cardcenter.cards.issuing import replace_card
from cardcenter.core.errors import CardRefusedError, ConflictError
from cardcenter.customers.lifecycle import close_account
from cardcenter.sales import ledger
from cardcenter.sales.desk import Desk
from cardcenter.sales.ledger import JournalEntry
from cardcenter.sales.models import SaleStatus
from cardlayout.files import InsertionResult
from cardlayout.security.diversify import CardKeys


@pytest.fixture
def world(db: Database, keys: CardKeys) -> World:
    return World(db, keys)


def journal(world: World, account: str) -> int:
    with world.db.sessions() as session:
        return ledger.balance(session, account)


def refunds(world: World) -> int:
    with world.db.sessions() as session:
        return int(
            session.scalar(
                select(func.count()).where(JournalEntry.memo == "refund at account closing")
            )
            or 0
        )


def sale_status(world: World, sale_id: int) -> SaleStatus:
    return next(s for s in world.sales() if s.id == sale_id).status


def a_second_desk(world: World) -> Desk:
    return Desk(world.db.sessions, world.keys, operator="alice", site="HQ", clock=world.clock)


def parties(db: Database) -> int:
    """Threads that meet at a barrier: two on PostgreSQL; on SQLite the second waits at
    BEGIN for the first to commit, so nobody meets (one passes alone)."""
    return 2 if db.backend == "postgresql" else 1


def meeting_at(monkeypatch: pytest.MonkeyPatch, module: Any, name: str, parties: int) -> None:
    """``module.name`` waits until ``parties`` threads reach it, then runs as before."""
    original = getattr(module, name)
    barrier = threading.Barrier(parties)

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.wait(timeout=5)
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, wrapped)


# -- 1. reversal -------------------------------------------------------------------------


def test_a_sale_is_reversed_once_sequentially(world: World) -> None:
    card = world.opened()
    sale = world.sell(card, 3000)
    assert world.desk.reverse(connect(card), sale["sale"])["status"] == "reversed"
    with pytest.raises(ConflictError, match="reversed"):
        world.desk.reverse(connect(card), sale["sale"])
    assert world.meter.insert(card).loaded == 0
    world.check_conservation()


def test_a_reversal_crashed_after_the_card_write_is_confirmed_once(world: World) -> None:
    card = world.opened()
    sale = world.sell(card, 3000)
    world.desk.checkpoint = crash_at("written")
    with pytest.raises(Crash):
        world.desk.reverse(connect(card), sale["sale"])
    world.desk.checkpoint = no_crash
    # asking again finishes it: the card shows the reversal, which is confirmed once
    again = world.desk.reverse(connect(card), sale["sale"])
    assert again["status"] == "reversed"
    assert world.desk.recover(connect(card))["settled"] == "none"
    with pytest.raises(ConflictError, match="reversed"):
        world.desk.reverse(connect(card), sale["sale"])
    assert sale_status(world, sale["sale"]) is SaleStatus.REVERSED
    assert journal(world, ledger.transit(world.customer_id)) == 0
    assert world.meter.insert(card).loaded == 0
    world.check_conservation()


def test_a_reversal_retried_after_a_crash_is_not_paid_twice(world: World) -> None:
    """Sale A, then sale B added to it (same count); reversing A crashes after the card write.

    Asking to reverse A again confirms the first reversal from the card (money
    back to the till), but ``session.refresh(sale)`` then discards the
    REVERSED status, and as the purse (B) still covers A, A is reversed again.
    """
    card = world.opened()
    a = world.sell(card, 1000)
    b = world.sell(card, 3000)
    assert a["purchase_count"] == b["purchase_count"]  # B was added to A
    world.desk.checkpoint = crash_at("written")
    with pytest.raises(Crash):
        world.desk.reverse(connect(card), a["sale"])
    world.desk.checkpoint = no_crash
    assert world.desk.reverse(connect(card), a["sale"])["status"] == "reversed"
    with world.db.sessions() as session:
        back = session.scalars(
            select(JournalEntry.amount).where(
                JournalEntry.memo == "reversal", JournalEntry.sale_id == a["sale"]
            )
        ).all()
    assert back == [1000], f"sale A's credit went back to the till {len(back)} times"
    assert world.meter.insert(card).loaded == 3000  # B, bought and paid, reaches the meter
    world.check_conservation()


def test_a_reversal_after_the_meter_loaded_the_sale_is_refused(world: World) -> None:
    card = world.opened()
    sale = world.sell(card, 3000)
    world.meter.insert(card)
    with pytest.raises(ConflictError, match="reached the meter"):
        world.desk.reverse(connect(card), sale["sale"])
    world.check_conservation()


def test_two_sessions_reversing_one_sale_at_once_reverse_it_once(
    world: World, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    card = world.opened()
    sale = world.sell(card, 3000)
    other = copy.deepcopy(card)  # the same card, in another desk's reader
    meeting_at(monkeypatch, desk_module, "start_write", parties(db))
    second = a_second_desk(world)
    results = in_threads(
        lambda: world.desk.reverse(connect(card), sale["sale"]),
        lambda: second.reverse(connect(other), sale["sale"]),
    )
    done = [r for r in results if isinstance(r, dict)]
    assert len(done) == 1, results
    assert all(isinstance(r, ConflictError) for r in results if not isinstance(r, dict))
    with world.db.sessions() as session:
        n = session.scalar(
            select(func.count()).where(
                JournalEntry.memo == "reversal", JournalEntry.sale_id == sale["sale"]
            )
        )
    assert n == 1
    assert journal(world, ledger.transit(world.customer_id)) == 0


def test_a_reversal_through_an_unregistered_replacement_card_lets_the_lost_card_load_it(
    world: World,
) -> None:
    """The replacement has not been in the meter: the lost card still carries the sale.

    A sale on such a card is refused (planning.next_purchase: "whichever card
    reaches the meter first loads it"), but a reversal is not: the books give
    the money back while the lost card, found again, loads the full purse.
    """
    lost = world.opened()
    sale = world.sell(lost, 3000)  # purchase 2, on the lost card only
    new = world.blank()
    world.replace(new)
    with pytest.raises(ConflictError, match="could still load it"):
        world.desk.reverse(connect(new), sale["sale"], "customer wants the cash back")
    assert sale_status(world, sale["sale"]) is SaleStatus.WRITTEN
    outcome = world.meter.insert(lost)  # the lost card is found and used first
    assert outcome.result is InsertionResult.LOADED
    world.check_conservation()


# -- 2. closing and refund ------------------------------------------------------------------


def test_close_refuses_credit_in_transit_and_a_second_close(world: World) -> None:
    card = world.opened()
    world.sell(card, 3000)
    world.use(1)
    # the card has not been in the meter since the sale: no final write-back
    with pytest.raises(ConflictError):
        close_account(world.desk, connect(card))
    world.meter.insert(card)
    remaining = world.meter.state.remaining
    result = close_account(world.desk, connect(card))
    assert result["refund"] == f"{remaining / 100:.2f}"
    with pytest.raises(CardRefusedError, match="closed"):
        close_account(world.desk, connect(card))
    assert refunds(world) == 1
    assert journal(world, ledger.meter(world.customer_id)) == 0


def test_close_refuses_while_a_sale_is_pending(world: World) -> None:
    card = world.opened()
    world.desk.checkpoint = crash_at("pending")
    with pytest.raises(Crash):
        world.sell(card, 3000, "req-1")
    world.desk.checkpoint = no_crash
    world.meter.insert(card)  # a fresh write-back, the sale still pending in the books
    with pytest.raises(ConflictError, match="sale recover"):
        close_account(world.desk, connect(card))
    assert refunds(world) == 0


def test_close_refuses_a_sale_written_before_a_crash_then_in_transit(world: World) -> None:
    card = world.opened()
    world.desk.checkpoint = crash_at("written")
    with pytest.raises(Crash):
        world.sell(card, 3000, "req-1")
    world.desk.checkpoint = no_crash
    # the card carries the sale, the books have it pending; the card has no
    # write-back, so close must refuse and count nothing
    with pytest.raises(ConflictError):
        close_account(world.desk, connect(card))
    assert refunds(world) == 0
    world.check_conservation()


def test_two_sessions_closing_one_account_at_once_refund_once(
    world: World, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A double-submitted close (two requests, the card read by both) pays the refund twice."""
    card = world.opened()
    world.use(2)
    world.meter.insert(card)  # the final write-back
    world.desk.read(connect(card))  # the operator looks at the balance first
    remaining = world.meter.state.remaining
    other = copy.deepcopy(card)
    meeting_at(monkeypatch, lifecycle, "in_transit", parties(db))
    second = a_second_desk(world)
    results = in_threads(
        lambda: close_account(world.desk, connect(card)),
        lambda: close_account(second, connect(other)),
    )
    assert remaining > 0
    assert refunds(world) == 1, f"refund paid {refunds(world)} times: {results}"
    assert journal(world, ledger.meter(world.customer_id)) == 0


# -- 3. recovery racing a replacement ------------------------------------------------------


def test_a_replacement_carries_a_pending_sale_once(world: World) -> None:
    lost = world.opened()
    world.desk.checkpoint = crash_at("written")
    with pytest.raises(Crash):
        world.sell(lost, 3000, "req-1")
    world.desk.checkpoint = no_crash
    new = world.blank()
    result = world.replace(new)
    assert result["carried"] == "30.00"
    # the request repeated: the first result, not a second sale
    again = world.sell(new, 3000, "req-1")
    assert again["status"] == "written" and again.get("replayed")
    assert len(world.sales()) == 2
    world.check_conservation()
    assert world.meter.insert(new).loaded == 3000
    assert not world.meter.insert(lost).accepted
    world.check_conservation()


def test_recover_racing_a_replacement_leaves_no_unpaid_credit_on_the_new_card(
    world: World, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`sale recover` cancels the pending sale while `card replace` carries it to a new card."""
    lost = world.opened()
    world.desk.checkpoint = crash_at("pending")  # the card never got the sale
    with pytest.raises(Crash):
        world.sell(lost, 3000, "req-1")
    world.desk.checkpoint = no_crash
    meeting_at(monkeypatch, desk_module, "settle_pending", parties(db))
    meeting_at(monkeypatch, issuing, "_replacement_of", parties(db))
    new = world.blank()
    second = a_second_desk(world)
    results = in_threads(
        lambda: world.desk.recover(connect(lost)),
        lambda: replace_card(second, connect(new), world.customer_no, "broken"),
    )
    sale = next(s for s in world.sales() if s.request_id == "req-1")
    # whatever won, the new card must not carry credit of a sale that took no money
    if sale.status is not SaleStatus.WRITTEN:
        outcome = world.meter.insert(new)
        assert outcome.loaded == 0, (
            f"sale {sale.status}, but the replacement loaded {outcome.loaded}: {results}"
        )
    world.check_conservation()


# -- 4. other ---------------------------------------------------------------------------------


def test_reversing_a_meter_swap_carry_over_does_not_pay_out_cash_never_taken(
    world: World,
) -> None:
    """A carry-over (tendered 0: the old meter's credit) is reversible like a sale.

    reverse_in_books posts its credit ``transit -> till`` as if paid in cash,
    while the cash-up (shifts.py: refunded = tendered of reversed sales) hands
    back nothing: the customer's carried credit leaves the card and the till's
    journal disagrees with the drawer by that amount.
    """
    from cardcenter.customers.lifecycle import swap_meter

    card = world.opened()
    balance = world.meter.state.remaining
    carry = swap_meter(world.desk, connect(card), "000087654321", request_id="swap-1")
    with pytest.raises(ConflictError, match="removed meter"):
        world.desk.reverse(connect(card), carry["sale"])
    sales = world.sales()
    taken = sum(s.tendered for s in sales if s.status not in (SaleStatus.VOID, SaleStatus.PENDING))
    handed_back = sum(s.tendered for s in sales if s.status is SaleStatus.REVERSED)
    till = journal(world, ledger.till("HQ"))
    assert till == -(taken - handed_back), (
        f"the till's journal says {-till} is in the drawer, the cash-up {taken - handed_back}; "
        f"the carried {balance} left the customer's card for nobody"
    )


def test_two_desks_swapping_one_meter_at_once_carry_its_credit_once(
    world: World, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two swaps of one customer's meter (to two new meters) from two readings of one card."""
    import cardcenter.customers.lifecycle as lifecycle_module
    from cardcenter.customers.lifecycle import swap_meter

    card = world.opened()
    other = copy.deepcopy(card)
    meeting_at(monkeypatch, lifecycle_module, "in_transit", parties(db))
    second = a_second_desk(world)
    results = in_threads(
        lambda: swap_meter(world.desk, connect(card), "000087654321", request_id="swap-1"),
        lambda: swap_meter(second, connect(other), "000087654322", request_id="swap-2"),
    )
    done = [r for r in results if isinstance(r, dict)]
    assert len(done) == 1, results
    refused = [r for r in results if not isinstance(r, dict)]
    # refused as a conflict (two at once), or as a card naming the meter just removed
    assert len(refused) == 1 and isinstance(refused[0], ConflictError | CardRefusedError), results
    carries = [s for s in world.sales() if s.kind.value == "carry_over"]
    assert [s.status for s in carries] == [SaleStatus.WRITTEN], carries
    with world.db.sessions() as session:
        moved = session.scalar(select(func.count()).where(JournalEntry.memo == "carry-over"))
    assert moved == 1
