"""Customers: search, the customer page, opening an account and its card, replacement, closing.

Every page here is a thin layer on the billing centre's services: the
account is opened by :func:`cardcenter.customers.services.open_account` (or
its keypad twin), the opening card is issued by
:func:`cardcenter.cards.issuing.issue_card`, a replacement by
:func:`~cardcenter.cards.issuing.replace_card`, and closing is
:func:`cardcenter.customers.lifecycle.close_account`; none of their rules is
repeated here. What the views add is what an operator at a desk needs:

- the form's fields checked first, with a sentence naming the field, so a
  typing error writes nothing;
- the reader looked at before a card flow starts (no card, the wrong card,
  a reader that cannot be reached), so the refusal is a sentence at once
  rather than the card layer's timeout;
- a refusal keeps the operator on the form with its sentence (the account
  page is one click away);
- an audit entry for every account opened, card issued or replaced and
  account closed.

The customer page draws the consumption read back from the cards as a
server-side SVG bar chart (:mod:`cardcenter.web.charts`, no script): months
from the meters' frozen monthly usage, else the reconciled energy by month.
"""

from __future__ import annotations

import re
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_babel import format_decimal
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session
from werkzeug.routing import BuildError

from cardcenter.cards.issuing import issue_card, replace_card
from cardcenter.cards.models import Card, CardStatus
from cardcenter.core.errors import CentreError, NotFoundError
from cardcenter.customers.lifecycle import close_account
from cardcenter.customers.models import (
    AccountStatus,
    Category,
    Customer,
    Meter,
    MeterKind,
    MeterStatus,
)
from cardcenter.customers.services import open_account, open_keypad_account
from cardcenter.operators.models import Operator, Role
from cardcenter.operators.services import has_role
from cardcenter.reconciliation.models import (
    FindingStatus,
    MonthlyUsage,
    Reconciliation,
)
from cardcenter.reconciliation.services import list_findings
from cardcenter.sales.models import Sale
from cardcenter.tariffs.models import Tariff
from cardcenter.tariffs.services import tariff_of
from cardcenter.tokens.config import configured_tables
from cardcenter.tokens.identity import describe_identity
from cardcenter.web import db
from cardcenter.web.audit import audit
from cardcenter.web.auth import current_operator, require_role
from cardcenter.web.blueprints import NavItem, Section
from cardcenter.web.charts import Chart, bar_chart
from cardcenter.web.i18n import _, _l
from cardcenter.web.shifts import require_open_shift
from cardcenter.web.state import state
from cardlayout.codec.money import parse_decimal
from cardlayout.errors import CardLayoutError, FormatError
from cardlayout.transport.channel import CardChannel
from cardlayout.vcard.cos import serial_from_atr

bp = Blueprint("customers", __name__, url_prefix="/customers")
SECTION = Section(bp, (NavItem("customers.index", _l("Customers"), role=Role.CASHIER, order=20),))

SEARCH_LIMIT = 50
SALES_SHOWN = 50
RECONCILIATIONS_SHOWN = 12
CHART_MONTHS = 24
MAX_ID = 2**31 - 1

METER_NUMBER = re.compile(r"\d{12}")
DIGITS = re.compile(r"\d{3,18}")
HEX = re.compile(r"[0-9A-F]{4,16}")
UNITS = {"electricity": "kWh", "water": "m³", "gas": "m³"}
BASE_DATES = ("2014", "1993", "2035")
ENCRYPTION_ALGORITHMS = ("07", "09", "11")
KEY_GENERATIONS = ("04", "02")


# ---------------------------------------------------------------- helpers for every page


def _status_of(exc: Exception) -> int:
    """The HTTP status the application gives ``exc`` (its mapping, not a second one)."""
    from cardcenter.web import _status_of as application_status

    return application_status(exc)


def _sentence(text: str) -> str:
    """A service's message as a sentence: capital first letter, full stop."""
    text = text.strip()
    if not text:
        return text
    text = text[0].upper() + text[1:]
    return text if text[-1] in ".!?" else text + "."


def _because(lead: str, exc: Exception) -> str:
    """``lead`` (translated, with a ``%(reason)s`` placeholder) around the service's reason."""
    reason = str(exc).strip().rstrip(".")
    if reason[:1].isupper() and not reason[:2].isupper():
        reason = reason[0].lower() + reason[1:]
    return lead % {"reason": reason} + "."


def _selling_url(endpoint: str, sale_id: int) -> str | None:
    """A link into the selling part, when that part has the page (it may come later)."""
    if endpoint not in current_app.view_functions:
        return None
    try:
        return url_for(endpoint, sale_id=sale_id)
    except BuildError:
        return None


@bp.context_processor
def _links() -> dict[str, Any]:
    return {
        "receipt_url": lambda sale_id: _selling_url("selling.receipt", sale_id),
        "sale_url": lambda sale_id: _selling_url("selling.sale", sale_id),
    }


def _is_supervisor() -> bool:
    operator = current_operator()
    return operator is not None and has_role(Role(operator.role), Role.SUPERVISOR)


def _customer(customer_id: int) -> Customer:
    # (a number past the database's integer is no customer, not a PostgreSQL error)
    customer = db.session().get(Customer, customer_id) if customer_id <= MAX_ID else None
    if customer is None:
        abort(404, description=_("There is no customer %(id)d.", id=customer_id))
    return customer


def _quantity(quantity: int | None) -> str:
    """0.01 units as the locale writes them (``1,234.5``)."""
    if quantity is None:
        return ""
    return str(format_decimal(Decimal(quantity).scaleb(-2), format="#,##0.##"))


# ---------------------------------------------------------------- search


def search_customers(session: Session, text: str) -> list[Customer]:
    """Customers whose name contains ``text``, or whose customer number, meter number,
    PAN or card serial starts with it (one box for every key an operator is handed)."""
    text = " ".join(text.split())
    if not text:
        return []
    conditions: list[Any] = [func.lower(Customer.name).contains(text.lower(), autoescape=True)]
    digits = text.replace(" ", "").replace("-", "")
    if DIGITS.fullmatch(digits):
        conditions.append(Customer.customer_no.startswith(digits))
        conditions.append(
            Customer.id.in_(
                select(Meter.customer_id).where(
                    or_(Meter.meter_no.startswith(digits), Meter.sts_pan.startswith(digits))
                )
            )
        )
    serial = text.replace(" ", "").upper()
    if HEX.fullmatch(serial):
        conditions.append(
            Customer.id.in_(select(Card.customer_id).where(Card.serial.startswith(serial)))
        )
    query = select(Customer).where(or_(*conditions)).order_by(Customer.customer_no)
    return list(session.scalars(query.limit(SEARCH_LIMIT)))


def _by_customer(rows: Iterable[Any]) -> dict[int, list[Any]]:
    grouped: dict[int, list[Any]] = defaultdict(list)
    for row in rows:
        grouped[row.customer_id].append(row)
    return grouped


@bp.route("/")
@require_role(Role.CASHIER)
def index() -> ResponseReturnValue:
    query = request.args.get("q", "").strip()[:100]
    session = db.session()
    found = search_customers(session, query) if query else []
    ids = [c.id for c in found]
    meters = _by_customer(
        session.scalars(select(Meter).where(Meter.customer_id.in_(ids)).order_by(Meter.id))
        if ids
        else ()
    )
    cards = _by_customer(
        session.scalars(select(Card).where(Card.customer_id.in_(ids)).order_by(Card.id))
        if ids
        else ()
    )
    return render_template(
        "customers/index.html",
        query=query,
        found=found,
        meters=meters,
        cards=cards,
        limit=SEARCH_LIMIT,
    )


@bp.route("/in-reader")
@require_role(Role.CASHIER)
def in_reader() -> ResponseReturnValue:
    """The page of the customer whose card is in the desk's reader."""
    status = state().reader.status()
    serial = status.get("serial")
    if status.get("error"):
        flash(_("The card reader cannot be reached: %(error)s", error=status["error"]), "error")
    elif not status.get("present"):
        flash(_("There is no card in the reader."), "error")
    elif not serial:
        flash(_("The card in the reader is not a card of this system."), "error")
    else:
        card = db.session().scalar(select(Card).where(Card.serial == serial))
        if card is not None:
            return redirect(url_for("customers.show", customer_id=card.customer_id))
        flash(_("Card %(serial)s in the reader belongs to no customer.", serial=serial), "error")
    return redirect(url_for("customers.index"))


# ---------------------------------------------------------------- the customer page


@dataclass(frozen=True)
class Consumption:
    """The customer page's consumption chart and the facts written beside it."""

    chart: Chart
    source: str
    """``monthly`` (the meters' frozen monthly usage) or ``reconciled`` (energy by reading)."""
    unit: str
    total: str


CHART_WIDTH = 720


def consumption_chart(months: list[tuple[str, int]], source: str, unit: str) -> Consumption | None:
    """``months`` (``YYYY-MM``, 0.01 units), oldest first, laid out as bars; None if empty."""
    if not months:
        return None
    chart = bar_chart(_("Consumption by month"), months, _quantity, width=CHART_WIDTH)
    return Consumption(
        chart=chart,
        source=source,
        unit=unit,
        total=_quantity(sum(q for _m, q in months)),
    )


def consumption_of(session: Session, meter_ids: list[int]) -> tuple[list[tuple[str, int]], str]:
    """Consumption by month, oldest first, and where it comes from.

    The frozen monthly usage the meters wrote to the card's history is the
    meter's own account of each month; without it (a meter read before its
    first month end), the energy of each reconciled period is counted in the
    month the period ended.
    """
    if not meter_ids:
        return [], "monthly"
    monthly: dict[str, int] = defaultdict(int)
    for month, quantity in session.execute(
        select(MonthlyUsage.month, MonthlyUsage.quantity).where(
            MonthlyUsage.meter_id.in_(meter_ids)
        )
    ):
        monthly[month] += quantity
    source = "monthly"
    if not monthly:
        source = "reconciled"
        for period_end, energy in session.execute(
            select(Reconciliation.period_end, Reconciliation.energy).where(
                Reconciliation.meter_id.in_(meter_ids), Reconciliation.energy.is_not(None)
            )
        ):
            monthly[f"{period_end:%Y-%m}"] += max(energy or 0, 0)
    months = sorted(monthly.items())[-CHART_MONTHS:]
    return months, source


@bp.route("/<int:customer_id>")
@require_role(Role.CASHIER)
def show(customer_id: int) -> ResponseReturnValue:
    session = db.session()
    customer = _customer(customer_id)
    meters = list(
        session.scalars(select(Meter).where(Meter.customer_id == customer.id).order_by(Meter.id))
    )
    cards = list(
        session.scalars(select(Card).where(Card.customer_id == customer.id).order_by(Card.id))
    )
    sales = list(
        session.scalars(
            select(Sale)
            .where(Sale.customer_id == customer.id)
            .order_by(Sale.created_at.desc(), Sale.id.desc())
            .limit(SALES_SHOWN)
        )
    )
    operators = {
        row.id: row.username
        for row in session.execute(
            select(Operator.id, Operator.username).where(
                Operator.id.in_(sorted({s.operator_id for s in sales}))
            )
        )
    }
    meter_ids = [m.id for m in meters]
    months, source = consumption_of(session, meter_ids)
    utility = meters[-1].utility if meters else "electricity"
    consumption = consumption_chart(months, source, UNITS.get(utility, ""))
    reconciliations = list(
        session.scalars(
            select(Reconciliation)
            .where(Reconciliation.customer_id == customer.id)
            .order_by(Reconciliation.period_end.desc(), Reconciliation.id.desc())
            .limit(RECONCILIATIONS_SHOWN)
        )
    )
    findings = list(reversed(list_findings(session, status=None, customer_id=customer.id)))
    try:
        tariff: Tariff | None = tariff_of(session, customer)
    except NotFoundError:
        tariff = None
    identities = {
        m.id: describe_identity(m)
        for m in meters
        if m.kind == MeterKind.KEYPAD and m.sts_pan is not None
    }
    active = customer.status == AccountStatus.ACTIVE
    card_meter = any(m.kind == MeterKind.CARD and m.status == MeterStatus.ACTIVE for m in meters)
    in_use = [c for c in cards if c.status is CardStatus.ACTIVE]
    return render_template(
        "customers/show.html",
        customer=customer,
        meters=meters,
        cards=cards,
        sales=sales,
        operators=operators,
        consumption=consumption,
        reconciliations=reconciliations,
        findings=findings,
        open_findings=sum(1 for f in findings if f.status == FindingStatus.OPEN),
        tariff=tariff,
        identities=identities,
        quantity=_quantity,
        can_issue=active and card_meter and not in_use,
        can_replace=active and card_meter and bool(in_use) and _is_supervisor(),
        can_close=active and card_meter and _is_supervisor(),
        sales_limit=SALES_SHOWN,
    )


# ---------------------------------------------------------------- opening an account


class FormError(Exception):
    """What the operator has to correct (a field, the card in the reader): sentence and status."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def _amount(text: str) -> int | None:
    """An optional amount of money typed in currency units, as minor units."""
    text = text.strip()
    if not text:
        return None
    try:
        amount = parse_decimal(text, 2, field="amount")
    except FormatError:
        raise FormError(
            _(
                "Amount: %(amount)s is not an amount of money (write it like 50 or 50.00).",
                amount=text,
            )
        ) from None
    if amount <= 0:
        raise FormError(_("Amount: give an amount above 0, or leave it empty."))
    return amount


def _ratio(form: Mapping[str, str], field: str, label: str) -> int:
    text = form.get(field, "").strip() or "1"
    if not text.isdigit() or not 1 <= int(text) <= 9999:
        raise FormError(_("%(field)s: give a whole number from 1 to 9999.", field=label))
    return int(text)


def _form_choices(session: Session) -> dict[str, Any]:
    return {
        "categories": list(session.scalars(select(Category).order_by(Category.name))),
        "tariffs": list(session.scalars(select(Tariff).order_by(Tariff.name))),
        "base_dates": BASE_DATES,
        "algorithms": ENCRYPTION_ALGORITHMS,
        "generations": KEY_GENERATIONS,
    }


def _open_form(error: str | None = None, status: int = 200) -> ResponseReturnValue:
    form = request.form if request.method == "POST" else request.args
    return (
        render_template(
            "customers/new.html",
            form=form,
            error=error,
            request_id=form.get("request_id") or uuid.uuid4().hex,
            **_form_choices(db.session()),
        ),
        status,
    )


def _opening_account(session: Session, form: Mapping[str, str]) -> Customer:
    """Open the account the form describes (flushed, not committed); FormError if it cannot."""
    name = " ".join(form.get("name", "").split())
    if not name:
        raise FormError(_("Name: give the customer's name."))
    if len(name) > 200:
        raise FormError(_("Name: keep it to 200 characters."))
    kind = form.get("kind", MeterKind.CARD.value)
    if kind not in (MeterKind.CARD.value, MeterKind.KEYPAD.value):
        raise FormError(_("Meter: choose a card meter or a keypad meter."))
    meter_no = form.get("meter_no", "").strip()
    if kind == MeterKind.CARD.value and not METER_NUMBER.fullmatch(meter_no):
        raise FormError(_("Meter number: give the meter's 12 digits."))
    if kind == MeterKind.KEYPAD.value and meter_no and not METER_NUMBER.fullmatch(meter_no):
        raise FormError(
            _("Meter number: give 12 digits, or leave it empty for the PAN's last 12 digits.")
        )
    if meter_no == "0" * 12:
        raise FormError(_("Meter number: 000000000000 is kept for tool cards."))
    category = session.scalar(select(Category).where(Category.code == form.get("category", "")))
    if category is None:
        raise FormError(_("Category: choose the customer's category."))
    tariff: Tariff | None = None
    if form.get("tariff"):
        tariff_id = form["tariff"]
        known = tariff_id.isdigit() and int(tariff_id) <= MAX_ID
        tariff = session.get(Tariff, int(tariff_id)) if known else None
        if tariff is None:
            raise FormError(_("Tariff: choose one of the tariffs listed."))
    common: dict[str, Any] = {
        "name": name,
        "category_id": category.id,
        "tariff": tariff,
        "address": form.get("address", "").strip()[:400],
        "phone": form.get("phone", "").strip()[:40],
        "site": state().config.site,
    }
    if kind == MeterKind.CARD.value:
        ct = _ratio(form, "ct", _("CT ratio"))
        pt = _ratio(form, "pt", _("PT ratio"))
        customer = open_account(
            session, meter_no=meter_no, kind=MeterKind.CARD, ct_ratio=ct, pt_ratio=pt, **common
        )
    else:
        for field, label in (("pan", "PAN"), ("sgc", "SGC"), ("ti", "TI"), ("krn", "KRN")):
            if not form.get(field, "").strip():
                raise FormError(_("%(field)s: a keypad meter needs its STS identity.", field=label))
        customer = open_keypad_account(
            session,
            pan=form.get("pan", ""),
            sgc=form.get("sgc", ""),
            ti=form.get("ti", ""),
            krn=form.get("krn", ""),
            kt=form.get("kt", "").strip() or "2",
            base_date=form.get("base_date") or None,
            ea=form.get("ea") or None,
            dkga=form.get("dkga") or None,
            tables=configured_tables(),
            meter_no=meter_no or None,
            **common,
        )
    try:
        tariff_of(session, customer)
    except NotFoundError:
        raise FormError(
            _(
                "Tariff: category %(category)s has no default tariff; choose a tariff.",
                category=category.name,
            )
        ) from None
    return customer


@bp.route("/new", methods=["GET", "POST"])
@require_role(Role.CASHIER)
def new() -> ResponseReturnValue:
    """Open an account; with a card meter, the opening card is issued in the desk's reader."""
    if request.method == "GET":
        return _open_form()
    form = request.form
    session = db.session()
    issue = form.get("kind", "card") == MeterKind.CARD.value and form.get("issue") == "yes"
    try:
        tendered = _amount(form.get("amount", "")) if issue else None
        if tendered:
            require_open_shift()  # a first purchase is a sale: its cash goes in a drawer
        customer = _opening_account(session, form)
        if issue:
            _blank_card_ready(customer)
    except FormError as exc:
        session.rollback()
        return _open_form(exc.message, exc.status)
    except CentreError as exc:
        session.rollback()
        return _open_form(_sentence(str(exc)), _status_of(exc))
    meter = customer.meters[0]
    audit(
        "customer.open",
        f"customer:{customer.id}",
        customer_no=customer.customer_no,
        meter_no=meter.meter_no,
        kind=str(meter.kind),
    )
    session.commit()
    customer_id, customer_no = customer.id, customer.customer_no
    if not issue:
        flash(_("Account %(no)s opened.", no=customer_no))
        return redirect(url_for("customers.show", customer_id=customer_id))
    outcome = _issue(customer, tendered, form.get("request_id") or None)
    if isinstance(outcome, FormError):
        # The account stands; the card can be issued from its page once the reader is ready.
        flash(_("Account %(no)s opened; its card was not issued.", no=customer_no))
        flash(outcome.message, "error")
        return redirect(url_for("customers.issue", customer_id=customer_id))
    return outcome


# ---------------------------------------------------------------- card flows


def _reader_card(missing: str) -> str:
    """The serial of the card in the desk's reader; FormError (503/409) if there is none."""
    status = state().reader.status()
    if status.get("error"):
        raise FormError(
            _("The card reader cannot be reached: %(error)s", error=status["error"]), 503
        )
    if not status.get("present"):
        raise FormError(missing, 409)
    serial = status.get("serial")
    if not serial:
        raise FormError(_("The card in the reader is not a card of this system: take it out."), 409)
    return str(serial)


def _blank_card_ready(customer: Customer) -> str:
    """A blank card (or this customer's card being issued) in the reader; its serial."""
    serial = _reader_card(_("There is no card in the reader: put a blank card in it."))
    card = db.session().scalar(select(Card).where(Card.serial == serial))
    resumable = (
        card is not None and card.status is CardStatus.ISSUING and card.customer_id == customer.id
    )
    if card is not None and not resumable:
        owner = db.session().get(Customer, card.customer_id)
        raise FormError(
            _(
                "Card %(serial)s in the reader is already a card of customer %(no)s: "
                "put a blank card in the reader.",
                serial=serial,
                no=owner.customer_no if owner is not None else "?",
            ),
            409,
        )
    return serial


def _with_card(flow: Callable[[CardChannel], dict[str, Any]], lead: str) -> dict[str, Any]:
    """Run a desk flow on the card in the reader; its refusal as a FormError led by ``lead``.

    ``lead`` is translated already and has a ``%(reason)s`` placeholder for
    the service's sentence.
    """
    db.desk()  # commits the request's session before the flow's own transactions
    try:
        with state().reader.channel() as channel:
            return flow(channel)
    except (CentreError, CardLayoutError) as exc:
        db.session().rollback()
        raise FormError(_because(lead, exc), _status_of(exc)) from exc


def _issue(
    customer: Customer, tendered: int | None, request_id: str | None
) -> ResponseReturnValue | FormError:
    """Issue the opening card in the reader; the result page, or the refusal.

    The form carries a request id, so a form sent twice (a double click, a
    reload) shows the first issue's result instead of refusing the card it
    has just written.
    """
    customer_id, customer_no = customer.id, customer.customer_no
    session = db.session()
    done = session.scalar(select(Sale).where(Sale.request_id == request_id)) if request_id else None
    if done is not None and done.customer_id == customer_id and done.card_id is not None:
        card = session.get(Card, done.card_id)
        if card is not None and card.status is not CardStatus.ISSUING:
            return _issued_page(customer_id, done, card)
    try:
        _blank_card_ready(customer)
        result = _with_card(
            lambda channel: issue_card(db.desk(), channel, customer_no, tendered, request_id),
            _("The card was not issued: %(reason)s"),
        )
    except FormError as exc:
        return exc
    sale = session.get(Sale, result["sale"])
    assert sale is not None and sale.card_id is not None
    card = session.get(Card, sale.card_id)
    assert card is not None
    audit(
        "card.issue",
        f"card:{card.serial}",
        customer_no=customer_no,
        sale=sale.id,
        amount=result.get("tendered"),
    )
    session.commit()
    return _issued_page(customer_id, sale, card)


def _issued_page(customer_id: int, sale: Sale, card: Card) -> str:
    return render_template(
        "customers/issued.html", customer=_customer(customer_id), card=card, sale=sale
    )


@bp.route("/<int:customer_id>/issue", methods=["GET", "POST"])
@require_role(Role.CASHIER)
def issue(customer_id: int) -> ResponseReturnValue:
    """The opening card of an account opened without one (or whose issue was refused)."""
    customer = _customer(customer_id)
    if request.method == "POST":
        try:
            tendered = _amount(request.form.get("amount", ""))
        except FormError as exc:
            return _card_form("customers/issue.html", customer, exc.message, exc.status)
        if tendered:
            require_open_shift()
        outcome = _issue(customer, tendered, request.form.get("request_id") or None)
        if isinstance(outcome, FormError):
            return _card_form(
                "customers/issue.html", _customer(customer_id), outcome.message, outcome.status
            )
        return outcome
    return _card_form("customers/issue.html", customer)


def _card_form(
    template: str, customer: Customer, error: str | None = None, status: int = 200
) -> ResponseReturnValue:
    session = db.session()
    in_use = session.scalar(
        select(Card).where(Card.customer_id == customer.id, Card.status == CardStatus.ACTIVE)
    )
    form = request.form if request.method == "POST" else request.args
    return (
        render_template(
            template,
            customer=customer,
            in_use=in_use,
            error=error,
            form=form,
            request_id=form.get("request_id") or uuid.uuid4().hex,
        ),
        status,
    )


@bp.route("/<int:customer_id>/replace", methods=["GET", "POST"])
@require_role(Role.SUPERVISOR)
def replace(customer_id: int) -> ResponseReturnValue:
    """A replacement for a lost or broken card: the blank card in the reader carries its credit."""
    customer = _customer(customer_id)
    if request.method == "GET":
        return _card_form("customers/replace.html", customer)
    reason = request.form.get("reason", "")
    old = db.session().scalar(
        select(Card).where(Card.customer_id == customer.id, Card.status == CardStatus.ACTIVE)
    )
    old_serial = old.serial if old is not None else None
    customer_no = customer.customer_no
    try:
        if reason not in ("lost", "broken"):
            raise FormError(_("Reason: choose lost or broken."))
        _blank_card_ready(customer)
        result = _with_card(
            lambda channel: replace_card(db.desk(), channel, customer_no, reason),
            _("The replacement card was not issued: %(reason)s"),
        )
    except FormError as exc:
        return _card_form("customers/replace.html", _customer(customer_id), exc.message, exc.status)
    session = db.session()
    audit(
        "card.replace",
        f"card:{result['card_serial']}",
        customer_no=customer_no,
        old_card=old_serial,
        reason=reason,
        carried=result.get("carried"),
        purchase_count=result.get("purchase_count"),
    )
    session.commit()
    return render_template(
        "customers/replaced.html",
        customer=_customer(customer_id),
        card=session.scalar(select(Card).where(Card.serial == result["card_serial"])),
        old_serial=old_serial,
        reason=reason,
    )


@bp.route("/<int:customer_id>/close", methods=["GET", "POST"])
@require_role(Role.SUPERVISOR)
def close(customer_id: int) -> ResponseReturnValue:
    """Close the account with the customer's card fresh from the meter; refund its credit."""
    customer = _customer(customer_id)
    if request.method == "GET":
        return _card_form("customers/close.html", customer)
    reason = request.form.get("reason", "").strip()[:200]
    customer_no = customer.customer_no
    require_open_shift()  # the refund is paid out of this operator's drawer
    try:
        if customer.status != AccountStatus.ACTIVE:
            raise FormError(_("The account of customer %(no)s is closed already.", no=customer_no))
        serial = _reader_card(
            _(
                "There is no card in the reader: put the customer's card in it, "
                "fresh from the meter."
            )
        )
        _customers_card(customer, serial)
        result = _with_card(
            lambda channel: _close_if_same_card(channel, serial, reason),
            _("The account was not closed: %(reason)s"),
        )
    except FormError as exc:
        return _card_form("customers/close.html", _customer(customer_id), exc.message, exc.status)
    audit(
        "customer.close",
        f"customer:{customer_id}",
        customer_no=customer_no,
        card=result["card_serial"],
        meter_no=result["meter_no"],
        refund=result["refund"],
        owed=result["owed_by_customer"],
        reason=reason,
    )
    db.session().commit()
    return render_template(
        "customers/closed.html",
        customer=_customer(customer_id),
        result=result,
        refund=parse_decimal(result["refund"], 2, field="refund"),
        owed=parse_decimal(result["owed_by_customer"], 2, field="owed"),
    )


def _customers_card(customer: Customer, serial: str) -> Card:
    """The card ``serial`` if it is this customer's; FormError saying whose it is otherwise."""
    card = db.session().scalar(select(Card).where(Card.serial == serial))
    if card is None or card.customer_id != customer.id:
        raise FormError(
            _(
                "Card %(serial)s in the reader is not a card of customer %(no)s: "
                "put the customer's card in the reader.",
                serial=serial,
                no=customer.customer_no,
            ),
            409,
        )
    return card


def _close_if_same_card(channel: CardChannel, serial: str, reason: str) -> dict[str, Any]:
    """Close the account of the card in the reader, if it is still the card looked at."""
    if channel.atr and serial_from_atr(channel.atr).hex().upper() != serial:
        raise FormError(
            _("The card in the reader was changed meanwhile: nothing was done; try again."), 409
        )
    return close_account(db.desk(), channel, reason)
