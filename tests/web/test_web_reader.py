"""The desk's reader service and the virtual card tray, through pcscd and the vpcd reader."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from web_support import Login, csrf_token

from cardcenter.web import vcards
from cardcenter.web.state import state
from cardlayout.card.snapshot import read_snapshot
from cardlayout.errors import NoServiceError
from cardlayout.transport import pcsc
from cardlayout.vcard.cos import VirtualCard

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


class _Recorded:
    """Stands in for the vpcd bridge and pcscd's reader list and state, writing down each call."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, *, empty_seen: bool = True) -> None:
        self.calls: list[str] = []
        recorded = self

        class Bridge:
            def __init__(self, card: VirtualCard, port: int) -> None:
                self.serial = card.image.serial.hex().upper()
                self.port = port
                self.is_inserted = False
                self.card = card

            def insert(self) -> None:
                recorded.calls.append(f"insert {self.serial} at {self.port}")
                self.is_inserted = True

            def remove(self) -> None:
                recorded.calls.append(f"remove {self.serial}")
                self.is_inserted = False

        def wait_for_removal(reader: str, timeout: float) -> bool:
            recorded.calls.append(f"wait until {reader} is empty")
            return empty_seen

        monkeypatch.setattr(vcards, "VpcdBridge", Bridge)
        monkeypatch.setattr(pcsc, "list_readers", lambda: READERS)
        monkeypatch.setattr(pcsc, "wait_for_removal", wait_for_removal)


READERS = ["ACS ACR39U ICC Reader 00 00", "Virtual PCD 00 00", "Virtual PCD 00 01"]


def test_a_swap_waits_until_pcscd_sees_the_reader_empty(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The next card goes in only once pcscd reports the last one gone: otherwise vpcd
    takes it at the poll right after the pull, and a pcscd whose own poll missed the
    empty reader (a busy machine) goes on showing the old card."""
    recorded = _Recorded(monkeypatch)
    tray = vcards.VirtualCardTray(tmp_path, 35964)
    first, second = tray.new_card(), tray.new_card()
    tray.insert(first)
    assert recorded.calls == [f"insert {first} at 35964"]  # nothing was in it: no wait
    tray.insert(second)
    tray.remove()
    assert recorded.calls == [
        f"insert {first} at 35964",
        f"remove {first}",
        "wait until Virtual PCD 00 01 is empty",
        f"insert {second} at 35964",
        f"remove {second}",
        "wait until Virtual PCD 00 01 is empty",
    ]
    assert tray.inserted is None


def test_a_swap_that_pcscd_does_not_see_is_logged_and_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    recorded = _Recorded(monkeypatch, empty_seen=False)
    tray = vcards.VirtualCardTray(tmp_path, 35963)
    first, second = tray.new_card(), tray.new_card()
    tray.insert(first)
    tray.insert(second)
    assert recorded.calls[-1] == f"insert {second} at 35963" and tray.inserted == second
    assert "pcscd still shows a card at vpcd port 35963" in caplog.text


def test_a_swap_without_pcscd_does_not_wait(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorded = _Recorded(monkeypatch)

    def no_pcscd() -> list[str]:
        raise NoServiceError("the PC/SC service (pcscd) is not running")

    monkeypatch.setattr(pcsc, "list_readers", no_pcscd)
    tray = vcards.VirtualCardTray(tmp_path, 35963)
    first, second = tray.new_card(), tray.new_card()
    tray.insert(first)
    tray.insert(second)
    assert recorded.calls == [
        f"insert {first} at 35963",
        f"remove {first}",
        f"insert {second} at 35963",
    ]
