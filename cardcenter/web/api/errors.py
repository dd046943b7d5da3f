"""The API's one error shape, and the handlers that give every failure that shape.

Every error answer is::

    {"error": {"code": "invalid_input", "message": "amount: give ...", "field": "amount"}}

``code`` is stable, for programs (:data:`CODES` lists them with their HTTP
status): ``invalid_input`` is a field the OpenAPI document's rules refuse,
``value_refused`` a well-formed value the centre refuses (an amount more
than one token carries, a confirmation it did not give); ``message`` is one
sentence for people, in the request's language where it is the API's own
(``Accept-Language``; the centre's own sentences are English); ``field``
names the request field at fault, where there is one.

The handlers are registered on the API's blueprint, so the pages keep
theirs; routing failures (an unknown path under ``/api/``, a method a path
does not take) never reach a blueprint's handlers in Flask, so the API
catches them with a route of its own (:func:`cardcenter.web.api.views.unknown`).
An unexpected exception is logged with its traceback and answered 500 with
a sentence that tells nothing of the internals. The request's session is
rolled back whatever the error.
"""

from __future__ import annotations

import logging

from flask import Blueprint, Response, jsonify
from werkzeug.exceptions import HTTPException

from cardcenter.core.errors import (
    CardRefusedError,
    CentreError,
    ConflictError,
    InvalidInputError,
    NotFoundError,
)
from cardcenter.operators.services import NotAllowedError
from cardcenter.web import db
from cardcenter.web.i18n import _
from cardlayout.errors import CardLayoutError, FormatError

log = logging.getLogger(__name__)

CODES: dict[str, int] = {
    "invalid_input": 400,
    "value_refused": 400,
    "unauthenticated": 401,
    "forbidden": 403,
    "not_found": 404,
    "method_not_allowed": 405,
    "conflict": 409,
    "card_refused": 409,
    "not_reversible": 409,
    "confirmation_expired": 409,
    "too_large": 413,
    "unsupported_media_type": 415,
    "internal_error": 500,
}
"""Every error code the API answers with, and its HTTP status."""

REALM = 'Basic realm="cardcenter API", charset="UTF-8"'


class ApiError(Exception):
    """An error the API answers in its shape: ``code`` (one of :data:`CODES`), a sentence."""

    def __init__(
        self,
        code: str,
        message: str,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.status = CODES[code]
        self.message = message
        self.field = field
        self.headers = headers or {}


def invalid(field: str, message: str) -> ApiError:
    """A request field that is missing or malformed: 400 naming the field."""
    return ApiError("invalid_input", message, field)


def error_response(
    code: str, message: str, field: str | None = None, headers: dict[str, str] | None = None
) -> Response:
    """The error shape as a response, with the code's status; the session rolled back."""
    db.session().rollback()
    body: dict[str, str] = {"code": code, "message": message}
    if field:
        body["field"] = field
    response = jsonify(error=body)
    response.status_code = CODES[code]
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def unauthenticated() -> ApiError:
    return ApiError(
        "unauthenticated",
        _(
            "Give the API client's key ID and secret by HTTP Basic authentication; "
            "these are missing, wrong, or the client is disabled."
        ),
        headers={"WWW-Authenticate": REALM},
    )


_HTTP_CODES = {
    400: "invalid_input",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    415: "unsupported_media_type",
}


def _http_message(code: str) -> str:
    messages = {
        "invalid_input": _("The request was not understood: send a JSON object."),
        "unauthenticated": _("Authenticate with the API client's key ID and secret."),
        "forbidden": _("This API client may not do this."),
        "not_found": _("There is no such API operation."),
        "method_not_allowed": _("This API operation does not take that method."),
        "too_large": _("The request is too large."),
        "unsupported_media_type": _("Send the request body as application/json."),
    }
    return messages.get(code, _("The request was not understood: send a JSON object."))


def _centre_code(exc: Exception) -> str:
    if isinstance(exc, InvalidInputError | FormatError):
        # The request's fields passed the API's own checks (invalid_input): this is
        # a well-formed value the centre's rules refuse, e.g. more than a token carries.
        return "value_refused"
    if isinstance(exc, NotAllowedError):
        return "forbidden"
    if isinstance(exc, NotFoundError):
        return "not_found"
    if isinstance(exc, CardRefusedError | CardLayoutError):
        return "card_refused"
    if isinstance(exc, ConflictError | CentreError):
        return "conflict"
    return "internal_error"


def register(bp: Blueprint) -> None:
    """Answer every error raised under ``bp`` in the API's shape."""

    @bp.errorhandler(ApiError)
    def api_error(exc: ApiError) -> Response:
        return error_response(exc.code, exc.message, exc.field, exc.headers)

    @bp.errorhandler(CentreError)
    @bp.errorhandler(CardLayoutError)
    def centre_error(exc: Exception) -> Response:
        field = getattr(exc, "field", None)
        return error_response(
            _centre_code(exc), str(exc), field if isinstance(field, str) else None
        )

    @bp.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        code = _HTTP_CODES.get(exc.code or 400, "invalid_input")
        headers = {}
        allowed = getattr(exc, "valid_methods", None)
        if code == "method_not_allowed" and allowed:
            headers["Allow"] = ", ".join(allowed)
        return error_response(code, _http_message(code), headers=headers)

    @bp.errorhandler(Exception)
    def unexpected(exc: Exception) -> Response:
        log.exception("the API failed unexpectedly")
        return error_response(
            "internal_error",
            _("Something went wrong in the centre; it has been logged. Try again later."),
        )
