"""Shifts: open with a float, close with a cash-up the books check; notes, blind count, roles.

Every test runs on SQLite and PostgreSQL (``web_app`` sits on ``db``). The
sales are rows made with the models (the cash-up reads the books, however
the sales got there); the desk's own flows are tested in tests/cardcenter.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime, timedelta

import pytest
from flask import Flask, g
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from web_support import Login, add_web_operator

from cardcenter.core.db import utcnow
from cardcenter.core.errors import ConflictError
from cardcenter.customers.models import Category, Customer, Meter
from cardcenter.operators.models import AuditEntry, Operator, Role, Shift
from cardcenter.sales import ledger
from cardcenter.sales.models import Sale, SaleStatus
from cardcenter.shifts import cash_up, open_shift
from cardcenter.web.shifts import REQUIRE_SHIFT, require_open_shift
from cardcenter.web.state import state

Csrf = Callable[[FlaskClient], str]
S = SaleStatus


def customer(session: Session, n: int = 1) -> Meter:
    category = session.scalar(select(Category).where(Category.code == "res"))
    if category is None:
        category = Category(code="res", name="Residential")
        session.add(category)
        session.flush()
    person = Customer(customer_no=f"{n:012d}", name=f"Customer {n}", category_id=category.id)
    session.add(person)
    session.flush()
    meter = Meter(meter_no=f"{800000000000 + n:012d}", customer_id=person.id)
    session.add(meter)
    session.flush()
    return meter


def sale(
    session: Session,
    meter: Meter,
    operator_id: int,
    tendered: int,
    *,
    status: SaleStatus = S.WRITTEN,
    site: str = "HQ",
    created_at: datetime | None = None,
    reversed_at: datetime | None = None,
) -> Sale:
    count = (session.scalar(select(Sale.id).order_by(Sale.id.desc()).limit(1)) or 0) + 1
    row = Sale(
        request_id=f"shift-test-{count}",
        status=status,
        customer_id=meter.customer_id,
        meter_id=meter.id,
        operator_id=operator_id,
        site=site,
        purchase_count=count,
        tendered=tendered,
        credit=tendered,
        card_amount=tendered,
        created_at=created_at or utcnow(),
        reversed_at=reversed_at,
    )
    session.add(row)
    session.flush()
    return row


def actions(app: Flask) -> list[tuple[str, str | None, dict[str, object]]]:
    with state(app).sessions() as session:
        rows = session.scalars(
            select(AuditEntry).where(AuditEntry.action.like("shift.%")).order_by(AuditEntry.id)
        ).all()
        return [(row.action, row.subject, row.detail) for row in rows]


def shifts(app: Flask) -> list[Shift]:
    with state(app).sessions() as session:
        return list(session.scalars(select(Shift).order_by(Shift.id)))


def test_the_cash_up_counts_sales_reversals_and_closing_refunds(
    web_app: Flask, client: FlaskClient, login: Login, csrf: Csrf
) -> None:
    me = login(client, "cyd")
    other = add_web_operator(web_app, "dee")
    page = client.get("/shifts/")
    assert page.status_code == 200 and 'id="open-shift"' in page.text
    answer = client.post("/shifts/open", data={"csrf_token": csrf(client), "opening_float": "200"})
    assert answer.status_code == 302
    (shift,) = shifts(web_app)
    assert (shift.opening_float, shift.site, shift.closed_at) == (20000, "HQ", None)

    with state(web_app).sessions.begin() as session:
        meter = customer(session)
        now = utcnow()
        sale(session, meter, me, 10000)  # taken
        sale(session, meter, me, 5000, status=S.DELIVERED)  # taken
        # sold and reversed in the shift: taken, then handed back
        sale(session, meter, me, 3000, status=S.REVERSED, reversed_at=now)
        # sold yesterday, reversed now: only handed back
        sale(
            session,
            meter,
            me,
            4000,
            status=S.REVERSED,
            created_at=now - timedelta(days=1),
            reversed_at=now,
        )
        sale(session, meter, me, 7000, status=S.VOID)  # never took money
        pending = sale(session, meter, me, 2000, status=S.PENDING).id  # not confirmed
        sale(session, meter, other, 9000)  # someone else's drawer
        sale(session, meter, me, 8000, site="NORTH")  # another hall's till
        sale(session, meter, me, 6000, created_at=now - timedelta(hours=3))  # before the shift
        # an account closed in the shift: 15.00 refunded from this till by this operator
        assert meter.customer_id is not None
        ledger.post(
            session,
            ledger.meter(meter.customer_id),
            ledger.till("HQ"),
            1500,
            "refund at account closing",
            customer_id=meter.customer_id,
            operator_id=me,
        )

    # blind count: the open shift's page does not tell the cashier what is expected
    mine = client.get(f"/shifts/{shift.id}")
    assert mine.status_code == 200 and 'id="cu-expected"' not in mine.text

    # a sale of this drawer still pending (its card write cut short): not closed yet
    answer = client.post(
        "/shifts/close", data={"csrf_token": csrf(client), "counted_cash": "295.00"}
    )
    assert answer.status_code == 409 and f"sale {pending} is pending" in answer.text
    with state(web_app).sessions.begin() as session:
        session.get_one(Sale, pending).status = S.VOID  # as `sale recover` finds it
    # 200 + (100 + 50 + 30) - (30 + 40) - 15 = 295.00
    answer = client.post(
        "/shifts/close", data={"csrf_token": csrf(client), "counted_cash": "295.00"}
    )
    assert answer.status_code == 302 and answer.headers["Location"] == f"/shifts/{shift.id}"
    (shift,) = shifts(web_app)
    assert (shift.expected_cash, shift.counted_cash, shift.difference) == (29500, 29500, 0)
    assert shift.closed_at is not None
    result = client.get(f"/shifts/{shift.id}").text
    for cell, text in (
        ("cu-float", "200.00"),
        ("cu-taken", "180.00"),
        ("cu-refunded", "70.00"),
        ("cu-paid-out", "15.00"),
        ("cu-expected", "295.00"),
        ("cu-difference", "0.00"),
    ):
        assert re.search(rf'id="{cell}">{re.escape(text)}<', result), cell
    assert "3 sales" in result and "(2)" in result
    with state(web_app).sessions() as session:
        figures = cash_up(session, session.get_one(Shift, shift.id))
        assert (figures.sales, figures.taken, figures.refunds, figures.refunded) == (
            3,
            18000,
            2,
            7000,
        )
    assert actions(web_app) == [
        ("shift.open", f"shift:{shift.id}", {"site": "HQ", "float": "200.00"}),
        (
            "shift.close",
            f"shift:{shift.id}",
            {"counted": "295.00", "expected": "295.00", "difference": "0.00", "noted": False},
        ),
    ]
    # closed: a new shift can be opened
    answer = client.post("/shifts/open", data={"csrf_token": csrf(client), "opening_float": "0"})
    assert answer.status_code == 302 and len(shifts(web_app)) == 2


def test_a_big_difference_needs_a_note(
    web_app: Flask, client: FlaskClient, login: Login, csrf: Csrf
) -> None:
    login(client, "eli")
    client.post("/shifts/open", data={"csrf_token": csrf(client), "opening_float": "100"})
    short = client.post(
        "/shifts/close", data={"csrf_token": csrf(client), "counted_cash": "79.99", "note": " "}
    )
    assert short.status_code == 400
    assert 'data-field="note"' in short.text and "Note: the count differs" in short.text
    assert 'aria-invalid="true">' in short.text  # the note box is marked
    assert shifts(web_app)[0].closed_at is None
    assert [a for a, _s, _d in actions(web_app)] == ["shift.open"]

    # 10.00 short is within the tolerance: no note needed
    small = client.post("/shifts/close", data={"csrf_token": csrf(client), "counted_cash": "90.00"})
    assert small.status_code == 302
    assert shifts(web_app)[0].difference == -1000

    client.post("/shifts/open", data={"csrf_token": csrf(client), "opening_float": "100"})
    answer = client.post(
        "/shifts/close",
        data={"csrf_token": csrf(client), "counted_cash": "79.99", "note": "paid the window man"},
    )
    assert answer.status_code == 302
    closed = shifts(web_app)[1]
    assert (closed.difference, closed.note) == (-2001, "paid the window man")
    assert actions(web_app)[-1][2] == {
        "counted": "79.99",
        "expected": "100.00",
        "difference": "-20.01",
        "noted": True,
    }


def test_one_open_shift_and_errors_that_name_their_field(
    web_app: Flask,
    client: FlaskClient,
    login: Login,
    csrf: Csrf,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    me = login(client, "fin")
    for bad in ("", "abc", "-5", "1.234"):
        answer = client.post(
            "/shifts/open", data={"csrf_token": csrf(client), "opening_float": bad}
        )
        assert answer.status_code == 400, bad
        assert 'data-field="opening_float"' in answer.text and "Float:" in answer.text
    assert shifts(web_app) == []
    nothing = client.post("/shifts/close", data={"csrf_token": csrf(client), "counted_cash": "1"})
    assert nothing.status_code == 409 and "no open shift" in nothing.text

    client.post("/shifts/open", data={"csrf_token": csrf(client), "opening_float": "50"})
    again = client.post("/shifts/open", data={"csrf_token": csrf(client), "opening_float": "50"})
    assert again.status_code == 409 and "has a shift open already" in again.text
    bad_count = client.post(
        "/shifts/close", data={"csrf_token": csrf(client), "counted_cash": "lots"}
    )
    assert bad_count.status_code == 400 and 'data-field="counted_cash"' in bad_count.text
    assert len(shifts(web_app)) == 1 and shifts(web_app)[0].closed_at is None
    assert [a for a, _s, _d in actions(web_app)] == ["shift.open"]

    # two requests that both passed the check: the unique index settles it
    with state(web_app).sessions() as session:
        with pytest.raises(ConflictError, match="has a shift open already"):
            open_shift(session, me, site="HQ", opening_float=0)
        monkeypatch.setattr("cardcenter.shifts.open_shift_of", lambda *_a: None)
        with pytest.raises(ConflictError, match="at the same moment"):
            open_shift(session, me, site="HQ", opening_float=0)
        assert session.scalar(select(func.count()).select_from(Shift)) == 1  # still usable


def test_who_sees_which_shift(
    web_app: Flask, client: FlaskClient, login: Login, csrf: Csrf
) -> None:
    login(client, "gus")
    client.post("/shifts/open", data={"csrf_token": csrf(client), "opening_float": "10"})
    (shift,) = shifts(web_app)
    assert client.get("/shifts/all").status_code == 403

    other = web_app.test_client()
    login(other, "hal")
    refused = other.get(f"/shifts/{shift.id}")
    assert refused.status_code == 403 and "another operator" in refused.text

    boss = web_app.test_client()
    login(boss, "ivy", Role.SUPERVISOR)
    seen = boss.get(f"/shifts/{shift.id}")
    assert seen.status_code == 200 and re.search(r'id="cu-expected">10.00<', seen.text)
    listing = boss.get("/shifts/all")
    assert listing.status_code == 200 and ">gus<" in listing.text
    assert boss.get("/shifts/999999").status_code == 404


def test_selling_can_require_an_open_shift(web_app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    operator_id = add_web_operator(web_app, "jo")
    with state(web_app).sessions() as session:
        operator = session.get_one(Operator, operator_id)
        session.expunge(operator)

    def check() -> Shift | None:
        with web_app.test_request_context("/selling/"):
            g.operator = operator
            return require_open_shift()

    monkeypatch.delenv(REQUIRE_SHIFT, raising=False)
    assert check() is None  # off by default: selling goes on without a shift
    monkeypatch.setenv(REQUIRE_SHIFT, "1")
    with pytest.raises(ConflictError, match="Open a shift"):
        check()
    web_app.config[REQUIRE_SHIFT] = False  # the application's config wins over the environment
    assert check() is None
    web_app.config[REQUIRE_SHIFT] = True
    with state(web_app).sessions.begin() as session:
        open_shift(session, operator_id, site="NORTH", opening_float=0)
    with pytest.raises(ConflictError):  # a shift at another hall does not count here
        check()
    with state(web_app).sessions.begin() as session:
        session.execute(select(Shift)).scalar_one().site = "HQ"
    found = check()
    assert found is not None and found.operator_id == operator_id


def test_a_reversal_or_a_closing_refund_needs_an_open_shift_when_shifts_are_required(
    web_app: Flask, client: FlaskClient, login: Login, csrf: Csrf
) -> None:
    """Both pay cash out of the operator's drawer: with shifts required and none open,
    each is refused before the card is read, and nothing changes."""
    web_app.config[REQUIRE_SHIFT] = True
    me = login(client, "sue", Role.SUPERVISOR)
    with state(web_app).sessions.begin() as session:
        meter = customer(session)
        sold = sale(session, meter, me, 3000).id
        customer_id = meter.customer_id
    reversing = client.post(
        f"/sell/sales/{sold}/reverse", data={"csrf_token": csrf(client), "reason": "twice"}
    )
    closing = client.post(
        f"/customers/{customer_id}/close", data={"csrf_token": csrf(client), "reason": "moved"}
    )
    for answer in (reversing, closing):
        assert answer.status_code == 409 and "Open a shift" in answer.text
    with state(web_app).sessions() as session:
        assert session.get_one(Sale, sold).status is SaleStatus.WRITTEN
        assert session.get_one(Customer, customer_id).status.value == "active"
        assert session.scalar(select(func.count()).select_from(ledger.JournalEntry)) == 0
