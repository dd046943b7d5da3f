"""The vending API: JSON over HTTP for payment channels, with its OpenAPI document.

Banks, online channels and agents sell through the same services as the
service hall's desks: trial, sale, confirm, reverse and reprint, for keypad
meters (STS tokens) and card meters (the card written by the channel's own
terminal, relaying commands the centre makes). Clients authenticate every
request with their key ID and secret (HTTP Basic); every sale carries the
client's request id, and repeating it returns the first result, never a
second sale; every error has one shape. The OpenAPI 3 document is served at
``/api/openapi.json`` and kept next to the views (:mod:`.openapi`).

- :mod:`.clients`: authentication, roles, the operator and till a client sells as;
- :mod:`.fields`: the request bodies, every field checked;
- :mod:`.terminal`: the card terminal's side of a card sale (files in, a script out);
- :mod:`.views`: the operations;
- :mod:`.errors`: the error shape and its handlers.
"""

from __future__ import annotations

from flask import Blueprint

from cardcenter.web.blueprints import Section

bp = Blueprint("api", __name__, url_prefix="/api")
SECTION = Section(bp)

from cardcenter.web.api import clients, errors, views  # noqa: E402  (the routes register on bp)

errors.register(bp)
bp.record_once(clients.ApiState.install)

__all__ = ["SECTION", "bp", "views"]
