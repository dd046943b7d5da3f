"""The ``cardcenter`` command line as an operator runs it: real processes, both databases.

Every command answers ``--json`` for scripts; errors are one sentence on
stderr and exit status 1, never a traceback. The card commands go through
pcscd and the vpcd reader with a virtual card in it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from centre_support import KEYSTORE_PASSPHRASE, Database
from centre_world import World, connect

from cardlayout.card.snapshot import read_snapshot
from cardlayout.files import HISTORY, WRITE_BACK
from cardlayout.security.diversify import CardKeys
from cardlayout.vcard.cos import VirtualCard, new_image
from cardlayout.vcard.vpcd import VpcdBridge

CLI = [str(Path(sys.executable).with_name("cardcenter"))]


class Centre:
    """Runs ``cardcenter`` with the test's database and key store."""

    def __init__(self, db: Database, tmp_path: Path) -> None:
        self.env = {
            **os.environ,
            "CARDCENTER_DATABASE_URL": db.url,
            "CARDCENTER_KEYSTORE": str(tmp_path / "centre-keys.json"),
            "CARDCENTER_OPERATOR": "olga",
            "CARDLAYOUT_KEYSTORE_PASSPHRASE": KEYSTORE_PASSPHRASE,
        }

    def run(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [*CLI, *args], capture_output=True, text=True, env=self.env, timeout=120, check=False
        )
        if ok:
            assert done.returncode == 0, done.stderr
        return done

    def json(self, *args: str) -> object:
        return json.loads(self.run(*args, "--json").stdout)

    def fails(self, *args: str) -> str:
        done = self.run(*args, ok=False)
        assert done.returncode == 1, (done.stdout, done.stderr)
        assert "Traceback" not in done.stderr and done.stderr.startswith("cardcenter: ")
        return done.stderr


@pytest.fixture
def centre(db: Database, tmp_path: Path) -> Centre:
    c = Centre(db, tmp_path)
    first = c.json("init")
    assert first["keystore_created"] and len(first["master_keys"]) >= 4  # type: ignore[index]
    again = c.json("init")
    assert not again["keystore_created"]  # type: ignore[index]
    return c


def test_tariffs_and_accounts(centre: Centre) -> None:
    flat = centre.json("tariff", "add", "home", "--flat", "0.5283", "--category", "residential",
                       "--tax-rate", "13", "--fixed-monthly", "5")  # fmt: skip
    assert flat["kind"] == "flat" and flat["rate_prices"] == ["0.5283"]  # type: ignore[index]
    assert flat["tax_rate"] == 1300 and flat["fixed_monthly"] == "5.00"  # type: ignore[index]
    tou = centre.json("tariff", "add", "shop", "--tou", "0.3,0.6,0.9",
                      "--periods", "00:00=1,08:00=2,18:00=3,22:00=1")  # fmt: skip
    assert tou["kind"] == "tou" and len(tou["periods"]) == 4  # type: ignore[index,arg-type]
    ladder = centre.json("tariff", "add", "ladder", "--tiers", "2160:0.5283,4200:0.5783,0.8283",
                         "--settlement", "01-01-00")  # fmt: skip
    assert ladder["tier_thresholds"] == ["2160.00", "4200.00"]  # type: ignore[index]
    both = centre.json("tariff", "add", "both", "--tou", "0.3,0.6", "--periods", "00:00=1,08:00=2",
                       "--tiers", "100:0,0.05")  # fmt: skip
    assert both["kind"] == "tou_stepped"  # type: ignore[index]
    assert "flat" in centre.run("tariff", "list").stdout

    assert "--flat" in centre.fails("tariff", "add", "bad", "--flat", "0.12345")
    assert "--periods" in centre.fails("tariff", "add", "bad", "--tou", "0.3", "--periods", "8h=1")
    assert "give --flat" in centre.fails("tariff", "add", "bad")

    account = centre.json("customer", "add", "--name", "Li Wei", "--meter-no", "000012345678")
    assert account["customer_no"] == "100000000001"  # type: ignore[index]
    shown = centre.json("customer", "show", "000012345678")  # by meter number
    assert shown["name"] == "Li Wei" and shown["category"] == "residential"  # type: ignore[index]
    changed = centre.json("customer", "set", "100000000001", "--alarm1", "30", "--hoarding", "500",
                          "--friendly", "22-6", "--friendly-days", "sat,sun")  # fmt: skip
    params = changed["parameters"]  # type: ignore[index]
    assert params["version"] == 2 and params["alarm1"] == "30.00"
    assert params["hoarding_limit"] == "500.00" and params["friendly_hours"] == "22-6"

    assert "12 digits" in centre.fails("customer", "add", "--name", "X", "--meter-no", "123")
    assert "registered already" in centre.fails(
        "customer", "add", "--name", "Y", "--meter-no", "000012345678"
    )
    assert "no customer" in centre.fails("customer", "show", "999")
    assert "alarm2" in centre.fails("customer", "set", "1", "--alarm1", "5", "--alarm2", "9")


def test_a_missing_database_is_a_sentence(tmp_path: Path) -> None:
    env = {**os.environ, "CARDCENTER_DATABASE_URL": f"sqlite:///{tmp_path / 'none.db'}"}
    done = subprocess.run(
        [*CLI, "report", "sales"], capture_output=True, text=True, env=env, check=False
    )
    assert done.returncode == 1 and "cardcenter init" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_command_starts_without_the_web_applications_libraries(tmp_path: Path) -> None:
    """Only ``serve`` and a log-in need werkzeug, Flask and waitress; every other command
    starts without importing them (werkzeug alone cost each command about 50 ms).

    The command's own imports, listed by the interpreter (``PYTHONPROFILEIMPORTTIME``).
    """
    env = {
        **os.environ,
        "CARDCENTER_DATABASE_URL": f"sqlite:///{tmp_path / 'none.db'}",
        "PYTHONPROFILEIMPORTTIME": "1",
    }
    done = subprocess.run(
        [*CLI, "tariff", "list"], capture_output=True, text=True, env=env, check=False
    )
    imported = {
        line.rsplit("|", 1)[1].strip().split(".")[0]
        for line in done.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }
    assert {"sqlalchemy", "cardcenter"} <= imported  # the listing is there
    assert not imported & {"werkzeug", "flask", "waitress"}


@pytest.fixture
def in_reader(vpcd_reader: str) -> Iterator[tuple[str, list[VpcdBridge]]]:
    bridges: list[VpcdBridge] = []
    try:
        yield vpcd_reader, bridges
    finally:
        for bridge in bridges:
            bridge.remove()


def insert(bridges: list[VpcdBridge], card: VirtualCard) -> None:
    for bridge in bridges:
        bridge.remove()
    bridges.clear()
    bridge = VpcdBridge(card, port=35963)
    bridge.insert()
    bridges.append(bridge)


@pytest.mark.pcsc
def test_card_commands_through_pcsc(
    centre: Centre, in_reader: tuple[str, list[VpcdBridge]]
) -> None:
    reader, bridges = in_reader
    centre.run("tariff", "add", "home", "--flat", "0.5283", "--category", "residential")
    centre.json("customer", "add", "--name", "Li Wei", "--meter-no", "000012345678")
    card = VirtualCard(new_image(bytes.fromhex("5A000000000C0001")))
    insert(bridges, card)
    on = ("--reader", reader)

    issued = centre.json("card", "issue", "--customer", "100000000001", "--amount", "100", *on)
    assert issued["status"] == "written" and issued["credit"] == "100.00"  # type: ignore[index]
    assert "already a customer's card" in centre.fails("card", "issue", "--customer", "1", *on)

    quote = centre.json("card", "quote", "--amount", "50", *on)
    assert quote["status"] == "quote" and quote["purchase_count"] == 1  # type: ignore[index]
    sale = centre.json("card", "purchase", "--amount", "50", "--request-id", "pos-1", *on)
    again = centre.json("card", "purchase", "--amount", "50", "--request-id", "pos-1", *on)
    assert again["sale"] == sale["sale"] and again["replayed"]  # type: ignore[index]
    assert sale["added_to_pending"] and sale["card_amount"] == "150.00"  # type: ignore[index]

    read = centre.json("card", "read", *on)
    assert read["purse"] == {"purchase_count": 1, "amount": "150.00"}  # type: ignore[index]
    assert read["in_transit"] == "150.00"  # type: ignore[index]

    reversed_ = centre.json("sale", "reverse", str(sale["sale"]), "--reason", "typo", *on)  # type: ignore[index]
    assert reversed_["status"] == "reversed"  # type: ignore[index]
    assert "reversed" in centre.fails("sale", "reverse", str(sale["sale"]), *on)  # type: ignore[index]
    shown = centre.json("sale", "show", str(sale["sale"]))  # type: ignore[index]
    assert shown["status"] == "reversed"  # type: ignore[index]
    usage = centre.run("card", "purchase", "--amount", "1.234", *on, ok=False)
    assert usage.returncode == 2 and "more than 2 decimal places" in usage.stderr

    csv = centre.run("report", "sales", "--csv").stdout.splitlines()
    assert csv[0].startswith("day,site,operator") and len(csv) == 2
    far_east = centre.run("report", "sales", "--csv", "--timezone", "Pacific/Kiritimati")
    assert len(far_east.stdout.splitlines()) == 2  # the same sales, on the hall's day
    assert "not a time zone this machine knows" in centre.fails(
        "report", "sales", "--timezone", "Mars/Olympus"
    )
    assert centre.json("findings", "list") == []
    recover = centre.json("sale", "recover", *on)
    assert recover["settled"] == "none"  # type: ignore[index]


def test_import_with_progress(db: Database, keys: CardKeys, tmp_path: Path) -> None:
    world = World(db, keys)
    card = world.blank()
    world.issue(card, 10000)
    world.meter.insert(card)
    world.use(10)
    world.meter.insert(card)  # the write-back an offline card reader collects
    snapshot = read_snapshot(connect(card))
    record = {
        "meter_no": world.meter.state.meter_no,
        "customer_no": world.customer_no,
        "card_serial": snapshot.serial.hex().upper(),
        "write_back": snapshot.state(WRITE_BACK).raw.hex(),
        "history": snapshot.state(HISTORY).raw.hex(),
    }
    path = tmp_path / "collected.jsonl"
    path.write_text(json.dumps(record) + "\n" + "not json\n", encoding="utf-8")
    env = {
        **os.environ,
        "CARDCENTER_DATABASE_URL": db.url,
        "CARDCENTER_KEYSTORE": str(tmp_path / "keys.json"),
        "CARDLAYOUT_KEYSTORE_PASSPHRASE": KEYSTORE_PASSPHRASE,
    }
    done = subprocess.run(
        [*CLI, "import", str(path)], capture_output=True, text=True, env=env, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "importing collected.jsonl" in done.stderr and "100%" in done.stderr
    assert "line 2" in done.stdout
    again = subprocess.run(
        [*CLI, "import", str(path), "--json"], capture_output=True, text=True, env=env, check=False
    )
    summary = json.loads(again.stdout)
    assert summary["duplicates"] == 1 and summary["reconciled"] == 0
    world.check_conservation()


@pytest.mark.pcsc
def test_the_demo_tells_the_whole_story(vpcd_reader: str, tmp_path: Path) -> None:
    env = {**os.environ, "CARDCENTER_DATA_DIR": str(tmp_path)}
    done = subprocess.run(
        [*CLI, "demo", "--weeks", "1", "--workdir", str(tmp_path / "demo")],
        capture_output=True, text=True, env=env, timeout=240, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr
    out = done.stdout
    for title in ("issue the opening card", "replacement card", "refused", "conservation holds"):
        assert title in out
