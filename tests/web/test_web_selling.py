"""Selling to a card at the desk: read, quote, confirm, receipt, reversal, a pulled card.

Every card flow goes through pcscd: the card is a virtual card of the
desk's tray, in the vpcd reader, issued first by the centre's own
``issue_card`` (through the reader too). The helpers here are shared with
``test_web_selling_browser.py``.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from web_support import Login, csrf_token

from cardcenter.cards.issuing import issue_card
from cardcenter.cards.models import Card
from cardcenter.core.db import utcnow
from cardcenter.customers.services import open_account
from cardcenter.operators.models import AuditEntry, Role
from cardcenter.sales.desk import Desk
from cardcenter.sales.models import Sale, SaleStatus
from cardcenter.tariffs.models import Tariff, TariffKind
from cardcenter.tariffs.services import add_tariff, get_or_create_category
from cardcenter.web.state import state
from cardlayout.vcard.cos import VirtualCard

pcsc = pytest.mark.pcsc  # the tests with a card in the reader; the form checks need none

PRICE = 5283  # 0.5283 a kWh
TAX_RATE = 1300  # 13 %, included in what is paid
METER_NO = "000012345678"


# ---------------------------------------------------------------- shared helpers


def residential(session: Session, tax_rate: int = TAX_RATE) -> int:
    """The residential category and its flat tariff "home" (made once); the category's id."""
    category = get_or_create_category(session, "residential", "Residential")
    if session.scalar(select(Tariff.id).where(Tariff.name == "home")) is None:
        add_tariff(
            session,
            "home",
            TariffKind.FLAT,
            {"rate_prices": [PRICE]},
            category="residential",
            active_from=utcnow() - timedelta(days=30),
            tax_rate=tax_rate,
        )
    return category.id


def open_card_account(app: Flask, name: str = "Li Wei") -> str:
    """A customer with a card meter on the flat tariff (13 % tax); the customer number."""
    with state(app).sessions.begin() as session:
        category_id = residential(session)
        customer = open_account(session, name=name, meter_no=METER_NO, category_id=category_id)
        return customer.customer_no


def issued_card(app: Flask, customer_no: str, amount: int = 10000) -> str:
    """A new virtual card in the reader, issued to the customer through pcscd; its serial."""
    tray = state(app).tray
    serial = tray.new_card()
    tray.insert(serial)
    desk = Desk(state(app).sessions, state(app).keys, operator="setup", site="HQ")
    with state(app).reader.channel() as channel:
        issue_card(desk, channel, customer_no, amount)
    return serial


def card_in_reader(app: Flask) -> VirtualCard:
    """The virtual card the tray has in the reader (to arm a tear on it)."""
    card = state(app).tray.card
    assert card is not None
    return card


def put_back(app: Flask, serial: str) -> None:
    """The customer puts the pulled card back at once (the tray lets pcscd notice the pull)."""
    state(app).tray.insert(serial)


def form_fields(html: str, form_id: str) -> dict[str, str]:
    """The hidden fields of the form ``form_id`` on a page, as a browser would send them."""
    found = re.search(rf'<form[^>]*id="{form_id}".*?</form>', html, re.S)
    assert found is not None, f"no form {form_id} on the page:\n{html}"
    fields = re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', found.group(0))
    return dict(fields)


def sales(app: Flask) -> list[Sale]:
    with state(app).sessions() as session:
        return list(session.scalars(select(Sale).order_by(Sale.id)))


def audited(app: Flask, prefix: str = "") -> list[tuple[str, str | None, dict[str, Any]]]:
    with state(app).sessions() as session:
        return [
            (e.action, e.subject, e.detail)
            for e in session.scalars(select(AuditEntry).order_by(AuditEntry.id))
            if e.action.startswith(prefix)
        ]


def quote(client: FlaskClient, serial: str, amount: str) -> str:
    """Read the card, then price ``amount``: the quote page."""
    token = csrf_token(client)
    read = client.post("/sell/card/read", data={"csrf_token": token})
    assert read.status_code == 200, read.text
    assert serial in read.text
    priced = client.post(
        "/sell/card/quote", data={"csrf_token": token, "serial": serial, "amount": amount}
    )
    assert priced.status_code == 200, priced.text
    return priced.text


def confirm(client: FlaskClient, fields: dict[str, str]) -> Any:
    return client.post("/sell/card/confirm", data={"csrf_token": csrf_token(client), **fields})


@pytest.fixture
def card(web_app: Flask, vpcd_reader: str) -> dict[str, str]:
    """A customer whose opening card (100.00 on it) is in the desk's reader."""
    customer_no = open_card_account(web_app)
    return {"customer_no": customer_no, "serial": issued_card(web_app, customer_no)}


# ---------------------------------------------------------------- a card sale


@pcsc
def test_a_card_sale_through_pcscd_from_reading_to_receipt(
    web_app: Flask, client: FlaskClient, login: Login, card: dict[str, str]
) -> None:
    login(client, "mei", Role.CASHIER)
    token = csrf_token(client)
    read = client.post("/sell/card/read", data={"csrf_token": token})
    assert read.status_code == 200
    assert "Li Wei" in read.text and card["serial"] in read.text
    assert 'id="amount-form"' in read.text
    # the opening card has not been in the meter: nothing to reconcile yet
    assert "Nothing new to reconcile" in read.text

    page = quote(client, card["serial"], "50")
    # 50.00 paid, 13 % tax included: 5.75 tax, 44.25 credit; the flat tariff's price shown
    assert re.search(r'id="quote-tendered">50\.00<', page)
    assert re.search(r'id="quote-tax">− 5\.75<', page)
    assert re.search(r'id="quote-credit">44\.25<', page)
    assert "Tariff home, version 1" in page and "0.5283 a kWh" in page
    assert "13.00% included" in page
    assert sales(web_app)[-1].kind == "opening", "a quote records nothing"

    fields = form_fields(page, "confirm-form")
    assert fields["amount"] == "50.00" and fields["serial"] == card["serial"]
    assert fields["request_id"].startswith("web-")
    answer = confirm(client, fields)
    assert answer.status_code == 302, answer.text
    sale = sales(web_app)[-1]
    assert answer.headers["Location"] == f"/sell/sales/{sale.id}"
    assert sale.status is SaleStatus.WRITTEN and sale.request_id == fields["request_id"]
    assert (sale.tendered, sale.tax, sale.credit) == (5000, 575, 4425)

    receipt = client.get(answer.headers["Location"])
    assert receipt.status_code == 200
    assert f"Sale {sale.id} is written to card {card['serial']} and read back." in receipt.text
    assert "CARD PURCHASE RECEIPT" in receipt.text and "Li Wei" in receipt.text
    assert "50.00" in receipt.text and "44.25" in receipt.text
    for link in (
        f"/sell/sales/{sale.id}/receipt.pdf",
        f"/sell/sales/{sale.id}/receipt-58mm.bin",
        f"/sell/sales/{sale.id}/receipt-80mm.bin",
    ):
        assert f'href="{link}"' in receipt.text
    assert 'id="reverse"' not in receipt.text, "a cashier is not offered the reversal"

    # the card carries it: the desk reads the new purse back (opening 100.00, not loaded,
    # so this sale is added to purchase 1)
    with state(web_app).sessions() as session:
        row = session.scalars(select(Card).where(Card.serial == card["serial"])).one()
        assert (row.purchase_count, row.purse_amount, row.pending_action) == (1, 8850 + 4425, None)
    assert [(a, s) for a, s, _ in audited(web_app, "sale.")] == [
        ("sale.confirm", f"sale:{sale.id}")
    ]
    assert audited(web_app, "sale.")[0][2]["amount"] == "50.00"
    assert [a for a, _s, _d in audited(web_app, "card.read")] == ["card.read"] * 2


@pcsc
def test_the_same_confirm_form_sent_twice_sells_once(
    web_app: Flask, client: FlaskClient, login: Login, card: dict[str, str]
) -> None:
    login(client, "mei")
    fields = form_fields(quote(client, card["serial"], "20.50"), "confirm-form")
    first = confirm(client, fields)
    again = confirm(client, fields)
    assert first.status_code == again.status_code == 302
    assert first.headers["Location"] == again.headers["Location"]
    sold = [s for s in sales(web_app) if s.request_id == fields["request_id"]]
    assert len(sold) == 1 and sold[0].tendered == 2050 and sold[0].status is SaleStatus.WRITTEN
    assert len(audited(web_app, "sale.confirm")) == 1
    with state(web_app).sessions() as session:
        purse = session.scalar(select(Card.purse_amount).where(Card.serial == card["serial"]))
    assert purse == 8850 + sold[0].credit, "the card got the sale once"

    # the same request id with another amount is a mistake, not a retry: refused, nothing sold
    changed = confirm(client, {**fields, "amount": "30"})
    assert changed.status_code == 409
    assert "use a new request id for a new sale" in changed.text
    assert len(sales(web_app)) == 2


@pcsc
def test_a_card_swapped_after_the_quote_is_not_sold_to(
    web_app: Flask, client: FlaskClient, login: Login, card: dict[str, str]
) -> None:
    login(client, "mei")
    fields = form_fields(quote(client, card["serial"], "10"), "confirm-form")
    tray = state(web_app).tray
    tray.insert(tray.new_card())  # another (blank) card in the reader
    answer = confirm(client, fields)
    assert answer.status_code == 409
    assert f"not card {card['serial']} that the quote was for" in answer.text
    assert len(sales(web_app)) == 1  # the opening sale only
    tray.insert(card["serial"])
    assert confirm(client, fields).status_code == 302  # the right card back: sold
    assert len(sales(web_app)) == 2


# ---------------------------------------------------------------- a pulled card


@pcsc
def test_a_card_pulled_mid_write_shows_what_to_do_and_the_same_form_finishes_it_once(
    web_app: Flask, client: FlaskClient, login: Login, card: dict[str, str]
) -> None:
    login(client, "mei")
    fields = form_fields(quote(client, card["serial"], "30"), "confirm-form")
    card_in_reader(web_app).arm_tear(40)  # in the middle of the sale's write
    torn = confirm(client, fields)
    assert torn.status_code == 409
    assert "The card was pulled out during the write" in torn.text
    assert "Put the card back in the reader and repeat, or recover the card." in torn.text
    assert "nothing is lost: put the card back" in torn.text  # the desk's own sentence
    assert form_fields(torn.text, "repeat-form") == fields, "the repeat sends the same request"
    assert 'id="recover"' in torn.text
    pending = sales(web_app)[-1]
    assert pending.status is SaleStatus.PENDING and pending.request_id == fields["request_id"]
    assert [a for a, _s, _d in audited(web_app, "sale.")] == ["sale.interrupted"]

    put_back(web_app, card["serial"])
    finished = confirm(client, form_fields(torn.text, "repeat-form"))
    assert finished.status_code == 302, finished.text
    sold = [s for s in sales(web_app) if s.request_id == fields["request_id"]]
    assert len(sold) == 1 and sold[0].status is SaleStatus.WRITTEN
    assert len(sales(web_app)) == 2
    with state(web_app).sessions() as session:
        row = session.scalars(select(Card).where(Card.serial == card["serial"])).one()
    assert (row.purse_amount, row.pending_action) == (8850 + sold[0].credit, None)
    assert [a for a, _s, _d in audited(web_app, "sale.")] == ["sale.interrupted", "sale.confirm"]
    assert confirm(client, fields).headers["Location"] == finished.headers["Location"]
    assert len(audited(web_app, "sale.confirm")) == 1


@pcsc
def test_recover_settles_a_pulled_card_and_the_cancelled_request_sells_nothing(
    web_app: Flask, client: FlaskClient, login: Login, card: dict[str, str]
) -> None:
    login(client, "mei")
    fields = form_fields(quote(client, card["serial"], "30"), "confirm-form")
    card_in_reader(web_app).arm_tear(3)  # early: the purse still holds the opening credit
    assert confirm(client, fields).status_code == 409
    put_back(web_app, card["serial"])

    # a read shows the write in flight and offers the recovery, not a new sale
    read = client.post("/sell/card/read", data={"csrf_token": csrf_token(client)})
    assert read.status_code == 200 and 'id="unsettled"' in read.text
    assert 'id="amount-form"' not in read.text

    recovered = client.post("/sell/recover", data={"csrf_token": csrf_token(client)})
    assert recovered.status_code == 200
    assert 'data-settled="cancelled"' in recovered.text
    assert "nothing was taken for it" in recovered.text
    assert sales(web_app)[-1].status is SaleStatus.VOID
    assert [a for a, _s, _d in audited(web_app, "sale.")] == ["sale.interrupted", "sale.recover"]

    # the old form again: the desk answers with the cancelled sale; nothing is sold
    again = confirm(client, fields)
    assert again.status_code == 302 and again.headers["Location"] == "/sell/"
    assert "was cancelled when the card was recovered" in client.get("/sell/").text
    assert len(sales(web_app)) == 2 and sales(web_app)[-1].status is SaleStatus.VOID
    with state(web_app).sessions() as session:
        purse = session.scalar(select(Card.purse_amount).where(Card.serial == card["serial"]))
    assert purse == 8850
    voided = client.get(f"/sell/sales/{sales(web_app)[-1].id}")
    assert voided.status_code == 200 and "There is no receipt" in voided.text
    assert client.get(f"/sell/sales/{sales(web_app)[-1].id}/receipt.pdf").status_code == 409


# ---------------------------------------------------------------- reversal


@pcsc
def test_a_supervisor_reverses_a_card_sale_and_a_cashier_may_not(
    web_app: Flask, client: FlaskClient, login: Login, card: dict[str, str]
) -> None:
    login(client, "mei", Role.CASHIER)
    fields = form_fields(quote(client, card["serial"], "40"), "confirm-form")
    location = confirm(client, fields).headers["Location"]
    sale = sales(web_app)[-1]
    url = f"/sell/sales/{sale.id}/reverse"
    token = csrf_token(client)
    for refused in (client.get(url), client.post(url, data={"csrf_token": token, "reason": "x"})):
        assert refused.status_code == 403
        assert "This needs the supervisor role; you are logged in as cashier." in refused.text
    assert sales(web_app)[-1].status is SaleStatus.WRITTEN

    boss = web_app.test_client()
    login(boss, "sun", Role.SUPERVISOR)
    assert 'id="reverse"' in boss.get(location).text
    form = boss.get(url)
    assert form.status_code == 200 and "Reverse sale" in form.text
    token = csrf_token(boss)
    blank = boss.post(url, data={"csrf_token": token, "reason": "  "})
    assert blank.status_code == 400 and "Reason: say why the sale is reversed." in blank.text
    done = boss.post(url, data={"csrf_token": token, "reason": "customer changed their mind"})
    assert done.status_code == 302 and done.headers["Location"] == location
    reversed_sale = sales(web_app)[-1]
    assert reversed_sale.status is SaleStatus.REVERSED
    assert reversed_sale.note == "customer changed their mind"
    with state(web_app).sessions() as session:
        purse = session.scalar(select(Card.purse_amount).where(Card.serial == card["serial"]))
    assert purse == 8850, "the card is written without the sale"
    assert [(a, s) for a, s, _ in audited(web_app, "sale.reverse")] == [
        ("sale.reverse", f"sale:{sale.id}")
    ]
    page = boss.get(location).text
    assert f"Sale {sale.id} is reversed: pay 40.00 back." in page
    assert '<span class="tag off">reversed</span>' in page
    again = boss.post(url, data={"csrf_token": token, "reason": "twice"})
    assert again.status_code == 409 and "cannot be reversed" in again.text


# ---------------------------------------------------------------- receipts


@pcsc
def test_receipts_download_as_pdf_and_escpos_and_reprints_are_marked_and_audited(
    web_app: Flask, client: FlaskClient, login: Login, card: dict[str, str]
) -> None:
    login(client, "mei")
    location = confirm(
        client, form_fields(quote(client, card["serial"], "25"), "confirm-form")
    ).headers["Location"]
    sale_id = int(location.rsplit("/", 1)[1])

    pdf = client.get(f"{location}/receipt.pdf")
    assert pdf.status_code == 200 and pdf.mimetype == "application/pdf"
    assert pdf.data.startswith(b"%PDF-")
    assert pdf.headers["Content-Disposition"] == f'attachment; filename="receipt-{sale_id}.pdf"'
    for paper, columns in ((58, 32), (80, 48)):
        raw = client.get(f"{location}/receipt-{paper}mm.bin")
        assert raw.status_code == 200 and raw.mimetype == "application/octet-stream"
        assert raw.headers["Content-Disposition"] == (
            f'attachment; filename="receipt-{sale_id}-{paper}mm.bin"'
        )
        assert raw.data.startswith(b"\x1b@") and raw.data.endswith(b"\x1dV\x42\x00")
        text = raw.data.decode("cp437")
        assert "CARD PURCHASE RECEIPT" in text and "Li Wei" in text and "25.00" in text
        lines = [line for line in re.sub(r"[\x1b\x1c\x1d].{1,2}", "", text).split("\n") if line]
        assert max(len(line) for line in lines) <= columns
    assert client.get(f"{location}/receipt-81mm.bin").status_code == 404
    assert client.get("/sell/sales/999999/receipt.pdf").status_code == 404
    assert audited(web_app, "receipt.") == []  # the original prints are not reprints

    reprinted = client.post(f"{location}/reprint", data={"csrf_token": csrf_token(client)})
    assert reprinted.status_code == 302
    marked = reprinted.headers["Location"]
    assert marked.startswith(f"{location}?reprint=")
    page = client.get(marked).text
    assert "*** REPRINT ***" in page and "25.00" in page
    original = client.get(location).text
    assert "*** REPRINT ***" not in original
    escpos_link = re.search(r'id="download-escpos-58" href="([^"]+)"', page)
    assert escpos_link is not None and "reprint=" in escpos_link.group(1)
    again = client.get(escpos_link.group(1).replace("&amp;", "&")).data.decode("cp437")
    assert "*** REPRINT ***" in again and "25.00" in again
    assert [(a, s) for a, s, _ in audited(web_app, "receipt.")] == [
        ("receipt.reprint", f"sale:{sale_id}")
    ]
    assert client.get(f"{location}?reprint=yesterday").status_code == 400


# ---------------------------------------------------------------- forms


@pytest.mark.parametrize(
    ("amount", "sentence"),
    [
        ("", "Amount: give the amount the customer pays."),
        ("-5", "Amount: give an amount above 0."),
        ("0", "Amount: give an amount above 0."),
        ("12.345", "Amount: give at most 2 decimal places."),
        ("12,50", "Amount: 12,50 is not a number (write it as 100 or 100.50)."),
        ("1e3", "Amount: 1e3 is not a number (write it as 100 or 100.50)."),
        ("99999999999", "Amount: 99999999999 is too large."),
    ],
)
def test_a_wrong_amount_is_named_and_nothing_is_written(
    web_app: Flask, client: FlaskClient, login: Login, amount: str, sentence: str
) -> None:
    """Checked before the reader is touched: no card is needed to be refused."""
    login(client, "mei")
    token = csrf_token(client)
    priced = client.post(
        "/sell/card/quote", data={"csrf_token": token, "serial": "5A00", "amount": amount}
    )
    assert priced.status_code == 400 and sentence in priced.text
    assert 'id="amount-form"' in priced.text, "the form is shown again"
    sold = client.post(
        "/sell/card/confirm",
        data={"csrf_token": token, "amount": amount, "request_id": "web-x", "serial": "5A00"},
    )
    assert sold.status_code == 400 and sentence in sold.text
    with state(web_app).sessions() as session:
        assert session.scalar(select(func.count()).select_from(Sale)) == 0
    assert audited(web_app, "sale.") == []


def test_the_selling_pages_need_a_log_in_and_the_menu_offers_them(
    web_app: Flask, client: FlaskClient, login: Login
) -> None:
    answer = client.get("/sell/")
    assert answer.status_code == 302 and answer.headers["Location"].startswith("/login")
    login(client, "mei")
    page = client.get("/sell/")
    assert page.status_code == 200 and 'href="/sell/"' in page.text
    assert "No sales at this hall yet." in page.text
    assert client.get("/sell/sales/find?sale=12").status_code == 404
    assert client.get("/sell/sales/find?sale=abc").status_code == 400
    assert client.get("/sell/sales/12").status_code == 404


def test_the_selling_pages_speak_the_operators_language(
    web_app: Flask, client: FlaskClient, login: Login
) -> None:
    login(client, "lin", locale="zh_Hans_CN")
    page = client.get("/sell/").text
    assert "IC卡售电" in page and "售令牌" in page and ">售电<" in page
    refused = client.post(
        "/sell/card/quote", data={"csrf_token": csrf_token(client), "amount": "1.001"}
    )
    assert refused.status_code == 400 and "金额：最多两位小数。" in refused.text
