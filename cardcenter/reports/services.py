"""Reports of the centre: takings and cash-up, consumption, non-buying customers, low credit,
findings.

Every report is a function ``(session, **filters) -> Report`` registered in :data:`REPORTS`
under its kind, so the command line and the web pages offer the same set.

Units convention (one for every report): rows and totals hold **integers** in the books' own
units and nothing else numeric: money in minor units (0.01 currency) and quantities in 0.01
units, exactly as stored. ``Report.money_columns`` and ``Report.quantity_columns`` name the
columns (and the same-named keys inside ``totals``) that carry such integers, and the writers
in :mod:`cardcenter.reports.export` turn them into decimal text ("12.34") only at the edge. JSON
keeps the integers, so a program reading it never parses or rounds money. Dates are ISO text
(``"2024-03-01"``), times ISO 8601 in UTC (``"2024-03-01T09:30:00+00:00"``), absent values
``None``.

The aggregation runs in the database (GROUP BY, window functions), never over every sale or
reading in Python, because a utility has hundreds of thousands of customers. SQLite and
PostgreSQL give identical results: the one dialect-specific piece, the calendar day of a
timestamp in the hall's time zone, is a small compiled construct (:class:`local_day`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import BigInteger, and_, case, func, literal, literal_column, or_, select
from sqlalchemy.exc import CompileError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import String

from cardcenter.core.errors import InvalidInputError, NotFoundError
from cardcenter.customers.models import (
    AccountStatus,
    Category,
    Customer,
    Meter,
    MeterStatus,
)
from cardcenter.operators.models import Operator
from cardcenter.reconciliation.models import Finding, FindingStatus, MonthlyUsage
from cardcenter.sales import ledger
from cardcenter.sales.ledger import JournalEntry
from cardcenter.sales.models import Sale, SaleKind, SaleStatus


@dataclass(frozen=True)
class Report:
    """A finished report: what the writers print and the API returns.

    ``rows`` are dicts keyed by ``columns`` (in that order) with JSON-safe values;
    ``money_columns`` (minor units) and ``quantity_columns`` (0.01 units) name the integer
    columns the writers show as decimals. The same names used as keys in ``totals`` (at any
    depth) carry the same units.
    """

    kind: str
    columns: tuple[str, ...]
    rows: list[dict[str, Any]]
    totals: dict[str, Any] = field(default_factory=dict)
    money_columns: tuple[str, ...] = ()
    quantity_columns: tuple[str, ...] = ()


# -- the local day of a timestamp, the same on both databases --------------------------------

_ZONE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_+\-]*(/[A-Za-z0-9_+\-]+)*$")


def zone_of(name: str) -> ZoneInfo:
    """The IANA time zone ``name`` (``Asia/Shanghai``, ``UTC``), or the reason it is refused.

    The name goes into SQL as a literal (see :class:`local_day`), so only
    the IANA name shape is taken, and only a zone this machine knows.
    """
    if not _ZONE_NAME.match(name or ""):
        raise InvalidInputError(
            "timezone", f"{name!r} is not a time zone name such as Asia/Shanghai"
        )
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInputError(
            "timezone", f"{name!r} is not a time zone this machine knows (IANA names, e.g. UTC)"
        ) from None


class local_day(FunctionElement[str]):
    """``YYYY-MM-DD`` of a timestamp column in a time zone, as text on every database.

    A day's takings are the hall's day, not UTC's: in Asia/Shanghai a UTC
    day ends at 08:00 in the morning. PostgreSQL converts with its own zone
    database (``AT TIME ZONE``); SQLite, which keeps the centre's timestamps
    as UTC text and knows no zones, calls ``cc_local_day``, a function the
    engine registers on every connection (:func:`cardcenter.core.db.local_day_text`).
    The zone is rendered as a literal (checked by :func:`zone_of`), so the
    expression repeated in GROUP BY is textually the one in SELECT, which
    PostgreSQL requires.
    """

    type = String()
    name = "local_day"
    inherit_cache = True

    def __init__(self, column: Any, zone: str) -> None:
        zone_of(zone)
        super().__init__(column, literal_column(f"'{zone}'"))


@compiles(local_day, "sqlite")
def _local_day_sqlite(element: local_day, compiler: SQLCompiler, **kw: Any) -> str:
    column, zone = (compiler.process(clause, **kw) for clause in element.clauses)
    return f"date({column})" if zone == "'UTC'" else f"cc_local_day({column}, {zone})"


@compiles(local_day, "postgresql")
def _local_day_postgresql(element: local_day, compiler: SQLCompiler, **kw: Any) -> str:
    column, zone = (compiler.process(clause, **kw) for clause in element.clauses)
    return f"to_char(({column}) AT TIME ZONE {zone}, 'YYYY-MM-DD')"


@compiles(local_day)
def _local_day_other(element: local_day, compiler: SQLCompiler, **kw: Any) -> str:
    raise CompileError(
        f"local_day is written for SQLite and PostgreSQL only, not {compiler.dialect.name}"
    )


# -- sales and cash-up ------------------------------------------------------------------------

# Statuses in which the customer's money was taken at the desk. A reversed or refunded sale
# took money too (on its own day) and paid it back later (on the day of its reversal).
TAKEN = tuple(
    status.value
    for status in (
        SaleStatus.WRITTEN,
        SaleStatus.DELIVERED,
        SaleStatus.REVERSED,
        SaleStatus.REFUNDED,
    )
)
PAID_BACK = (SaleStatus.REVERSED.value, SaleStatus.REFUNDED.value)
PAID_BACK_BY: ColumnElement[int] = func.coalesce(Sale.reversed_by, Sale.operator_id)
"""Who handed a reversed sale's money back: its reversing operator (the seller for a
sale whose reversal recorded none)."""

SALES_COLUMNS = (
    "day",
    "site",
    "operator",
    "sales",
    "tendered",
    "fixed_charge",
    "tax",
    "credit",
    "refunds",
    "refunded",
    "paid_out",
    "takings",
)
SALES_MONEY = ("tendered", "fixed_charge", "tax", "credit", "refunded", "paid_out", "takings")
_CASH_UP_KEYS = ("sales", "tendered", "refunds", "refunded", "paid_out", "takings")


def sales_report(
    session: Session,
    *,
    start: date | None = None,
    end: date | None = None,
    site: str | None = None,
    operator: str | None = None,
    timezone: str = "UTC",
) -> Report:
    """Takings per day (in ``timezone``, the hall's), site and operator, with each cash-up.

    The report follows the cash through the till, so a day's cash-up matches the drawer:

    - ``sales``/``tendered``/``fixed_charge``/``tax``/``credit``: sales whose money was taken
      that day (``created_at``) and is not void or pending: written, delivered, and also those
      reversed or refunded later, because the cash was taken that day all the same. Pending
      sales (card not confirmed) and void sales (proved never to have arrived) took no money
      that counts and are left out.
    - ``refunds``/``refunded``: reversed or refunded sales, on the day of their reversal
      (``reversed_at``; ``created_at`` if a reversal time was never recorded), with the full
      amount tendered, which is what was handed back.
    - ``paid_out``: account-closing refunds paid from the till, net of debts collected into it
      (an overdrawn meter's, at closing or at a meter swap), from the journal, on their day.
    - ``takings`` = ``tendered - refunded - paid_out``: what the till must hold for that row.
      A sale made and reversed inside the period therefore adds nothing to the takings, and one
      sold before ``start`` but reversed inside the period lowers them, as the drawer does.

    A meter swap's carry-over took no cash and is not a sale here. Refunds are charged to the
    operator who handed the money back (the sale's reversing operator) at the sale's site (a
    sale is reversed only at the hall that sold it), as the journal books them and a shift's
    cash-up counts them. ``start`` and ``end`` are inclusive days in ``timezone``; ``site``
    and ``operator`` (a user name) narrow every row and total.

    ``totals`` holds the grand total (the row columns summed) plus ``by_operator`` and
    ``by_site``: for each, ``sales``, ``tendered``, ``refunds``, ``refunded`` and ``takings``;
    the operator's ``takings`` is the cash they hand in at cash-up.
    """
    if start is not None and end is not None and end < start:
        raise InvalidInputError(
            "end", f"the end date {end.isoformat()} is before the start {start.isoformat()}"
        )
    if (
        operator is not None
        and session.scalar(select(Operator.id).where(Operator.username == operator)) is None
    ):
        raise NotFoundError(f"There is no operator {operator!r}: check the user name.")

    zone = zone_of(timezone)

    def narrow(stmt: Any, moment: Any, where: Any = None) -> Any:
        if start is not None:
            stmt = stmt.where(moment >= datetime.combine(start, time.min, tzinfo=zone))
        if end is not None:
            stmt = stmt.where(moment < datetime.combine(end + timedelta(days=1), time.min, zone))
        if site is not None:
            stmt = stmt.where(Sale.site == site if where is None else where)
        if operator is not None:
            stmt = stmt.where(Operator.username == operator)
        return stmt

    sold_day = local_day(Sale.created_at, timezone)
    sold = narrow(
        select(
            sold_day,
            Sale.site,
            Operator.username,
            func.count(),
            func.sum(Sale.tendered),
            func.sum(Sale.fixed_charge),
            func.sum(Sale.tax),
            func.sum(Sale.credit),
        )
        .join(Operator, Operator.id == Sale.operator_id)
        .where(Sale.status.in_(TAKEN), Sale.kind != SaleKind.CARRY_OVER),
        Sale.created_at,
    ).group_by(sold_day, Sale.site, Operator.username)

    paid_back_at = func.coalesce(Sale.reversed_at, Sale.created_at)
    paid_back_day = local_day(paid_back_at, timezone)
    paid_back = narrow(
        select(
            paid_back_day,
            Sale.site,
            Operator.username,
            func.count(),
            func.sum(Sale.tendered),
        )
        .join(Operator, Operator.id == PAID_BACK_BY)
        .where(Sale.status.in_(PAID_BACK)),
        paid_back_at,
    ).group_by(paid_back_day, Sale.site, Operator.username)

    # Account closings (and a swapped meter's debt): meter:N <-> till:SITE, no sale.
    entry = JournalEntry
    till_side = case((entry.destination.like("till:%"), entry.destination), else_=entry.source)
    out_of_till = case((entry.destination.like("till:%"), entry.amount), else_=-entry.amount)
    entry_day = local_day(entry.at, timezone)
    entry_site = func.substr(till_side, len("till:") + 1)
    closings = narrow(
        select(entry_day, entry_site, Operator.username, func.sum(out_of_till))
        .join(Operator, Operator.id == entry.operator_id)
        .where(
            entry.sale_id.is_(None),
            or_(
                and_(entry.source.like("meter:%"), entry.destination.like("till:%")),
                and_(entry.source.like("till:%"), entry.destination.like("meter:%")),
            ),
        ),
        entry.at,
        till_side == ledger.till(site) if site is not None else None,
    ).group_by(entry_day, entry_site, Operator.username)

    table: dict[tuple[str, str, str], dict[str, Any]] = {}

    def row_for(day: str, row_site: str, username: str) -> dict[str, Any]:
        key = (day, row_site, username)
        if key not in table:
            table[key] = dict.fromkeys(SALES_COLUMNS, 0) | {
                "day": day,
                "site": row_site,
                "operator": username,
            }
        return table[key]

    for day, row_site, username, count, tendered, fixed, tax, credit in session.execute(sold):
        row = row_for(day, row_site, username)
        row["sales"] = int(count)
        row["tendered"] = int(tendered)
        row["fixed_charge"] = int(fixed)
        row["tax"] = int(tax)
        row["credit"] = int(credit)
    for day, row_site, username, count, tendered in session.execute(paid_back):
        row = row_for(day, row_site, username)
        row["refunds"] = int(count)
        row["refunded"] = int(tendered)
    for day, row_site, username, paid in session.execute(closings):
        row_for(day, row_site, username)["paid_out"] = int(paid)

    rows = [table[key] for key in sorted(table)]
    for row in rows:
        row["takings"] = row["tendered"] - row["refunded"] - row["paid_out"]

    totals: dict[str, Any] = {name: sum(row[name] for row in rows) for name in SALES_COLUMNS[3:]}
    totals["by_operator"] = _cash_up(rows, "operator")
    totals["by_site"] = _cash_up(rows, "site")
    return Report("sales", SALES_COLUMNS, rows, totals, money_columns=SALES_MONEY)


def _cash_up(rows: Iterable[dict[str, Any]], by: str) -> dict[str, dict[str, int]]:
    """Sums of the cash columns per value of ``by``, keys in sorted order."""
    groups: dict[str, dict[str, int]] = {}
    for row in rows:
        group = groups.setdefault(row[by], dict.fromkeys(_CASH_UP_KEYS, 0))
        for name in _CASH_UP_KEYS:
            group[name] += row[name]
    return {name: groups[name] for name in sorted(groups)}


# -- consumption --------------------------------------------------------------------------------

CONSUMPTION_COLUMNS = ("month", "meters", "total", "mean", "median", "p95", "max")
CONSUMPTION_QUANTITY = ("total", "mean", "median", "p95", "max")
_MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


def _month_back(month: str, back: int) -> str:
    """The ``YYYY-MM`` month ``back`` months before ``month``."""
    index = int(month[:4]) * 12 + int(month[5:]) - 1 - back
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def consumption_report(
    session: Session,
    *,
    months: int = 12,
    category: str | None = None,
    utility: str = "electricity",
    until: str | None = None,
) -> Report:
    """Monthly frozen usage across the fleet: meters reporting, total, mean, median, 95th
    percentile and maximum, all in 0.01 units.

    The window is ``months`` calendar months ending with ``until`` (``YYYY-MM``; by default the
    latest month any meter reported); a month in it with no readings has no row. ``category``
    (a category code) keeps meters of that category's customers; ``utility`` keeps one utility,
    since kWh and cubic metres do not add up. Usage is reported as the meters froze it,
    whatever has become of the meter or the account since.

    Total and maximum are exact integer sums; the mean is rounded half up to 0.01 units; the
    median and the 95th percentile are by nearest rank (the value at rank ceil(p/100 * n) of
    the month's n readings in ascending order), so they are readings that exist and stay
    integers. They are computed in the database with window functions, not in Python.
    ``totals`` gives ``months`` (rows) and ``total`` over the window.
    """
    if isinstance(months, bool) or not isinstance(months, int) or not 1 <= months <= 1200:
        raise InvalidInputError("months", "give a whole number of months from 1 to 1200")
    if until is not None and not _MONTH.match(until):
        raise InvalidInputError("until", f"{until!r} is not a month written as YYYY-MM")
    if (
        category is not None
        and session.scalar(select(Category.id).where(Category.code == category)) is None
    ):
        raise NotFoundError(
            f"There is no customer category with code {category!r}: check the category list."
        )

    def scope(stmt: Any) -> Any:
        stmt = stmt.join(Meter, Meter.id == MonthlyUsage.meter_id).where(Meter.utility == utility)
        if category is not None:
            stmt = (
                stmt.join(Customer, Customer.id == Meter.customer_id)
                .join(Category, Category.id == Customer.category_id)
                .where(Category.code == category)
            )
        return stmt

    last = until or session.scalar(scope(select(func.max(MonthlyUsage.month))))
    if last is None:
        empty = {"months": 0, "total": 0}
        return Report(
            "consumption", CONSUMPTION_COLUMNS, [], empty, quantity_columns=CONSUMPTION_QUANTITY
        )
    first = _month_back(last, months - 1)

    ranked = scope(
        select(
            MonthlyUsage.month,
            MonthlyUsage.quantity,
            func.row_number()
            .over(
                partition_by=MonthlyUsage.month,
                order_by=(MonthlyUsage.quantity, MonthlyUsage.id),
            )
            .label("rank"),
            func.count().over(partition_by=MonthlyUsage.month).label("n"),
        ).where(MonthlyUsage.month.between(first, last))
    ).subquery()

    def nearest_rank(percent: int) -> Any:
        # ceil(percent * n / 100) in integer arithmetic (``//`` is integer division on both)
        return (ranked.c.n * percent + 99) // 100

    def at_rank(percent: int) -> Any:
        return func.max(case((ranked.c.rank == nearest_rank(percent), ranked.c.quantity)))

    stmt = (
        select(
            ranked.c.month,
            func.max(ranked.c.n),
            func.sum(ranked.c.quantity),
            at_rank(50),
            at_rank(95),
            func.max(ranked.c.quantity),
        )
        .group_by(ranked.c.month)
        .order_by(ranked.c.month)
    )
    rows: list[dict[str, Any]] = []
    for month, n, total, median, p95, top in session.execute(stmt):
        meters, total = int(n), int(total)
        rows.append(
            {
                "month": month,
                "meters": meters,
                "total": total,
                "mean": (2 * total + meters) // (2 * meters),
                "median": int(median),
                "p95": int(p95),
                "max": int(top),
            }
        )
    totals = {"months": len(rows), "total": sum(row["total"] for row in rows)}
    return Report(
        "consumption", CONSUMPTION_COLUMNS, rows, totals, quantity_columns=CONSUMPTION_QUANTITY
    )


# -- customers who stopped buying ---------------------------------------------------------------

NON_BUYING_COLUMNS = ("customer_no", "name", "site", "last_sale_at", "days_since")


def non_buying_report(session: Session, *, days: int, now: datetime) -> Report:
    """Active customers who have not bought for more than ``days`` days, or never.

    A customer is listed when their latest sale that is not void was made strictly before
    ``now - days``: one who bought exactly ``days`` days ago is not yet listed. Any sale that
    is not void counts as buying (pending, written, delivered, reversed, refunded), since each
    is the customer coming to the desk. ``days_since`` is whole days elapsed (rounded down);
    customers who never bought have ``None`` in ``last_sale_at`` and ``days_since`` and come
    first, then the longest silent first, then by customer number. ``totals`` counts the
    customers listed and those who never bought.
    """
    if isinstance(days, bool) or not isinstance(days, int) or days < 0:
        raise InvalidInputError("days", "give a whole number of days, 0 or more")
    if now.tzinfo is None:
        raise InvalidInputError("now", "give a time with its time zone (UTC in the books)")
    now = now.astimezone(UTC)
    cutoff = now - timedelta(days=days)

    last = func.max(Sale.created_at)
    stmt = (
        select(Customer.customer_no, Customer.name, Customer.site, last)
        .outerjoin(
            Sale, and_(Sale.customer_id == Customer.id, Sale.status != SaleStatus.VOID.value)
        )
        .where(Customer.status == AccountStatus.ACTIVE.value)
        .group_by(Customer.id, Customer.customer_no, Customer.name, Customer.site)
        .having(or_(last.is_(None), last < cutoff))
        .order_by(case((last.is_(None), 0), else_=1), last, Customer.customer_no)
    )
    rows: list[dict[str, Any]] = []
    for customer_no, name, site, last_sale in session.execute(stmt):
        rows.append(
            {
                "customer_no": customer_no,
                "name": name,
                "site": site,
                "last_sale_at": None if last_sale is None else last_sale.isoformat(),
                "days_since": None if last_sale is None else (now - last_sale).days,
            }
        )
    totals = {
        "customers": len(rows),
        "never_bought": sum(1 for row in rows if row["last_sale_at"] is None),
    }
    return Report("non-buying", NON_BUYING_COLUMNS, rows, totals)


# -- meters low on credit -----------------------------------------------------------------------

LOW_CREDIT_COLUMNS = (
    "customer_no",
    "name",
    "meter_no",
    "balance",
    "threshold",
    "last_write_back_at",
)
LOW_CREDIT_MONEY = ("balance", "threshold")


def low_credit_report(session: Session, *, threshold: int | None = None) -> Report:
    """Active meters of active customers whose credit, as last read, is below a threshold.

    The balance is what the last verified write-back said: remaining minus overdraft used
    (negative in overdraft), in minor units. The threshold is ``threshold`` for every meter,
    or, when None, each customer's own alarm 1 level, the level at which their meter starts
    to warn. Meters never read back (no write-back yet) are left out: the centre does not
    know their credit. The balance is as of ``last_write_back_at``; the meter has used more
    since. Lowest balance first, then by meter number.
    """
    if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, int)):
        raise InvalidInputError("threshold", "give the threshold as whole minor units")
    balance = Meter.remaining - Meter.overdraft_used
    limit = Customer.alarm1 if threshold is None else literal(threshold, BigInteger())
    stmt = (
        select(
            Customer.customer_no,
            Customer.name,
            Meter.meter_no,
            balance,
            limit,
            Meter.last_write_back_at,
        )
        .join(Customer, Customer.id == Meter.customer_id)
        .where(
            Meter.status == MeterStatus.ACTIVE.value,
            Customer.status == AccountStatus.ACTIVE.value,
            Meter.last_write_back_at.is_not(None),
            balance < limit,
        )
        .order_by(balance, Meter.meter_no)
    )
    rows = [
        {
            "customer_no": customer_no,
            "name": name,
            "meter_no": meter_no,
            "balance": int(meter_balance),
            "threshold": int(meter_threshold),
            "last_write_back_at": _iso(read_at),
        }
        for customer_no, name, meter_no, meter_balance, meter_threshold, read_at in session.execute(
            stmt
        )
    ]
    return Report(
        "low-credit",
        LOW_CREDIT_COLUMNS,
        rows,
        {"meters": len(rows)},
        money_columns=LOW_CREDIT_MONEY,
    )


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


# -- reconciliation findings --------------------------------------------------------------------

FINDINGS_COLUMNS = ("id", "created_at", "status", "kind", "customer_no", "meter_no", "detail")
_FINDING_STATUSES = (*(status.value for status in FindingStatus), "all")


def findings_report(session: Session, *, status: str = "open") -> Report:
    """Reconciliation findings in the order they were raised, with their customer and meter.

    ``status`` is ``open`` (the work list), ``closed`` or ``all``. A finding about an unknown
    meter has no customer or meter number. ``totals`` counts the findings and, per kind,
    ``by_kind``.
    """
    if status not in _FINDING_STATUSES:
        raise InvalidInputError("status", f"give one of {', '.join(_FINDING_STATUSES)}")
    stmt = (
        select(
            Finding.id,
            Finding.created_at,
            Finding.status,
            Finding.kind,
            Customer.customer_no,
            Meter.meter_no,
            Finding.detail,
        )
        .outerjoin(Customer, Customer.id == Finding.customer_id)
        .outerjoin(Meter, Meter.id == Finding.meter_id)
        .order_by(Finding.created_at, Finding.id)
    )
    if status != "all":
        stmt = stmt.where(Finding.status == status)
    rows = [
        {
            "id": finding_id,
            "created_at": created_at.isoformat(),
            "status": str(finding_status),
            "kind": str(kind),
            "customer_no": customer_no,
            "meter_no": meter_no,
            "detail": detail,
        }
        for finding_id, created_at, finding_status, kind, customer_no, meter_no, detail in (
            session.execute(stmt)
        )
    ]
    by_kind: dict[str, int] = {}
    for row in rows:
        kind_name = str(row["kind"])
        by_kind[kind_name] = by_kind.get(kind_name, 0) + 1
    totals = {"findings": len(rows), "by_kind": dict(sorted(by_kind.items()))}
    return Report("findings", FINDINGS_COLUMNS, rows, totals)


REPORTS: dict[str, Callable[..., Report]] = {
    "sales": sales_report,
    "consumption": consumption_report,
    "non-buying": non_buying_report,
    "low-credit": low_credit_report,
    "findings": findings_report,
}
"""Every report by its kind, as the command line and the API name them."""
