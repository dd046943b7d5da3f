"""A shift's cash-up and the sales report against what the journal says the till received.

The desk is the centre's real code (``centre_world``), with the desk's clock on the wall
clock so that sale times, journal times and shift times are on one clock. The yardstick
is the journal: the net cash a site's till took in a time window (entries out of
``till:SITE`` are cash received, entries into it are cash handed back).
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from centre_support import Database
from centre_world import Crash, World, connect, crash_at, no_crash
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from test_web_customers import blank_in_reader, open_with_card, tariff  # noqa: F401
from web_support import Login, csrf_token

from cardcenter.core.db import transaction, utcnow
from cardcenter.core.errors import ConflictError
from cardcenter.customers.lifecycle import close_account, swap_meter
from cardcenter.customers.models import Customer
from cardcenter.customers.services import change_parameters, open_keypad_account
from cardcenter.operators.models import Operator, Role, Shift
from cardcenter.reports.services import sales_report
from cardcenter.sales import ledger
from cardcenter.sales.desk import Desk
from cardcenter.sales.models import Sale, SaleKind, SaleStatus
from cardcenter.shifts import cash_up, close_shift, open_shift
from cardcenter.tokens.services import vend
from cardcenter.web.shifts import REQUIRE_SHIFT
from cardcenter.web.state import state
from cardlayout.security.diversify import CardKeys

FLOAT = 20000
PAN = "600727000000000009"


@pytest.fixture
def world(db: Database, keys: CardKeys) -> World:
    w = World(db, keys)
    w.desk.clock = utcnow  # one clock for sales, journal entries and shifts
    return w


def cashier(world: World, username: str = "carol", role: Role = Role.CASHIER) -> Desk:
    with transaction(world.db.sessions) as session:
        session.add(Operator(username=username, name=username, role=role, site="HQ"))
    return Desk(world.db.sessions, world.keys, operator=username, site="HQ", clock=utcnow)


def operator_id(world: World, username: str) -> int:
    with world.db.sessions() as session:
        found = session.scalar(select(Operator.id).where(Operator.username == username))
        assert found is not None
        return found


def till_took(
    world: World, start: datetime, end: datetime, *, site: str = "HQ", who: int | None = None
) -> int:
    """Net cash the journal says ``till:site`` took in [start, end] (optionally by ``who``)."""
    till = ledger.till(site)
    entry = ledger.JournalEntry

    def total(column: object) -> int:
        stmt = select(func.coalesce(func.sum(entry.amount), 0)).where(
            column == till, entry.at >= start, entry.at <= end
        )
        if who is not None:
            stmt = stmt.where(entry.operator_id == who)
        with world.db.sessions() as session:
            return int(session.scalar(stmt) or 0)

    return total(entry.source) - total(entry.destination)


def start_shift(world: World, username: str) -> int:
    with transaction(world.db.sessions) as session:
        return open_shift(session, operator_id(world, username), site="HQ", opening_float=FLOAT).id


def end_shift(world: World, username: str, counted: int | None = None) -> Shift:
    """Close the shift with the count the books expect (or ``counted``)."""
    with transaction(world.db.sessions) as session:
        who = operator_id(world, username)
        shift = session.scalar(
            select(Shift).where(Shift.operator_id == who, Shift.closed_at.is_(None))
        )
        assert shift is not None
        expected = cash_up(session, shift).expected if counted is None else counted
        closed, _ = close_shift(session, who, counted=expected, note="review")
        session.expunge(closed)
        return closed


def figures(world: World, shift_id: int):  # type: ignore[no-untyped-def]
    with world.db.sessions() as session:
        shift = session.get_one(Shift, shift_id)
        return shift, cash_up(session, shift)


# ---------------------------------------------------------------- Q1: what the till took


def test_card_sales_and_a_sale_added_to_a_pending_purchase_match_the_journal(
    world: World,
) -> None:
    card = world.opened()
    carol = cashier(world)
    shift_id = start_shift(world, "carol")
    carol.sell(connect(card), 3000)
    second = carol.sell(connect(card), 2000)  # not yet in the meter: added to that purchase
    assert second["purchase_count"] == 2
    shift, figs = figures(world, shift_id)
    took = till_took(world, shift.opened_at, utcnow())
    assert took == 5000
    assert figs.expected - FLOAT == took
    assert (figs.sales, figs.taken, figs.refunded, figs.paid_out) == (2, 5000, 0, 0)


def test_a_token_sale_matches_the_journal(world: World) -> None:
    with transaction(world.db.sessions) as session:
        open_keypad_account(session, name="Thandi", category_id=1, pan=PAN, sgc="123456",
                            ti=1, krn=1, kt=2, base_date=1993, ea="07", dkga="04",
                            now=utcnow())  # fmt: skip
    carol = cashier(world)
    shift_id = start_shift(world, "carol")
    vended = vend(carol, PAN, 2500)
    assert vended["tokens"]
    shift, figs = figures(world, shift_id)
    took = till_took(world, shift.opened_at, utcnow())
    assert took == 2500
    assert figs.expected - FLOAT == took


def test_a_sale_is_reversed_only_at_the_hall_that_sold_it(world: World) -> None:
    """Carol sold at NORTH; the customer brings the card to HQ. NORTH's till took the cash,
    and HQ's drawer and cash-up know nothing of it: HQ refuses, and nothing moves."""
    card = world.opened()
    cashier(world)
    north = Desk(world.db.sessions, world.keys, operator="carol", site="NORTH", clock=utcnow)
    sold = north.sell(connect(card), 3000)
    cashier(world, "sam", Role.SUPERVISOR)
    sam = Desk(world.db.sessions, world.keys, operator="sam", site="HQ", clock=utcnow)
    sam_shift = start_shift(world, "sam")
    with pytest.raises(ConflictError, match="sold at NORTH"):
        sam.reverse(connect(card), sold["sale"], "wrong meter")
    shift, figs = figures(world, sam_shift)
    assert till_took(world, shift.opened_at, utcnow(), site="HQ") == 0
    assert figs.expected == FLOAT
    assert next(s for s in world.sales() if s.id == sold["sale"]).status is SaleStatus.WRITTEN
    north_sam = Desk(world.db.sessions, world.keys, operator="sam", site="NORTH", clock=utcnow)
    north_sam.reverse(connect(card), sold["sale"], "wrong meter")
    assert till_took(world, shift.opened_at, utcnow(), site="NORTH") == -3000


def test_reversal_in_the_same_shift_matches_the_journal(world: World) -> None:
    card = world.opened()
    cashier(world, "sam", Role.SUPERVISOR)
    sam = Desk(world.db.sessions, world.keys, operator="sam", site="HQ", clock=utcnow)
    shift_id = start_shift(world, "sam")
    sold = sam.sell(connect(card), 3000)
    sam.reverse(connect(card), sold["sale"], "wrong amount")
    shift, figs = figures(world, shift_id)
    assert till_took(world, shift.opened_at, utcnow()) == 0
    assert figs.expected == FLOAT


def test_a_reversal_after_the_sellers_shift_closed_is_in_no_cash_up(world: World) -> None:
    """Carol sells and cashes up; a supervisor (in a shift of her own) reverses the sale and
    pays the customer back from her drawer. The journal says the till paid 30.00 out during
    the supervisor's shift, by the supervisor; her cash-up expects the full float, and
    Carol's closed shift keeps its figure: the 30.00 handed back is in no shift's cash-up."""
    card = world.opened()
    carol = cashier(world)
    start_shift(world, "carol")
    sold = carol.sell(connect(card), 3000)
    end_shift(world, "carol")
    cashier(world, "sam", Role.SUPERVISOR)
    sam = Desk(world.db.sessions, world.keys, operator="sam", site="HQ", clock=utcnow)
    sam_shift = start_shift(world, "sam")
    sam.reverse(connect(card), sold["sale"], "customer changed their mind")
    shift, figs = figures(world, sam_shift)
    took = till_took(world, shift.opened_at, utcnow())
    assert took == -3000  # the journal: 30.00 out of the till in Sam's shift, by Sam
    assert till_took(world, shift.opened_at, utcnow(), who=operator_id(world, "sam")) == -3000
    # Sum of every shift's expectation over the window against the journal
    with world.db.sessions() as session:
        all_shifts = list(session.scalars(select(Shift).order_by(Shift.id)))
        expected_now = sum(cash_up(session, s).expected - s.opening_float for s in all_shifts)
        stored = [s.expected_cash for s in all_shifts if s.closed_at is not None]
    assert stored == [FLOAT + 3000]
    whole = till_took(world, all_shifts[0].opened_at, utcnow())
    assert whole == 0
    assert expected_now == whole, (
        f"the shifts expect {expected_now} over all, the journal says the till took {whole}"
    )
    assert figs.expected - FLOAT == took, (
        f"Sam's drawer is expected to hold {figs.expected}, but the journal says she paid "
        f"{-took} out of it"
    )


def test_a_reversal_by_another_operator_during_both_shifts(world: World) -> None:
    """Carol (shift open) sold 30.00; supervisor Sam (shift open at the same hall) reverses
    it and is told to pay 30.00 back: the journal books the pay-back under Sam. The cash-up
    charges it to Carol (as README "Shifts" says), so Carol's drawer counts 30.00 over and
    Sam's 30.00 short against the books."""
    card = world.opened()
    carol = cashier(world)
    carol_shift = start_shift(world, "carol")
    sold = carol.sell(connect(card), 3000)
    cashier(world, "sam", Role.SUPERVISOR)
    sam = Desk(world.db.sessions, world.keys, operator="sam", site="HQ", clock=utcnow)
    sam_shift = start_shift(world, "sam")
    sam.reverse(connect(card), sold["sale"], "wrong amount")
    now = utcnow()
    c_shift, c_figs = figures(world, carol_shift)
    s_shift, s_figs = figures(world, sam_shift)
    carol_took = till_took(world, c_shift.opened_at, now, who=operator_id(world, "carol"))
    sam_took = till_took(world, s_shift.opened_at, now, who=operator_id(world, "sam"))
    assert (carol_took, sam_took) == (3000, -3000)
    assert (c_figs.expected - FLOAT, s_figs.expected - FLOAT) == (carol_took, sam_took), (
        f"cash-ups: Carol {c_figs.expected - FLOAT}, Sam {s_figs.expected - FLOAT}; "
        f"journal: Carol {carol_took}, Sam {sam_took}"
    )


def test_a_shift_is_not_closed_with_a_sale_pending(world: World) -> None:
    """The card was written but the desk died before the confirmation: the sale is pending,
    its cash in Carol's drawer and not yet in the books. Her shift is not closed until the
    sale is finished; then the count, the books and the journal agree, and the recorded
    figures of the closed shift are what its page shows later."""
    card = world.opened()
    carol = cashier(world)
    first = start_shift(world, "carol")
    carol.checkpoint = crash_at("written")
    with pytest.raises(Crash):
        carol.sell(connect(card), 3000, "pending-at-close")
    carol.checkpoint = no_crash
    with pytest.raises(ConflictError, match="pending"):
        end_shift(world, "carol", counted=FLOAT + 3000)
    assert carol.recover(connect(card))["settled"] == "confirmed"
    closed = end_shift(world, "carol", counted=FLOAT + 3000)
    assert (closed.expected_cash, closed.difference) == (FLOAT + 3000, 0)
    shift, figs = figures(world, first)
    assert figs.expected == shift.expected_cash
    assert till_took(world, shift.opened_at, shift.closed_at) == 3000


def test_closing_refund_is_paid_out_of_the_shift(world: World) -> None:
    card = world.opened()
    cashier(world, "sam", Role.SUPERVISOR)
    sam = Desk(world.db.sessions, world.keys, operator="sam", site="HQ", clock=utcnow)
    shift_id = start_shift(world, "sam")
    world.use(2)
    world.meter.insert(card)
    result = close_account(sam, connect(card), "moved")
    refund = round(float(result["refund"]) * 100)
    assert refund > 0
    shift, figs = figures(world, shift_id)
    took = till_took(world, shift.opened_at, utcnow())
    assert took == -refund
    assert figs.expected - FLOAT == took


def test_the_shift_and_the_sales_report_agree_on_a_closing_refund(world: World) -> None:
    """shifts.py: "a shift's expected cash and the report's ``takings`` for that operator
    agree". The sales report knows nothing of account-closing refunds."""
    card = world.opened()
    cashier(world, "sam", Role.SUPERVISOR)
    sam = Desk(world.db.sessions, world.keys, operator="sam", site="HQ", clock=utcnow)
    shift_id = start_shift(world, "sam")
    sam.sell(connect(card), 3000)
    world.meter.insert(card)
    world.use(2)
    world.meter.insert(card)
    close_account(sam, connect(card), "moved")
    shift, figs = figures(world, shift_id)
    took = till_took(world, shift.opened_at, utcnow())
    assert figs.expected - FLOAT == took
    today = utcnow().date()
    with world.db.sessions() as session:
        report = sales_report(session, start=today, end=today)
    sam_takings = report.totals["by_operator"]["sam"]["takings"]
    hq_takings = report.totals["by_site"]["HQ"]["takings"]
    assert sam_takings == figs.expected - FLOAT, (
        f"the report tells Sam to hand in {sam_takings}, the shift expects "
        f"{figs.expected - FLOAT} (the journal: {took})"
    )
    day_start = datetime.combine(today, datetime.min.time(), tzinfo=UTC)
    assert hq_takings == till_took(world, day_start, utcnow())


def overdrawn(world: World):  # type: ignore[no-untyped-def]
    """A card whose meter ran into overdraft (read back on the card)."""
    with transaction(world.db.sessions) as session:
        change_parameters(
            session, session.get_one(Customer, world.customer_id), overdraft_limit=50000
        )
    card = world.blank()
    world.issue(card, 1000)
    world.meter.insert(card)
    world.sell(card, 1)  # carries the new overdraft limit to the meter
    world.meter.insert(card)
    for _ in range(60):
        world.use(1)
        world.meter.insert(card)  # acknowledges alarm trips; at zero, enables overdraft
        if world.meter.state.overdraft_used > 0:
            break
    assert world.meter.state.overdraft_used > 0
    return card


def test_overdraft_debt_of_a_swapped_meter_is_in_the_journal_but_not_the_cash_up(
    world: World,
) -> None:
    """swap_meter posts the debt ``till:HQ -> meter:N`` (cash into the till) with no
    operator: the supervisor's cash-up, which counts such movements only by operator,
    leaves it out."""
    card = overdrawn(world)
    cashier(world, "sam", Role.SUPERVISOR)
    sam = Desk(world.db.sessions, world.keys, operator="sam", site="HQ", clock=utcnow)
    shift_id = start_shift(world, "sam")
    swap_meter(sam, connect(card), "000087654321", request_id="swap-1")
    shift, figs = figures(world, shift_id)
    took = till_took(world, shift.opened_at, utcnow())
    assert took > 0  # the journal: the debt was paid into the till in Sam's shift
    assert figs.expected - FLOAT == took, (
        f"the journal says the till took {took} in the shift, the cash-up expects "
        f"{figs.expected - FLOAT}"
    )


def test_closing_an_overdrawn_account_collects_the_debt_in_the_cash_up(world: World) -> None:
    card = overdrawn(world)
    cashier(world, "sam", Role.SUPERVISOR)
    sam = Desk(world.db.sessions, world.keys, operator="sam", site="HQ", clock=utcnow)
    shift_id = start_shift(world, "sam")
    result = close_account(sam, connect(card), "moved")
    assert result["owed_by_customer"] != "0.00"
    shift, figs = figures(world, shift_id)
    took = till_took(world, shift.opened_at, utcnow())
    assert took > 0
    assert figs.expected - FLOAT == took


# ---------------------------------------------------------------- Q2: the report and the journal


def test_the_reports_credit_is_the_credit_sold_at_the_till(world: World) -> None:
    """A meter swap's carry-over (tendered 0, the old meter's credit) is counted in the
    report as a sale with credit, though no money crossed the till."""
    card = world.opened()
    world.use(2)
    world.meter.insert(card)
    swap_meter(world.desk, connect(card), "000087654321", request_id="swap-1")
    entry = ledger.JournalEntry
    with world.db.sessions() as session:
        sold_credit = int(
            session.scalar(
                select(func.coalesce(func.sum(entry.amount), 0)).where(
                    entry.source.like("till:%"), entry.destination.like("transit:%")
                )
            )
            or 0
        )
        report = sales_report(session)
        sales = session.scalar(
            select(func.count()).select_from(Sale).where(Sale.kind != SaleKind.CARRY_OVER)
        )
    assert report.totals["credit"] == sold_credit, (
        f"report credit {report.totals['credit']}, journal credit sold {sold_credit}"
    )
    assert report.totals["sales"] == sales


def test_report_days_and_cash_up_match_the_journal_for_written_void_pending_reversed(
    world: World,
) -> None:
    card = world.opened()
    sold = world.sell(card, 3000)
    world.desk.reverse(connect(card), sold["sale"], "wrong")
    world.sell(card, 1500)
    world.desk.checkpoint = crash_at("pending")  # pending, then cancelled: void
    with pytest.raises(Crash):
        world.sell(card, 700, "void-one")
    world.desk.checkpoint = no_crash
    assert world.desk.recover(connect(card))["settled"] == "cancelled"
    world.desk.checkpoint = crash_at("written")  # left pending
    with pytest.raises(Crash):
        world.sell(card, 900, "pending-one")
    world.desk.checkpoint = no_crash
    statuses = sorted(str(s.status) for s in world.sales())
    assert statuses.count("void") == 1 and statuses.count("pending") == 1
    with world.db.sessions() as session:
        till = ledger.balance(session, ledger.till("HQ"))
        for zone in ("UTC", "Asia/Shanghai", "America/Los_Angeles"):
            report = sales_report(session, timezone=zone)
            assert report.totals["takings"] == -till
            assert report.totals["by_site"]["HQ"]["takings"] == -till
            assert sum(r["takings"] for r in report.rows) == -till


# ---------------------------------------------------------------- Q3: one open shift, selling


def test_one_open_shift_per_operator(world: World) -> None:
    cashier(world)
    start_shift(world, "carol")
    with pytest.raises(ConflictError):
        start_shift(world, "carol")
    with pytest.raises(IntegrityError), transaction(world.db.sessions) as session:
        session.add(Shift(operator_id=operator_id(world, "carol"), site="NORTH", opening_float=0))
    with world.db.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Shift)) == 1


def test_an_opening_purchase_needs_an_open_shift_when_shifts_are_required(
    vpcd_reader: str,
    web_app: Flask,
    client: FlaskClient,
    login: Login,
    tariff: None,  # noqa: F811
) -> None:
    """With CARDCENTER_REQUIRE_SHIFT on, a cashier without a shift opens an account with its
    opening card and a first purchase of 100.00: cash taken outside any shift."""
    web_app.config[REQUIRE_SHIFT] = True
    login(client, "cyd")
    refused = client.post(
        "/sell/card/confirm",
        data={"csrf_token": csrf_token(client), "serial": "x", "amount": "1", "request_id": "r1"},
    )
    assert refused.status_code == 409  # selling is refused without a shift
    blank_in_reader(web_app)
    open_with_card(client, web_app, amount="100")
    with state(web_app).sessions() as session:
        taken = session.scalar(
            select(func.coalesce(func.sum(Sale.tendered), 0)).where(
                Sale.status.in_((SaleStatus.WRITTEN, SaleStatus.DELIVERED))
            )
        )
        shifts = session.scalar(select(func.count()).select_from(Shift))
    assert shifts == 0
    assert taken == 0, f"{taken} was sold with no shift open, though shifts are required"
