"""The service-hall application (issue 6): Flask, on the billing centre's services.

:func:`create_app` is an application factory in the manner of Flask's own
tutorial: configuration from the environment (:class:`~cardcenter.web.config.WebConfig`),
blueprints, and no module globals: the database, the keys and the reader
live in ``app.extensions["cardcenter"]`` (:mod:`cardcenter.web.state`), the
request's session, desk and operator on :data:`flask.g`. ``cardcenter
serve`` runs it under waitress.

Contract for the parts built on this foundation
===============================================

A blueprint
    Write ``cardcenter/web/<part>.py`` with ``bp = Blueprint("<part>", __name__,
    url_prefix="/<part>")`` and ``SECTION = Section(bp, (NavItem("<part>.index",
    _l("Label"), role=Role.CASHIER, order=20),))`` (from
    :mod:`cardcenter.web.blueprints`; menu entries show to that role and
    above, sorted by ``order``: dashboard 0, operators 90). Add ONE line,
    ``<part>.SECTION,``, to the tuple in :func:`cardcenter.web.blueprints.sections`.
    Templates go in ``templates/<part>/*.html`` and extend ``base.html``
    (``{% block title %}``, ``{% block content %}``, ``{% block scripts %}``
    for ``<script src>`` tags). The Content-Security-Policy allows only this
    site's own files: no inline ``<script>`` or ``style=""``, no CDN; put
    script in ``static/<part>.js`` and style in ``static/style.css``.

The database, the desk, the operator (:mod:`cardcenter.web.db`, :mod:`cardcenter.web.auth`)
    ``db.session()`` is the request's SQLAlchemy session (closed, and rolled
    back if not committed, at teardown); a view that writes ends with
    ``db.session().commit()``. ``db.desk()`` is the
    :class:`~cardcenter.sales.desk.Desk` of the logged-in operator at this
    hall, with the application's keys: its flows run their own transactions,
    and ``desk()`` commits the request session first (SQLite's write lock).
    ``current_operator()`` is the logged-in
    :class:`~cardcenter.operators.models.Operator` (None when logged out).
    ``state().keys``, ``state().sessions``, ``state().config`` (from
    :mod:`cardcenter.web.state`) are there for what the desk does not cover.

Roles (:mod:`cardcenter.web.auth`)
    ``@login_required``, or ``@require_role(Role.SUPERVISOR)`` (implies
    log-in; a lower role gets 403 and the sentence "This needs the supervisor
    role; you are logged in as cashier."). Not logged in: a page redirects to
    ``/login?next=...``, a ``fetch`` (Accept: application/json) gets 401
    JSON ``{"error": ...}``. ``@passive`` under the role decorator marks a
    polling view that must not keep an idle log-in alive.

Audit (:mod:`cardcenter.web.audit`)
    ``audit("sale.confirm", f"sale:{sale_id}", amount="100.00")`` adds an
    entry (who, when, from which address) to the request session; the
    view's commit writes it. Action codes are short and dotted
    (``customer.open``, ``card.issue``, ``sale.reverse``, ``tariff.add``,
    ``shift.open``); ``subject`` is ``kind:id``; detail JSON-serialisable,
    never a password or secret. Audit every action that changes something.
    The JSON API sets ``g.api_client`` (an :class:`~cardcenter.operators.models.ApiClient`)
    and its entries name the client instead of an operator.

CSRF (:mod:`cardcenter.web.csrf`)
    Every POST/PUT/PATCH/DELETE outside ``/api/`` needs the session's token:
    ``{{ csrf_field() }}`` in each ``<form method="post">``; for ``fetch``
    the header ``X-CSRF-Token`` (``static/app.js`` has
    ``cc.post(url, body)`` which sets it from ``<meta name="csrf-token">``).
    Missing or wrong: 400 with a sentence. The API under ``/api/`` is exempt
    (it authenticates each request); ``csrf.exempt(view)`` for another such view.

Errors
    A :class:`~cardcenter.core.errors.CentreError` (or a card layer error) a
    view lets through becomes its sentence on ``error.html`` (JSON
    ``{"error": sentence}`` for a ``fetch``) with 400 (invalid input),
    403 (not allowed), 404 (not found), 409 (conflict, card refused, no card,
    reader busy) or 503 (no reader or pcscd), and the request's session is
    rolled back. Catch them yourself where the page should stay put with the
    message. The JSON API registers its own error handlers on its blueprint.

The reader (:mod:`cardcenter.web.reader`, ``state().reader``)
    ``status()`` -> ``{"reader": name|None, "present": bool, "serial":
    hex|None, "virtual": bool, "error": sentence|None}`` (+ ``"tray"`` with
    the virtual reader), cheap and never raising; ``GET /reader/status``
    serves it to the dashboard's 1 s poll. ``with state().reader.channel()
    as channel:`` opens the card for one flow (one at a time per desk;
    :class:`~cardcenter.web.reader.ReaderBusyError` after 15 s), e.g.
    ``db.desk().sell(channel, 10000, request_id)``. The virtual card tray
    (:mod:`cardcenter.web.vcards`, ``state().tray``): ``new_card()``,
    ``insert(serial)``, ``remove()``, ``cards()``, ``inserted``; also
    ``POST /reader/virtual/new|insert|remove``.

Languages and formats (:mod:`cardcenter.web.i18n`)
    ``_("...")`` (``_l`` lazy, at import time) in Python, ``{{ _("...") }}``
    in templates, with ``%(name)s`` placeholders; add the Chinese to
    ``translations/zh_Hans_CN/LC_MESSAGES/messages.po`` (compiled at start).
    Filters: ``{{ minor_units|money }}`` (``1,234.50``; ``12.345,00`` style
    where the locale says so), ``{{ aware_time|datetime }}`` (hall's time
    zone, ``|datetime("short")``), ``{{ aware_time|date }}``.

Tests (``tests/web/conftest.py``, helpers in ``tests/web/web_support.py``)
    ``web_config`` / ``web_app`` (this factory on the ``db`` fixture's
    database, so SQLite and PostgreSQL, with a temporary key store, its own
    data directory and cheap password hashing), ``client`` (Flask's test
    client), ``login(client, username, role)`` (creates the operator with
    password ``username + "-password"`` and logs in through the form;
    returns the operator's id), ``csrf(client)`` (the session's token for a
    POST: ``data={"csrf_token": csrf(client), ...}`` or the header),
    ``live_server`` (the app under waitress on a free loopback port; the base
    URL), ``page`` (a Playwright page in Debian's headless Chromium, a
    session-wide browser). ``web_support.add_web_operator(app, name, role)``
    and ``form_login(client, name, password)`` for finer control; use the
    ``vpcd_reader`` fixture (a machine-wide lock) before putting a card in
    the virtual reader. Name test files ``test_web_<part>.py`` (basenames
    are unique across tests/).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import Flask, Response, g, jsonify, render_template
from flask_babel import get_locale
from werkzeug.exceptions import HTTPException

from cardcenter.core.errors import (
    CentreError,
    ConflictError,
    InvalidInputError,
    NotFoundError,
)
from cardcenter.operators.models import Role
from cardcenter.operators.services import NotAllowedError, has_role
from cardcenter.web.blueprints import NavItem, sections
from cardcenter.web.config import WebConfig
from cardcenter.web.state import EXTENSION, AppState, state
from cardlayout.errors import CardLayoutError, NoReaderError, NoServiceError

__all__ = ["WebConfig", "close_app", "create_app"]

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; object-src 'none'; "
        "frame-ancestors 'none'; base-uri 'self'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}


def create_app(config: WebConfig | None = None) -> Flask:
    """The application for ``config`` (default: from the environment).

    Opens the database engine and the key store (the passphrase is read
    now); the schema must exist already (``cardcenter serve`` migrates it).
    """
    from cardcenter.web import auth, csrf, db, i18n

    config = config or WebConfig.from_env()
    # The instance folder is the data directory (Flask's own search for one
    # fails on an editable install, and there is nothing else to keep there).
    app = Flask(__name__, instance_path=str(config.data_dir.resolve()))
    app.config.update(
        SECRET_KEY=config.secret_key,
        SESSION_COOKIE_NAME="cardcenter_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=config.cookie_secure,
        PERMANENT_SESSION_LIFETIME=timedelta(minutes=config.session_minutes),
        MAX_CONTENT_LENGTH=16 * 1024 * 1024,
    )
    app_state = AppState.open(config)
    app.extensions[EXTENSION] = app_state
    try:
        i18n.init_app(app, timezone=config.timezone, data_dir=config.data_dir)
        db.init_app(app)
        # Who is logged in first: the language of every message (a CSRF refusal
        # too) is the operator's, and Flask-Babel fixes it at the first one.
        app.before_request(auth.load_operator)
        csrf.init_app(app)
        nav: list[NavItem] = []
        for section in sections():
            app.register_blueprint(section.blueprint)
            nav.extend(section.nav)
        app_state.nav = tuple(sorted(nav, key=lambda item: item.order))
        _templates(app)
        _errors(app)
        app.after_request(_headers)
    except BaseException:
        app_state.close()
        raise
    return app


def close_app(app: Flask) -> None:
    """Release what :func:`create_app` opened (the virtual card, keys, connections)."""
    state(app).close()


def _templates(app: Flask) -> None:
    from cardcenter.web.auth import ROLE_NAMES, current_operator

    @app.context_processor
    def common() -> dict[str, Any]:
        operator = current_operator()
        held = Role(operator.role) if operator is not None else None
        return {
            "operator": operator,
            "nav": [i for i in state().nav if held is not None and has_role(held, i.role)],
            "role_names": ROLE_NAMES,
            "locale": str(get_locale()),
            "site": state().config.site,
        }


def _headers(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if response.mimetype == "text/html":
        # Pages show customers and money: keep them out of shared caches and history.
        response.headers.setdefault("Cache-Control", "no-store")
    return response


def _status_of(exc: Exception) -> int:
    if isinstance(exc, InvalidInputError):
        return 400
    if isinstance(exc, NotAllowedError):
        return 403
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, NoServiceError | NoReaderError):
        return 503
    if isinstance(exc, ConflictError | CentreError | CardLayoutError):
        return 409
    return 500


def _errors(app: Flask) -> None:
    from cardcenter.web import db
    from cardcenter.web.auth import wants_json
    from cardcenter.web.i18n import _

    def page(code: int, message: str) -> Any:
        db.session().rollback()
        if wants_json():
            return jsonify(error=message), code
        return render_template("error.html", code=code, message=message), code

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Any:
        code = exc.code or 500
        generic = {
            400: _("The request was not understood."),
            403: _("You may not do this."),
            404: _("There is no such page."),
            405: _("This page does not take that kind of request."),
            413: _("What was sent is too large."),
            500: _("Something went wrong in the application; it has been logged. Try again."),
        }
        message = exc.description
        if message == type(exc).description or not message:
            message = generic.get(code, exc.name)
        g.error_code = code
        return page(code, str(message))

    @app.errorhandler(CentreError)
    @app.errorhandler(CardLayoutError)
    def centre_error(exc: Exception) -> Any:
        return page(_status_of(exc), str(exc))
