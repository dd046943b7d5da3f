"""The dashboard ("/") and the reader panel's endpoints.

The panel polls ``GET /reader/status`` every second (a :func:`passive`
view: polling is not activity, so an unattended desk still logs out) and,
when the desk has the virtual reader, offers the virtual card tray: a new
blank card, insert one, remove it (``POST /reader/virtual/...``, by
``fetch`` with the CSRF header, each audited).
"""

from __future__ import annotations

from flask import Blueprint, jsonify, render_template, request
from flask.typing import ResponseReturnValue

from cardcenter.web import db
from cardcenter.web.audit import audit
from cardcenter.web.auth import login_required, passive
from cardcenter.web.blueprints import NavItem, Section
from cardcenter.web.i18n import _l
from cardcenter.web.state import state

bp = Blueprint("dashboard", __name__)
SECTION = Section(bp, (NavItem("dashboard.index", _l("Dashboard"), order=0),))


@bp.route("/")
@login_required
def index() -> ResponseReturnValue:
    return render_template("dashboard.html")


@bp.route("/reader/status")
@login_required
@passive
def reader_status() -> ResponseReturnValue:
    return jsonify(state().reader.status())


@bp.route("/reader/virtual/new", methods=["POST"])
@login_required
def virtual_new() -> ResponseReturnValue:
    serial = state().tray.new_card()
    audit("vcard.new", f"card:{serial}")
    db.session().commit()
    return jsonify(serial=serial)


@bp.route("/reader/virtual/insert", methods=["POST"])
@login_required
def virtual_insert() -> ResponseReturnValue:
    serial = (request.get_json(silent=True) or {}).get("serial") or request.form.get("serial", "")
    state().tray.insert(str(serial))
    audit("vcard.insert", f"card:{str(serial).upper()}")
    db.session().commit()
    return jsonify(state().reader.status())


@bp.route("/reader/virtual/remove", methods=["POST"])
@login_required
def virtual_remove() -> ResponseReturnValue:
    serial = state().tray.inserted
    state().tray.remove()
    if serial is not None:
        audit("vcard.remove", f"card:{serial}")
        db.session().commit()
    return jsonify(state().reader.status())
