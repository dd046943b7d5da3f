"""Reports: known answers on SQLite and PostgreSQL, the cash-up, filters, boundaries, writers."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from centre_support import Database
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.orm import Session

from cardcenter.core.errors import InvalidInputError, NotFoundError
from cardcenter.customers.models import (
    AccountStatus,
    Category,
    Customer,
    Meter,
    MeterStatus,
)
from cardcenter.operators.models import Operator, Role
from cardcenter.reconciliation.models import Finding, FindingKind, FindingStatus, MonthlyUsage
from cardcenter.reports.export import decimal_text, from_json, to_csv, to_json, to_text
from cardcenter.reports.services import (
    REPORTS,
    SALES_COLUMNS,
    Report,
    consumption_report,
    findings_report,
    low_credit_report,
    non_buying_report,
    sales_report,
)
from cardcenter.sales.models import Sale, SaleStatus

S = SaleStatus


def at(text: str) -> datetime:
    """An aware UTC time from ``YYYY-MM-DD HH:MM[:SS[.ffffff]]``."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@dataclass
class World:
    """Rows the reports read, made directly with the models (no services involved)."""

    session: Session
    categories: dict[str, Category] = field(default_factory=dict)
    operators: dict[str, Operator] = field(default_factory=dict)
    customers: list[Customer] = field(default_factory=list)
    meters: list[Meter] = field(default_factory=list)
    sales: int = 0

    def category(self, code: str) -> Category:
        if code not in self.categories:
            category = Category(code=code, name=code.title())
            self.session.add(category)
            self.session.flush()
            self.categories[code] = category
        return self.categories[code]

    def operator(self, username: str, site: str = "HQ") -> Operator:
        if username not in self.operators:
            operator = Operator(
                username=username, name=username.title(), role=Role.CASHIER, site=site
            )
            self.session.add(operator)
            self.session.flush()
            self.operators[username] = operator
        return self.operators[username]

    def customer(
        self, category: str = "RES", *, utility: str = "electricity", **fields: Any
    ) -> Meter:
        """A customer with one meter; returns the meter (its ``customer`` is loaded)."""
        n = len(self.customers) + 1
        customer = Customer(
            customer_no=f"{n:012d}",
            name=fields.pop("name", f"Customer {n}"),
            category_id=self.category(category).id,
            **{k: v for k, v in fields.items() if not k.startswith("meter_")},
        )
        self.session.add(customer)
        self.session.flush()
        meter = Meter(
            meter_no=f"{900000000000 + n:012d}",
            customer_id=customer.id,
            utility=utility,
            **{k[6:]: v for k, v in fields.items() if k.startswith("meter_")},
        )
        self.session.add(meter)
        self.session.flush()
        self.customers.append(customer)
        self.meters.append(meter)
        return meter

    def sale(
        self,
        meter: Meter,
        operator: str,
        created_at: datetime,
        *,
        status: SaleStatus = S.DELIVERED,
        tendered: int = 1000,
        fixed_charge: int = 0,
        tax: int = 0,
        site: str | None = None,
        reversed_at: datetime | None = None,
    ) -> Sale:
        self.sales += 1
        who = self.operator(operator)
        sale = Sale(
            request_id=f"r{self.sales}",
            status=status,
            customer_id=meter.customer_id,
            meter_id=meter.id,
            operator_id=who.id,
            site=site or who.site,
            purchase_count=self.sales,
            tendered=tendered,
            fixed_charge=fixed_charge,
            tax=tax,
            credit=tendered - fixed_charge - tax,
            card_amount=tendered - fixed_charge - tax,
            created_at=created_at,
            reversed_at=reversed_at,
        )
        self.session.add(sale)
        self.session.flush()
        return sale


@pytest.fixture
def world(db: Database) -> Iterator[World]:
    with db.sessions() as session:
        yield World(session)


# -- sales and cash-up ----------------------------------------------------------------------


def sales_world(w: World) -> None:
    w.operator("alice", "HQ")
    w.operator("bob", "NORTH")
    m = w.customer()
    w.sale(m, "alice", at("2024-03-01 08:00"), tendered=10000, fixed_charge=500, tax=1500)
    # 05:59:59.999999 at +06:00 is the last microsecond of 1 March in UTC
    east = timezone(timedelta(hours=6))
    late = datetime(2024, 3, 2, 5, 59, 59, 999999, tzinfo=east)
    w.sale(m, "alice", late, status=S.WRITTEN, tendered=2000, tax=300)
    w.sale(m, "alice", at("2024-03-01 10:00"), status=S.PENDING, tendered=99900)
    w.sale(m, "alice", at("2024-03-01 11:00"), status=S.VOID, tendered=88800)
    w.sale(m, "bob", at("2024-03-02 00:00"), tendered=5000, tax=750)
    w.sale(
        m,
        "alice",
        at("2024-03-01 12:00"),
        status=S.REVERSED,
        tendered=3000,
        tax=450,
        reversed_at=at("2024-03-02 09:00"),
    )
    w.sale(
        m,
        "bob",
        at("2024-02-28 15:00"),
        status=S.REFUNDED,
        reversed_at=at("2024-03-02 10:00"),
    )
    w.sale(m, "alice", at("2024-03-03 17:00"), tendered=700, site="NORTH")


def cash(day: str, site: str, operator: str, **values: int) -> dict[str, Any]:
    row: dict[str, Any] = {"day": day, "site": site, "operator": operator}
    for name in SALES_COLUMNS[3:-1]:  # the counts and sums; takings follow from them
        row[name] = values.get(name, 0)
    row["takings"] = row["tendered"] - row["refunded"] - row["paid_out"]
    return row


MARCH_ROWS = [
    cash(
        "2024-03-01",
        "HQ",
        "alice",
        sales=3,
        tendered=15000,
        fixed_charge=500,
        tax=2250,
        credit=12250,
    ),
    cash("2024-03-02", "HQ", "alice", refunds=1, refunded=3000),
    cash(
        "2024-03-02",
        "NORTH",
        "bob",
        sales=1,
        tendered=5000,
        tax=750,
        credit=4250,
        refunds=1,
        refunded=1000,
    ),
    cash("2024-03-03", "NORTH", "alice", sales=1, tendered=700, credit=700),
]


def test_sales_report_rows_and_cash_up(world: World) -> None:
    sales_world(world)
    report = sales_report(world.session, start=date(2024, 3, 1), end=date(2024, 3, 3))
    assert report.kind == "sales"
    assert report.rows == MARCH_ROWS
    assert report.totals == {
        "sales": 5,
        "tendered": 20700,
        "fixed_charge": 500,
        "tax": 3000,
        "credit": 17200,
        "refunds": 2,
        "refunded": 4000,
        "paid_out": 0,
        "takings": 16700,
        "by_operator": {
            "alice": {
                "sales": 4,
                "tendered": 15700,
                "refunds": 1,
                "refunded": 3000,
                "paid_out": 0,
                "takings": 12700,
            },
            "bob": {
                "sales": 1,
                "tendered": 5000,
                "refunds": 1,
                "refunded": 1000,
                "paid_out": 0,
                "takings": 4000,
            },
        },
        "by_site": {
            "HQ": {
                "sales": 3,
                "tendered": 15000,
                "refunds": 1,
                "refunded": 3000,
                "paid_out": 0,
                "takings": 12000,
            },
            "NORTH": {
                "sales": 2,
                "tendered": 5700,
                "refunds": 1,
                "refunded": 1000,
                "paid_out": 0,
                "takings": 4700,
            },
        },
    }


def test_over_all_time_a_reversed_sale_takes_nothing(world: World) -> None:
    """Cash taken and handed back nets to zero: takings are the written and delivered sales."""
    sales_world(world)
    report = sales_report(world.session, start=None, end=None)
    assert report.rows[0] == cash("2024-02-28", "NORTH", "bob", sales=1, tendered=1000, credit=1000)
    assert report.rows[1:] == MARCH_ROWS
    assert report.totals["takings"] == 10000 + 2000 + 5000 + 700
    assert report.totals["by_operator"]["bob"]["takings"] == 5000


def test_sales_report_filters(world: World) -> None:
    sales_world(world)
    s = world.session
    march: dict[str, Any] = {"start": date(2024, 3, 1), "end": date(2024, 3, 3)}
    assert sales_report(s, **march, site="NORTH").rows == MARCH_ROWS[2:]
    alice = sales_report(s, **march, operator="alice")
    assert alice.rows == [MARCH_ROWS[0], MARCH_ROWS[1], MARCH_ROWS[3]]
    assert list(alice.totals["by_operator"]) == ["alice"]
    assert sales_report(s, start=date(2024, 3, 2), end=date(2024, 3, 2)).rows == MARCH_ROWS[1:3]
    assert sales_report(s, start=date(2024, 3, 4), end=None).rows == []
    assert sales_report(s, start=None, end=date(2024, 2, 29)).rows == [
        cash("2024-02-28", "NORTH", "bob", sales=1, tendered=1000, credit=1000)
    ]
    empty = sales_report(s, start=date(2030, 1, 1), end=None)
    assert empty.totals["takings"] == 0
    assert empty.totals["by_operator"] == {}


def test_sales_report_days_are_the_halls(world: World) -> None:
    """20:00 UTC on 1 March is 04:00 on 2 March in Shanghai: that day's takings there."""
    w = world
    w.operator("alice", "HQ")
    m = w.customer()
    w.sale(m, "alice", at("2024-03-01 15:59"), tendered=100)
    w.sale(m, "alice", at("2024-03-01 16:00"), tendered=200)
    w.sale(m, "alice", at("2024-03-01 20:00"), tendered=400)
    utc = sales_report(w.session, start=date(2024, 3, 1), end=date(2024, 3, 1))
    assert [(r["day"], r["takings"]) for r in utc.rows] == [("2024-03-01", 700)]
    shanghai = sales_report(w.session, timezone="Asia/Shanghai")
    assert [(r["day"], r["takings"]) for r in shanghai.rows] == [
        ("2024-03-01", 100),
        ("2024-03-02", 600),
    ]
    one_day = sales_report(
        w.session, start=date(2024, 3, 2), end=date(2024, 3, 2), timezone="Asia/Shanghai"
    )
    assert one_day.totals["takings"] == 600


@pytest.mark.parametrize("name", ["Mars/Olympus", "UTC'; DROP TABLE sales; --", "", "../etc"])
def test_sales_report_refuses_an_unknown_time_zone(world: World, name: str) -> None:
    with pytest.raises(InvalidInputError, match="time zone") as caught:
        sales_report(world.session, timezone=name)
    assert caught.value.field == "timezone"


def test_sales_report_refuses_bad_filters(world: World) -> None:
    sales_world(world)
    with pytest.raises(InvalidInputError, match="end: the end date 2024-03-01 is before"):
        sales_report(world.session, start=date(2024, 3, 2), end=date(2024, 3, 1))
    with pytest.raises(NotFoundError, match="There is no operator 'carol'"):
        sales_report(world.session, start=None, end=None, operator="carol")


def test_sales_report_csv_json_and_text(world: World) -> None:
    sales_world(world)
    report = sales_report(world.session, start=date(2024, 3, 1), end=date(2024, 3, 3))
    lines = to_csv(report).split("\r\n")
    assert (
        lines[0] == "day,site,operator,sales,tendered,fixed_charge,tax,credit,refunds,refunded,"
        "paid_out,takings"
    )
    assert lines[1] == "2024-03-01,HQ,alice,3,150.00,5.00,22.50,122.50,0,0.00,0.00,150.00"
    assert lines[2] == "2024-03-02,HQ,alice,0,0.00,0.00,0.00,0.00,1,30.00,0.00,-30.00"
    assert len(lines) == 6 and lines[5] == ""
    assert from_json(to_json(report)) == report
    data = json.loads(to_json(report))
    assert data["rows"][0]["tendered"] == 15000
    assert data["totals"]["by_operator"]["alice"]["takings"] == 12700
    text = to_text(report)
    assert "2024-03-02  HQ     alice         0      0.00          0.00   0.00    0.00" in text
    assert "\nby_operator.alice.takings   127.00\n" in text


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    sales=st.lists(
        st.tuples(
            st.sampled_from(list(SaleStatus)),
            st.sampled_from(["alice", "bob"]),
            st.sampled_from(["HQ", "NORTH"]),
            st.datetimes(datetime(2024, 2, 28), datetime(2024, 3, 3)),
            st.sampled_from([0, -5, 6, 14]),
            st.integers(0, 10**9),
            st.none() | st.timedeltas(timedelta(0), timedelta(days=2)),
        ),
        max_size=12,
    ),
    window=st.tuples(
        st.none() | st.dates(date(2024, 2, 27), date(2024, 3, 4)),
        st.none() | st.dates(date(2024, 2, 27), date(2024, 3, 4)),
    ),
    zone_name=st.sampled_from(
        ["UTC", "Asia/Shanghai", "America/St_Johns", "Pacific/Chatham", "Asia/Kathmandu"]
    ),
)
def test_sales_report_matches_a_python_reckoning(
    db: Database,
    sales: list[tuple[Any, ...]],
    window: tuple[date | None, date | None],
    zone_name: str,
) -> None:
    """Whatever the sales and the hall's zone, the SQL grouping equals grouping in Python."""
    zone = ZoneInfo(zone_name)
    start, end = window
    if start and end and end < start:
        start, end = end, start
    expected: dict[tuple[str, str, str], dict[str, Any]] = {}

    def inside(moment: datetime) -> bool:
        day = moment.astimezone(zone).date()
        return (start is None or day >= start) and (end is None or day <= end)

    def row(moment: datetime, site: str, operator: str) -> dict[str, Any]:
        key = (moment.astimezone(zone).date().isoformat(), site, operator)
        return expected.setdefault(key, cash(*key))

    with db.sessions() as session:
        w = World(session)
        w.operator("alice", "HQ")
        w.operator("bob", "NORTH")
        meter = w.customer()
        for status, operator, site, naive, hours, tendered, delay in sales:
            created = naive.replace(tzinfo=timezone(timedelta(hours=hours)))
            reversed_at = None if delay is None else created + delay
            w.sale(
                meter,
                operator,
                created,
                status=status,
                tendered=tendered,
                site=site,
                reversed_at=reversed_at,
            )
            if status not in (S.PENDING, S.VOID) and inside(created):
                r = row(created, site, operator)
                r["sales"] += 1
                r["tendered"] += tendered
                r["credit"] += tendered
            refunded_at = reversed_at or created
            if status in (S.REVERSED, S.REFUNDED) and inside(refunded_at):
                r = row(refunded_at, site, operator)
                r["refunds"] += 1
                r["refunded"] += tendered
        for r in expected.values():
            r["takings"] = r["tendered"] - r["refunded"]
        report = sales_report(session, start=start, end=end, timezone=zone_name)
        assert report.rows == [expected[key] for key in sorted(expected)]
        assert report.totals["takings"] == sum(r["takings"] for r in expected.values())
        if start is None and end is None:
            kept = sum(t for status, *_, t, _ in sales if status in (S.WRITTEN, S.DELIVERED))
            assert report.totals["takings"] == kept
        session.rollback()


# -- consumption ----------------------------------------------------------------------------


def usage(w: World, meter: Meter, month: str, quantity: int) -> None:
    w.session.add(MonthlyUsage(meter_id=meter.id, month=month, quantity=quantity))
    w.session.flush()


def consumption_world(w: World) -> None:
    res = [w.customer("RES") for _ in range(3)]
    com = [w.customer("COM") for _ in range(2)]
    water = w.customer("RES", utility="water")
    for meter, quantity in zip(res + com, [300, 100, 200, 10000, 400], strict=True):
        usage(w, meter, "2024-01", quantity)
    usage(w, water, "2024-01", 99999999)
    usage(w, res[0], "2024-02", 2)
    usage(w, res[1], "2024-02", 1)
    usage(w, res[0], "2023-11", 50)
    # a removed meter of a closed account still counts: it used that energy
    gone = w.customer("COM", status=AccountStatus.CLOSED, meter_status=MeterStatus.REMOVED)
    usage(w, gone, "2023-12", 70)


def test_consumption_report_known_answers(world: World) -> None:
    consumption_world(world)
    report = consumption_report(world.session, months=3)
    assert report.kind == "consumption"
    assert report.rows == [
        {
            "month": "2023-12",
            "meters": 1,
            "total": 70,
            "mean": 70,
            "median": 70,
            "p95": 70,
            "max": 70,
        },
        # n = 5: median is rank 3, the 95th percentile rank ceil(4.75) = 5
        {
            "month": "2024-01",
            "meters": 5,
            "total": 11000,
            "mean": 2200,
            "median": 300,
            "p95": 10000,
            "max": 10000,
        },
        # mean 1.5 rounds half up; n = 2: median rank 1, p95 rank 2
        {"month": "2024-02", "meters": 2, "total": 3, "mean": 2, "median": 1, "p95": 2, "max": 2},
    ]
    assert report.totals == {"months": 3, "total": 11073}
    assert [r["month"] for r in consumption_report(world.session).rows] == [
        "2023-11",
        "2023-12",
        "2024-01",
        "2024-02",
    ]
    csv_lines = to_csv(report).splitlines()
    assert csv_lines[0] == "month,meters,total,mean,median,p95,max"
    assert csv_lines[2] == "2024-01,5,110.00,22.00,3.00,100.00,100.00"


def test_consumption_report_filters_and_window(world: World) -> None:
    consumption_world(world)
    s = world.session
    res = consumption_report(s, months=1, category="RES")
    assert res.rows == [
        {"month": "2024-02", "meters": 2, "total": 3, "mean": 2, "median": 1, "p95": 2, "max": 2}
    ]
    jan = consumption_report(s, months=1, category="RES", until="2024-01")
    assert jan.rows == [
        {
            "month": "2024-01",
            "meters": 3,
            "total": 600,
            "mean": 200,
            "median": 200,
            "p95": 300,
            "max": 300,
        }
    ]
    water = consumption_report(s, utility="water")
    assert [(r["month"], r["total"]) for r in water.rows] == [("2024-01", 99999999)]
    assert consumption_report(s, until="2023-10").rows == []
    none = consumption_report(s, utility="gas")
    assert none.rows == [] and none.totals == {"months": 0, "total": 0}


def test_consumption_percentiles_by_nearest_rank(world: World) -> None:
    meters = [world.customer() for _ in range(20)]
    for meter, quantity in zip(
        meters, [7, 3, 20, 1, 15, 9, 11, 2, 18, 5, 4, 16, 6, 8, 19, 10, 12, 14, 13, 17], strict=True
    ):
        usage(world, meter, "2024-05", quantity)
    (row,) = consumption_report(world.session).rows
    assert (row["median"], row["p95"], row["max"], row["mean"]) == (10, 19, 20, 11)


def test_consumption_report_refuses_bad_filters(world: World) -> None:
    consumption_world(world)
    with pytest.raises(InvalidInputError, match="months: give a whole number"):
        consumption_report(world.session, months=0)
    with pytest.raises(InvalidInputError, match="until: '2024-13' is not a month"):
        consumption_report(world.session, until="2024-13")
    with pytest.raises(NotFoundError, match="no customer category with code 'XYZ'"):
        consumption_report(world.session, category="XYZ")


# -- non-buying -----------------------------------------------------------------------------

NOW = at("2024-06-30 12:00")


def test_non_buying_report_boundary_and_order(world: World) -> None:
    w = world
    cutoff = NOW - timedelta(days=30)
    exactly = w.customer(name="Exactly thirty days")
    w.sale(exactly, "alice", cutoff)
    just_over = w.customer(name="Just over")
    w.sale(just_over, "alice", cutoff - timedelta(microseconds=1))
    w.customer(name="Never bought")
    old = w.customer(name="Old buyer, void since")
    w.sale(old, "alice", at("2024-01-01 00:00"))
    w.sale(old, "alice", NOW - timedelta(days=1), status=S.VOID)
    w.customer(name="Closed, never bought", status=AccountStatus.CLOSED)
    recent = w.customer(name="Recent")
    w.sale(recent, "alice", NOW - timedelta(days=1), status=S.PENDING)

    report = non_buying_report(w.session, days=30, now=NOW)
    assert report.kind == "non-buying"
    assert report.rows == [
        {
            "customer_no": "000000000003",
            "name": "Never bought",
            "site": "HQ",
            "last_sale_at": None,
            "days_since": None,
        },
        {
            "customer_no": "000000000004",
            "name": "Old buyer, void since",
            "site": "HQ",
            "last_sale_at": "2024-01-01T00:00:00+00:00",
            "days_since": 181,
        },
        {
            "customer_no": "000000000002",
            "name": "Just over",
            "site": "HQ",
            "last_sale_at": "2024-05-31T11:59:59.999999+00:00",
            "days_since": 30,
        },
    ]
    assert report.totals == {"customers": 3, "never_bought": 1}
    # one microsecond later (given in another zone): exactly thirty days becomes "over"
    later = non_buying_report(
        w.session,
        days=30,
        now=(NOW + timedelta(microseconds=1)).astimezone(timezone(timedelta(hours=-4))),
    )
    assert [r["name"] for r in later.rows][-1] == "Exactly thirty days"
    assert later.rows[-1]["days_since"] == 30
    assert [r["name"] for r in non_buying_report(w.session, days=0, now=NOW).rows] == [
        "Never bought",
        "Old buyer, void since",
        "Just over",
        "Exactly thirty days",
        "Recent",
    ]
    lines = to_csv(report).splitlines()
    assert lines[0] == "customer_no,name,site,last_sale_at,days_since"
    assert lines[1] == "000000000003,Never bought,HQ,,"
    assert lines[2] == '000000000004,"Old buyer, void since",HQ,2024-01-01T00:00:00+00:00,181'


def test_non_buying_report_refuses_bad_input(world: World) -> None:
    with pytest.raises(InvalidInputError, match="days: give a whole number of days"):
        non_buying_report(world.session, days=-1, now=NOW)
    with pytest.raises(InvalidInputError, match="now: give a time with its time zone"):
        non_buying_report(world.session, days=30, now=datetime(2024, 6, 30))


# -- low credit -----------------------------------------------------------------------------

READ = at("2024-06-01 10:00")


def test_low_credit_report(world: World) -> None:
    w = world
    w.customer(meter_remaining=1500, meter_last_write_back_at=READ)
    w.customer(meter_remaining=0, meter_overdraft_used=300, meter_last_write_back_at=READ)
    w.customer(meter_remaining=2000, meter_last_write_back_at=READ)  # equal to alarm 1
    w.customer(meter_remaining=0)  # never read back
    w.customer(meter_remaining=0, meter_status=MeterStatus.REMOVED, meter_last_write_back_at=READ)
    w.customer(status=AccountStatus.CLOSED, meter_last_write_back_at=READ)
    w.customer(alarm1=5000, meter_remaining=4000, meter_last_write_back_at=READ)

    report = low_credit_report(w.session)
    assert report.kind == "low-credit"
    assert report.rows == [
        {
            "customer_no": "000000000002",
            "name": "Customer 2",
            "meter_no": "900000000002",
            "balance": -300,
            "threshold": 2000,
            "last_write_back_at": "2024-06-01T10:00:00+00:00",
        },
        {
            "customer_no": "000000000001",
            "name": "Customer 1",
            "meter_no": "900000000001",
            "balance": 1500,
            "threshold": 2000,
            "last_write_back_at": "2024-06-01T10:00:00+00:00",
        },
        {
            "customer_no": "000000000007",
            "name": "Customer 7",
            "meter_no": "900000000007",
            "balance": 4000,
            "threshold": 5000,
            "last_write_back_at": "2024-06-01T10:00:00+00:00",
        },
    ]
    assert report.totals == {"meters": 3}
    assert [r["balance"] for r in low_credit_report(w.session, threshold=1500).rows] == [-300]
    assert [r["balance"] for r in low_credit_report(w.session, threshold=1501).rows] == [-300, 1500]
    assert low_credit_report(w.session, threshold=-300).rows == []
    assert to_csv(report).splitlines()[1] == (
        "000000000002,Customer 2,900000000002,-3.00,20.00,2024-06-01T10:00:00+00:00"
    )
    with pytest.raises(InvalidInputError, match="threshold: give the threshold"):
        low_credit_report(w.session, threshold="20.00")  # type: ignore[arg-type]


# -- findings -------------------------------------------------------------------------------


def test_findings_report(world: World) -> None:
    w = world
    meter = w.customer()
    s = w.session
    s.add_all(
        [
            Finding(
                kind=FindingKind.MISMATCH,
                customer_id=meter.customer_id,
                meter_id=meter.id,
                detail="credit 12.00 short",
                created_at=at("2024-05-02 09:00"),
            ),
            Finding(
                kind=FindingKind.TAMPER,
                customer_id=meter.customer_id,
                meter_id=meter.id,
                detail="cover opened",
                status=FindingStatus.CLOSED,
                created_at=at("2024-05-01 09:00"),
            ),
            Finding(
                kind=FindingKind.UNKNOWN_METER,
                detail="meter 123456789012 is not ours",
                created_at=at("2024-05-01 08:00"),
            ),
        ]
    )
    s.flush()
    report = findings_report(s)
    assert report.kind == "findings"
    assert [(r["kind"], r["customer_no"], r["meter_no"]) for r in report.rows] == [
        ("unknown_meter", None, None),
        ("mismatch", "000000000001", "900000000001"),
    ]
    assert report.rows[1] == {
        "id": report.rows[1]["id"],
        "created_at": "2024-05-02T09:00:00+00:00",
        "status": "open",
        "kind": "mismatch",
        "customer_no": "000000000001",
        "meter_no": "900000000001",
        "detail": "credit 12.00 short",
    }
    assert report.totals == {"findings": 2, "by_kind": {"mismatch": 1, "unknown_meter": 1}}
    assert [r["kind"] for r in findings_report(s, status="closed").rows] == ["tamper"]
    assert len(findings_report(s, status="all").rows) == 3
    with pytest.raises(InvalidInputError, match="status: give one of open, closed, all"):
        findings_report(s, status="pending")


def test_registry_names_every_report(world: World) -> None:
    assert set(REPORTS) == {"sales", "consumption", "non-buying", "low-credit", "findings"}
    arguments: dict[str, dict[str, Any]] = {
        "sales": {"start": None, "end": None},
        "non-buying": {"days": 30, "now": NOW},
    }
    for kind, make in REPORTS.items():
        report = make(world.session, **arguments.get(kind, {}))
        assert report.kind == kind
        assert report.rows == []
        assert from_json(to_json(report)) == report


# -- writers (no database) ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0, "0.00"),
        (5, "0.05"),
        (-5, "-0.05"),
        (1234, "12.34"),
        (-100, "-1.00"),
        (10**15, "10000000000000.00"),
    ],
)
def test_decimal_text(value: int, text: str) -> None:
    assert decimal_text(value) == text


SAMPLE = Report(
    kind="sample",
    columns=("name", "count", "amount", "energy", "note"),
    rows=[
        {"name": 'Wu, "Shop" 3', "count": 2, "amount": -1205, "energy": 12345, "note": None},
        {"name": "Li", "count": 10, "amount": 7, "energy": 0, "note": "line\nbreak"},
    ],
    totals={"amount": -1198, "by_site": {"HQ": {"amount": 7, "count": 12}}},
    money_columns=("amount",),
    quantity_columns=("energy",),
)


def test_csv_is_rfc_4180() -> None:
    text = to_csv(SAMPLE)
    assert text == (
        "name,count,amount,energy,note\r\n"
        '"Wu, ""Shop"" 3",2,-12.05,123.45,\r\n'
        'Li,10,0.07,0.00,"line\nbreak"\r\n'
    )
    parsed = list(csv.reader(io.StringIO(text, newline="")))
    assert parsed[1][0] == 'Wu, "Shop" 3' and parsed[2][4] == "line\nbreak"


def test_json_keeps_integers_and_round_trips() -> None:
    data = json.loads(to_json(SAMPLE))
    assert list(data) == ["kind", "columns", "rows", "totals", "money_columns", "quantity_columns"]
    assert data["rows"][0]["amount"] == -1205 and data["rows"][0]["note"] is None
    assert from_json(to_json(SAMPLE)) == SAMPLE


def test_text_table_is_aligned() -> None:
    assert to_text(SAMPLE) == (
        "sample report\n"
        "\n"
        "name          count  amount  energy  note\n"
        "------------  -----  ------  ------  ----------\n"
        'Wu, "Shop" 3      2  -12.05  123.45\n'
        "Li               10    0.07    0.00  line break\n"
        "\n"
        "amount             -11.98\n"
        "by_site.HQ.amount    0.07\n"
        "by_site.HQ.count       12\n"
    )
    empty = Report("empty", ("a",), [], {})
    assert to_text(empty) == "empty report\n\na\n-\n(no rows)\n"
