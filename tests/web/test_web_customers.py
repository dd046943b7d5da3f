"""The customer pages: search, the customer page, opening an account and its card,
replacement, closing, roles and the form's refusals.

Every test runs on SQLite and PostgreSQL (``web_app`` sits on ``db``); the
card flows go through pcscd and the vpcd reader with a virtual card from the
application's tray, and the meter that reads the card back is ``cardmeter``'s
model (as in the centre's own tests).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask, url_for
from flask.testing import FlaskClient
from sqlalchemy import func, select
from web_support import Login, csrf_token

from cardcenter.cards.models import Card, CardStatus
from cardcenter.customers.models import AccountStatus, Customer, Meter
from cardcenter.customers.services import open_account, open_keypad_account
from cardcenter.operators.models import AuditEntry, Operator, Role
from cardcenter.reconciliation.models import Finding, FindingKind, FindingStatus, MonthlyUsage
from cardcenter.sales.models import Sale, SaleKind, SaleStatus
from cardcenter.tariffs.models import TariffKind
from cardcenter.tariffs.services import add_tariff, get_or_create_category
from cardcenter.web.state import state
from cardlayout.transport.channel import CardChannel
from cardlayout.transport.inprocess import InProcessTransport
from cardlayout.vcard.cos import VirtualCard
from cardlayout.vcard.image import CardImage
from cardmeter.insertion import Insertion, Outcome
from cardmeter.registers import MeterState
from cardmeter.security import SecurityModule

METER_NO = "000012345678"
OTHER_METER_NO = "000087654321"
PAN = "600727000000000009"
POLL = 10.0


# ---------------------------------------------------------------- helpers


def add_categories_and_tariff(app: Flask) -> None:
    """Categories residential and commercial; a flat default tariff (0.5283 a kWh) for the first."""
    with state(app).sessions.begin() as session:
        get_or_create_category(session, "residential", "Residential")
        get_or_create_category(session, "commercial", "Commercial")
        add_tariff(
            session,
            "flat",
            TariffKind.FLAT,
            {"rate_prices": [5283]},
            category="residential",
            active_from=datetime.now(UTC) - timedelta(days=30),
        )


@pytest.fixture
def tariff(web_app: Flask) -> None:
    add_categories_and_tariff(web_app)


def post(client: FlaskClient, path: str, **data: str) -> Any:
    return client.post(path, data={"csrf_token": csrf_token(client), **data})


def error_of(answer: Any) -> str:
    """The refusal sentence a form page shows."""
    found = re.search(r'id="(?:form-error|error-message)">([^<]*)<', answer.text)
    assert found is not None, answer.text
    return found.group(1).replace("&#39;", "'").replace("&#34;", '"')


def reader_until(app: Flask, wanted: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    deadline = time.monotonic() + POLL
    while True:
        status = state(app).reader.status()
        if wanted(status) or time.monotonic() > deadline:
            return status
        time.sleep(0.05)


def blank_in_reader(app: Flask) -> str:
    """A new blank virtual card from the tray, in the reader (pcscd sees it); its serial."""
    tray = state(app).tray
    serial = tray.new_card()
    tray.insert(serial)
    status = reader_until(app, lambda s: s["serial"] == serial)
    assert status["serial"] == serial, status
    return serial


def put_in_reader(app: Flask, serial: str) -> None:
    state(app).tray.insert(serial)
    assert reader_until(app, lambda s: s["serial"] == serial)["serial"] == serial


def empty_reader(app: Flask) -> None:
    state(app).tray.remove()
    assert not reader_until(app, lambda s: not s["present"])["present"]


def meter_takes(app: Flask, serial: str, meter_no: str = METER_NO) -> Outcome:
    """The customer's meter (``cardmeter``'s model) takes the card out of the tray.

    The card comes out of the reader, the meter reads it and writes its
    write-back, and the card goes back in the reader, as at the desk.
    """
    tray = state(app).tray
    tray.remove()
    card = VirtualCard(CardImage.load(tray.directory / f"{serial}.json"))
    channel = CardChannel(InProcessTransport(card))
    channel.connect()
    meter = MeterState(meter_no=meter_no, clock=datetime.now(UTC) - timedelta(minutes=5))
    sam = SecurityModule.provision(state(app).keys, meter_no)
    outcome = Insertion(meter, sam, lambda _state: None).take(channel)
    put_in_reader(app, serial)
    return outcome


def open_with_card(client: FlaskClient, app: Flask, **fields: str) -> Any:
    """Open a card-meter account from the form with its opening card issued in the reader."""
    data = {
        "name": "Li Wei",
        "category": "residential",
        "kind": "card",
        "meter_no": METER_NO,
        "issue": "yes",
        "amount": "100",
        **fields,
    }
    return post(client, "/customers/new", **data)


def audit_of(app: Flask, prefix: str = "") -> list[tuple[str, str | None, dict[str, Any]]]:
    with state(app).sessions() as session:
        rows = session.scalars(select(AuditEntry).order_by(AuditEntry.id)).all()
        return [(r.action, r.subject, r.detail) for r in rows if r.action.startswith(prefix)]


def customer_count(app: Flask) -> int:
    with state(app).sessions() as session:
        return session.scalar(select(func.count(Customer.id))) or 0


def card_of(app: Flask, serial: str) -> Card:
    with state(app).sessions() as session:
        card = session.scalar(select(Card).where(Card.serial == serial))
        assert card is not None
        return card


# ---------------------------------------------------------------- search and the page


def _two_accounts(app: Flask) -> tuple[int, int]:
    """Li Wei (card meter, a card) and Thandi Nkosi (keypad meter)."""
    with state(app).sessions.begin() as session:
        li = open_account(session, name="Li Wei", meter_no=METER_NO, category_id=1)
        thandi = open_keypad_account(
            session, name="Thandi Nkosi", category_id=1, pan=PAN, sgc="123456", ti=1, krn=1, kt=2
        )
        meter = session.scalars(select(Meter).where(Meter.customer_id == li.id)).one()
        session.add(
            Card(serial="5A00000000001234", customer_id=li.id, meter_id=meter.id, purse_amount=0)
        )
        return li.id, thandi.id


def test_search_finds_a_customer_by_each_key(
    web_app: Flask, client: FlaskClient, login: Login, tariff: None
) -> None:
    li, thandi = _two_accounts(web_app)
    login(client, "cai")
    with state(web_app).sessions() as session:
        li_no = session.get_one(Customer, li).customer_no
        thandi_no = session.get_one(Customer, thandi).customer_no
    for query, wanted in (
        ("wei", li_no),  # part of the name, any case
        ("THANDI nkosi", thandi_no),
        (li_no, li_no),  # customer number
        (METER_NO, li_no),  # meter number
        ("0000123", li_no),  # the start of one
        (PAN, thandi_no),  # a keypad meter's PAN
        ("6007 2700 0000 0000 09", thandi_no),  # as printed, in groups
        ("5a00000000001234", li_no),  # card serial
    ):
        answer = client.get("/customers/", query_string={"q": query})
        assert answer.status_code == 200
        found = re.findall(r'data-customer-no="(\d{12})"', answer.text)
        assert found == [wanted], (query, found)
    answer = client.get("/customers/", query_string={"q": "nobody%"})
    assert 'id="no-results"' in answer.text and "nobody%" in answer.text


def test_the_customer_page_shows_account_meters_cards_sales_chart_and_findings(
    web_app: Flask, client: FlaskClient, login: Login, tariff: None
) -> None:
    if "selling.receipt" not in web_app.view_functions:  # until the selling part has it
        web_app.add_url_rule("/sell/receipts/<int:sale_id>", "selling.receipt", lambda sale_id: "")
    li, thandi = _two_accounts(web_app)
    operator_id = login(client, "cai")
    with state(web_app).sessions.begin() as session:
        meter = session.scalars(select(Meter).where(Meter.customer_id == li)).one()
        card = session.scalars(select(Card).where(Card.customer_id == li)).one()
        for month, quantity in (("2026-01", 21000), ("2026-02", 18050), ("2026-03", 0)):
            session.add(MonthlyUsage(meter_id=meter.id, month=month, quantity=quantity))
        base = datetime.now(UTC) - timedelta(days=3)
        for n, (tendered, status) in enumerate(((10000, "delivered"), (5000, "written"))):
            session.add(
                Sale(
                    request_id=f"page-{n}",
                    kind=SaleKind.OPENING if n == 0 else SaleKind.SALE,
                    status=SaleStatus(status),
                    customer_id=li,
                    meter_id=meter.id,
                    card_id=card.id,
                    operator_id=operator_id,
                    site="HQ",
                    purchase_count=n + 1,
                    tendered=tendered,
                    credit=tendered,
                    card_amount=tendered,
                    created_at=base + timedelta(days=n),
                )
            )
        session.add_all(
            [
                Finding(
                    kind=FindingKind.TAMPER,
                    customer_id=li,
                    meter_id=meter.id,
                    detail="cover opened 2 times",
                ),
                Finding(
                    kind=FindingKind.MISMATCH,
                    status=FindingStatus.CLOSED,
                    customer_id=li,
                    meter_id=meter.id,
                    detail="consumption 12.00 above the tariff's bounds",
                    closed_at=base,
                    note="meter checked",
                ),
            ]
        )
    answer = client.get(f"/customers/{li}")
    assert answer.status_code == 200
    page = answer.text
    assert "Li Wei" in page and METER_NO in page and "5A00000000001234" in page
    assert "flat" in page and "category default" in page
    # the chart: one bar per month, oldest first, in an SVG drawn by the server
    svg = page[page.index('<figure class="chart" id="consumption-chart"') : page.index("</svg>")]
    assert re.findall(r'data-label="([\d-]+)"', svg) == ["2026-01", "2026-02", "2026-03"]
    assert re.findall(r"<title>[\d-]+: ([^<\s]+)", svg) == ["210", "180.5", "0"]
    assert svg.count("<rect") == 3 and "kWh" in svg
    assert "<script" not in page.split("</main>")[0]  # nothing inline (the CSP allows none)
    # sales, latest first, each with its receipt link
    assert re.findall(r'data-sale="(\d+)"', page) == ["2", "1"]
    with web_app.test_request_context():
        receipt = url_for("selling.receipt", sale_id=1)
    assert page.count('class="receipt-link"') == 2 and f'href="{receipt}"' in page
    assert "100.00" in page and "50.00" in page
    # findings, open and closed
    assert "cover opened 2 times" in page and "meter checked" in page
    assert "1 open" in page
    # a cashier sees no supervisor's actions
    assert 'id="replace-card"' not in page and 'id="close-account"' not in page

    keypad = client.get(f"/customers/{thandi}").text
    assert f'data-pan="{PAN}"' in keypad and "123456" in keypad
    assert 'id="no-consumption"' in keypad and 'id="issue-card"' not in keypad
    assert client.get("/customers/999").status_code == 404
    assert client.get("/customers/99999999999").status_code == 404  # past PostgreSQL's integer


# ---------------------------------------------------------------- opening an account


def test_form_fields_are_checked_and_a_refusal_writes_nothing(
    web_app: Flask, client: FlaskClient, login: Login, tariff: None
) -> None:
    login(client, "cai")
    base = {"name": "Li Wei", "category": "residential", "kind": "card", "meter_no": METER_NO}
    for changes, sentence in (
        ({"name": "  "}, "Name: give the customer's name."),
        ({"meter_no": "12345"}, "Meter number: give the meter's 12 digits."),
        ({"meter_no": "00001234567x"}, "Meter number: give the meter's 12 digits."),
        ({"ct": "0"}, "CT ratio: give a whole number from 1 to 9999."),
        ({"category": "nope"}, "Category: choose the customer's category."),
        ({"issue": "yes", "amount": "12.345"}, "Amount: 12.345 is not an amount of money"),
        ({"issue": "yes", "amount": "0"}, "Amount: give an amount above 0, or leave it empty."),
        (
            {"category": "commercial"},
            "Tariff: category Commercial has no default tariff; choose a tariff.",
        ),
        ({"kind": "keypad", "meter_no": "", "pan": ""}, "PAN: a keypad meter needs its STS"),
        (
            {"kind": "keypad", "meter_no": "", "pan": "1234", "sgc": "1", "ti": "1", "krn": "1"},
            "PAN: '1234' is not a meter PAN",
        ),
    ):
        answer = post(client, "/customers/new", **{**base, **changes})
        assert answer.status_code == 400, (changes, answer.text)
        assert error_of(answer).startswith(sentence), (changes, error_of(answer))
        # what was typed stays in the form
        assert 'value="Li Wei"' in answer.text or changes.get("name")
    assert customer_count(web_app) == 0
    assert audit_of(web_app, "customer.") == []

    answer = post(client, "/customers/new", **base)  # no card asked for: no reader needed
    assert answer.status_code == 302
    again = post(client, "/customers/new", **{**base, "name": "Someone Else"})
    assert again.status_code == 409
    assert error_of(again) == f"Meter {METER_NO} is registered already (customer 100000000001)."
    assert customer_count(web_app) == 1


def test_a_keypad_account_is_opened_with_its_sts_identity(
    web_app: Flask, client: FlaskClient, login: Login, tariff: None
) -> None:
    login(client, "cai")
    answer = post(
        client,
        "/customers/new",
        name="Thandi Nkosi",
        category="residential",
        kind="keypad",
        pan="6007 2700 0000 0000 09",
        sgc="123456",
        ti="1",
        krn="1",
        kt="2",
        base_date="2014",
        ea="07",
        dkga="04",
        issue="yes",  # ignored: a keypad meter takes tokens, not cards
    )
    assert answer.status_code == 302, answer.text
    page = client.get(answer.headers["Location"], follow_redirects=True).text
    assert "Account 100000000001 opened." in page
    assert f'data-pan="{PAN}"' in page and "000000000009" in page
    (entry,) = audit_of(web_app, "customer.")
    assert entry[0] == "customer.open" and entry[2]["kind"] == "keypad"


def test_open_an_account_with_its_opening_card_through_pcscd(
    vpcd_reader: str, web_app: Flask, client: FlaskClient, login: Login, tariff: None
) -> None:
    login(client, "cai")
    empty_reader(web_app)
    answer = open_with_card(client, web_app)
    assert answer.status_code == 409
    assert error_of(answer) == "There is no card in the reader: put a blank card in it."
    assert customer_count(web_app) == 0  # nothing written

    serial = blank_in_reader(web_app)
    answer = open_with_card(client, web_app, request_id="open-1")
    assert answer.status_code == 200, answer.text
    assert f'<code id="card-serial">{serial}</code>' in answer.text
    assert re.search(r'id="credit">100.00<', answer.text)
    card = card_of(web_app, serial)
    assert card.status is CardStatus.ACTIVE and card.generation == 1
    assert (card.purchase_count, card.purse_amount) == (1, 10000)
    with state(web_app).sessions() as session:
        (sale,) = session.scalars(select(Sale)).all()
        assert (sale.kind, sale.status, sale.tendered) == (
            SaleKind.OPENING,
            SaleStatus.WRITTEN,
            10000,
        )
    actions = [(a, s) for a, s, _d in audit_of(web_app) if not a.startswith(("vcard", "login"))]
    customer = card.customer_id
    assert actions == [("customer.open", f"customer:{customer}"), ("card.issue", f"card:{serial}")]

    # the same form sent again shows the first result: no second sale, no refusal
    again = open_with_card(client, web_app, request_id="open-1", meter_no=METER_NO)
    assert again.status_code == 409  # the meter is registered: nothing is opened twice
    repeat = post(client, f"/customers/{customer}/issue", request_id="open-1", amount="100")
    assert repeat.status_code == 200 and serial in repeat.text
    with state(web_app).sessions() as session:
        assert session.scalar(select(func.count(Sale.id))) == 1

    # the card now in the reader is a customer's card: a second issue is refused
    other = post(
        client,
        "/customers/new",
        name="Wang Fang",
        category="residential",
        kind="card",
        meter_no=OTHER_METER_NO,
        issue="yes",
    )
    assert other.status_code == 409
    assert error_of(other) == (
        f"Card {serial} in the reader is already a card of customer 100000000001: "
        "put a blank card in the reader."
    )
    assert customer_count(web_app) == 1
    page = client.get(f"/customers/{customer}").text
    assert f'data-serial="{serial}" data-status="active"' in page
    assert 'id="issue-card"' not in page
    # the card in the reader leads to its customer
    found = client.get("/customers/in-reader")
    assert found.status_code == 302 and found.headers["Location"] == f"/customers/{customer}"
    empty_reader(web_app)
    found = client.get("/customers/in-reader", follow_redirects=True)
    assert "There is no card in the reader." in found.text


def test_an_account_opened_without_a_card_gets_it_from_its_page(
    vpcd_reader: str, web_app: Flask, client: FlaskClient, login: Login, tariff: None
) -> None:
    login(client, "cai")
    answer = post(
        client, "/customers/new", name="Li Wei", category="residential", meter_no=METER_NO
    )
    assert answer.status_code == 302
    customer = int(answer.headers["Location"].rsplit("/", 1)[1])
    assert 'id="issue-card"' in client.get(f"/customers/{customer}").text
    empty_reader(web_app)
    refused = post(client, f"/customers/{customer}/issue")
    assert refused.status_code == 409
    assert error_of(refused) == "There is no card in the reader: put a blank card in it."
    bad = post(client, f"/customers/{customer}/issue", amount="ten")
    assert bad.status_code == 400 and error_of(bad).startswith("Amount: ten is not an amount")
    serial = blank_in_reader(web_app)
    issued = post(client, f"/customers/{customer}/issue")  # no first purchase
    assert issued.status_code == 200, issued.text
    card = card_of(web_app, serial)
    assert card.status is CardStatus.ACTIVE and card.purse_amount == 0


# ---------------------------------------------------------------- replacement and closing


def test_a_replacement_card_carries_the_credit_and_the_old_card_is_refused(
    vpcd_reader: str, web_app: Flask, client: FlaskClient, login: Login, tariff: None
) -> None:
    login(client, "sam", Role.SUPERVISOR)
    old = blank_in_reader(web_app)
    assert open_with_card(client, web_app).status_code == 200
    customer = card_of(web_app, old).customer_id
    page = client.get(f"/customers/{customer}").text
    assert 'id="replace-card"' in page and 'id="close-account"' in page

    refused = post(client, f"/customers/{customer}/replace", reason="lost")
    assert refused.status_code == 409  # the old card is still in the reader
    assert error_of(refused).startswith(f"Card {old} in the reader is already a card of")
    assert post(client, f"/customers/{customer}/replace", reason="stolen").status_code == 400

    new = blank_in_reader(web_app)
    answer = post(client, f"/customers/{customer}/replace", reason="lost")
    assert answer.status_code == 200, answer.text
    assert f'<code id="card-serial">{new}</code>' in answer.text
    assert "purchase 1, 100.00" in answer.text
    assert card_of(web_app, old).status is CardStatus.LOST
    card = card_of(web_app, new)
    assert card.status is CardStatus.ACTIVE and card.generation == 2
    assert (card.purchase_count, card.purse_amount) == (1, 10000)
    ((_action, subject, detail),) = audit_of(web_app, "card.replace")
    assert subject == f"card:{new}" and detail["old_card"] == old and detail["reason"] == "lost"

    # the lost card is refused from now on: closing with it says so and changes nothing
    put_in_reader(web_app, old)
    refused = post(client, f"/customers/{customer}/close")
    assert refused.status_code == 409
    assert error_of(refused).startswith(f"The account was not closed: card {old}")
    assert "lost" in error_of(refused)
    with state(web_app).sessions() as session:
        assert session.get_one(Customer, customer).status == AccountStatus.ACTIVE


def test_closing_refunds_the_meter_credit_with_the_card_fresh_from_the_meter(
    vpcd_reader: str, web_app: Flask, client: FlaskClient, login: Login, tariff: None
) -> None:
    login(client, "sam", Role.SUPERVISOR)
    serial = blank_in_reader(web_app)
    assert open_with_card(client, web_app).status_code == 200
    customer = card_of(web_app, serial).customer_id

    refused = post(client, f"/customers/{customer}/close", reason="moved away")
    assert refused.status_code == 409  # not in the meter since it was written
    assert error_of(refused) == (
        f"The account was not closed: card {serial} carries no write-back: insert it into "
        f"meter {METER_NO} first, so the meter writes its final state to it."
    )
    other = blank_in_reader(web_app)
    wrong = post(client, f"/customers/{customer}/close")
    assert wrong.status_code == 409
    assert error_of(wrong) == (
        f"Card {other} in the reader is not a card of customer 100000000001: "
        "put the customer's card in the reader."
    )

    outcome = meter_takes(web_app, serial)
    assert outcome.loaded == 10000, outcome
    answer = post(client, f"/customers/{customer}/close", reason="moved away")
    assert answer.status_code == 200, answer.text
    assert re.search(r'id="refund">100.00<', answer.text)
    with state(web_app).sessions() as session:
        row = session.get_one(Customer, customer)
        assert row.status == AccountStatus.CLOSED
    assert card_of(web_app, serial).status is CardStatus.CLOSED
    ((_action, subject, detail),) = audit_of(web_app, "customer.close")
    assert subject == f"customer:{customer}" and detail["refund"] == "100.00"
    page = client.get(f"/customers/{customer}").text
    assert 'id="close-account"' not in page and "moved away" in page
    # the write-back read at closing is on the page: the meter's reading
    assert 'id="reconciliations"' in page


# ---------------------------------------------------------------- roles


def test_roles_guard_every_customer_endpoint(
    web_app: Flask, client: FlaskClient, login: Login, tariff: None
) -> None:
    li, _thandi = _two_accounts(web_app)
    rules = [r for r in web_app.url_map.iter_rules() if r.endpoint.startswith("customers.")]
    assert {r.endpoint for r in rules} >= {
        "customers.index",
        "customers.show",
        "customers.new",
        "customers.issue",
        "customers.replace",
        "customers.close",
    }
    anonymous = web_app.test_client()
    for rule in rules:
        path = rule.build({"customer_id": li}, append_unknown=False)[1]  # type: ignore[index]
        assert anonymous.get(path).status_code == 302, path
        answer = anonymous.get(path, headers={"Accept": "application/json"})
        assert answer.status_code == 401, path

    login(client, "cai")
    token = csrf_token(client)
    for path in (f"/customers/{li}/replace", f"/customers/{li}/close"):
        for method in ("GET", "POST"):
            answer = client.open(path, method=method, data={"csrf_token": token})
            assert answer.status_code == 403, (method, path)
            assert "This needs the supervisor role; you are logged in as cashier." in answer.text
    with state(web_app).sessions() as session:
        assert session.get_one(Customer, li).status == AccountStatus.ACTIVE
        assert session.scalar(select(Operator.role).where(Operator.username == "cai")) == "cashier"
    for path in ("/customers/", f"/customers/{li}", "/customers/new", f"/customers/{li}/issue"):
        assert client.get(path).status_code == 200, path
    answer = client.post("/customers/new", data={"name": "No Token"})
    assert answer.status_code == 400  # a form without the CSRF token
    assert customer_count(web_app) == 2


def test_the_customer_pages_speak_the_operators_language(
    web_app: Flask, client: FlaskClient, login: Login, tariff: None
) -> None:
    li, _thandi = _two_accounts(web_app)
    login(client, "wu", locale="zh_Hans_CN")
    page = client.get(f"/customers/{li}").text
    assert "卡参数" in page and "售电记录" in page and "尚无售电记录。" in page
    answer = post(client, "/customers/new", name="", category="residential", meter_no=METER_NO)
    assert answer.status_code == 400 and error_of(answer) == "姓名：请输入客户姓名。"
