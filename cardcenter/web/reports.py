"""Reports with charts and CSV export: sales, consumption, non-buying customers, findings.

Every report is :data:`cardcenter.reports.services.REPORTS`'s, the same the
command line prints: a page shows its rows, totals and a bar chart, and
``/reports/<kind>.csv`` with the same query string downloads the rows as
:func:`cardcenter.reports.export.to_csv` writes them. Filters come from the
query string (a bookmarkable page); a bad one names its field on the page.

Charts are drawn on the server as SVG by :mod:`cardcenter.web.charts`
(:func:`~cardcenter.web.charts.bar_chart` lays the bars out,
``templates/_chart.html`` draws them, ``static/charts.css`` colours them).

Days in the sales report are UTC days, as the books keep them. Cashiers
may read every report; closing a finding needs a supervisor.

:func:`dashboard_figures` is the dashboard's panel (today's takings here,
open findings, meters low on credit), drawn by
``templates/reports/dashboard_panel.html`` and also a template global, so
the dashboard only includes that template.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from flask import Blueprint, Response, abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from cardcenter.core.db import utcnow
from cardcenter.core.errors import CentreError, InvalidInputError, NotFoundError
from cardcenter.operators.models import Role
from cardcenter.operators.services import has_role
from cardcenter.reconciliation.models import FindingKind
from cardcenter.reconciliation.services import close_finding
from cardcenter.reports.export import to_csv
from cardcenter.reports.services import REPORTS, Report, zone_of
from cardcenter.tariffs.services import UTILITIES
from cardcenter.web import db
from cardcenter.web.audit import audit
from cardcenter.web.auth import current_operator, login_required, require_role
from cardcenter.web.blueprints import NavItem, Section
from cardcenter.web.charts import Chart, bar_chart
from cardcenter.web.i18n import _, _l, datetime_filter, money
from cardcenter.web.refusals import labelled_refusal
from cardcenter.web.state import state
from cardlayout.codec.money import parse_decimal
from cardlayout.errors import FormatError

bp = Blueprint("reports", __name__, url_prefix="/reports")
SECTION = Section(bp, (NavItem("reports.index", _l("Reports"), role=Role.CASHIER, order=80),))

KINDS = ("sales", "consumption", "non-buying", "low-credit", "findings")
"""The reports offered, in menu order (every one of :data:`REPORTS`)."""

TITLES = {
    "sales": _l("Sales and cash-up"),
    "consumption": _l("Consumption"),
    "non-buying": _l("Customers not buying"),
    "low-credit": _l("Meters low on credit"),
    "findings": _l("Findings"),
}
DESCRIPTIONS = {
    "sales": _l("Takings per day, site and operator, with what each operator hands in."),
    "consumption": _l(
        "Monthly usage as the meters froze it: total, mean, median, 95th percentile."
    ),
    "non-buying": _l("Active customers who have not bought for a number of days, or never."),
    "low-credit": _l("Meters whose credit, as last read, is below a threshold or the alarm."),
    "findings": _l("What reconciliation found: mismatches, tamper, illegal cards. Close them."),
}
COLUMNS = {
    "day": _l("Day"),
    "site": _l("Site"),
    "operator": _l("Operator"),
    "sales": _l("Number of sales"),
    "tendered": _l("Paid"),
    "fixed_charge": _l("Fixed charges"),
    "tax": _l("Tax"),
    "credit": _l("Credit"),
    "refunds": _l("Refunds"),
    "refunded": _l("Refunded"),
    "paid_out": _l("Paid out"),
    "takings": _l("Takings"),
    "month": _l("Month"),
    "meters": _l("Meters"),
    "total": _l("Total"),
    "mean": _l("Mean"),
    "median": _l("Median"),
    "p95": _l("95th percentile"),
    "max": _l("Maximum"),
    "customer_no": _l("Customer"),
    "name": _l("Name"),
    "last_sale_at": _l("Last sale"),
    "days_since": _l("Days since"),
    "meter_no": _l("Meter"),
    "balance": _l("Balance"),
    "threshold": _l("Threshold"),
    "last_write_back_at": _l("Last read"),
    "id": _l("No."),
    "created_at": _l("Raised"),
    "status": _l("Status"),
    "kind": _l("Kind"),
    "detail": _l("Detail"),
}
FIELDS = {
    "start": _l("From"),
    "end": _l("To"),
    "site": _l("Site"),
    "operator": _l("Operator"),
    "months": _l("Months"),
    "category": _l("Category"),
    "utility": _l("Utility"),
    "until": _l("Until"),
    "days": _l("Days"),
    "threshold": _l("Threshold"),
    "status": _l("Status"),
    "note": _l("Note"),
}
FINDING_KINDS = {
    FindingKind.MISMATCH.value: _l("consumption mismatch"),
    FindingKind.NEGATIVE_CONSUMPTION.value: _l("negative consumption"),
    FindingKind.TAMPER.value: _l("tamper"),
    FindingKind.ILLEGAL_CARDS.value: _l("illegal cards"),
    FindingKind.UNKNOWN_METER.value: _l("unknown meter"),
}
FINDING_STATUSES = {"open": _l("open"), "closed": _l("closed"), "all": _l("all")}
UTILITY_NAMES = {"electricity": _l("electricity"), "water": _l("water"), "gas": _l("gas")}
MAX_PAGE_ROWS = 500
"""Rows shown on a page; the CSV has them all."""
DEFAULT_SALES_DAYS = 30


def _count(value: int) -> str:
    return str(value)


SILENCE: tuple[tuple[object, int | None], ...] = (
    (_l("never"), -1),
    (_l("up to 30 days"), 30),
    (_l("31–90 days"), 90),
    (_l("91–180 days"), 180),
    (_l("181–365 days"), 365),
    (_l("over a year"), None),
)
"""The non-buying chart's bars: customers by days since their last sale (up to N days)."""
BALANCES: tuple[tuple[object, int | None], ...] = (
    (_l("in overdraft"), -1),
    (_l("0 to 10.00"), 999),
    (_l("10.00 to 20.00"), 1999),
    (_l("20.00 and more"), None),
)
"""The low-credit chart's bars: meters by balance (minor units, up to and including)."""


def _bucket(limits: tuple[tuple[object, int | None], ...], value: int) -> int:
    for index, (_label, upto) in enumerate(limits):
        if upto is None or value <= upto:
            return index
    return len(limits) - 1  # pragma: no cover - the last limit is None


def _silence_bucket(days: int | None) -> int:
    return 0 if days is None else _bucket(SILENCE[1:], days) + 1


def _balance_bucket(balance: int) -> int:
    return _bucket(BALANCES, balance)


def _chart(kind: str, report: Report, filters: dict[str, Any]) -> Chart | None:
    """The chart of a report, or None when it has nothing to draw."""
    if kind == "sales":
        per_day: dict[str, int] = {}
        for row in report.rows:
            per_day[row["day"]] = per_day.get(row["day"], 0) + row["takings"]
        if not per_day:
            return None
        first = filters.get("start") or date.fromisoformat(min(per_day))
        last = filters.get("end") or date.fromisoformat(max(per_day))
        if (last - first).days < 400:
            days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
            points = [(d.isoformat(), per_day.get(d.isoformat(), 0)) for d in days]
        else:
            points = sorted(per_day.items())
        return bar_chart(_("Takings per day"), points, money)
    if kind == "consumption":
        if not report.rows:
            return None
        points = [(row["month"], row["total"]) for row in report.rows]
        return bar_chart(_("Total usage per month"), points, money)
    if kind == "non-buying":
        if not report.rows:
            return None
        silence = [0] * len(SILENCE)
        for row in report.rows:
            silence[_silence_bucket(row["days_since"])] += 1
        points = [(str(label), n) for (label, _upto), n in zip(SILENCE, silence, strict=True)]
        return bar_chart(_("Customers by time since their last sale"), points, _count)
    if kind == "low-credit":
        if not report.rows:
            return None
        balances = [0] * len(BALANCES)
        for row in report.rows:
            balances[_balance_bucket(row["balance"])] += 1
        points = [(str(label), n) for (label, _upto), n in zip(BALANCES, balances, strict=True)]
        return bar_chart(_("Meters by balance"), points, _count)
    by_kind: dict[str, int] = report.totals.get("by_kind", {})
    if not by_kind:
        return None
    points = [(str(FINDING_KINDS.get(k, k)), n) for k, n in by_kind.items()]
    return bar_chart(_("Findings by kind"), points, _count)


# ---------------------------------------------------------------- filters


def _date(name: str) -> date | None:
    text = request.args.get(name, "").strip()
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise InvalidInputError(
            name, _("%(value)s is not a date (YYYY-MM-DD)", value=text[:40])
        ) from None


def _whole(name: str, default: int) -> int:
    text = request.args.get(name, "").strip()
    if not text:
        return default
    if not text.isdigit():
        raise InvalidInputError(name, _("give a whole number"))
    return int(text)


def _text(name: str) -> str | None:
    return request.args.get(name, "").strip()[:64] or None


def hall_today(timezone: str) -> date:
    """Today's date at the hall."""
    return utcnow().astimezone(zone_of(timezone)).date()


def filters_of(kind: str) -> dict[str, Any]:
    """The report's keyword arguments from the query string (defaults when absent).

    The sales report covers the last 30 days unless ``start`` or ``end``
    is in the query (empty: no bound); its days are the hall's
    (``CARDCENTER_TIMEZONE``).
    """
    if kind == "sales":
        timezone = state().config.timezone
        if "start" in request.args or "end" in request.args:
            start, end = _date("start"), _date("end")
        else:
            end = hall_today(timezone)
            start = end - timedelta(days=DEFAULT_SALES_DAYS - 1)
        return {
            "start": start,
            "end": end,
            "site": _text("site"),
            "operator": _text("operator"),
            "timezone": timezone,
        }
    if kind == "consumption":
        utility = request.args.get("utility", "electricity")
        if utility not in UTILITIES:
            raise InvalidInputError("utility", _("choose a utility"))
        return {
            "months": _whole("months", 12),
            "category": _text("category"),
            "utility": utility,
            "until": _text("until"),
        }
    if kind == "non-buying":
        return {"days": _whole("days", 30), "now": utcnow()}
    if kind == "low-credit":
        text = request.args.get("threshold", "").strip()
        if not text:
            return {"threshold": None}
        try:
            return {"threshold": parse_decimal(text, 2, field="threshold")}
        except FormatError:
            raise InvalidInputError(
                "threshold", _("%(value)s is not an amount: give e.g. 20 or 20.50", value=text[:40])
            ) from None
    return {"status": request.args.get("status", "open")}


def _run(kind: str) -> tuple[Report, dict[str, Any]]:
    if kind not in KINDS:
        abort(404, description=_("There is no report %(kind)s.", kind=kind))
    filters = filters_of(kind)
    report = REPORTS[kind](db.session(), **filters)
    return report, filters


def error_of(exc: CentreError) -> tuple[str, str | None]:
    """The sentence for the page, with the field's label in front, and the field."""
    return labelled_refusal(exc, FIELDS)


# ---------------------------------------------------------------- display


@dataclass(frozen=True)
class Cell:
    text: str
    numeric: bool


def _cell(report: Report, column: str, value: Any) -> Cell:
    if value is None:
        return Cell("", False)
    if column in report.money_columns or column in report.quantity_columns:
        return Cell(money(int(value)), True)
    if column.endswith("_at") and isinstance(value, str):
        return Cell(datetime_filter(datetime.fromisoformat(value), "short"), False)
    if column == "kind" and report.kind == "findings":
        return Cell(str(FINDING_KINDS.get(str(value), value)), False)
    if column == "status" and report.kind == "findings":
        return Cell(str(FINDING_STATUSES.get(str(value), value)), False)
    if isinstance(value, int) and not isinstance(value, bool):
        return Cell(str(value), True)
    return Cell(str(value), False)


def table_of(report: Report) -> list[list[Cell]]:
    """The first :data:`MAX_PAGE_ROWS` rows as display cells (the CSV has every row)."""
    return [
        [_cell(report, column, row.get(column)) for column in report.columns]
        for row in report.rows[:MAX_PAGE_ROWS]
    ]


def _page(
    kind: str,
    report: Report | None,
    filters: dict[str, Any],
    error: str | None = None,
    field: str | None = None,
) -> str:
    operator = current_operator()
    assert operator is not None
    query: dict[str, Any] = request.args.to_dict()
    return render_template(
        "reports/report.html",
        kind=kind,
        title=TITLES[kind],
        description=DESCRIPTIONS[kind],
        report=report,
        table=table_of(report) if report is not None else [],
        columns=[(c, COLUMNS.get(c, c)) for c in report.columns] if report is not None else [],
        chart=_chart(kind, report, filters) if report is not None else None,
        args=request.args,
        filters=filters,
        csv_url=url_for("reports.export", kind=kind, **query),
        error=error,
        error_field=field,
        max_rows=MAX_PAGE_ROWS,
        may_close=has_role(operator.role, Role.SUPERVISOR),
        utilities=[(u, UTILITY_NAMES.get(u, u)) for u in UTILITIES],
        statuses=list(FINDING_STATUSES.items()),
        fields=FIELDS,
    )


# ---------------------------------------------------------------- views


@bp.route("/")
@login_required
def index() -> ResponseReturnValue:
    return render_template(
        "reports/index.html",
        kinds=[(kind, TITLES[kind], DESCRIPTIONS[kind]) for kind in KINDS],
    )


@bp.route("/<kind>")
@login_required
def show(kind: str) -> ResponseReturnValue:
    try:
        report, filters = _run(kind)
    except CentreError as exc:
        db.session().rollback()
        text, field = error_of(exc)
        code = 404 if isinstance(exc, NotFoundError) else 400
        return _page(kind, None, {}, text, field), code
    return _page(kind, report, filters)


@bp.route("/<kind>.csv")
@login_required
def export(kind: str) -> ResponseReturnValue:
    report, _filters = _run(kind)
    stamp = utcnow().astimezone(UTC).strftime("%Y%m%d-%H%M")
    return Response(
        to_csv(report),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{kind}-{stamp}.csv"'},
    )


@bp.route("/findings/<int:finding_id>/close", methods=["POST"])
@require_role(Role.SUPERVISOR)
def close(finding_id: int) -> ResponseReturnValue:
    operator = current_operator()
    assert operator is not None
    session = db.session()
    note = request.form.get("note", "")
    try:
        close_finding(session, finding_id, operator_id=operator.id, note=note)
    except CentreError as exc:
        session.rollback()
        if isinstance(exc, NotFoundError):
            raise
        text, field = error_of(exc)
        report, filters = _run("findings")
        code = 400 if isinstance(exc, InvalidInputError) else 409
        return _page("findings", report, filters, text, field or "note"), code
    audit("finding.close", f"finding:{finding_id}", note=note.strip()[:200])
    session.commit()
    flash(_("Finding %(id)d closed.", id=finding_id))
    query: dict[str, Any] = request.args.to_dict()
    return redirect(url_for("reports.show", kind="findings", **query))


# ---------------------------------------------------------------- the dashboard


@bp.app_template_global()
def dashboard_figures() -> dict[str, Any]:
    """Today's takings at this hall (its own day), open findings, meters low on credit.

    For ``templates/reports/dashboard_panel.html``; the numbers are the
    reports' own, so a click through to a report shows the same figure.
    """
    session = db.session()
    timezone = state().config.timezone
    today = hall_today(timezone)
    site = state().config.site
    sales = REPORTS["sales"](session, start=today, end=today, site=site, timezone=timezone)
    findings = REPORTS["findings"](session, status="open")
    low = REPORTS["low-credit"](session)
    session.commit()  # end the read transaction (SQLite's write lock)
    return {
        "day": today.isoformat(),
        "site": site,
        "sales": sales.totals["sales"],
        "takings": sales.totals["takings"],
        "refunds": sales.totals["refunds"],
        "open_findings": findings.totals["findings"],
        "low_credit": low.totals["meters"],
        "low_credit_rows": low.rows[:5],
    }
