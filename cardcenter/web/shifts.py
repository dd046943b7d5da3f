"""A cashier's shift: opened with a float, closed with a cash-up checked against the sales."""

from __future__ import annotations

from flask import Blueprint

from cardcenter.web.blueprints import Section

bp = Blueprint("shifts", __name__, url_prefix="/shifts")
SECTION = Section(bp)
