"""Tariffs per category: flat, stepped, TOU and combined; scheduled versions; who they reach.

Everyone may look: the list by customer category (each category's default
tariff per utility, with the version in force and any scheduled change),
a tariff's versions and the customers it reaches
(:func:`cardcenter.tariffs.services.customers_reached`). Supervisors and
up define a tariff or schedule its next version.

The form is turned into the structure
:func:`cardcenter.tariffs.services.add_tariff` validates (prices per unit
with up to 4 decimals, thresholds in units with 2); the service decides
what is valid, and a refusal shows on the form with the field it names,
nothing written. A new version starts at the time given (the hall's time
zone) or now, never in the past: meters charged the old prices until then.
Parts of the form the chosen kind does not use are ignored (the page hides
them), so switching kinds does not trip over values typed for another.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy import select
from werkzeug.datastructures import MultiDict

from cardcenter.core.db import utcnow
from cardcenter.core.errors import CentreError, ConflictError, InvalidInputError, NotFoundError
from cardcenter.customers.models import Category
from cardcenter.operators.models import Role
from cardcenter.operators.services import has_role
from cardcenter.tariffs import pricing
from cardcenter.tariffs.models import Tariff, TariffKind, TariffVersion
from cardcenter.tariffs.services import (
    UTILITIES,
    add_tariff,
    customers_reached,
    describe,
    next_version,
    reach_counts,
    version_at,
)
from cardcenter.web import db
from cardcenter.web.audit import audit
from cardcenter.web.auth import current_operator, login_required, require_role
from cardcenter.web.blueprints import NavItem, Section
from cardcenter.web.i18n import _, _l, datetime_filter
from cardcenter.web.refusals import labelled_refusal
from cardcenter.web.state import state
from cardlayout.codec.money import parse_decimal
from cardlayout.errors import FormatError

bp = Blueprint("tariffs", __name__, url_prefix="/tariffs")
SECTION = Section(bp, (NavItem("tariffs.index", _l("Tariffs"), role=Role.CASHIER, order=70),))

KIND_NAMES = {
    TariffKind.FLAT: _l("Flat"),
    TariffKind.TOU: _l("Time of use"),
    TariffKind.STEPPED: _l("Stepped"),
    TariffKind.TOU_STEPPED: _l("Time of use and stepped"),
}
USES_RATES = (TariffKind.FLAT, TariffKind.TOU, TariffKind.TOU_STEPPED)
USES_PERIODS = (TariffKind.TOU, TariffKind.TOU_STEPPED)
USES_TIERS = (TariffKind.STEPPED, TariffKind.TOU_STEPPED)
UTILITY_NAMES = {"electricity": _l("electricity"), "water": _l("water"), "gas": _l("gas")}
FIELD_LABELS = {
    "name": _l("Name"),
    "kind": _l("Kind"),
    "category": _l("Category"),
    "utility": _l("Utility"),
    "active_from": _l("Active from"),
    "tax_rate": _l("Tax rate"),
    "fixed_monthly": _l("Fixed charge per month"),
    "rate_prices": _l("Rate prices"),
    "periods": _l("Periods of the day"),
    "tier_thresholds": _l("Tier thresholds"),
    "tier_prices": _l("Tier prices"),
    "settlement_dates": _l("Settlement dates"),
    "structure": _l("Prices"),
}
MAX_REACHED_SHOWN = 200
_TIME = re.compile(r"^(\d{1,2}):(\d{2})$")


# ---------------------------------------------------------------- the form


@dataclass
class TariffForm:
    """What the form holds, as typed (text), so a refused form comes back as it was."""

    name: str = ""
    kind: str = TariffKind.FLAT.value
    category: str = ""
    utility: str = "electricity"
    active_from: str = ""
    tax_rate: str = "0"
    fixed_monthly: str = "0"
    rate_prices: list[str] = field(default_factory=list)
    periods: list[tuple[str, str]] = field(default_factory=list)
    """``(start HH:MM, rate number)`` rows."""
    tiers: list[tuple[str, str]] = field(default_factory=list)
    """``(upper threshold in units, price)`` rows; the last tier's price is ``last_tier_price``."""
    last_tier_price: str = ""
    settlements: list[tuple[str, str, str]] = field(default_factory=list)
    """``(month or empty for every month, day, hour)`` rows."""

    @classmethod
    def from_request(cls, form: MultiDict[str, str]) -> TariffForm:
        def rows(*names: str) -> list[tuple[str, ...]]:
            columns = [form.getlist(name) for name in names]
            count = max((len(c) for c in columns), default=0)
            out = []
            for i in range(count):
                row = tuple((c[i] if i < len(c) else "").strip()[:32] for c in columns)
                if any(row):
                    out.append(row)
            return out

        return cls(
            name=form.get("name", "").strip(),
            kind=form.get("kind", TariffKind.FLAT.value),
            category=form.get("category", "").strip(),
            utility=form.get("utility", "electricity"),
            active_from=form.get("active_from", "").strip(),
            tax_rate=form.get("tax_rate", "").strip(),
            fixed_monthly=form.get("fixed_monthly", "").strip(),
            rate_prices=[r[0] for r in rows("rate_price")],
            periods=[(r[0], r[1]) for r in rows("period_start", "period_rate")],
            tiers=[(r[0], r[1]) for r in rows("tier_threshold", "tier_price")],
            last_tier_price=form.get("last_tier_price", "").strip(),
            settlements=[
                (r[0], r[1], r[2])
                for r in rows("settlement_month", "settlement_day", "settlement_hour")
            ],
        )

    @classmethod
    def from_version(cls, version: TariffVersion) -> TariffForm:
        """The form for the next version of ``version``'s tariff, prefilled with its prices."""
        s = pricing.validate_structure(version.kind, version.structure)
        prices = s["tier_prices"]
        return cls(
            name=version.tariff.name,
            kind=TariffKind(version.kind).value,
            utility=version.tariff.utility,
            tax_rate=_percent_text(version.tax_rate),
            fixed_monthly=pricing.format_money(version.fixed_monthly),
            rate_prices=[pricing.format_price(p) for p in s["rate_prices"]],
            periods=[(f"{h:02d}:{m:02d}", str(r)) for h, m, r in s["periods"]],
            tiers=[
                (pricing.format_quantity(t), pricing.format_price(p))
                for t, p in zip(s["tier_thresholds"], prices[:-1], strict=True)
            ],
            last_tier_price=pricing.format_price(prices[-1]) if prices else "",
            settlements=[
                ("" if m is None else str(m), str(d), str(h)) for m, d, h in s["settlement_dates"]
            ]
            if TariffKind(version.kind) in USES_TIERS
            else [],
        )

    def tariff_kind(self) -> TariffKind:
        try:
            return TariffKind(self.kind)
        except ValueError:
            raise InvalidInputError("kind", _("choose a kind of tariff")) from None

    def structure(self) -> tuple[TariffKind, dict[str, Any]]:
        """The kind and the structure for :func:`add_tariff` (which validates it)."""
        kind = self.tariff_kind()
        structure: dict[str, Any] = {}
        if kind in USES_RATES:
            structure["rate_prices"] = [
                pricing.parse_price(text, "rate_prices") for text in self.rate_prices
            ]
        if kind in USES_PERIODS:
            structure["periods"] = [self._period(start, rate) for start, rate in self.periods]
        if kind in USES_TIERS:
            thresholds, prices = [], []
            for threshold, price in self.tiers:
                if not threshold or not price:
                    raise InvalidInputError(
                        "tier_thresholds" if not threshold else "tier_prices",
                        _("give each tier both its upper threshold and its price"),
                    )
                thresholds.append(_units(threshold, "tier_thresholds"))
                prices.append(pricing.parse_price(price, "tier_prices"))
            if not self.last_tier_price:
                raise InvalidInputError("tier_prices", _("give the price above the last threshold"))
            prices.append(pricing.parse_price(self.last_tier_price, "tier_prices"))
            structure["tier_thresholds"] = thresholds
            structure["tier_prices"] = prices
            structure["settlement_dates"] = [self._settlement(*row) for row in self.settlements]
        return kind, structure

    @staticmethod
    def _period(start: str, rate: str) -> list[int]:
        match = _TIME.match(start)
        if not match:
            raise InvalidInputError(
                "periods", _("%(value)s is not a start time: give HH:MM", value=repr(start))
            )
        if not rate.isdigit():
            raise InvalidInputError(
                "periods",
                _("the period from %(start)s needs its rate number (1, 2, …)", start=start),
            )
        return [int(match.group(1)), int(match.group(2)), int(rate)]

    @staticmethod
    def _settlement(month: str, day: str, hour: str) -> list[int | None]:
        if not (month == "" or month.isdigit()) or not day.isdigit() or not hour.isdigit():
            raise InvalidInputError(
                "settlement_dates",
                _("give a day and an hour as whole numbers (the month empty for every month)"),
            )
        return [int(month) if month else None, int(day), int(hour)]

    def settings(self, zone: str) -> dict[str, Any]:
        """``active_from``, ``tax_rate`` and ``fixed_monthly`` for :func:`add_tariff`."""
        return {
            "active_from": _when(self.active_from, zone),
            "tax_rate": _basis_points(self.tax_rate),
            "fixed_monthly": _amount(self.fixed_monthly, "fixed_monthly"),
        }


def _units(text: str, field: str) -> int:
    try:
        return parse_decimal(text, 2, field=field)
    except FormatError:
        raise InvalidInputError(
            field,
            _("%(value)s is not a quantity: give units with up to 2 decimals", value=repr(text)),
        ) from None


def _amount(text: str, field: str) -> int:
    if not text:
        return 0
    try:
        return parse_decimal(text, 2, field=field)
    except FormatError:
        raise InvalidInputError(
            field, _("%(value)s is not an amount: give e.g. 5 or 5.00", value=repr(text))
        ) from None


def _basis_points(text: str) -> int:
    """A percentage with up to 2 decimals (``13``, ``13.25``) as basis points."""
    if not text:
        return 0
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise InvalidInputError(
            "tax_rate", _("%(value)s is not a percentage", value=repr(text))
        ) from None
    points = value * 100
    if not points.is_finite() or points != points.to_integral_value():
        raise InvalidInputError("tax_rate", _("give a percentage with at most 2 decimals"))
    return int(points)


def _percent_text(basis_points: int) -> str:
    whole, rest = divmod(basis_points, 100)
    return f"{whole}.{rest:02d}" if rest else str(whole)


def _when(text: str, zone: str) -> datetime | None:
    """A time typed in the hall's time zone (``2027-01-01T00:00``) as an aware one; empty: now."""
    if not text:
        return None
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInputError(
            "active_from", _("%(value)s is not a date and time", value=repr(text[:40]))
        ) from None
    if at.tzinfo is None:
        at = at.replace(tzinfo=ZoneInfo(zone))
    return at


def _form_error(exc: CentreError) -> tuple[str, str | None]:
    """The refusal's sentence with the field's label in front, and the field."""
    # add_tariff's conflicts are all about a category's default tariff
    about = "category" if isinstance(exc, ConflictError) else None
    return labelled_refusal(exc, FIELD_LABELS, getattr(exc, "field", None) or about)


# ---------------------------------------------------------------- reading


@dataclass(frozen=True)
class TariffLine:
    """A tariff as the list shows it: the version in force and the next one scheduled."""

    tariff: Tariff
    current: dict[str, Any] | None
    scheduled: dict[str, Any] | None


def shown(version: TariffVersion) -> dict[str, Any]:
    """:func:`describe`'s text, plus what the page formats itself (time, settlement dates)."""
    structure = pricing.validate_structure(version.kind, version.structure)
    return describe(version) | {
        "at": version.active_from,
        "settlements": [tuple(date) for date in structure["settlement_dates"]],
    }


def _line(tariff: Tariff, now: datetime) -> TariffLine:
    session = db.session()
    try:
        current: dict[str, Any] | None = shown(version_at(session, tariff, now))
    except NotFoundError:
        current = None
    upcoming = next_version(session, tariff, now)
    return TariffLine(tariff, current, shown(upcoming) if upcoming is not None else None)


def _tariff(tariff_id: int) -> Tariff:
    tariff = db.session().get(Tariff, tariff_id)
    if tariff is None:
        abort(404, description=_("There is no tariff %(id)d.", id=tariff_id))
    return tariff


def _may_change() -> bool:
    operator = current_operator()
    return operator is not None and has_role(operator.role, Role.SUPERVISOR)


# ---------------------------------------------------------------- views


@bp.route("/")
@login_required
def index() -> ResponseReturnValue:
    session = db.session()
    now = utcnow()
    categories = session.scalars(select(Category).order_by(Category.code)).all()
    tariffs = session.scalars(select(Tariff).order_by(Tariff.name)).all()
    by_category: dict[int, list[TariffLine]] = {c.id: [] for c in categories}
    own: list[TariffLine] = []
    for tariff in tariffs:
        line = _line(tariff, now)
        if tariff.category_id is not None and tariff.category_id in by_category:
            by_category[tariff.category_id].append(line)
        else:
            own.append(line)
    return render_template(
        "tariffs/index.html",
        categories=[(c, by_category[c.id]) for c in categories],
        own=own,
        kind_names=KIND_NAMES,
        utility_names=UTILITY_NAMES,
        may_change=_may_change(),
    )


@bp.route("/<int:tariff_id>")
@login_required
def show(tariff_id: int) -> ResponseReturnValue:
    session = db.session()
    tariff = _tariff(tariff_id)
    now = utcnow()
    line = _line(tariff, now)
    versions = session.scalars(
        select(TariffVersion)
        .where(TariffVersion.tariff_id == tariff.id)
        .order_by(TariffVersion.active_from.desc(), TariffVersion.version.desc())
    ).all()
    reached = customers_reached(session, tariff, limit=MAX_REACHED_SHOWN)
    reached_count, reached_active = reach_counts(session, tariff)
    category = session.get(Category, tariff.category_id) if tariff.category_id else None
    return render_template(
        "tariffs/show.html",
        tariff=tariff,
        category=category,
        versions=[(v, shown(v)) for v in versions],
        current=line.current,
        scheduled=line.scheduled,
        reached=reached,
        reached_count=reached_count,
        reached_active=reached_active,
        max_shown=MAX_REACHED_SHOWN,
        kind_names=KIND_NAMES,
        utility_names=UTILITY_NAMES,
        may_change=_may_change(),
    )


def _form_page(
    form: TariffForm,
    *,
    tariff: Tariff | None = None,
    error: str | None = None,
    error_field: str | None = None,
) -> str:
    session = db.session()
    categories = session.scalars(select(Category).order_by(Category.code)).all()
    return render_template(
        "tariffs/form.html",
        form=form,
        tariff=tariff,
        categories=categories,
        kinds=list(KIND_NAMES.items()),
        utilities=[(u, UTILITY_NAMES.get(u, u)) for u in UTILITIES],
        error=error,
        error_field=error_field,
        labels=FIELD_LABELS,
        zone=state().config.timezone,
        rows=_row_counts(form),
    )


def _row_counts(form: TariffForm) -> dict[str, int]:
    """Empty rows to offer after the filled ones (the script adds more)."""
    return {
        "rates": max(3 - len(form.rate_prices), 1),
        "periods": max(4 - len(form.periods), 1),
        "tiers": max(3 - len(form.tiers), 1),
        "settlements": max(2 - len(form.settlements), 1),
    }


def _save(form: TariffForm, tariff: Tariff | None) -> TariffVersion:
    """Add the tariff (or its next version) the form describes; refusals are raised."""
    kind, structure = form.structure()
    settings = form.settings(state().config.timezone)
    if tariff is None:
        return add_tariff(
            db.session(),
            form.name,
            kind,
            structure,
            category=form.category or None,
            utility=form.utility,
            **settings,
        )
    return add_tariff(
        db.session(), tariff.name, kind, structure, utility=tariff.utility, **settings
    )


def _submit(tariff: Tariff | None) -> ResponseReturnValue:
    form = TariffForm.from_request(request.form)
    session = db.session()
    try:
        version = _save(form, tariff)
    except CentreError as exc:
        session.rollback()
        text, field_name = _form_error(exc)
        code = 400 if isinstance(exc, InvalidInputError) else 409
        return _form_page(form, tariff=tariff, error=text, error_field=field_name), code
    described = describe(version)
    at_text = datetime_filter(version.active_from, "short")
    audit(
        "tariff.add" if tariff is None else "tariff.version",
        f"tariff:{version.tariff_id}",
        name=described["name"],
        version=version.version,
        kind=described["kind"],
        active_from=described["active_from"],
    )
    session.commit()
    flash(
        _(
            "Tariff %(name)s version %(version)d saved, in force from %(at)s.",
            name=described["name"],
            version=version.version,
            at=at_text,
        )
    )
    return redirect(url_for("tariffs.show", tariff_id=version.tariff_id))


@bp.route("/new", methods=["GET", "POST"])
@require_role(Role.SUPERVISOR)
def new() -> ResponseReturnValue:
    if request.method == "GET":
        return _form_page(TariffForm(category=request.args.get("category", "")))
    return _submit(None)


@bp.route("/<int:tariff_id>/versions/new", methods=["GET", "POST"])
@require_role(Role.SUPERVISOR)
def new_version(tariff_id: int) -> ResponseReturnValue:
    tariff = _tariff(tariff_id)
    if request.method == "POST":
        return _submit(tariff)
    newest = db.session().scalar(
        select(TariffVersion)
        .where(TariffVersion.tariff_id == tariff.id)
        .order_by(TariffVersion.active_from.desc(), TariffVersion.version.desc())
        .limit(1)
    )
    form = TariffForm.from_version(newest) if newest is not None else TariffForm(name=tariff.name)
    return _form_page(form, tariff=tariff)
