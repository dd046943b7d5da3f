"""Selling at the desk: a card sale, a token sale, reversal, receipts and reprints."""

from __future__ import annotations

from flask import Blueprint

from cardcenter.web.blueprints import Section

bp = Blueprint("selling", __name__, url_prefix="/sell")
SECTION = Section(bp)
