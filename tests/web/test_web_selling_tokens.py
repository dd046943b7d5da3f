"""Selling a token to a keypad meter at the desk: trial, vend, receipt, reprint.

The keypad meter model (``cardmeter``), made with the decoder key from the
application's own key store, judges the digits the receipt shows: they are
entered in the receipt's order and must all be accepted.
"""

from __future__ import annotations

import re

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from test_web_selling import audited, form_fields, residential
from web_support import Login, csrf_token

from cardcenter.customers.services import open_keypad_account
from cardcenter.operators.models import Role
from cardcenter.sales.models import Sale, SaleKind
from cardcenter.tokens.models import TokenRecord
from cardcenter.web.shifts import REQUIRE_SHIFT
from cardcenter.web.state import state
from cardlayout.sts.identity import BaseDate, EncryptionAlgorithm, KeyGeneration, MeterIdentity
from cardlayout.sts.vending import store_decoder_key
from cardmeter.keypad import KeypadMeter

PAN = "600727000000000009"
SGC = "123456"


def open_keypad(app: Flask) -> KeypadMeter:
    """A keypad customer on base date 1993 (run out: the first token brings a key change).

    The flat tariff has no tax here, so 100.00 buys 189.2 kWh as in the README.
    """
    with state(app).sessions.begin() as session:
        open_keypad_account(
            session, name="Thandi Nkosi", category_id=residential(session, tax_rate=0), pan=PAN,
            sgc=SGC, ti=1, krn=1, kt=2, base_date=1993, ea="07", dkga="04",
        )  # fmt: skip
    identity = MeterIdentity(
        PAN, SGC, 1, 1, 2, BaseDate(1993), EncryptionAlgorithm("07"), KeyGeneration("04")
    )
    return KeypadMeter.new(identity, store_decoder_key(state(app).keys.store, identity))


@pytest.fixture
def keypad(web_app: Flask) -> KeypadMeter:
    return open_keypad(web_app)


def trial(client: FlaskClient, pan: str, amount: str) -> str:
    answer = client.post(
        "/sell/token/trial", data={"csrf_token": csrf_token(client), "pan": pan, "amount": amount}
    )
    assert answer.status_code == 200, answer.text
    return answer.text


def vend(client: FlaskClient, fields: dict[str, str]) -> str:
    answer = client.post("/sell/token/vend", data={"csrf_token": csrf_token(client), **fields})
    assert answer.status_code == 302, answer.text
    location: str = answer.headers["Location"]
    return location


def receipt_tokens(html: str) -> list[str]:
    """The token digits a receipt page shows, in order."""
    return re.findall(r'<div class="token">([0-9 ]+)</div>', html)


def test_a_token_sale_from_trial_to_receipt_the_meter_takes_the_digits(
    web_app: Flask, client: FlaskClient, login: Login, keypad: KeypadMeter
) -> None:
    login(client, "mei")
    page = trial(client, "6007 2700 0000 0000 09", "100")
    assert "Thandi Nkosi" in page and "Meter 600727000000000009" in page
    assert re.search(r'id="trial-kwh">189\.2 kWh<', page)  # 100.00 / 0.5283, rounded down
    assert "Tariff home, version 1" in page
    with state(web_app).sessions() as session:
        assert session.scalar(select(func.count()).select_from(TokenRecord)) == 0, "a trial"

    fields = form_fields(page, "vend-form")
    assert fields["pan"] == PAN and fields["amount"] == "100.00"
    location = vend(client, fields)
    with state(web_app).sessions() as session:
        sale = session.scalars(select(Sale)).one()
        rows = list(session.scalars(select(TokenRecord).order_by(TokenRecord.position)))
    assert sale.kind is SaleKind.TOKEN and location == f"/sell/sales/{sale.id}"
    assert [row.kind.value for row in rows] == ["key_change", "key_change", "credit"]

    receipt = client.get(location).text
    assert "TOKEN PURCHASE RECEIPT" in receipt and "189.2 kWh" in receipt
    shown = receipt_tokens(receipt)
    # key change sections first, in order, then the credit; each in five groups of four
    assert shown == [" ".join(r.digits[i : i + 4] for i in range(0, 20, 4)) for r in rows]
    assert all(re.fullmatch(r"\d{4}( \d{4}){4}", digits) for digits in shown)
    words = re.findall(r'<div class="note">(\d\. [^<]+)</div>', receipt)
    assert words == [
        "1. Key change, section 1 of 2",
        "2. Key change, section 2 of 2",
        "3. Credit 189.2 kWh",
    ]
    outcomes = [keypad.enter(digits.replace(" ", "")) for digits in shown]
    assert all(o.accepted for o in outcomes), [o.reason for o in outcomes]

    # the same form again (a double click, a retry): the same tokens, never new ones
    assert vend(client, fields) == location
    with state(web_app).sessions() as session:
        assert session.scalar(select(func.count()).select_from(TokenRecord)) == 3
        assert session.scalar(select(func.count()).select_from(Sale)) == 1
    assert [(a, s) for a, s, _ in audited(web_app, "token.")] == [("token.vend", f"sale:{sale.id}")]

    pdf = client.get(f"{location}/receipt.pdf")
    assert pdf.mimetype == "application/pdf" and pdf.data.startswith(b"%PDF-")
    raw = client.get(f"{location}/receipt-58mm.bin").data.decode("cp437")
    assert all(digits in raw for digits in shown)


def test_a_token_reprint_shows_the_same_digits_and_amounts_marked(
    web_app: Flask, client: FlaskClient, login: Login, keypad: KeypadMeter
) -> None:
    login(client, "mei")
    location = vend(client, form_fields(trial(client, PAN, "50.00"), "vend-form"))
    original = client.get(location).text
    reprint = client.post(f"{location}/reprint", data={"csrf_token": csrf_token(client)})
    assert reprint.status_code == 302
    again = client.get(reprint.headers["Location"]).text
    assert "*** REPRINT ***" in again and "*** REPRINT ***" not in original
    assert receipt_tokens(again) == receipt_tokens(original) and len(receipt_tokens(again)) == 3

    def pairs(html: str) -> list[str]:
        return re.findall(r'<div class="pair"><span>[^<]*</span><span>([^<]*)</span>', html)

    # every figure the same (the reprint adds only its mark and time)
    assert pairs(again) == pairs(original)
    assert [a for a, _s, _d in audited(web_app, "receipt.")] == ["receipt.reprint"]

    # a token cannot be taken back
    boss = web_app.test_client()
    login(boss, "sun", Role.SUPERVISOR)
    refused = boss.get(f"{location}/reverse")
    assert refused.status_code == 409 and "cannot be taken back" in refused.text


@pytest.mark.parametrize(
    ("pan", "amount", "sentence"),
    [
        ("", "10", "PAN: give the meter&#39;s 18-digit number."),
        ("12345", "10", "PAN: 12345 is not a meter number: give its 18 digits."),
        (PAN, "", "Amount: give the amount the customer pays."),
        (PAN, "-1", "Amount: give an amount above 0."),
        (PAN, "1.001", "Amount: give at most 2 decimal places."),
    ],
)
def test_a_wrong_token_form_is_named_and_nothing_is_issued(
    web_app: Flask,
    client: FlaskClient,
    login: Login,
    keypad: KeypadMeter,
    pan: str,
    amount: str,
    sentence: str,
) -> None:
    login(client, "mei")
    token = csrf_token(client)
    for url in ("/sell/token/trial", "/sell/token/vend"):
        answer = client.post(
            url, data={"csrf_token": token, "pan": pan, "amount": amount, "request_id": "web-1"}
        )
        assert answer.status_code == 400 and sentence in answer.text, answer.text
        assert 'id="token-form"' in answer.text
    with state(web_app).sessions() as session:
        assert session.scalar(select(func.count()).select_from(TokenRecord)) == 0
        assert session.scalar(select(func.count()).select_from(Sale)) == 0


def test_an_unknown_meter_is_said_so_on_the_form(
    web_app: Flask, client: FlaskClient, login: Login, keypad: KeypadMeter
) -> None:
    login(client, "mei")
    other = "600727000000000108"
    answer = client.post(
        "/sell/token/trial", data={"csrf_token": csrf_token(client), "pan": other, "amount": "10"}
    )
    assert answer.status_code == 404 and f"no keypad meter has PAN {other}" in answer.text
    assert client.get(f"/sell/token?pan={PAN}").status_code == 200


def test_with_shifts_required_no_token_is_sold_outside_a_shift(
    web_app: Flask, client: FlaskClient, login: Login, keypad: KeypadMeter
) -> None:
    web_app.config[REQUIRE_SHIFT] = True
    login(client, "mei")
    fields = {"pan": PAN, "amount": "100", "request_id": "web-shiftless"}
    answer = client.post("/sell/token/vend", data={"csrf_token": csrf_token(client), **fields})
    assert answer.status_code == 409 and "Open a shift" in answer.text
    with state(web_app).sessions() as session:
        assert session.scalar(select(func.count()).select_from(Sale)) == 0
    opened = client.post(
        "/shifts/open", data={"csrf_token": csrf_token(client), "opening_float": "50"}
    )
    assert opened.status_code in (200, 302), opened.text
    assert "/sell/sales/" in vend(client, fields)
