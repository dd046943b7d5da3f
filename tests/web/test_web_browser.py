"""The service hall in a real browser: Debian's headless Chromium, driven by Playwright."""

from __future__ import annotations

from typing import Any

from flask import Flask
from playwright.sync_api import expect
from web_support import add_web_operator, password_of


def test_log_in_through_the_form_and_see_the_dashboard(
    web_app: Flask, live_server: str, page: Any
) -> None:
    add_web_operator(web_app, "lan", name="Lan Zhou")
    page.goto(f"{live_server}/")
    assert page.url == f"{live_server}/login?next=/"
    page.fill("#username", "lan")
    page.fill("#password", "wrong password")
    page.click("button[type=submit]")
    assert page.text_content("#login-error") == "Wrong user name or password."

    page.fill("#password", password_of("lan"))
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server}/")
    assert page.text_content("h1") == "Dashboard"
    assert "Lan Zhou" in (page.text_content("#current-operator") or "")
    # the reader panel's poll has answered (whatever this machine's reader holds); a
    # locator assertion, because a string predicate is evaluated by eval() in the page
    # and the application's Content-Security-Policy rightly forbids that
    expect(page.locator("#reader-state")).not_to_have_text("…")
    page.click("#logout")
    page.wait_for_url(f"{live_server}/login")
    assert "You have logged out." in (page.text_content(".flashes") or "")
