"""Every protected endpoint, found by walking the application's URL map, keeps strangers out
and refuses the role below the one it declares.

Nothing here lists endpoints: a new page is checked the moment its blueprint
registers it. Only these are left out: the log-in page and the two forms that
work logged out by design (log-out, choosing a language), the static files,
and the JSON API, which authenticates its clients itself (tested with it).

An endpoint's required role is the one its decorator declares
(``view.required_role``). Until :mod:`cardcenter.web.auth`'s decorators
set that attribute, it is read from the decorator itself: ``login_required``
means cashier, ``require_role(r)`` means ``r`` (the value it closed over).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from web_support import Login
from werkzeug.routing import Rule

from cardcenter.operators.models import Role
from cardcenter.web.auth import ROLE_NAMES

Csrf = Callable[[FlaskClient], str]

PUBLIC = frozenset({"static", "auth.login", "auth.logout", "auth.language"})
"""Endpoints meant to work logged out."""
API_PREFIX = "/api/"
BELOW = {Role.SUPERVISOR: Role.CASHIER, Role.ADMINISTRATOR: Role.SUPERVISOR}


def required_role(view: Callable[..., Any]) -> Role | None:
    """The role ``view``'s decorator declares, or None when it has no log-in decorator."""
    declared = getattr(view, "required_role", None)
    return Role(declared) if declared is not None else None


def protected(app: Flask) -> Iterator[tuple[Rule, str, str, Role | None]]:
    """``(rule, method, path, required role)`` for every protected endpoint and method."""
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: (r.rule, r.endpoint)):
        if rule.endpoint in PUBLIC or rule.rule.startswith(API_PREFIX):
            continue
        built = rule.build(dict.fromkeys(rule.arguments, 1), append_unknown=False)
        assert built is not None, rule.rule
        role = required_role(app.view_functions[rule.endpoint])
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):  # type: ignore[operator]
            yield rule, method, built[1], role


def test_the_walk_finds_the_parts_of_the_application(web_app: Flask) -> None:
    endpoints = {rule.endpoint for rule, _m, _p, _r in protected(web_app)}
    blueprints = {endpoint.split(".")[0] for endpoint in endpoints}
    assert {"dashboard", "operators", "shifts", "tariffs", "reports"} <= blueprints
    assert not endpoints & PUBLIC
    assert not any(endpoint.startswith("api.") for endpoint in endpoints)


def test_every_endpoint_declares_a_role(web_app: Flask) -> None:
    undeclared = sorted(
        f"{method} {path} ({rule.endpoint})"
        for rule, method, path, role in protected(web_app)
        if role is None
    )
    assert undeclared == [], "decorate these with @login_required or @require_role"


def test_strangers_are_sent_to_log_in(web_app: Flask, csrf: Csrf) -> None:
    stranger = web_app.test_client()
    token = csrf(stranger)
    for _rule, method, path, _role in protected(web_app):
        page = stranger.open(path, method=method, data={"csrf_token": token})
        assert page.status_code == 302, (method, path, page.status_code)
        assert page.headers["Location"].startswith("/login?next="), (method, path)
        script = stranger.open(
            path,
            method=method,
            headers={"Accept": "application/json", "X-CSRF-Token": token},
        )
        assert script.status_code == 401, (method, path, script.status_code)
        assert script.is_json and "error" in script.get_json(), (method, path)


def test_each_endpoint_refuses_the_role_below_its_own(
    web_app: Flask, login: Login, csrf: Csrf
) -> None:
    clients: dict[Role, FlaskClient] = {}
    checked: set[Role] = set()
    for rule, method, path, role in protected(web_app):
        if role is None or role not in BELOW:
            continue  # cashier pages: there is no role below (undeclared ones fail above)
        below = BELOW[role]
        if below not in clients:
            clients[below] = web_app.test_client()
            login(clients[below], f"low-{below.value}", below)
        client = clients[below]
        answer = client.open(path, method=method, data={"csrf_token": csrf(client)})
        assert answer.status_code == 403, (method, path, rule.endpoint, answer.status_code)
        sentence = (
            f"This needs the {ROLE_NAMES[role]} role; you are logged in as {ROLE_NAMES[below]}."
        )
        assert sentence in answer.text, (method, path)
        checked.add(role)
    assert checked == {Role.SUPERVISOR, Role.ADMINISTRATOR}
