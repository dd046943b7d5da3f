"""Reports with charts and CSV export: sales, consumption, non-buying customers, findings."""

from __future__ import annotations

from flask import Blueprint

from cardcenter.web.blueprints import Section

bp = Blueprint("reports", __name__, url_prefix="/reports")
SECTION = Section(bp)
