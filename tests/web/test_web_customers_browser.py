"""The customer pages in a real browser (Debian's headless Chromium, driven by Playwright):
an account opened with its opening card, and a replacement card, each card put in the
vpcd reader with the page's own virtual-card button and written through pcscd.
"""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from test_web_customers import (
    METER_NO,
    add_categories_and_tariff,
    blank_in_reader,
    card_of,
    empty_reader,
    open_with_card,
)
from web_support import Login, add_web_operator, password_of

from cardcenter.cards.models import CardStatus
from cardcenter.operators.models import Role
from cardcenter.web.state import state


@pytest.fixture
def tariff(web_app: Flask) -> None:
    add_categories_and_tariff(web_app)


def log_in(page: Any, base: str, username: str) -> list[str]:
    """Log in through the form; the console errors the pages go on to report (CSP refusals)."""
    errors: list[str] = []
    page.on(
        "console", lambda message: errors.append(message.text) if message.type == "error" else None
    )
    page.goto(f"{base}/login")
    page.fill("#username", username)
    page.fill("#password", password_of(username))
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/")
    return errors


def blank_card_from_the_page(page: Any) -> str:
    """Press the page's button for a new blank virtual card; its serial once pcscd shows it."""
    page.wait_for_selector("#desk-reader-virtual:not([hidden])")
    page.click("#blank-card")
    page.wait_for_selector("#desk-reader-state[data-present=yes]")
    serial: str = page.get_attribute("#desk-reader-state", "data-serial")
    assert len(serial) == 16
    return serial


def test_open_an_account_and_issue_its_card_in_the_browser(
    vpcd_reader: str, web_app: Flask, live_server: str, page: Any, tariff: None
) -> None:
    add_web_operator(web_app, "lan", Role.CASHIER, name="Lan Zhou")
    empty_reader(web_app)
    errors = log_in(page, live_server, "lan")
    page.click("nav.menu >> text=Customers")
    page.click("#open-account")
    page.wait_for_url(f"{live_server}/customers/new")
    assert page.is_visible("#card-fields") and not page.is_visible("#keypad-fields")
    page.check("#kind-keypad")  # the form shows the fields of the meter kind chosen
    assert page.is_visible("#pan") and not page.is_visible("#amount")
    page.check("#kind-card")
    page.fill("#name", "Li Wei")
    page.fill("#address", "12 Xinhua Road")
    page.fill("#meter_no", METER_NO)
    page.fill("#amount", "100")
    assert page.is_checked("#issue")
    page.wait_for_selector("#desk-reader-state[data-present=no]")
    serial = blank_card_from_the_page(page)
    page.click("#open-submit")
    page.wait_for_selector("#card-serial")
    assert page.text_content("h1") == "Card issued"
    assert page.text_content("#card-serial") == serial
    assert page.text_content("#credit") == "100.00"
    assert "Li Wei (customer 100000000001)" in (page.text_content("#result-message") or "")

    page.click("#to-customer")
    page.wait_for_selector("#customer-name")
    row = page.locator(f'#cards tr[data-serial="{serial}"]')
    assert row.get_attribute("data-status") == "active"
    assert "12 Xinhua Road" in (page.text_content("#account") or "")
    assert page.locator("#sales tbody tr[data-sale]").count() == 1
    card = card_of(web_app, serial)
    assert card.status is CardStatus.ACTIVE and card.purse_amount == 10000
    assert not [e for e in errors if "Content Security Policy" in e], errors


def test_a_supervisor_replaces_a_lost_card_in_the_browser(
    vpcd_reader: str,
    web_app: Flask,
    client: FlaskClient,
    login: Login,
    live_server: str,
    page: Any,
    tariff: None,
) -> None:
    login(client, "sam", Role.SUPERVISOR)
    old = blank_in_reader(web_app)
    assert open_with_card(client, web_app, amount="80").status_code == 200
    state(web_app).tray.remove()

    errors = log_in(page, live_server, "sam")
    page.goto(f"{live_server}/customers/")
    page.fill("#q", old)  # found by the lost card's serial
    page.press("#q", "Enter")
    page.click("#results >> text=100000000001")
    page.wait_for_selector("#customer-name")
    page.click("#replace-card")
    page.wait_for_selector("#desk-reader-state[data-present=no]")
    new = blank_card_from_the_page(page)
    assert new != old
    page.check("#reason-broken")
    page.click("#replace-submit")
    page.wait_for_selector("#card-serial")
    assert page.text_content("h1") == "Replacement card issued"
    assert page.text_content("#card-serial") == new
    assert page.text_content("#carried") == "purchase 1, 80.00"

    page.click("#to-customer")
    page.wait_for_selector("#customer-name")
    assert page.get_attribute(f'#cards tr[data-serial="{old}"]', "data-status") == "replaced"
    assert page.get_attribute(f'#cards tr[data-serial="{new}"]', "data-status") == "active"
    assert card_of(web_app, old).status is CardStatus.REPLACED
    replaced = card_of(web_app, new)
    assert replaced.generation == 2 and replaced.purse_amount == 8000
    assert not [e for e in errors if "Content Security Policy" in e], errors
