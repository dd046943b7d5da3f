"""Selling in a real browser (Debian's headless Chromium): a card sale and a token sale.

The card is a virtual card in the vpcd reader, issued first; every step
runs through the pages as an operator clicks them, with the site's
Content-Security-Policy in force (a page that broke it would log it).
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select
from test_web_selling import issued_card, open_card_account, sales
from test_web_selling_tokens import PAN, open_keypad
from web_support import add_web_operator, password_of

from cardcenter.sales.models import SaleKind, SaleStatus
from cardcenter.tokens.models import TokenRecord
from cardcenter.web.state import state

SALE_PAGE = re.compile(r".*/sell/sales/\d+$")


def log_in(page: Any, base: str, app: Flask, username: str) -> list[str]:
    """Log in through the form; the console's messages from then on (to check the CSP)."""
    add_web_operator(app, username, name=username.title())
    messages: list[str] = []
    page.on("console", lambda message: messages.append(message.text))
    page.goto(f"{base}/login")
    page.fill("#username", username)
    page.fill("#password", password_of(username))
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/")
    return messages


@pytest.mark.pcsc
def test_a_card_sale_in_the_browser_ends_on_its_receipt(
    web_app: Flask, live_server: str, page: Any, vpcd_reader: str
) -> None:
    customer_no = open_card_account(web_app, name="Li Wei")
    serial = issued_card(web_app, customer_no)
    console = log_in(page, live_server, web_app, "lan")
    page.click("nav.menu >> text=Sell")
    page.wait_for_url(f"{live_server}/sell/")
    # the reader panel sees the card (polled, as on the dashboard)
    page.wait_for_selector(f"#reader-state[data-serial='{serial}']")
    page.click("#read-card")
    page.wait_for_selector("#card-visit")
    assert page.text_content("#card-serial") == serial
    assert "Li Wei" in (page.text_content("#card-customer") or "")

    page.fill("#amount", "50")
    page.click("#quote")
    page.wait_for_selector("#confirm")
    assert page.text_content("#quote-credit") == "44.25"
    assert "0.5283 a kWh" in (page.text_content("#tariff") or "")
    page.dblclick("#confirm")  # an impatient double click sells once
    page.wait_for_url(SALE_PAGE)
    receipt = page.text_content("#receipt") or ""
    assert "CARD PURCHASE RECEIPT" in receipt and "Li Wei" in receipt and "44.25" in receipt
    sold = [s for s in sales(web_app) if s.kind is SaleKind.SALE]
    assert len(sold) == 1 and sold[0].status is SaleStatus.WRITTEN
    assert page.url.endswith(f"/sell/sales/{sold[0].id}")

    with page.expect_download() as pdf:
        page.click("#download-pdf")
    assert pdf.value.suggested_filename == f"receipt-{sold[0].id}.pdf"
    with open(pdf.value.path(), "rb") as file:
        assert file.read(5) == b"%PDF-"
    with page.expect_download() as escpos:
        page.click("#download-escpos-80")
    with open(escpos.value.path(), "rb") as file:
        assert file.read(2) == b"\x1b@"

    page.click("#reprint")
    page.wait_for_url(re.compile(r".*\?reprint="))
    assert "*** REPRINT ***" in (page.text_content("#receipt") or "")
    assert not [m for m in console if "Content Security Policy" in m], console


def test_a_token_sale_in_the_browser_shows_the_digits_in_fours(
    web_app: Flask, live_server: str, page: Any
) -> None:
    open_keypad(web_app)
    console = log_in(page, live_server, web_app, "mo")
    page.goto(f"{live_server}/sell/")
    page.fill("#pan", PAN)
    page.fill("#token-amount", "100")
    page.click("#token-trial")
    page.wait_for_selector("#vend")
    assert page.text_content("#trial-kwh") == "189.2 kWh"
    page.click("#vend")
    page.wait_for_url(SALE_PAGE)
    shown = page.locator("#receipt .token").all_text_contents()
    with state(web_app).sessions() as session:
        digits = list(session.scalars(select(TokenRecord.digits).order_by(TokenRecord.position)))
    assert len(shown) == len(digits) == 3  # two key change sections first, then the credit
    assert [text.replace(" ", "") for text in shown] == digits
    assert all(re.fullmatch(r"\d{4}( \d{4}){4}", text) for text in shown)
    assert "TOKEN PURCHASE RECEIPT" in (page.text_content("#receipt") or "")
    assert not [m for m in console if "Content Security Policy" in m], console
