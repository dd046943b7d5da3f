"""Fixtures for the service-hall application's tests (``tests/web``).

``web_app`` is :func:`cardcenter.web.create_app` on the ``db`` fixture's
database (so every test using it runs on SQLite and on PostgreSQL), with a
temporary key store, a data directory of its own and cheap password hashing.
``client`` is Flask's test client; ``login(client, username, role)`` makes
an operator (password ``<username>-password``) and logs in through the form;
``csrf(client)`` is the token a test's own POST carries. ``live_server`` runs
the application under waitress on a free loopback port (the base URL), and
``page`` is a Playwright page in Debian's headless Chromium
(``/usr/bin/chromium``; never Playwright's own browser download). A missing
Chromium fails those tests: scripts/setup installs it.
"""

from __future__ import annotations

import os
import secrets
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from centre_support import KEYSTORE_PASSPHRASE, Database, make_keystore
from flask import Flask
from flask.testing import FlaskClient
from web_support import (
    CHEAP_HASH,
    Login,
    add_web_operator,
    csrf_token,
    form_login,
    password_of,
)

from cardcenter.core.config import Config
from cardcenter.operators.models import Role
from cardcenter.web import close_app, create_app
from cardcenter.web.config import WebConfig

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture
def web_config(db: Database, tmp_path: Path) -> WebConfig:
    keystore = tmp_path / "web-keys.json"
    make_keystore(keystore).close()
    return WebConfig(
        core=Config(db.url, str(keystore), site="HQ"),
        secret_key=secrets.token_hex(32),
        data_dir=tmp_path / "data",
        keystore_passphrase=KEYSTORE_PASSPHRASE,
        password_method=CHEAP_HASH,
    )


@pytest.fixture
def web_app(web_config: WebConfig) -> Iterator[Flask]:
    app = create_app(web_config)
    app.config["TESTING"] = True
    try:
        yield app
    finally:
        close_app(app)


@pytest.fixture
def client(web_app: Flask) -> FlaskClient:
    return web_app.test_client()


@pytest.fixture
def csrf() -> Callable[[FlaskClient], str]:
    return csrf_token


@pytest.fixture
def login(web_app: Flask) -> Login:
    """``login(client, username, role)``: make the operator, log in; the operator's id."""

    def log_in(client: FlaskClient, username: str, role: Role = Role.CASHIER, **fields: Any) -> int:
        operator_id = add_web_operator(web_app, username, role, **fields)
        answer = form_login(client, username, password_of(username))
        assert answer.status_code == 302, answer.text
        return operator_id

    return log_in


@pytest.fixture
def live_server(web_app: Flask) -> Iterator[str]:
    """The application under waitress in a thread, on a free loopback port: its base URL."""
    from waitress import create_server
    from waitress.wasyncore import close_all

    server: Any = create_server(web_app, host="127.0.0.1", port=0, threads=4)
    thread = threading.Thread(target=server.run, name="live-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.effective_port}"
    finally:
        server.task_dispatcher.shutdown()
        close_all(server._map)
        thread.join(10)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Debian's Chromium, headless, driven by Playwright (launched once per test run)."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(
            f"{CHROMIUM} is missing: the browser tests use Debian's chromium (scripts/setup "
            "installs it; never `playwright install`)",
            pytrace=False,
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh browser page (its own cookies) for one test."""
    context = browser.new_context(locale="en-GB", viewport={"width": 1200, "height": 800})
    context.set_default_timeout(10_000)
    try:
        yield context.new_page()
    finally:
        context.close()
