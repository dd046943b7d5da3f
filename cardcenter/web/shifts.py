"""A cashier's shift: opened with a float, closed with a cash-up checked against the sales.

The arithmetic is :mod:`cardcenter.shifts`'s (float + cash taken - cash
handed back, as the sales report counts it); these pages open and close a
shift, show its cash-up, and let a supervisor see every shift's difference.

The count is blind: while a shift is open its cashier does not see what the
books expect, so the number typed is what is in the drawer, not what would
make it balance. A difference of more than 10.00 needs a note.

Whether selling needs an open shift is the switch ``CARDCENTER_REQUIRE_SHIFT``
(``1``/``true``/``yes``; default off), read from the application's config
(``app.config["CARDCENTER_REQUIRE_SHIFT"]``, which tests set) or else the
environment. The selling pages call :func:`require_open_shift` before a
sale; with the switch off it only returns the open shift, if any.
"""

from __future__ import annotations

import os

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy import select

from cardcenter.core.errors import CentreError, ConflictError, InvalidInputError
from cardcenter.operators.models import Operator, Role, Shift
from cardcenter.operators.services import has_role
from cardcenter.shifts import NOTE_OVER, cash_up, close_shift, open_shift, open_shift_of
from cardcenter.tariffs.pricing import format_money
from cardcenter.web import db
from cardcenter.web.audit import audit
from cardcenter.web.auth import current_operator, login_required, require_role
from cardcenter.web.blueprints import NavItem, Section
from cardcenter.web.i18n import _, _l
from cardcenter.web.refusals import labelled_refusal
from cardcenter.web.state import state
from cardlayout.codec.money import parse_decimal
from cardlayout.errors import FormatError

bp = Blueprint("shifts", __name__, url_prefix="/shifts")
SECTION = Section(bp, (NavItem("shifts.index", _l("Shift"), role=Role.CASHIER, order=60),))

REQUIRE_SHIFT = "CARDCENTER_REQUIRE_SHIFT"
"""The switch: selling needs an open shift (app config, else the environment; default off)."""
_YES = ("1", "true", "yes", "on")

FIELD_LABELS = {
    "opening_float": _l("Float"),
    "counted_cash": _l("Cash counted"),
    "note": _l("Note"),
}


def shift_required() -> bool:
    """Whether selling needs an open shift (``CARDCENTER_REQUIRE_SHIFT``; default off)."""
    value = current_app.config.get(REQUIRE_SHIFT)
    if value is None:
        value = os.environ.get(REQUIRE_SHIFT, "")
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in _YES


def require_open_shift() -> Shift | None:
    """The logged-in operator's open shift at this hall; for the selling pages to call first.

    With ``CARDCENTER_REQUIRE_SHIFT`` on, no open shift here is a
    :class:`ConflictError` (409, its sentence on the page) and nothing is
    sold; with it off the answer is the open shift or None, and selling goes
    on. A shift open at another hall does not count: its drawer is there.
    """
    operator = current_operator()
    if operator is None:
        raise RuntimeError("require_open_shift() needs a logged-in operator: decorate the view")
    shift = open_shift_of(db.session(), operator.id)
    site = state().config.site
    if shift is not None and shift.site != site:
        shift = None
    if shift is None and shift_required():
        raise ConflictError(
            _("Open a shift with its float before selling (the Shift page), then try again.")
        )
    return shift


def _amount(text: str, field: str) -> int:
    """Money typed in currency units (``200``, ``200.50``) as minor units."""
    if not text.strip():
        raise InvalidInputError(field, _("give the amount"))
    try:
        return parse_decimal(text, 2, field=field)
    except FormatError:
        raise InvalidInputError(
            field, _("%(value)s is not an amount: give e.g. 200 or 200.50", value=repr(text[:40]))
        ) from None


def _error_text(exc: CentreError) -> tuple[str, str | None]:
    """The sentence to show and the form field at fault (if the error names one)."""
    return labelled_refusal(exc, FIELD_LABELS)


def _index(error: str | None = None, field: str | None = None) -> str:
    operator = current_operator()
    assert operator is not None
    session = db.session()
    shift = open_shift_of(session, operator.id)
    recent = session.scalars(
        select(Shift)
        .where(Shift.operator_id == operator.id, Shift.closed_at.is_not(None))
        .order_by(Shift.opened_at.desc(), Shift.id.desc())
        .limit(10)
    ).all()
    return render_template(
        "shifts/index.html",
        shift=shift,
        recent=recent,
        site=state().config.site,
        required=shift_required(),
        note_over=NOTE_OVER,
        form=request.form,
        error=error,
        error_field=field,
        is_supervisor=has_role(operator.role, Role.SUPERVISOR),
    )


@bp.route("/")
@login_required
def index() -> ResponseReturnValue:
    return _index()


@bp.route("/open", methods=["POST"])
@login_required
def open_() -> ResponseReturnValue:
    operator = current_operator()
    assert operator is not None
    session = db.session()
    try:
        opening_float = _amount(request.form.get("opening_float", ""), "opening_float")
        shift = open_shift(
            session, operator.id, site=state().config.site, opening_float=opening_float
        )
    except CentreError as exc:
        session.rollback()
        text, field = _error_text(exc)
        return _index(text, field), 400 if isinstance(exc, InvalidInputError) else 409
    audit("shift.open", f"shift:{shift.id}", site=shift.site, float=format_money(opening_float))
    session.commit()
    flash(_("Shift opened with a float of %(amount)s.", amount=format_money(opening_float)))
    return redirect(url_for("shifts.index"))


@bp.route("/close", methods=["POST"])
@login_required
def close() -> ResponseReturnValue:
    operator = current_operator()
    assert operator is not None
    session = db.session()
    try:
        counted = _amount(request.form.get("counted_cash", ""), "counted_cash")
        shift, figures = close_shift(
            session, operator.id, counted=counted, note=request.form.get("note", "")
        )
    except CentreError as exc:
        session.rollback()
        text, field = _error_text(exc)
        return _index(text, field), 400 if isinstance(exc, InvalidInputError) else 409
    assert figures.difference is not None
    audit(
        "shift.close",
        f"shift:{shift.id}",
        counted=format_money(counted),
        expected=format_money(figures.expected),
        difference=format_money(figures.difference),
        noted=bool(shift.note),
    )
    session.commit()
    flash(_("Shift closed."))
    return redirect(url_for("shifts.show", shift_id=shift.id))


@bp.route("/<int:shift_id>")
@login_required
def show(shift_id: int) -> ResponseReturnValue:
    operator = current_operator()
    assert operator is not None
    session = db.session()
    shift = session.get(Shift, shift_id)
    if shift is None:
        abort(404, description=_("There is no shift %(id)d.", id=shift_id))
    supervisor = has_role(operator.role, Role.SUPERVISOR)
    if shift.operator_id != operator.id and not supervisor:
        abort(403, description=_("Only a supervisor may see another operator's shift."))
    # The count is blind: the cashier sees the expected cash once the shift is closed.
    figures = cash_up(session, shift) if shift.closed_at is not None or supervisor else None
    return render_template(
        "shifts/show.html",
        shift=shift,
        owner=session.get(Operator, shift.operator_id),
        figures=figures,
        note_over=NOTE_OVER,
    )


@bp.route("/all")
@require_role(Role.SUPERVISOR)
def all_shifts() -> ResponseReturnValue:
    session = db.session()
    rows = session.execute(
        select(Shift, Operator)
        .join(Operator, Operator.id == Shift.operator_id)
        .order_by(Shift.opened_at.desc(), Shift.id.desc())
        .limit(200)
    ).all()
    return render_template("shifts/all.html", rows=rows, note_over=NOTE_OVER)
