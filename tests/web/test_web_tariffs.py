"""Tariff pages: the list by category, each kind's form, refusals naming their field, a
scheduled version, the customers a tariff reaches, and who may change what.

Every test runs on SQLite and PostgreSQL (``web_app`` sits on ``db``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from web_support import Login

from cardcenter.core.db import utcnow
from cardcenter.customers.models import Category, Customer
from cardcenter.operators.models import AuditEntry, Role
from cardcenter.tariffs.models import Tariff, TariffKind, TariffVersion
from cardcenter.tariffs.services import add_tariff, get_or_create_category
from cardcenter.web.state import state

Csrf = Callable[[FlaskClient], str]

FLAT = {"kind": "flat", "rate_price": ["0.5283"]}
TOU = {
    "kind": "tou",
    "rate_price": ["0.30", "0.60", "0.9"],
    "period_start": ["00:00", "08:00", "18:00", "22:00"],
    "period_rate": ["1", "2", "3", "1"],
}
STEPPED = {
    "kind": "stepped",
    "tier_threshold": ["2160", "4200"],
    "tier_price": ["0.5283", "0.5783"],
    "last_tier_price": "0.8283",
    "settlement_month": ["", ""],
    "settlement_day": ["1", ""],
    "settlement_hour": ["0", ""],
}
TOU_STEPPED = {
    "kind": "tou_stepped",
    "rate_price": ["0.40", "0.70"],
    "period_start": ["07:00", "23:00"],
    "period_rate": ["2", "1"],
    "tier_threshold": ["2160"],
    "tier_price": ["0"],
    "last_tier_price": "0.05",
}


def form(client: FlaskClient, csrf: Csrf, **fields: Any) -> dict[str, Any]:
    return {"csrf_token": csrf(client), "tax_rate": "0", "fixed_monthly": "0", **fields}


def audit_of(app: Flask, prefix: str = "tariff.") -> list[tuple[str, str | None, dict[str, Any]]]:
    with state(app).sessions() as session:
        rows = session.scalars(
            select(AuditEntry).where(AuditEntry.action.like(f"{prefix}%")).order_by(AuditEntry.id)
        ).all()
        return [(r.action, r.subject, r.detail) for r in rows]


def versions(app: Flask) -> list[tuple[str, int, str, dict[str, Any], int, int]]:
    with state(app).sessions() as session:
        rows = session.scalars(
            select(TariffVersion).order_by(TariffVersion.tariff_id, TariffVersion.version)
        ).all()
        return [
            (v.tariff.name, v.version, str(v.kind), v.structure, v.tax_rate, v.fixed_monthly)
            for v in rows
        ]


def test_a_supervisor_defines_each_kind_of_tariff(
    web_app: Flask, client: FlaskClient, login: Login, csrf: Csrf
) -> None:
    login(client, "sue", Role.SUPERVISOR)
    page = client.get("/tariffs/new")
    assert page.status_code == 200 and 'id="tariff-form"' in page.text
    assert "tariffs.js" in page.text and "<script>" not in page.text
    # the flat tariff becomes the default of a new category, with tax and a fixed charge
    answer = client.post(
        "/tariffs/new",
        data=form(
            client,
            csrf,
            name="Residential",
            category="res",
            tax_rate="13",
            fixed_monthly="5",
            # a TOU part typed before switching to flat is ignored
            period_start=["08:00"],
            period_rate=["2"],
            **FLAT,
        ),
    )
    assert answer.status_code == 302, answer.text
    for name, fields in (("Day-night", TOU), ("Ladder", STEPPED), ("Both", TOU_STEPPED)):
        answer = client.post("/tariffs/new", data=form(client, csrf, name=name, **fields))
        assert answer.status_code == 302, (name, answer.text)
    none: list[Any] = []
    assert versions(web_app) == [
        (
            "Residential",
            1,
            "flat",
            {
                "rate_prices": [5283],
                "periods": none,
                "tier_thresholds": none,
                "tier_prices": none,
                "settlement_dates": none,
            },
            1300,
            500,
        ),
        (
            "Day-night",
            1,
            "tou",
            {
                "rate_prices": [3000, 6000, 9000],
                "periods": [[0, 0, 1], [8, 0, 2], [18, 0, 3], [22, 0, 1]],
                "tier_thresholds": none,
                "tier_prices": none,
                "settlement_dates": none,
            },
            0,
            0,
        ),
        (
            "Ladder",
            1,
            "stepped",
            {
                "rate_prices": none,
                "periods": none,
                "tier_thresholds": [216000, 420000],
                "tier_prices": [5283, 5783, 8283],
                "settlement_dates": [[None, 1, 0]],
            },
            0,
            0,
        ),
        (
            "Both",
            1,
            "tou_stepped",
            {
                "rate_prices": [4000, 7000],
                "periods": [[7, 0, 2], [23, 0, 1]],
                "tier_thresholds": [216000],
                "tier_prices": [0, 500],
                "settlement_dates": [[1, 1, 0]],  # none given: yearly on 1 January
            },
            0,
            0,
        ),
    ]
    with state(web_app).sessions() as session:
        category = session.scalar(select(Category).where(Category.code == "res"))
        residential = session.scalar(select(Tariff).where(Tariff.name == "Residential"))
        assert category is not None and residential is not None
        assert residential.category_id == category.id
    entries = audit_of(web_app)
    assert [(a, d["name"], d["kind"]) for a, _s, d in entries] == [
        ("tariff.add", "Residential", "flat"),
        ("tariff.add", "Day-night", "tou"),
        ("tariff.add", "Ladder", "stepped"),
        ("tariff.add", "Both", "tou_stepped"),
    ]
    listing = client.get("/tariffs/")
    assert listing.status_code == 200
    assert 'id="category-res"' in listing.text and 'data-tariff="Residential"' in listing.text
    assert "0.5283 per unit" in listing.text
    assert "up to 2160.00: 0.5283" in listing.text and "above: 0.8283" in listing.text
    assert "every month on day 1 at 00:00" in listing.text  # Ladder's settlement
    assert "every year on 01-01 at 00:00" in listing.text  # Both's, by default


BAD_FORMS = [
    pytest.param({"name": "", **FLAT}, "name", "Name", id="no-name"),
    pytest.param({"name": "X", "kind": "cheap"}, "kind", "Kind", id="unknown-kind"),
    pytest.param(
        {"name": "X", "kind": "flat", "rate_price": ["0.5", "0.6"]},
        "rate_prices",
        "Rate prices",
        id="flat-two-prices",
    ),
    pytest.param(
        {"name": "X", "kind": "flat", "rate_price": ["0.12345"]},
        "rate_prices",
        "Rate prices",
        id="five-decimals",
    ),
    pytest.param(
        {**TOU, "name": "X", "period_rate": ["1", "2", "4", "1"]},
        "periods",
        "Periods of the day",
        id="rate-without-price",
    ),
    pytest.param(
        {**TOU, "name": "X", "period_start": ["00:00", "25:00", "18:00", "22:00"]},
        "periods",
        "Periods of the day",
        id="hour-25",
    ),
    pytest.param(
        {**TOU, "name": "X", "period_start": ["noon", "", "", ""]},
        "periods",
        "Periods of the day",
        id="not-a-time",
    ),
    pytest.param(
        {**STEPPED, "name": "X", "tier_threshold": ["4200", "2160"]},
        "tier_thresholds",
        "Tier thresholds",
        id="falling-thresholds",
    ),
    pytest.param(
        {**STEPPED, "name": "X", "last_tier_price": ""},
        "tier_prices",
        "Tier prices",
        id="no-last-price",
    ),
    pytest.param(
        {**STEPPED, "name": "X", "tier_price": ["0.5283", ""]},
        "tier_prices",
        "Tier prices",
        id="threshold-without-price",
    ),
    pytest.param(
        {**STEPPED, "name": "X", "settlement_day": ["31", ""]},
        "settlement_dates",
        "Settlement dates",
        id="day-31-monthly",
    ),
    pytest.param({**FLAT, "name": "X", "tax_rate": "13%"}, "tax_rate", "Tax rate", id="tax"),
    pytest.param(
        {**FLAT, "name": "X", "tax_rate": "101"}, "tax_rate", "Tax rate", id="tax-over-100"
    ),
    pytest.param(
        {**FLAT, "name": "X", "fixed_monthly": "-5"},
        "fixed_monthly",
        "Fixed charge per month",
        id="negative-fixed",
    ),
    pytest.param(
        {**FLAT, "name": "X", "active_from": "next week"},
        "active_from",
        "Active from",
        id="not-a-time-from",
    ),
    pytest.param(
        {**FLAT, "name": "X", "category": "Res idential"},
        "category",
        "Category",
        id="bad-category-code",
    ),
]


@pytest.mark.parametrize(("fields", "field", "label"), BAD_FORMS)
def test_a_refused_form_names_the_field_and_writes_nothing(
    web_app: Flask,
    client: FlaskClient,
    login: Login,
    csrf: Csrf,
    fields: dict[str, Any],
    field: str,
    label: str,
) -> None:
    login(client, "sam", Role.SUPERVISOR)
    answer = client.post("/tariffs/new", data=form(client, csrf, **fields))
    assert answer.status_code == 400
    assert f'data-field="{field}"' in answer.text
    assert f'id="form-error" data-field="{field}">{label}: ' in answer.text
    # the form comes back as it was typed
    if fields.get("name"):
        assert f'value="{fields["name"]}"' in answer.text
    with state(web_app).sessions() as session:
        assert session.scalar(select(func.count()).select_from(Tariff)) == 0
        assert session.scalar(select(func.count()).select_from(Category)) == 0
    assert audit_of(web_app) == []


def test_a_category_with_a_default_refuses_a_second_one(
    web_app: Flask, client: FlaskClient, login: Login, csrf: Csrf
) -> None:
    with state(web_app).sessions.begin() as session:
        add_tariff(session, "Home", TariffKind.FLAT, {"rate_prices": [5000]}, category="res")
    login(client, "sid", Role.SUPERVISOR)
    answer = client.post(
        "/tariffs/new", data=form(client, csrf, name="Other", category="res", **FLAT)
    )
    assert answer.status_code == 409
    assert 'data-field="category"' in answer.text and "already has tariff" in answer.text
    assert [v[0] for v in versions(web_app)] == ["Home"]


def test_schedule_a_version_and_see_the_customers_it_reaches(
    web_app: Flask, client: FlaskClient, login: Login, csrf: Csrf
) -> None:
    with state(web_app).sessions.begin() as session:
        home = add_tariff(
            session,
            "Home",
            TariffKind.STEPPED,
            {"tier_thresholds": [216000], "tier_prices": [5283, 8283]},
            category="res",
            active_from=datetime(2020, 1, 1, tzinfo=UTC),
        ).tariff
        special = add_tariff(session, "Special", TariffKind.FLAT, {"rate_prices": [4000]}).tariff
        res = get_or_create_category(session, "res")
        shop = get_or_create_category(session, "shop", "Shops")
        people = [
            ("000000000001", res.id, None),  # the category default reaches them
            ("000000000002", res.id, None),
            ("000000000003", res.id, special.id),  # their own tariff instead
            ("000000000004", shop.id, home.id),  # given Home one by one
            ("000000000005", shop.id, None),  # shops have no default
        ]
        for number, category_id, tariff_id in people:
            session.add(
                Customer(
                    customer_no=number,
                    name=f"Customer {number[-1]}",
                    category_id=category_id,
                    tariff_id=tariff_id,
                )
            )
        home_id = home.id
    login(client, "sal", Role.SUPERVISOR)
    page = client.get(f"/tariffs/{home_id}")
    assert page.status_code == 200
    assert "3 customers pay this tariff (3 with an active account)." in page.text
    for number in ("000000000001", "000000000002", "000000000004"):
        assert f'data-customer="{number}"' in page.text
    assert 'data-customer="000000000003"' not in page.text
    assert "its own tariff" in page.text and "category default" in page.text

    # the new-version form starts from the newest version's prices
    blank = client.get(f"/tariffs/{home_id}/versions/new")
    assert blank.status_code == 200
    assert 'name="tier_threshold" value="2160.00"' in blank.text
    assert 'name="last_tier_price" value="0.8283"' in blank.text
    assert 'name="name"' not in blank.text  # the name and category stay

    zone = ZoneInfo(state(web_app).config.timezone)
    past = (utcnow() - timedelta(days=1)).astimezone(zone).strftime("%Y-%m-%dT%H:%M")
    fields = {**STEPPED, "tier_price": ["0.55", "0.60"], "last_tier_price": "0.90"}
    refused = client.post(
        f"/tariffs/{home_id}/versions/new", data=form(client, csrf, active_from=past, **fields)
    )
    assert refused.status_code == 400 and 'data-field="active_from"' in refused.text
    assert "cannot be backdated" in refused.text
    assert len(versions(web_app)) == 2

    start = (utcnow() + timedelta(days=30)).astimezone(zone).replace(second=0, microsecond=0)
    answer = client.post(
        f"/tariffs/{home_id}/versions/new",
        data=form(client, csrf, active_from=start.strftime("%Y-%m-%dT%H:%M"), **fields),
    )
    assert answer.status_code == 302 and answer.headers["Location"] == f"/tariffs/{home_id}"
    with state(web_app).sessions() as session:
        newest = session.scalars(
            select(TariffVersion).where(TariffVersion.tariff_id == home_id)
        ).all()[-1]
        assert newest.version == 2 and newest.active_from == start
        assert newest.structure["tier_prices"] == [5500, 6000, 9000]
    (entry,) = audit_of(web_app)
    assert entry[0:2] == ("tariff.version", f"tariff:{home_id}")
    assert entry[2]["version"] == 2
    page = client.get(f"/tariffs/{home_id}")
    assert 'data-version="2"' in page.text and "next" in page.text
    listing = client.get("/tariffs/")
    assert "v2" in listing.text and "up to 2160.00: 0.5500" in listing.text


def test_cashiers_may_look_but_not_change(
    web_app: Flask, client: FlaskClient, login: Login, csrf: Csrf
) -> None:
    with state(web_app).sessions.begin() as session:
        tariff_id = add_tariff(
            session, "Home", TariffKind.FLAT, {"rate_prices": [5283]}, category="res"
        ).tariff_id
    login(client, "cat")
    listing = client.get("/tariffs/")
    assert listing.status_code == 200 and 'data-tariff="Home"' in listing.text
    assert 'id="new-tariff"' not in listing.text
    page = client.get(f"/tariffs/{tariff_id}")
    assert page.status_code == 200 and 'id="new-version"' not in page.text
    for path in ("/tariffs/new", f"/tariffs/{tariff_id}/versions/new"):
        assert client.get(path).status_code == 403
        refused = client.post(path, data=form(client, csrf, name="Cheap", **FLAT))
        assert refused.status_code == 403
        assert "This needs the supervisor role; you are logged in as cashier." in refused.text
    assert len(versions(web_app)) == 1
    assert client.get("/tariffs/999999").status_code == 404
