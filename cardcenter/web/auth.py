"""Logging in and out, who is logged in, and who may see what.

Passwords are checked by :func:`cardcenter.operators.services.authenticate`
(werkzeug's scrypt hashes). A refused log-in shows one generic sentence,
whether the user name is unknown, the password wrong or the operator
disabled, so the page does not tell anyone which names exist; after
``max_failures`` wrong passwords in a row the operator is locked out for
``lockout_minutes`` (the page then says so) until an administrator unlocks
them. Every log-in, failure, lock-out and log-out is audited.

The log-in lives in Flask's signed session cookie: the operator's id, when
they logged in, when they were last active. Idle longer than
``session_minutes`` and the next request finds them logged out; an operator
disabled, or whose password was reset, is logged out at their next request.
Views that poll (the reader panel, every second) are marked :func:`passive`
so they do not count as activity and an unattended desk still times out.

Decorators: :func:`login_required`, :func:`require_role` (implies log-in;
403 with a sentence for a lower role). :func:`current_operator` is the
logged-in :class:`~cardcenter.operators.models.Operator` or None.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    abort,
    flash,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.typing import ResponseReturnValue

from cardcenter.core.db import utcnow
from cardcenter.operators.models import LOCALES, Operator, Role
from cardcenter.operators.services import LoginRefusedError, authenticate, has_role
from cardcenter.web import db
from cardcenter.web.audit import audit
from cardcenter.web.blueprints import Section
from cardcenter.web.csrf import current_view
from cardcenter.web.csrf import token as csrf_token
from cardcenter.web.i18n import SESSION_KEY as LOCALE_KEY
from cardcenter.web.i18n import _, _l
from cardcenter.web.state import state

bp = Blueprint("auth", __name__)
SECTION = Section(bp)

F = TypeVar("F", bound=Callable[..., Any])

ROLE_NAMES = {
    Role.CASHIER: _l("cashier"),
    Role.SUPERVISOR: _l("supervisor"),
    Role.ADMINISTRATOR: _l("administrator"),
}

_OPERATOR = "op"
_LOGGED_IN_AT = "at"
_SEEN = "seen"


def current_operator() -> Operator | None:
    """The operator logged in for this request, or None."""
    found: Operator | None = g.get("operator")
    return found


def passive(view: F) -> F:
    """Mark a view (a poll) whose requests do not count as the operator being active."""
    view.passive = True  # type: ignore[attr-defined]
    return view


def login_required(view: F) -> F:
    """Only for a logged-in operator; others are sent to the log-in page (401 for ``fetch``)."""

    @wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if current_operator() is None:
            return _login_needed()
        return view(*args, **kwargs)

    # the role a view needs, for the role tests (a require_role inside stays)
    wrapped.required_role = getattr(view, "required_role", Role.CASHIER)  # type: ignore[attr-defined]
    return wrapped  # type: ignore[return-value]


def require_role(role: Role) -> Callable[[F], F]:
    """Only for operators holding ``role`` or a higher one; 403 with a sentence for the others."""

    def decorate(view: F) -> F:
        @wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            operator = current_operator()
            if operator is None:
                return _login_needed()
            if not has_role(operator.role, role):
                abort(
                    403,
                    description=_(
                        "This needs the %(needed)s role; you are logged in as %(held)s.",
                        needed=ROLE_NAMES[role],
                        held=ROLE_NAMES[Role(operator.role)],
                    ),
                )
            return view(*args, **kwargs)

        wrapped.required_role = role  # type: ignore[attr-defined]  # read by the role tests
        return wrapped  # type: ignore[return-value]

    return decorate


def wants_json() -> bool:
    """Whether the request came from script (``fetch``) rather than a page."""
    best = request.accept_mimetypes.best_match(["application/json", "text/html"])
    return best == "application/json" or request.path.startswith("/api/")


def _login_needed() -> ResponseReturnValue:
    if wants_json():
        response = jsonify(error=_("Your session has ended; log in again."))
        response.status_code = 401
        return response
    return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))


def _end_session(reason: str, operator_id: int | None) -> None:
    """Forget the log-in (the CSRF token and the language stay) and audit why."""
    kept = {k: session[k] for k in ("csrf", LOCALE_KEY) if k in session}
    session.clear()
    session.update(kept)
    if operator_id is not None:
        audit("logout", f"operator:{operator_id}", operator_id=operator_id, reason=reason)
        db.session().commit()


def load_operator() -> None:
    """Before every request: who is logged in, unless the log-in has expired or been revoked."""
    g.operator = None
    if request.endpoint in (None, "static") or _OPERATOR not in session:
        return
    operator_id = session.get(_OPERATOR)
    now = time.time()
    config = state().config
    if now - float(session.get(_SEEN, 0)) > config.session_minutes * 60:
        _end_session("idle", operator_id if isinstance(operator_id, int) else None)
        flash(_("You were logged out after %(n)d idle minutes.", n=config.session_minutes))
        return
    operator = db.session().get(Operator, operator_id) if isinstance(operator_id, int) else None
    logged_in_at = float(session.get(_LOGGED_IN_AT, 0))
    ended = (
        [operator.password_changed_at, operator.sessions_ended_at] if operator is not None else []
    )
    if (
        operator is None
        or not operator.active
        or any(at is not None and at.timestamp() >= logged_in_at for at in ended)
    ):
        db.session().rollback()
        _end_session("revoked", operator.id if operator is not None else None)
        flash(_("Your log-in has ended; log in again."))
        return
    # End the read transaction now: on SQLite it holds the write lock.
    db.session().commit()
    g.operator = operator
    view = current_view()
    if not getattr(view, "passive", False):
        session[_SEEN] = now


def _safe_next(target: str | None) -> str:
    """``next`` only when it is a path on this site (no open redirect)."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        parts = urlsplit(target)
        if not parts.scheme and not parts.netloc:
            return target
    return url_for("dashboard.index")


@bp.route("/login", methods=["GET", "POST"])
def login() -> ResponseReturnValue:
    lang = request.args.get("lang")
    if lang in LOCALES:
        session[LOCALE_KEY] = lang
    if request.method == "GET":
        if current_operator() is not None:
            return redirect(_safe_next(request.args.get("next")))
        return render_template("login.html", next=request.args.get("next", ""))
    username = request.form.get("username", "").strip()[:64]
    password = request.form.get("password", "")
    config = state().config
    session_db = db.session()
    try:
        operator = authenticate(session_db, username, password, config.login_policy)
    except LoginRefusedError as refused:
        who = refused.operator
        subject = f"operator:{who.id}" if who is not None else None
        if refused.reason == "locked now":
            audit(
                "login.locked",
                subject,
                operator_id=who.id if who else None,
                minutes=config.lockout_minutes,
            )
        audit(
            "login.failed",
            subject,
            operator_id=who.id if who else None,
            username=username,
            reason=refused.reason,
        )
        session_db.commit()
        if refused.reason in ("locked", "locked now"):
            error = _(
                "Too many failed log-ins: this user is locked out for %(n)d minutes. "
                "An administrator can unlock it sooner.",
                n=config.lockout_minutes,
            )
        else:
            error = _("Wrong user name or password.")
        return (
            render_template(
                "login.html", error=error, username=username, next=request.form.get("next", "")
            ),
            401,
        )
    audit("login", f"operator:{operator.id}", operator_id=operator.id)
    session_db.commit()
    kept = {k: session[k] for k in ("csrf",) if k in session}
    session.clear()
    session.update(kept)
    session.permanent = True
    now = time.time()
    session[_OPERATOR] = operator.id
    session[_LOGGED_IN_AT] = now
    session[_SEEN] = now
    csrf_token()
    return redirect(_safe_next(request.form.get("next")))


@bp.route("/logout", methods=["POST"])
def logout() -> ResponseReturnValue:
    operator = current_operator()
    if operator is not None:
        # Ended on the server too: a copy of the cookie no longer logs anyone in
        # (every session of the operator's logged in before now ends with it).
        operator.sessions_ended_at = utcnow()
    _end_session("logout", operator.id if operator is not None else None)
    flash(_("You have logged out."))
    return redirect(url_for("auth.login"))


@bp.route("/language", methods=["POST"])
def language() -> ResponseReturnValue:
    """Change the language: the operator's own setting, or (logged out) this browser's."""
    chosen = request.form.get("locale", "")
    if chosen not in LOCALES:
        abort(400, description=_("Unknown language."))
    operator = current_operator()
    if operator is None:
        session[LOCALE_KEY] = chosen
        return redirect(url_for("auth.login"))
    session_db = db.session()
    mine = session_db.get(Operator, operator.id)
    assert mine is not None
    if mine.locale != chosen:
        audit("operator.locale", f"operator:{mine.id}", locale=chosen)
        mine.locale = chosen
        session_db.commit()
    g.operator = mine
    return redirect(_safe_next(request.form.get("next")))
