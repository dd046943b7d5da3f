"""The vending API: JSON over HTTP for payment channels, with its OpenAPI document."""

from __future__ import annotations

from flask import Blueprint

from cardcenter.web.blueprints import Section

bp = Blueprint("api", __name__, url_prefix="/api")
SECTION = Section(bp)
