"""Customers: search, the customer page, opening an account and its card, replacement, closing."""

from __future__ import annotations

from flask import Blueprint

from cardcenter.web.blueprints import Section

bp = Blueprint("customers", __name__, url_prefix="/customers")
SECTION = Section(bp)
