"""Tariffs per category: flat, stepped, TOU and combined; scheduled versions; who they reach."""

from __future__ import annotations

from flask import Blueprint

from cardcenter.web.blueprints import Section

bp = Blueprint("tariffs", __name__, url_prefix="/tariffs")
SECTION = Section(bp)
