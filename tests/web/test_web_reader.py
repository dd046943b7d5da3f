"""The desk's reader service and the virtual card tray, through pcscd and the vpcd reader."""

from __future__ import annotations

import time
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from web_support import Login, csrf_token

from cardcenter.web.state import state
from cardlayout.card.snapshot import read_snapshot

POLL = 10.0


def status_until(client: FlaskClient, wanted: Any) -> dict[str, Any]:
    """Poll /reader/status (as the dashboard does) until ``wanted(status)``."""
    deadline = time.monotonic() + POLL
    while True:
        answer = client.get("/reader/status", headers={"Accept": "application/json"})
        status: dict[str, Any] = answer.get_json()
        if wanted(status) or time.monotonic() > deadline:
            return status
        time.sleep(0.1)


def test_the_virtual_tray_puts_cards_in_the_vpcd_reader(
    web_app: Flask, client: FlaskClient, login: Login, vpcd_reader: str
) -> None:
    login(client, "mo")
    headers = {"X-CSRF-Token": csrf_token(client), "Accept": "application/json"}
    status = status_until(client, lambda s: not s["present"])
    assert status["reader"] == vpcd_reader and status["virtual"] and status["error"] is None
    assert status["tray"] == []

    serial = client.post("/reader/virtual/new", headers=headers).get_json()["serial"]
    assert len(serial) == 16 and serial.startswith("5A")
    answer = client.post("/reader/virtual/insert", json={"serial": serial}, headers=headers)
    assert answer.status_code == 200, answer.get_json()
    status = status_until(client, lambda s: s["present"])
    assert status["present"] and status["serial"] == serial, status
    assert status["tray"] == [{"serial": serial, "inserted": True}]

    with state(web_app).reader.channel() as channel:
        snapshot = read_snapshot(channel)
    assert snapshot.serial.hex().upper() == serial and not snapshot.personalised

    assert client.post("/reader/virtual/remove", headers=headers).status_code == 200
    status = status_until(client, lambda s: not s["present"])
    assert not status["present"] and status["tray"] == [{"serial": serial, "inserted": False}]
    missing = client.post(
        "/reader/virtual/insert", json={"serial": "5A" + "0" * 14}, headers=headers
    )
    assert missing.status_code == 404
    assert missing.json == {"error": f"there is no virtual card 5A{'0' * 14} in the tray"}
    audited = [entry["action"] for entry in _audit(web_app) if entry["action"].startswith("vcard.")]
    assert audited == ["vcard.new", "vcard.insert", "vcard.remove"]


def _audit(app: Flask) -> list[dict[str, Any]]:
    from sqlalchemy import select

    from cardcenter.operators.models import AuditEntry

    with state(app).sessions() as session:
        return [
            {"action": e.action, "subject": e.subject}
            for e in session.scalars(select(AuditEntry).order_by(AuditEntry.id))
        ]
