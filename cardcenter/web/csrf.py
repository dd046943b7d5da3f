"""Cross-site request forgery protection: a per-session token on every state-changing request.

A page that changes something posts a form; another site could make the
operator's browser post one too, with the operator's cookie. So every
``POST``, ``PUT``, ``PATCH`` and ``DELETE`` must carry the session's token,
which another site cannot read:

* forms: ``{{ csrf_field() }}`` inside the ``<form>`` (a hidden
  ``csrf_token`` input);
* ``fetch``: the header ``X-CSRF-Token`` with the value of
  ``<meta name="csrf-token">``, which ``base.html`` renders (``{{ csrf_token() }}``).

A request without it, or with a wrong one, is refused with 400 and a
sentence saying to reload the page. The JSON API under ``/api/`` is exempt:
it authenticates every request with the client's own credentials and sets
no cookie, so there is nothing for another site to ride on. A view can be
exempted with :func:`exempt` (it then has to authenticate some other way).
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Flask, abort, request, session
from markupsafe import Markup, escape

from cardcenter.web.i18n import _

FIELD = "csrf_token"
HEADER = "X-CSRF-Token"
SESSION_KEY = "csrf"
EXEMPT_PREFIXES = ("/api/",)
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})

F = TypeVar("F", bound=Callable[..., Any])


def token() -> str:
    """This session's token (made on first use; kept across log-in and log-out)."""
    value = session.get(SESSION_KEY)
    if not isinstance(value, str):
        value = secrets.token_urlsafe(32)
        session[SESSION_KEY] = value
    return value


def field() -> Markup:
    """The hidden form field carrying the token."""
    return Markup(f'<input type="hidden" name="{FIELD}" value="{escape(token())}">')


def exempt(view: F) -> F:
    """Exempt one view from the check (it must authenticate each request itself)."""
    view.csrf_exempt = True  # type: ignore[attr-defined]
    return view


def _check() -> None:
    if request.method in SAFE_METHODS or request.path.startswith(EXEMPT_PREFIXES):
        return
    view = request.endpoint and current_view()
    if view is not None and getattr(view, "csrf_exempt", False):
        return
    expected = session.get(SESSION_KEY)
    given = request.headers.get(HEADER) or request.form.get(FIELD, "")
    if not isinstance(expected, str) or not hmac.compare_digest(expected, given):
        abort(
            400,
            description=_(
                "This form is out of date or did not come from this application "
                "(its security token is missing or wrong). Reload the page and try again."
            ),
        )


def current_view() -> Callable[..., Any] | None:
    from flask import current_app

    return current_app.view_functions.get(request.endpoint or "")


def init_app(app: Flask) -> None:
    app.before_request(_check)
    app.jinja_env.globals["csrf_field"] = field
    app.jinja_env.globals["csrf_token"] = token
