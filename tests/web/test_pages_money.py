"""The service-hall pages' promises: selling as quoted, roles and CSRF, the audit trail, log-in.

Each test states what the pages promise (README, "The service-hall application"):
a confirmed quote sells what it showed or nothing, a cashier reaches no supervisor's
action, every form needs its token, the audit trail cannot be changed, and a lock-out,
a disable or a log-out ends what it should.
"""

from __future__ import annotations

import re
import threading
import time

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from test_web_selling import (
    PRICE,
    audited,
    confirm,
    form_fields,
    issued_card,
    open_card_account,
    quote,
    sales,
)
from web_support import Login, add_web_operator, csrf_token, form_login, password_of

import cardcenter.operators.services as operator_services
from cardcenter.core.db import utcnow
from cardcenter.operators.models import AuditEntry, Operator, Role
from cardcenter.operators.services import is_locked
from cardcenter.sales.models import SaleStatus
from cardcenter.tariffs.models import TariffKind
from cardcenter.tariffs.services import add_tariff
from cardcenter.web.state import state

pcsc = pytest.mark.pcsc

COOKIE = "cardcenter_session"


def operator_row(app: Flask, username: str) -> Operator:
    with state(app).sessions() as session:
        return session.scalars(select(Operator).where(Operator.username == username)).one()


def logged_in(client: FlaskClient) -> bool:
    """Whether ``client`` is still logged in (a page, not a redirect to the log-in)."""
    answer = client.get("/sell/")
    return answer.status_code == 200


# ---------------------------------------------------------------- 4. log-in


def test_parallel_wrong_passwords_still_lock_the_operator_out(
    web_app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Five wrong passwords lock an operator out, also when a guesser sends them at once.

    A real scrypt check takes tens of milliseconds; the sleep stands for it
    (the tests' cheap hash takes one). Each refused log-in reads
    ``failed_logins`` and writes back its own ``+ 1``: on PostgreSQL (read
    committed) parallel failures overwrite each other's count, so eight
    guesses at once count as one or two and never lock the operator out.
    """
    add_web_operator(web_app, "cai")
    real = operator_services._matches

    def slow_matches(hashed: str, password: str) -> bool:
        time.sleep(0.3)
        return real(hashed, password)

    monkeypatch.setattr(operator_services, "_matches", slow_matches)
    guesses = 8
    clients = [web_app.test_client() for _ in range(guesses)]
    tokens = []
    for client in clients:
        page = client.get("/login")
        found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert found is not None
        tokens.append(found.group(1))
    barrier = threading.Barrier(guesses)
    answers: list[int] = []

    def guess(index: int) -> None:
        barrier.wait()
        answer = clients[index].post(
            "/login",
            data={"username": "cai", "password": f"guess-{index}", "csrf_token": tokens[index]},
        )
        answers.append(answer.status_code)

    threads = [threading.Thread(target=guess, args=(i,)) for i in range(guesses)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert answers == [401] * guesses
    assert is_locked(operator_row(web_app, "cai")), (
        f"{guesses} wrong passwords sent at once left the operator unlocked "
        f"(failed_logins={operator_row(web_app, 'cai').failed_logins})"
    )
    monkeypatch.setattr(operator_services, "_matches", real)
    refused = form_login(web_app.test_client(), "cai", password_of("cai"))
    assert refused.status_code == 401 and "locked out" in refused.text


def test_disabling_an_operator_ends_their_session_even_if_re_enabled_at_once(
    web_app: Flask, client: FlaskClient, login: Login
) -> None:
    """README: "Disabling an operator ... ends their sessions." A session that made no
    request while its operator was disabled survives a disable followed by an enable."""
    victim = login(client, "mei", Role.CASHIER)
    assert logged_in(client)
    admin = web_app.test_client()
    login(admin, "root", Role.ADMINISTRATOR)
    token = csrf_token(admin)
    assert admin.post(f"/operators/{victim}/disable", data={"csrf_token": token}).status_code == 302
    assert admin.post(f"/operators/{victim}/enable", data={"csrf_token": token}).status_code == 302
    assert not logged_in(client), "the session from before the disable still works"


def test_a_disabled_operator_is_logged_out_at_the_next_request(
    web_app: Flask, client: FlaskClient, login: Login
) -> None:
    victim = login(client, "mei", Role.CASHIER)
    admin = web_app.test_client()
    login(admin, "root", Role.ADMINISTRATOR)
    admin.post(f"/operators/{victim}/disable", data={"csrf_token": csrf_token(admin)})
    assert not logged_in(client)
    # and cannot log in again with the right password
    assert form_login(web_app.test_client(), "mei", password_of("mei")).status_code == 401


def test_a_password_reset_ends_the_session_and_the_new_password_works(
    web_app: Flask, client: FlaskClient, login: Login
) -> None:
    victim = login(client, "mei", Role.CASHIER)
    admin = web_app.test_client()
    login(admin, "root", Role.ADMINISTRATOR)
    answer = admin.post(
        f"/operators/{victim}/password",
        data={"csrf_token": csrf_token(admin), "password": "a-new-Passw0rd-for-mei"},
    )
    assert answer.status_code == 302
    assert not logged_in(client)
    fresh = web_app.test_client()
    assert form_login(fresh, "mei", password_of("mei")).status_code == 401
    assert form_login(fresh, "mei", "a-new-Passw0rd-for-mei").status_code == 302
    assert logged_in(fresh)


def test_a_session_cookie_copied_before_log_out_does_not_work_after_it(
    web_app: Flask, client: FlaskClient, login: Login
) -> None:
    """Logging out must end the log-in, not only drop this browser's copy of it.

    The log-in lives only in the signed cookie; log-out clears the browser's
    cookie but nothing on the server, so a copy taken before (a shared
    desk, a proxy log) logs in again, and each use renews its idle clock.
    """
    login(client, "mei", Role.CASHIER)
    cookie = client.get_cookie(COOKIE)
    assert cookie is not None
    copied = cookie.value
    assert client.post("/logout", data={"csrf_token": csrf_token(client)}).status_code == 302
    assert not logged_in(client)
    thief = web_app.test_client()
    thief.set_cookie(COOKIE, copied)
    assert not logged_in(thief), "a cookie from before the log-out is still logged in"


def test_a_tampered_or_idle_session_cookie_is_logged_out(
    web_app: Flask, client: FlaskClient, login: Login
) -> None:
    """A cookie with a broken signature, or idle for 16 minutes, is no log-in."""
    login(client, "mei")
    cookie = client.get_cookie(COOKIE)
    assert cookie is not None
    forged = web_app.test_client()
    forged.set_cookie(COOKIE, cookie.value[:-4] + "AAAA")  # a tampered signature
    assert not logged_in(forged)
    with client.session_transaction() as session:
        session["seen"] = time.time() - 16 * 60
    assert not logged_in(client)


# ---------------------------------------------------------------- 2. roles and CSRF


SUPERVISOR_POSTS = [
    "/sell/sales/1/reverse",
    "/customers/1/replace",
    "/customers/1/close",
    "/tariffs/new",
    "/tariffs/1/versions/new",
    "/reports/findings/1/close",
]
ADMINISTRATOR_POSTS = [
    "/operators/new",
    "/operators/1/disable",
    "/operators/1/enable",
    "/operators/1/unlock",
    "/operators/1/password",
    "/operators/api-clients/new",
    "/operators/api-clients/1/disable",
]


@pytest.mark.parametrize("path", SUPERVISOR_POSTS + ADMINISTRATOR_POSTS)
def test_a_cashier_posting_directly_is_refused_and_nothing_changes(
    web_app: Flask, client: FlaskClient, login: Login, path: str
) -> None:
    login(client, "mei", Role.CASHIER)
    with state(web_app).sessions() as session:
        before = session.scalars(select(AuditEntry.action)).all()
    answer = client.post(
        path,
        data={
            "csrf_token": csrf_token(client),
            "reason": "lost",
            "username": "evil",
            "role": "administrator",
            "password": "Evil-passw0rd!",
            "name": "evil",
        },
    )
    assert answer.status_code == 403, (path, answer.status_code)
    with state(web_app).sessions() as session:
        assert session.scalars(select(AuditEntry.action)).all() == before
        assert session.scalar(select(Operator).where(Operator.username == "evil")) is None


def test_every_state_changing_endpoint_refuses_a_post_without_the_token(
    web_app: Flask, client: FlaskClient, login: Login
) -> None:
    """Every POST route of the pages (not /api/) checks the CSRF token."""
    login(client, "root", Role.ADMINISTRATOR)
    checked = 0
    for rule in web_app.url_map.iter_rules():
        if "POST" not in (rule.methods or ()) or rule.rule.startswith("/api/"):
            continue
        path = re.sub(r"<(?:int:)?[^>]+>", "1", rule.rule)
        answer = client.post(path, data={"reason": "x", "amount": "10"})
        assert answer.status_code == 400, (rule.rule, answer.status_code)
        assert "security token" in answer.text, rule.rule
        checked += 1
    assert checked > 20
    with state(web_app).sessions() as session:
        actions = session.scalars(select(AuditEntry.action)).all()
    assert set(actions) <= {"login"}


def test_get_requests_change_nothing(web_app: Flask, client: FlaskClient, login: Login) -> None:
    """No GET route writes: the audit trail is unchanged by a walk over every GET page."""
    login(client, "root", Role.ADMINISTRATOR)
    with state(web_app).sessions() as session:
        before = session.scalars(select(AuditEntry.action)).all()
    for rule in web_app.url_map.iter_rules():
        if "GET" not in (rule.methods or ()) or rule.rule.startswith(("/api/", "/static")):
            continue
        path = re.sub(r"<(?:int:)?[^>]+>", "1", rule.rule).replace("<kind>", "sales")
        client.get(path)
    with state(web_app).sessions() as session:
        assert session.scalars(select(AuditEntry.action)).all() == before


# ---------------------------------------------------------------- 3. the audit trail


def test_the_application_offers_no_way_to_change_the_audit_trail(web_app: Flask) -> None:
    for rule in web_app.url_map.iter_rules():
        assert "audit" not in rule.rule.lower(), rule.rule
        assert not ({"PUT", "PATCH", "DELETE"} & set(rule.methods or ())) or rule.rule.startswith(
            "/api/"
        ), rule.rule


# ---------------------------------------------------------------- 1. selling to a card


@pytest.fixture
def card(web_app: Flask, vpcd_reader: str) -> dict[str, str]:
    customer_no = open_card_account(web_app)
    return {"customer_no": customer_no, "serial": issued_card(web_app, customer_no)}


def _quoted_credit(page: str) -> str:
    found = re.search(r'id="quote-credit">([^<]+)<', page)
    assert found is not None
    return found.group(1)


@pcsc
def test_a_quote_confirmed_after_the_tariff_changed_sells_what_was_quoted_or_nothing(
    web_app: Flask, client: FlaskClient, login: Login, card: dict[str, str]
) -> None:
    """The operator confirms the figures on the quote page ("Credit to the meter 44.25").

    A tariff version taking effect between the quote and the confirm (13 %
    tax becomes 9 %) is priced at confirm time without a word: the sale and
    the card get another credit than the one the customer was told and the
    operator confirmed. Either sell the quoted figures or refuse with
    "quote again".
    """
    login(client, "mei")
    page = quote(client, card["serial"], "50")
    assert _quoted_credit(page) == "44.25"
    fields = form_fields(page, "confirm-form")
    with state(web_app).sessions.begin() as session:
        at = utcnow()
        add_tariff(
            session,
            "home",
            TariffKind.FLAT,
            {"rate_prices": [PRICE * 2]},
            active_from=at,
            now=at,
            tax_rate=900,
        )
    before = len(sales(web_app))
    answer = confirm(client, fields)
    sold = [s for s in sales(web_app) if s.request_id == fields["request_id"]]
    if answer.status_code == 302:
        assert len(sold) == 1
        assert sold[0].credit == 4425, (
            f"quoted a credit of 44.25, sold {sold[0].credit / 100:.2f} "
            "(the tariff changed after the quote)"
        )
    else:
        assert len(sales(web_app)) == before, "a refused confirm sells nothing"


@pcsc
def test_two_tabs_and_the_back_button_sell_each_confirmed_quote_once(
    web_app: Flask, client: FlaskClient, login: Login, card: dict[str, str]
) -> None:
    """Two quotes for one card confirmed in two tabs: two sales, each of its own amount,
    each once however often its form is re-posted; the card carries both; audited once
    each with the operator."""
    operator_id = login(client, "mei")
    first = form_fields(quote(client, card["serial"], "20"), "confirm-form")
    second = form_fields(quote(client, card["serial"], "30"), "confirm-form")
    assert first["request_id"] != second["request_id"]
    for fields in (first, second, first, second, first):
        assert confirm(client, fields).status_code == 302
    ids = (first["request_id"], second["request_id"])
    mine = [s for s in sales(web_app) if s.request_id in ids]
    assert sorted(s.tendered for s in mine) == [2000, 3000]
    assert all(s.status is SaleStatus.WRITTEN for s in mine)
    assert all(s.operator_id == operator_id for s in mine)
    confirmed = audited(web_app, "sale.confirm")
    assert sorted(d["amount"] for _a, _s, d in confirmed) == ["20.00", "30.00"]
    with state(web_app).sessions() as session:
        entries = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "sale.confirm")
        ).all()
        assert {e.operator_id for e in entries} == {operator_id}
    # a changed amount on a confirmed form is refused, not sold
    tampered = confirm(client, {**first, "amount": "2000"})
    assert tampered.status_code == 409
    assert len(sales(web_app)) == 3


@pcsc
def test_a_reversal_is_audited_with_the_supervisor_and_refuses_a_cashier(
    web_app: Flask, client: FlaskClient, login: Login, card: dict[str, str]
) -> None:
    login(client, "mei")
    location = confirm(
        client, form_fields(quote(client, card["serial"], "15"), "confirm-form")
    ).headers["Location"]
    sale_id = int(location.rsplit("/", 1)[1])
    refused = client.post(
        f"/sell/sales/{sale_id}/reverse", data={"csrf_token": csrf_token(client), "reason": "x"}
    )
    assert refused.status_code == 403
    boss = web_app.test_client()
    boss_id = login(boss, "sun", Role.SUPERVISOR)
    done = boss.post(
        f"/sell/sales/{sale_id}/reverse", data={"csrf_token": csrf_token(boss), "reason": "wrong"}
    )
    assert done.status_code == 302
    with state(web_app).sessions() as session:
        entry = session.scalars(select(AuditEntry).where(AuditEntry.action == "sale.reverse")).one()
        assert entry.operator_id == boss_id and entry.detail["amount"] == "15.00"
