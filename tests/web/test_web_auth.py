"""Log-in, log-out, lock-out, idle expiry, CSRF, roles and languages of the service-hall app.

Every test runs on SQLite and PostgreSQL (``web_app`` sits on ``db``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

from flask import Flask
from flask.testing import FlaskClient
from flask_babel import force_locale
from sqlalchemy import select
from web_support import Login, add_web_operator, form_login, password_of

from cardcenter.operators.models import ApiClient, AuditEntry, Operator, Role
from cardcenter.operators.services import find_api_client
from cardcenter.web.i18n import date_filter, datetime_filter, money
from cardcenter.web.state import state

Csrf = Callable[[FlaskClient], str]


def audit_actions(app: Flask) -> list[tuple[str, str | None, dict[str, object]]]:
    with state(app).sessions() as session:
        rows = session.scalars(select(AuditEntry).order_by(AuditEntry.id)).all()
        return [(row.action, row.subject, row.detail) for row in rows]


def operator_row(app: Flask, username: str) -> Operator:
    with state(app).sessions() as session:
        found = session.scalar(select(Operator).where(Operator.username == username))
        assert found is not None
        return found


def test_login_then_logout(web_app: Flask, client: FlaskClient, csrf: Csrf) -> None:
    answer = client.get("/")
    assert answer.status_code == 302 and answer.headers["Location"] == "/login?next=/"
    operator_id = add_web_operator(web_app, "ana", name="Ana Lima")
    answer = form_login(client, "ana", password_of("ana"))
    assert answer.status_code == 302 and answer.headers["Location"] == "/"
    page = client.get("/")
    assert page.status_code == 200
    assert "Ana Lima" in page.text and 'id="reader-panel"' in page.text
    assert page.headers["Content-Security-Policy"].startswith("default-src 'self'")
    assert page.headers["Cache-Control"] == "no-store"
    refused = client.get("/operators/")  # a cashier: no menu entry, no page
    assert refused.status_code == 403
    assert "This needs the administrator role; you are logged in as cashier." in refused.text
    assert "/operators/" not in page.text

    answer = client.post("/logout", data={"csrf_token": csrf(client)})
    assert answer.status_code == 302 and answer.headers["Location"] == "/login"
    assert "You have logged out." in client.get("/login").text
    assert client.get("/").status_code == 302
    assert audit_actions(web_app) == [
        ("login", f"operator:{operator_id}", {}),
        ("logout", f"operator:{operator_id}", {"reason": "logout"}),
    ]


def test_a_refused_login_says_one_generic_sentence(web_app: Flask, client: FlaskClient) -> None:
    operator_id = add_web_operator(web_app, "bo")
    wrong = form_login(client, "bo", "not-the-password")
    unknown = form_login(client, "nobody", "whatever-it-is")
    for answer in (wrong, unknown):
        assert answer.status_code == 401
        assert "Wrong user name or password." in answer.text
    assert client.get("/").status_code == 302
    assert audit_actions(web_app) == [
        (
            "login.failed",
            f"operator:{operator_id}",
            {"username": "bo", "reason": "wrong password"},
        ),
        ("login.failed", None, {"username": "nobody", "reason": "unknown user"}),
    ]
    assert operator_row(web_app, "bo").failed_logins == 1


def test_five_failures_lock_out_until_an_administrator_unlocks(
    web_app: Flask, client: FlaskClient, login: Login, csrf: Csrf
) -> None:
    victim = add_web_operator(web_app, "cai")
    for attempt in range(5):
        answer = form_login(client, "cai", f"guess-{attempt}")
        assert answer.status_code == 401
    assert "locked out for 15 minutes" in answer.text
    locked_until = operator_row(web_app, "cai").locked_until
    assert locked_until is not None and locked_until > datetime.now(UTC)
    # Locked: even the right password is refused, with the lock-out sentence.
    answer = form_login(client, "cai", password_of("cai"))
    assert answer.status_code == 401 and "locked out" in answer.text

    admin = web_app.test_client()
    login(admin, "root", Role.ADMINISTRATOR)
    listing = admin.get("/operators/")
    assert f"/operators/{victim}/unlock" in listing.text
    answer = admin.post(f"/operators/{victim}/unlock", data={"csrf_token": csrf(admin)})
    assert answer.status_code == 302
    assert operator_row(web_app, "cai").locked_until is None

    assert form_login(client, "cai", password_of("cai")).status_code == 302
    actions = [action for action, _, _ in audit_actions(web_app)]
    assert actions.count("login.failed") == 6
    assert actions.count("login.locked") == 1
    assert "operator.unlock" in actions and actions[-1] == "login"


def test_an_idle_login_expires_and_polling_does_not_keep_it_alive(
    web_app: Flask, client: FlaskClient, login: Login
) -> None:
    operator_id = login(client, "dai")
    with client.session_transaction() as session:
        seen = session["seen"] = time.time() - 60
    assert client.get("/reader/status", headers={"Accept": "application/json"}).status_code == 200
    with client.session_transaction() as session:
        assert session["seen"] == seen  # the 1 s poll is not activity
    with client.session_transaction() as session:
        session["seen"] = time.time() - 16 * 60
    answer = client.get("/reader/status", headers={"Accept": "application/json"})
    assert answer.status_code == 401 and answer.json == {
        "error": "Your session has ended; log in again."
    }
    assert client.get("/").headers["Location"] == "/login?next=/"
    assert "logged out after 15 idle minutes" in client.get("/login").text
    assert audit_actions(web_app)[-1] == (
        "logout",
        f"operator:{operator_id}",
        {"reason": "idle"},
    )


def test_a_form_post_without_the_csrf_token_is_refused(
    web_app: Flask, client: FlaskClient, login: Login, csrf: Csrf
) -> None:
    login(client, "eve", Role.ADMINISTRATOR)
    for url, data in (
        ("/logout", {}),
        ("/operators/new", {"username": "mallory", "role": "administrator"}),
        ("/operators/new", {"username": "mallory", "role": "administrator", "csrf_token": "x"}),
    ):
        answer = client.post(url, data=data)
        assert answer.status_code == 400
        assert "security token is missing or wrong" in answer.text
    assert client.get("/").status_code == 200  # still logged in
    with state(web_app).sessions() as session:
        assert session.scalar(select(Operator).where(Operator.username == "mallory")) is None
    # fetch carries it as a header
    answer = client.post(
        "/language",
        data={"locale": "zh_Hans_CN"},
        headers={"X-CSRF-Token": csrf(client)},
    )
    assert answer.status_code == 302
    # a log-in form needs it too
    anonymous = web_app.test_client()
    answer = anonymous.post("/login", data={"username": "eve", "password": password_of("eve")})
    assert answer.status_code == 400


def test_roles_guard_every_administrator_endpoint(
    web_app: Flask, client: FlaskClient, login: Login, csrf: Csrf
) -> None:
    target = add_web_operator(web_app, "target")
    login(client, "fay", Role.SUPERVISOR)
    token = csrf(client)
    endpoints = [
        rule for rule in web_app.url_map.iter_rules() if rule.endpoint.startswith("operators.")
    ]
    assert len(endpoints) >= 8
    for rule in endpoints:
        url = rule.build({"operator_id": target, "client_id": 1}, append_unknown=False)
        assert url is not None
        path = url[1]
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):  # type: ignore[operator]
            answer = client.open(path, method=method, data={"csrf_token": token})
            assert answer.status_code == 403, (method, path)
            assert (
                "This needs the administrator role; you are logged in as supervisor." in answer.text
            )
    answer = web_app.test_client().get("/operators/", headers={"Accept": "application/json"})
    assert answer.status_code == 401


def test_administrators_manage_operators_and_api_clients(
    web_app: Flask, client: FlaskClient, login: Login, csrf: Csrf
) -> None:
    admin_id = login(client, "gus", Role.ADMINISTRATOR)
    token = csrf(client)
    # a made-up initial password, shown once
    answer = client.post(
        "/operators/new",
        data={"username": "hal", "name": "Hal Wu", "role": "cashier", "csrf_token": token},
    )
    assert answer.status_code == 200 and 'id="new-password"' in answer.text
    made_up = answer.text.split('id="new-password"><code>')[1].split("</code>")[0]
    hal = operator_row(web_app, "hal")
    assert hal.role is Role.CASHIER and hal.password_hash and made_up not in hal.password_hash
    cashier = web_app.test_client()
    assert form_login(cashier, "hal", made_up).status_code == 302
    # taken names and short passwords are refused with a sentence
    again = client.post(
        "/operators/new",
        data={"username": "hal", "role": "cashier", "password": "long-enough", "csrf_token": token},
    )
    assert again.status_code == 400 and "there is already an operator hal" in again.text
    short = client.post(
        "/operators/new",
        data={"username": "ivy", "role": "cashier", "password": "short", "csrf_token": token},
    )
    assert short.status_code == 400 and "give 8 to 200 characters" in short.text
    # a typed password, then reset by the administrator: the old session ends
    answer = client.post(
        f"/operators/{hal.id}/password", data={"password": "brand-new-pass", "csrf_token": token}
    )
    assert answer.status_code == 302
    assert cashier.get("/").status_code == 302
    assert form_login(cashier, "hal", "brand-new-pass").status_code == 302
    # disabled: logged out at once, and cannot log in; the administrator cannot disable themself
    client.post(f"/operators/{hal.id}/disable", data={"csrf_token": token})
    assert cashier.get("/").status_code == 302
    assert form_login(cashier, "hal", "brand-new-pass").status_code == 401
    answer = client.post(f"/operators/{admin_id}/disable", data={"csrf_token": token})
    assert "You cannot disable your own account." in client.get(answer.headers["Location"]).text
    assert operator_row(web_app, "gus").active
    client.post(f"/operators/{hal.id}/enable", data={"csrf_token": token})
    assert form_login(cashier, "hal", "brand-new-pass").status_code == 302

    # an API client: the secret is shown once and only its hash kept
    answer = client.post(
        "/operators/api-clients/new", data={"name": "Bank", "role": "cashier", "csrf_token": token}
    )
    assert answer.status_code == 200
    key_id = answer.text.split('id="api-key-id">')[1].split("<")[0]
    secret = answer.text.split('id="api-secret">')[1].split("<")[0]
    engine = state(web_app).engine
    found = find_api_client(engine, key_id, secret)
    assert found is not None and found.role is Role.CASHIER
    assert secret not in found.secret_hash
    assert find_api_client(engine, key_id, secret + "x") is None
    client_id = found.id
    assert secret not in client.get("/operators/").text
    client.post(f"/operators/api-clients/{client_id}/disable", data={"csrf_token": token})
    assert find_api_client(engine, key_id, secret) is None
    with state(web_app).sessions() as session:
        assert not session.get_one(ApiClient, client_id).active

    actions = [action for action, _, _ in audit_actions(web_app)]
    for action in (
        "operator.add",
        "operator.password_reset",
        "operator.disable",
        "operator.enable",
        "api_client.add",
        "api_client.disable",
    ):
        assert action in actions
    for _, _, detail in audit_actions(web_app):
        assert made_up not in str(detail) and secret not in str(detail)


def test_next_never_leaves_the_site(web_app: Flask, client: FlaskClient) -> None:
    add_web_operator(web_app, "jo")
    page = client.get("/login?next=//evil.example/x")
    token = page.text.split('name="csrf_token" value="')[1].split('"')[0]
    for target in ("//evil.example/x", "https://evil.example/", "/\\evil.example"):
        answer = client.post(
            "/login",
            data={"username": "jo", "password": password_of("jo"), "csrf_token": token,
                  "next": target},
        )  # fmt: skip
        assert answer.headers["Location"] == "/"


def test_the_operators_language_is_chinese_after_switching(
    web_app: Flask, client: FlaskClient, login: Login, csrf: Csrf
) -> None:
    operator_id = login(client, "kai", Role.ADMINISTRATOR)
    assert "Dashboard" in client.get("/").text
    answer = client.post(
        "/language", data={"locale": "zh_Hans_CN", "next": "/", "csrf_token": csrf(client)}
    )
    assert answer.status_code == 302 and answer.headers["Location"] == "/"
    page = client.get("/").text
    assert "工作台" in page and "读卡器" in page and "退出登录" in page
    assert 'lang="zh-Hans-CN"' in page
    assert "操作员" in client.get("/operators/").text
    refused = client.post("/logout")  # no token: refused, in Chinese
    assert refused.status_code == 400 and "安全令牌" in refused.text
    assert operator_row(web_app, "kai").locale == "zh_Hans_CN"
    assert ("operator.locale", f"operator:{operator_id}", {"locale": "zh_Hans_CN"}) in (
        audit_actions(web_app)
    )
    # before log-in: the page's language links, else the browser's preference
    anonymous = web_app.test_client()
    assert "用户名" in anonymous.get("/login?lang=zh_Hans_CN").text
    assert "用户名" in anonymous.get("/login").text
    browser = web_app.test_client()
    assert "用户名" in browser.get("/login", headers={"Accept-Language": "zh-CN,zh;q=0.9"}).text
    assert "User name" in browser.get("/login", headers={"Accept-Language": "en-GB"}).text


def test_money_and_dates_follow_the_locale(web_app: Flask) -> None:
    at = datetime(2026, 11, 30, 8, 5, tzinfo=UTC)
    with web_app.test_request_context("/"):
        with force_locale("en"):
            assert money(123456) == "1,234.56" and money(-5) == "-0.05"
            assert datetime_filter(at) == "Nov 30, 2026, 8:05:00\u202fAM"
            assert date_filter(at) == "Nov 30, 2026"
        with force_locale("zh_Hans_CN"):
            assert money(123456) == "1,234.56"
            assert datetime_filter(at) == "2026年11月30日 08:05:00"
        with force_locale("de_DE"):
            assert money(123456) == "1.234,56"
        assert money(None) == datetime_filter(None) == ""


def test_an_api_clients_operator_is_not_a_persons_account(
    web_app: Flask, client: FlaskClient, login: Login, csrf: Csrf
) -> None:
    """Its name cannot be taken by a person, and the operators page neither lists nor changes it."""
    login(client, "gus", Role.ADMINISTRATOR)
    token = csrf(client)
    taken = client.post(
        "/operators/new",
        data={"username": "api:ck_0123", "role": "cashier", "csrf_token": token},
    )
    assert taken.status_code == 400 and "kept for API clients" in taken.text
    with state(web_app).sessions() as session:
        assert session.scalar(select(Operator).where(Operator.username == "api:ck_0123")) is None
    with state(web_app).sessions() as session, session.begin():
        channel = Operator(username="api:ck_4567", name="Bank", role=Role.CASHIER, site="api:x")
        session.add(channel)
        session.flush()
        channel_id = channel.id
    listing = client.get("/operators/")
    assert listing.status_code == 200 and "api:ck_4567" not in listing.text
    for action in ("password", "disable", "enable", "unlock"):
        answer = client.post(
            f"/operators/{channel_id}/{action}",
            data={"password": "a-long-password", "csrf_token": token},
        )
        assert answer.status_code == 404, action
    with state(web_app).sessions() as session:
        kept = session.get_one(Operator, channel_id)
        assert kept.password_hash is None and kept.active
