"""Report pages: tables, SVG charts, CSV export, filters, closing findings, the dashboard's
figures, and one report in a real browser.

Every test runs on SQLite and PostgreSQL (``web_app`` sits on ``db``). The
rows are made with the models: the reports' own arithmetic is tested in
tests/cardcenter/test_reports.py, these tests check what the pages make of it.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from flask import Flask, render_template_string
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session
from web_support import Login, add_web_operator, password_of

from cardcenter.core.db import utcnow
from cardcenter.customers.models import Category, Customer, Meter
from cardcenter.operators.models import AuditEntry, Operator, Role
from cardcenter.reconciliation.models import Finding, FindingKind, FindingStatus, MonthlyUsage
from cardcenter.reports.export import to_csv
from cardcenter.reports.services import consumption_report, sales_report
from cardcenter.sales.models import Sale, SaleStatus
from cardcenter.web import close_app, create_app
from cardcenter.web.config import WebConfig
from cardcenter.web.reports import bar_chart, dashboard_figures
from cardcenter.web.state import state

Csrf = Callable[[FlaskClient], str]
S = SaleStatus


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


class Books:
    """Customers, sales, usage and findings made directly with the models."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.customers = 0
        self.sales = 0
        category = Category(code="res", name="Residential")
        session.add(category)
        session.flush()
        self.category_id = category.id

    def operator(self, username: str) -> int:
        found = self.session.scalar(select(Operator.id).where(Operator.username == username))
        if found is not None:
            return found
        operator = Operator(username=username, name=username.title(), role=Role.CASHIER, site="HQ")
        self.session.add(operator)
        self.session.flush()
        return operator.id

    def meter(self, name: str = "", **fields: Any) -> Meter:
        self.customers += 1
        n = self.customers
        customer = Customer(
            customer_no=f"{n:012d}", name=name or f"Customer {n}", category_id=self.category_id
        )
        self.session.add(customer)
        self.session.flush()
        meter = Meter(meter_no=f"{700000000000 + n:012d}", customer_id=customer.id, **fields)
        self.session.add(meter)
        self.session.flush()
        return meter

    def sale(
        self,
        meter: Meter,
        operator: str,
        when: datetime,
        tendered: int,
        *,
        status: SaleStatus = S.DELIVERED,
        site: str = "HQ",
        reversed_at: datetime | None = None,
    ) -> None:
        self.sales += 1
        self.session.add(
            Sale(
                request_id=f"report-test-{self.sales}",
                status=status,
                customer_id=meter.customer_id,
                meter_id=meter.id,
                operator_id=self.operator(operator),
                site=site,
                purchase_count=self.sales,
                tendered=tendered,
                credit=tendered,
                card_amount=tendered,
                created_at=when,
                reversed_at=reversed_at,
            )
        )
        self.session.flush()

    def finding(self, meter: Meter, kind: FindingKind, detail: str) -> int:
        finding = Finding(
            kind=kind, customer_id=meter.customer_id, meter_id=meter.id, detail=detail
        )
        self.session.add(finding)
        self.session.flush()
        return finding.id


def march(books: Books) -> None:
    """A few days of sales at two sites, with a reversal and a void sale."""
    m1, m2 = books.meter("Li Na"), books.meter("Wang Wei")
    books.sale(m1, "ann", at("2024-03-01 08:00"), 10000)
    books.sale(m2, "ann", at("2024-03-01 09:00"), 2550, status=S.WRITTEN)
    books.sale(m1, "bob", at("2024-03-01 10:00"), 5000, site="NORTH")
    books.sale(m2, "bob", at("2024-03-01 11:00"), 9900, status=S.VOID)
    books.sale(
        m1,
        "ann",
        at("2024-03-02 12:00"),
        3000,
        status=S.REVERSED,
        reversed_at=at("2024-03-03 09:00"),
    )
    books.sale(m2, "ann", at("2024-03-04 15:00"), 700)


def sales_csv(app: Flask, **filters: Any) -> str:
    with state(app).sessions() as session:
        return to_csv(sales_report(session, **filters))


def test_the_sales_report_with_its_chart_cash_up_and_csv(
    web_app: Flask, client: FlaskClient, login: Login
) -> None:
    with state(web_app).sessions.begin() as session:
        march(Books(session))
    login(client, "cleo")  # a cashier may read reports
    page = client.get("/reports/sales?start=2024-03-01&end=2024-03-05")
    assert page.status_code == 200
    text = page.text
    # the chart: one bar per day of the period, empty days included, drawn on the server
    bars = re.findall(r'<rect class="bar[^"]*"[^>]*data-label="([^"]+)" data-value="(-?\d+)"', text)
    assert bars == [
        ("2024-03-01", "17550"),
        ("2024-03-02", "3000"),
        ("2024-03-03", "-3000"),
        ("2024-03-04", "700"),
        ("2024-03-05", "0"),
    ]
    assert (
        '<svg xmlns="http://www.w3.org/2000/svg"' in text
        and "<script" not in text.split("<main>")[1].split("</main>")[0]
    )
    assert 'class="bar negative"' in text  # the reversal's day
    # the cash-up per operator and per site, and the total takings
    assert re.search(r'data-operator="ann"><td>ann</td><td class="num">4</td>', text)
    assert re.search(r'id="total-takings">182\.50<', text)
    assert 'data-site="NORTH"' in text
    # the CSV link carries the filters, and the CSV is the report's own
    link = re.search(r'href="([^"]+)" id="csv-link"', text)
    assert link is not None
    csv_url = link.group(1).replace("&amp;", "&")
    assert csv_url.startswith("/reports/sales.csv?") and "start=2024-03-01" in csv_url
    download = client.get(csv_url)
    assert download.status_code == 200 and download.mimetype == "text/csv"
    assert download.headers["Content-Disposition"].startswith('attachment; filename="sales-')
    expected = sales_csv(web_app, start=date(2024, 3, 1), end=date(2024, 3, 5))
    assert download.text == expected
    lines = expected.splitlines()
    assert (
        lines[0] == "day,site,operator,sales,tendered,fixed_charge,tax,credit,refunds,refunded,"
        "paid_out,takings"
    )
    assert "2024-03-03,HQ,ann,0,0.00,0.00,0.00,0.00,1,30.00,0.00,-30.00" in lines

    narrowed = client.get("/reports/sales.csv?start=2024-03-01&end=2024-03-01&operator=bob")
    assert narrowed.text.splitlines()[1:] == [
        "2024-03-01,NORTH,bob,1,50.00,0.00,0.00,50.00,0,0.00,0.00,50.00"
    ]
    # by default the last 30 days: nothing in 2024
    assert 'id="report-chart"' not in client.get("/reports/sales").text


def test_the_other_reports_draw_their_charts(
    web_app: Flask, client: FlaskClient, login: Login
) -> None:
    now = utcnow()
    with state(web_app).sessions.begin() as session:
        books = Books(session)
        quiet = books.meter("Quiet", remaining=500, last_write_back_at=now)
        busy = books.meter("Busy", remaining=90000, last_write_back_at=now)
        books.meter("Never")
        books.sale(quiet, "ann", now - timedelta(days=100), 1000)
        books.sale(busy, "ann", now - timedelta(days=1), 1000)
        for month, q1, q2 in (("2024-01", 10000, 30000), ("2024-02", 12000, 20000)):
            session.add(MonthlyUsage(meter_id=quiet.id, month=month, quantity=q1))
            session.add(MonthlyUsage(meter_id=busy.id, month=month, quantity=q2))
        books.finding(quiet, FindingKind.TAMPER, "cover opened")
        books.finding(busy, FindingKind.MISMATCH, "charged too little")
        books.finding(busy, FindingKind.MISMATCH, "charged too much")
    login(client, "cleo")
    index = client.get("/reports/")
    assert index.status_code == 200
    for kind in ("sales", "consumption", "non-buying", "low-credit", "findings"):
        assert f'id="report-{kind}"' in index.text

    def bars(path: str) -> list[tuple[str, str]]:
        page = client.get(path)
        assert page.status_code == 200, page.text
        assert 'id="report-chart"' in page.text
        return re.findall(r'data-label="([^"]+)" data-value="(-?\d+)"', page.text)

    assert bars("/reports/consumption") == [("2024-01", "40000"), ("2024-02", "32000")]
    consumption = client.get("/reports/consumption.csv?months=1").text
    with state(web_app).sessions() as session:
        assert consumption == to_csv(consumption_report(session, months=1))
    assert consumption.splitlines()[1] == "2024-02,2,320.00,160.00,120.00,200.00,200.00"

    assert bars("/reports/non-buying?days=30") == [
        ("never", "1"),
        ("up to 30 days", "0"),
        ("31–90 days", "0"),
        ("91–180 days", "1"),
        ("181–365 days", "0"),
        ("over a year", "0"),
    ]
    non_buying = client.get("/reports/non-buying.csv?days=30").text.splitlines()
    assert [line.split(",")[1] for line in non_buying[1:]] == ["Never", "Quiet"]

    assert bars("/reports/low-credit") == [
        ("in overdraft", "0"),
        ("0 to 10.00", "1"),
        ("10.00 to 20.00", "0"),
        ("20.00 and more", "0"),
    ]
    assert bars("/reports/findings") == [("consumption mismatch", "2"), ("tamper", "1")]
    findings = client.get("/reports/findings.csv").text.splitlines()
    assert len(findings) == 4 and findings[0].startswith("id,created_at,status,kind")


@pytest.mark.parametrize(
    ("query", "code", "field", "label"),
    [
        ("sales?start=yesterday", 400, "start", "From"),
        ("sales?start=2024-03-05&end=2024-03-01", 400, "end", "To"),
        ("sales?operator=nobody", 404, "", ""),
        ("consumption?months=0", 400, "months", "Months"),
        ("consumption?months=twelve", 400, "months", "Months"),
        ("consumption?until=2024-13", 400, "until", "Until"),
        ("consumption?utility=steam", 400, "utility", "Utility"),
        ("non-buying?days=-1", 400, "days", "Days"),
        ("low-credit?threshold=lots", 400, "threshold", "Threshold"),
        ("findings?status=maybe", 400, "status", "Status"),
    ],
)
def test_a_bad_filter_names_its_field(
    client: FlaskClient, login: Login, query: str, code: int, field: str, label: str
) -> None:
    login(client, "cleo")
    page = client.get(f"/reports/{query}")
    assert page.status_code == code
    assert f'id="report-error" data-field="{field}">{label}' in page.text
    assert 'id="report-table"' not in page.text
    kind, _sep, rest = query.partition("?")
    assert client.get(f"/reports/{kind}.csv?{rest}").status_code == code


def test_a_supervisor_closes_a_finding_with_a_note(
    web_app: Flask, client: FlaskClient, login: Login, csrf: Csrf
) -> None:
    with state(web_app).sessions.begin() as session:
        books = Books(session)
        finding_id = books.finding(books.meter(), FindingKind.TAMPER, "cover opened")
    cashier = web_app.test_client()
    login(cashier, "cleo")
    listed = cashier.get("/reports/findings")
    assert "cover opened" in listed.text and "close-finding" not in listed.text
    refused = cashier.post(
        f"/reports/findings/{finding_id}/close", data={"csrf_token": csrf(cashier), "note": "x"}
    )
    assert refused.status_code == 403

    boss_id = login(client, "sol", Role.SUPERVISOR)
    assert f'data-finding="{finding_id}"' in client.get("/reports/findings").text
    empty = client.post(
        f"/reports/findings/{finding_id}/close", data={"csrf_token": csrf(client), "note": "  "}
    )
    assert empty.status_code == 400
    assert 'id="report-error" data-field="note">Note: ' in empty.text

    def state_of() -> tuple[FindingStatus, str, int | None]:
        with state(web_app).sessions() as session:
            row = session.get_one(Finding, finding_id)
            return row.status, row.note, row.closed_by

    assert state_of() == (FindingStatus.OPEN, "", None)
    done = client.post(
        f"/reports/findings/{finding_id}/close?status=open",
        data={"csrf_token": csrf(client), "note": "seal replaced"},
    )
    assert done.status_code == 302
    assert done.headers["Location"] == "/reports/findings?status=open"
    assert state_of() == (FindingStatus.CLOSED, "seal replaced", boss_id)
    assert f"Finding {finding_id} closed." in client.get(done.headers["Location"]).text
    again = client.post(
        f"/reports/findings/{finding_id}/close", data={"csrf_token": csrf(client), "note": "twice"}
    )
    assert again.status_code == 409 and "already closed" in again.text
    missing = client.post(
        "/reports/findings/999999/close", data={"csrf_token": csrf(client), "note": "x"}
    )
    assert missing.status_code == 404
    with state(web_app).sessions() as session:
        entries = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "finding.close")
        ).all()
        assert [(e.subject, e.detail, e.operator_id) for e in entries] == [
            (f"finding:{finding_id}", {"note": "seal replaced"}, boss_id)
        ]


def test_the_dashboard_figures(web_app: Flask, login: Login, client: FlaskClient) -> None:
    now = utcnow()
    with state(web_app).sessions.begin() as session:
        books = Books(session)
        low = books.meter("Low", remaining=100, last_write_back_at=now)
        books.sale(low, "ann", now, 5000)
        books.sale(low, "ann", now, 1000, site="NORTH")  # another hall
        books.sale(low, "ann", now - timedelta(days=2), 2000)  # not today
        books.finding(low, FindingKind.TAMPER, "cover opened")
    operator_id = login(client, "cleo")
    with web_app.test_request_context("/"):
        from flask import g

        with state(web_app).sessions() as session:
            g.operator = session.get_one(Operator, operator_id)
        figures = dashboard_figures()
        assert {
            k: figures[k] for k in ("site", "sales", "takings", "open_findings", "low_credit")
        } == {
            "site": "HQ",
            "sales": 1,
            "takings": 5000,
            "open_findings": 1,
            "low_credit": 1,
        }
        assert figures["day"] == now.date().isoformat()
        panel = render_template_string('{% include "reports/dashboard_panel.html" %}')
    assert re.search(r'id="figure-sales">1<', panel)
    assert re.search(r'id="figure-findings">1<', panel)
    assert re.search(r'id="figure-low-credit">1<', panel)
    assert "000000000001 Low" in panel and "50.00" in panel


def test_the_dashboard_day_is_the_halls(web_config: WebConfig) -> None:
    """In Kiritimati (UTC+14) the hall's today starts at 10:00 UTC the day before."""
    app = create_app(dataclasses.replace(web_config, timezone="Pacific/Kiritimati"))
    try:
        zone = ZoneInfo("Pacific/Kiritimati")
        today = utcnow().astimezone(zone).date()
        first_minute = datetime.combine(today, time(0, 1), zone)
        with state(app).sessions.begin() as session:
            books = Books(session)
            meter = books.meter("Kiri")
            books.sale(meter, "ann", first_minute, 700)  # the hall's today
            books.sale(meter, "ann", first_minute - timedelta(minutes=2), 300)  # its yesterday
        with app.test_request_context("/"):
            figures = dashboard_figures()
        assert figures["day"] == today.isoformat()
        assert (figures["sales"], figures["takings"]) == (1, 700)
    finally:
        close_app(app)


def test_bar_chart_layout() -> None:
    chart = bar_chart("t", [("a", 120), ("b", -30), ("c", 0)], str, width=400)
    ticks = [t.text for t in chart.ticks]
    assert ticks == ["-50", "0", "50", "100", "150"]
    a, b, c = chart.bars
    assert a.y + a.height == pytest.approx(chart.zero)  # up from the axis
    assert b.y == pytest.approx(chart.zero) and b.height > 0  # down from it
    assert c.height == 0
    assert not chart.slanted and all(bar.labelled for bar in chart.bars)
    many = bar_chart("t", [(f"2024-01-{d:02d}", d) for d in range(1, 32)], str)
    assert many.slanted and sum(bar.labelled for bar in many.bars) == 16
    flat = bar_chart("t", [("x", 0)], str)
    assert [t.text for t in flat.ticks] == ["0", "1"]


def test_a_report_in_the_browser_with_its_chart_and_csv(
    web_app: Flask, live_server: str, page: Any
) -> None:
    with state(web_app).sessions.begin() as session:
        march(Books(session))
    add_web_operator(web_app, "vic", Role.SUPERVISOR)
    page.goto(f"{live_server}/login?next=/reports/")
    page.fill("#username", "vic")
    page.fill("#password", password_of("vic"))
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server}/reports/")
    page.click("#report-sales")
    page.fill("#start", "2024-03-01")
    page.fill("#end", "2024-03-04")
    page.click("#filters button[type=submit]")
    page.wait_for_url(re.compile(r".*/reports/sales\?start=2024-03-01&end=2024-03-04.*"))
    chart = page.locator("#report-chart svg")
    assert chart.is_visible()
    assert chart.locator("rect.bar").count() == 4
    box = chart.bounding_box()
    assert box is not None and box["width"] > 300 and box["height"] > 100
    # the bars are coloured by reports.css, which the Content-Security-Policy let through
    fill = page.eval_on_selector("#report-chart rect.bar", "e => getComputedStyle(e).fill")
    assert fill == "rgb(31, 111, 235)"
    assert page.locator("#report-table tbody tr").count() == 5
    with page.expect_download() as info:
        page.click("#csv-link")
    download = info.value
    assert download.suggested_filename.startswith("sales-")
    with open(download.path(), encoding="utf-8", newline="") as saved:
        content = saved.read()
    assert content == sales_csv(web_app, start=date(2024, 3, 1), end=date(2024, 3, 4))


def test_the_pages_speak_chinese(web_app: Flask, client: FlaskClient, login: Login) -> None:
    with state(web_app).sessions.begin() as session:
        march(Books(session))
    login(client, "mei", Role.SUPERVISOR, locale="zh_Hans_CN")
    sales = client.get("/reports/sales?start=2024-03-01&end=2024-03-04").text
    assert "<h1>售电与结账</h1>" in sales and "按操作员结账" in sales and "每日净收款" in sales
    assert "下载 CSV" in sales and 'id="total-takings">182.50<' in sales
    assert "<h1>报表</h1>" in client.get("/reports/").text
    assert "<h1>电价</h1>" in client.get("/tariffs/").text
    assert "新建电价" in client.get("/tariffs/new").text
    assert "未开班" in client.get("/shifts/").text
