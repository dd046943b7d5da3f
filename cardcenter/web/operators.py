"""Administrators manage operators and API clients here; every change is audited.

Operators: add one with a role and an initial password (typed, or made up
and shown once), disable or enable, unlock after a lock-out, reset the
password (the operator's open sessions end). API clients: create one (its
secret is shown once, never stored), disable it. An administrator cannot
disable their own account, so the last one cannot lock everybody out.
"""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy import select

from cardcenter.core.db import utcnow
from cardcenter.core.errors import CentreError
from cardcenter.operators.models import LOCALES, ApiClient, Operator, Role
from cardcenter.operators.services import (
    API_OPERATOR_PREFIX,
    add_api_client,
    add_operator,
    is_locked,
    new_password,
    set_password,
    unlock,
)
from cardcenter.web import db
from cardcenter.web.audit import audit
from cardcenter.web.auth import ROLE_NAMES, current_operator, require_role
from cardcenter.web.blueprints import NavItem, Section
from cardcenter.web.i18n import _, _l
from cardcenter.web.state import state

bp = Blueprint("operators", __name__, url_prefix="/operators")
SECTION = Section(
    bp, (NavItem("operators.index", _l("Operators"), role=Role.ADMINISTRATOR, order=90),)
)


@bp.route("/")
@require_role(Role.ADMINISTRATOR)
def index() -> ResponseReturnValue:
    session = db.session()
    # (the operators API clients sell as are managed as API clients, below)
    operators = session.scalars(
        select(Operator)
        .where(Operator.username.not_like(f"{API_OPERATOR_PREFIX}%"))
        .order_by(Operator.username)
    ).all()
    clients = session.scalars(select(ApiClient).order_by(ApiClient.name)).all()
    return render_template(
        "operators/index.html",
        operators=operators,
        clients=clients,
        is_locked=is_locked,
        roles=list(Role),
        role_names=ROLE_NAMES,
    )


@bp.route("/new", methods=["GET", "POST"])
@require_role(Role.ADMINISTRATOR)
def new() -> ResponseReturnValue:
    form = request.form
    if request.method == "GET":
        return _new_form()
    typed = form.get("password", "")
    password = typed or new_password()
    try:
        role = Role(form.get("role", ""))
        operator = add_operator(
            db.session(),
            form.get("username", ""),
            name=form.get("name", ""),
            role=role,
            site=form.get("site", "").strip()[:64] or state().config.site,
            password=password,
            locale=form.get("locale", "en"),
            method=state().config.password_method,
        )
    except (CentreError, ValueError) as exc:
        db.session().rollback()
        return _new_form(error=_error_text(exc)), 400
    audit("operator.add", f"operator:{operator.id}", username=operator.username, role=role.value)
    db.session().commit()
    if not typed:
        # A made-up password is read off this page, once; only its hash is kept.
        return _password_page(operator, password)
    flash(_("Operator %(name)s added.", name=operator.username))
    return redirect(url_for("operators.index"))


def _new_form(error: str | None = None) -> str:
    return render_template(
        "operators/new.html",
        roles=list(Role),
        role_names=ROLE_NAMES,
        locales=LOCALES,
        form=request.form,
        error=error,
        site=state().config.site,
    )


def _error_text(exc: Exception) -> str:
    if isinstance(exc, ValueError) and not isinstance(exc, CentreError):
        return _("Choose a role.")
    return str(exc)


def _password_page(operator: Operator, password: str) -> str:
    return render_template("operators/password.html", operator=operator, password=password)


def _operator(operator_id: int) -> Operator:
    operator = db.session().get(Operator, operator_id)
    # An API client's operator takes no password and follows its client's state.
    if operator is None or operator.username.startswith(API_OPERATOR_PREFIX):
        abort(404, description=_("There is no operator %(id)d.", id=operator_id))
    return operator


@bp.route("/<int:operator_id>/disable", methods=["POST"])
@require_role(Role.ADMINISTRATOR)
def disable(operator_id: int) -> ResponseReturnValue:
    operator = _operator(operator_id)
    me = current_operator()
    if me is not None and me.id == operator.id:
        flash(_("You cannot disable your own account."), "error")
        return redirect(url_for("operators.index"))
    if operator.active:
        operator.active = False
        # ended for good: a session idle through a disable and a re-enable does not revive
        operator.sessions_ended_at = utcnow()
        audit("operator.disable", f"operator:{operator.id}", username=operator.username)
        db.session().commit()
    flash(_("Operator %(name)s disabled.", name=operator.username))
    return redirect(url_for("operators.index"))


@bp.route("/<int:operator_id>/enable", methods=["POST"])
@require_role(Role.ADMINISTRATOR)
def enable(operator_id: int) -> ResponseReturnValue:
    operator = _operator(operator_id)
    if not operator.active:
        operator.active = True
        audit("operator.enable", f"operator:{operator.id}", username=operator.username)
        db.session().commit()
    flash(_("Operator %(name)s enabled.", name=operator.username))
    return redirect(url_for("operators.index"))


@bp.route("/<int:operator_id>/unlock", methods=["POST"])
@require_role(Role.ADMINISTRATOR)
def unlock_operator(operator_id: int) -> ResponseReturnValue:
    operator = _operator(operator_id)
    unlock(operator)
    audit("operator.unlock", f"operator:{operator.id}", username=operator.username)
    db.session().commit()
    flash(_("Operator %(name)s unlocked.", name=operator.username))
    return redirect(url_for("operators.index"))


@bp.route("/<int:operator_id>/password", methods=["POST"])
@require_role(Role.ADMINISTRATOR)
def reset_password(operator_id: int) -> ResponseReturnValue:
    operator = _operator(operator_id)
    typed = request.form.get("password", "")
    password = typed or new_password()
    try:
        set_password(operator, password, method=state().config.password_method)
    except CentreError as exc:
        db.session().rollback()
        flash(str(exc), "error")
        return redirect(url_for("operators.index"))
    audit("operator.password_reset", f"operator:{operator.id}", username=operator.username)
    db.session().commit()
    if typed:
        flash(_("Password of %(name)s changed.", name=operator.username))
        return redirect(url_for("operators.index"))
    return _password_page(operator, password)


@bp.route("/api-clients/new", methods=["POST"])
@require_role(Role.ADMINISTRATOR)
def new_api_client() -> ResponseReturnValue:
    try:
        client, secret = add_api_client(
            db.session(),
            request.form.get("name", ""),
            Role(request.form.get("role", Role.CASHIER.value)),
        )
    except (CentreError, ValueError) as exc:
        db.session().rollback()
        flash(_error_text(exc), "error")
        return redirect(url_for("operators.index"))
    audit("api_client.add", f"api_client:{client.id}", name=client.name, key_id=client.key_id)
    db.session().commit()
    return render_template("operators/api_secret.html", client=client, secret=secret)


@bp.route("/api-clients/<int:client_id>/disable", methods=["POST"])
@require_role(Role.ADMINISTRATOR)
def disable_api_client(client_id: int) -> ResponseReturnValue:
    client = db.session().get(ApiClient, client_id)
    if client is None:
        abort(404, description=_("There is no API client %(id)d.", id=client_id))
    if client.active:
        client.active = False
        audit("api_client.disable", f"api_client:{client.id}", name=client.name)
        db.session().commit()
    flash(_("API client %(name)s disabled.", name=client.name))
    return redirect(url_for("operators.index"))
