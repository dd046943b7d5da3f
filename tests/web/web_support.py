"""Helpers the service-hall tests share (imported as ``web_support``; fixtures in conftest)."""

from __future__ import annotations

import re
import secrets
from typing import Any, Protocol

from flask import Flask
from flask.testing import FlaskClient

from cardcenter.operators.models import Role
from cardcenter.operators.services import add_operator
from cardcenter.web.state import state

CHEAP_HASH = "scrypt:1024:8:1"
"""A password hash that costs about a millisecond: the tests log in hundreds of times."""


def password_of(username: str) -> str:
    return f"{username}-password"


def csrf_token(client: FlaskClient) -> str:
    """The CSRF token of ``client``'s session (made if the session has none yet)."""
    with client.session_transaction() as session:
        token = session.get("csrf")
        if not isinstance(token, str):
            token = secrets.token_urlsafe(32)
            session["csrf"] = token
    return token


class Login(Protocol):
    def __call__(
        self, client: FlaskClient, username: str, role: Role = ..., **fields: Any
    ) -> int: ...


def add_web_operator(app: Flask, username: str, role: Role = Role.CASHIER, **fields: Any) -> int:
    """An operator who can log in (password ``<username>-password``); returns the id."""
    with state(app).sessions.begin() as session:
        operator = add_operator(
            session,
            username,
            name=fields.pop("name", username.title()),
            role=role,
            site=fields.pop("site", "HQ"),
            password=password_of(username),
            method=CHEAP_HASH,
            **fields,
        )
        return operator.id


def form_login(client: FlaskClient, username: str, password: str) -> Any:
    """Log in through the form (the CSRF token taken from the page, as a browser does)."""
    page = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token is not None, page.text
    return client.post(
        "/login",
        data={"username": username, "password": password, "csrf_token": token.group(1)},
    )
