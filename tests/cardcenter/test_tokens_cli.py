"""``cardcenter token`` and ``cardcenter meter`` as an operator runs them: real processes.

The tokens printed by the command line are typed into the keypad meter model,
made with the decoder key from the centre's own key store. Errors are one
sentence on stderr naming the field, exit status 1, never a traceback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from centre_support import KEYSTORE_PASSPHRASE, Database
from sqlalchemy import select

from cardcenter.core.db import transaction
from cardcenter.operators.models import Role
from cardcenter.operators.services import ensure_operator
from cardcenter.sales import ledger
from cardcenter.sales.models import Sale
from cardlayout.security.keystore import open_keystore
from cardlayout.sts.identity import BaseDate, EncryptionAlgorithm, KeyGeneration, MeterIdentity
from cardlayout.sts.tables import SAMPLE_TABLES, load_tables
from cardlayout.sts.vending import store_decoder_key
from cardmeter.keypad import KeypadMeter

CLI = [str(Path(sys.executable).with_name("cardcenter"))]
PAN = "600727000000000009"
IDENTITY = ("--sgc", "123456", "--ti", "1", "--krn", "1", "--kt", "2")


class Centre:
    """Runs ``cardcenter`` with the test's database and key store."""

    def __init__(self, db: Database, tmp_path: Path) -> None:
        self.keystore = tmp_path / "centre-keys.json"
        self.env = {
            **os.environ,
            "CARDCENTER_DATABASE_URL": db.url,
            "CARDCENTER_KEYSTORE": str(self.keystore),
            "CARDCENTER_OPERATOR": "olga",
            "CARDLAYOUT_KEYSTORE_PASSPHRASE": KEYSTORE_PASSPHRASE,
        }
        self.env.pop("CARDCENTER_STS_TABLES", None)

    def run(
        self, *args: str, ok: bool = True, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [*CLI, *args],
            capture_output=True,
            text=True,
            env={**self.env, **(env or {})},
            timeout=120,
            check=False,
        )
        if ok:
            assert done.returncode == 0, done.stderr
        return done

    def json(self, *args: str, env: dict[str, str] | None = None) -> Any:
        return json.loads(self.run(*args, "--json", env=env).stdout)

    def fails(self, *args: str, env: dict[str, str] | None = None) -> str:
        done = self.run(*args, ok=False, env=env)
        assert done.returncode == 1, (done.stdout, done.stderr)
        assert "Traceback" not in done.stderr and done.stderr.startswith("cardcenter: ")
        return done.stderr

    def keypad_meter(self, base_date: int = 1993, tables_file: Path | None = None) -> KeypadMeter:
        """The customer's keypad meter, keyed from the centre's key store as at the factory."""
        identity = MeterIdentity(PAN, "123456", 1, 1, 2, BaseDate(base_date),
                                 EncryptionAlgorithm.EA07, KeyGeneration.DKGA04)  # fmt: skip
        with open_keystore(str(self.keystore), passphrase=KEYSTORE_PASSPHRASE) as store:
            key = store_decoder_key(store, identity)
        tables = None if tables_file is None else load_tables(tables_file)
        return KeypadMeter.new(identity, key, tables)


@pytest.fixture
def centre(db: Database, tmp_path: Path) -> Centre:
    c = Centre(db, tmp_path)
    c.json("init")
    c.run("tariff", "add", "home", "--flat", "0.5283", "--category", "residential")
    return c


def enter(meter: KeypadMeter, result: dict[str, Any]) -> list[str]:
    outcomes = [meter.enter(token["digits"]) for token in result["tokens"]]
    assert all(o.accepted for o in outcomes), [o.reason for o in outcomes]
    return [o.reason for o in outcomes]


def test_vending_to_a_keypad_meter(centre: Centre, db: Database) -> None:
    account = centre.json("customer", "add", "--name", "Thandi", "--keypad", "--pan", PAN,
                          *IDENTITY, "--base-date", "1993")  # fmt: skip
    sts = account["sts"]
    assert (sts["pan"], sts["meter_no"], sts["base_date"]) == (PAN, "000000000009", 1993)
    assert sts["tables"] == "sample tables" and sts["dkga"] == "04" and sts["ea"] == "07"
    meter = centre.keypad_meter()

    vend = centre.json("token", "vend", "--meter", PAN, "--amount", "100", "--request-id", "p-1")
    assert [t["kind"] for t in vend["tokens"]] == ["key_change", "key_change", "credit"]
    assert vend["energy"]["kwh"] == "189.2" and vend["tables"] == "sample tables"
    assert vend["sale"]["credit"] == "100.00" and vend["operator"] == "olga"
    enter(meter, vend)
    assert meter.credit == 1892 and meter.identity.base_date is BaseDate.Y2014

    again = centre.json("token", "vend", "--meter", PAN, "--amount", "100", "--request-id", "p-1")
    assert again["replayed"] and again["tokens"] == vend["tokens"]
    receipt = centre.run("token", "reprint", "--sale", str(vend["sale"]["id"])).stdout
    lines = [t["display"] for t in vend["tokens"]]
    assert "enter the tokens in this order" in receipt
    assert [receipt.index(line) for line in lines] == sorted(receipt.index(line) for line in lines)
    assert centre.json("token", "reprint", "--request-id", "p-1")["tokens"] == vend["tokens"]
    assert "request p-1 was a sale of 100.00" in centre.fails(
        "token", "vend", "--meter", PAN, "--amount", "50", "--request-id", "p-1"
    )

    changed = centre.json("meter", "sts-set", "--meter", PAN, "--krn", "2")
    assert changed["change_to_send"] == {"KRN": 2}
    text = centre.run("token", "vend", "--meter", PAN, "--amount", "10").stdout
    # 10.00 buys 18.9 kWh; what the first token could not carry (under 0.1 kWh) adds 0.1
    assert "key change, section 1 of 2" in text and "credit 19.0 kWh" in text
    listing = centre.json("token", "list", "--meter", PAN)
    assert listing["meter"]["krn"] == 2 and listing["meter"]["change_to_send"] is None
    newest = sorted(listing["tokens"][:3], key=lambda t: t["position"])
    enter(meter, {"tokens": newest})
    assert meter.identity.krn == 2 and meter.credit == 1892 + 190

    power = centre.json("token", "engineering", "--meter", PAN, "--kind", "set-power-limit",
                        "--value", "4000")  # fmt: skip
    enter(meter, power)
    assert meter.max_power == 4000

    with transaction(db.sessions) as session:
        ensure_operator(session, "carl", site="HQ", role=Role.CASHIER)
        customer_id = session.scalars(select(Sale.customer_id)).first()
    as_cashier = {"CARDCENTER_OPERATOR": "carl"}
    assert "carl is a cashier; this needs a supervisor" in centre.fails(
        "token", "engineering", "--meter", PAN, "--kind", "clear-credit", env=as_cashier
    )
    assert "this needs a supervisor" in centre.fails(
        "meter", "sts-set", "--meter", PAN, "--ti", "3", env=as_cashier
    )
    cashier_sale = centre.json("token", "vend", "--meter", PAN, "--amount", "5", env=as_cashier)
    enter(meter, cashier_sale)

    with db.sessions() as session:
        paid = sum(s.credit for s in session.scalars(select(Sale)))
        assert customer_id is not None
        on_meter = ledger.balance(session, ledger.meter(customer_id))
        waiting = ledger.balance(session, ledger.unvended(customer_id))  # under a token step
        assert on_meter + waiting == paid == 10000 + 1000 + 500 and 0 <= waiting < 53


def test_bad_input_is_one_sentence_naming_the_field(centre: Centre) -> None:
    centre.json("customer", "add", "--name", "Thandi", "--keypad", "--pan", PAN, *IDENTITY)
    assert "PAN: '12345' is not a meter PAN" in centre.fails(
        "token", "vend", "--meter", "12345", "--amount", "10"
    )
    assert "amount:" in centre.fails("token", "vend", "--meter", PAN, "--amount", "1.234")
    assert "amount:" in centre.fails("token", "vend", "--meter", PAN, "--amount", "ten")
    assert "amount: a credit of 0.05 buys less than 0.1 kWh" in centre.fails(
        "token", "vend", "--meter", PAN, "--amount", "0.05"
    )
    assert "no keypad meter has PAN 600727000000000999" in centre.fails(
        "token", "vend", "--meter", "600727000000000999", "--amount", "10"
    )
    assert "value: a set-power-limit token needs a value" in centre.fails(
        "token", "engineering", "--meter", PAN, "--kind", "set-power-limit"
    )
    assert "value: 'lots' is not a number" in centre.fails(
        "token", "engineering", "--meter", PAN, "--kind", "set-power-limit", "--value", "lots"
    )
    assert "--sgc:" in centre.fails("customer", "add", "--name", "X", "--keypad", "--pan", PAN)
    assert "--pan: is for keypad meters" in centre.fails(
        "customer", "add", "--name", "X", "--meter-no", "000012345678", "--pan", PAN
    )
    assert "registered already" in centre.fails(
        "customer", "add", "--name", "Y", "--keypad", "--pan", PAN, *IDENTITY
    )
    assert "SGC:" in centre.fails("customer", "add", "--name", "Z", "--keypad", "--pan",
                                  "600727000000000108", "--sgc", "12", "--ti", "1", "--krn", "1",
                                  "--kt", "2")  # fmt: skip
    assert "KRN:" in centre.fails("meter", "sts-set", "--meter", PAN, "--krn", "12")
    assert centre.json("token", "list", "--meter", PAN)["tokens"] == []


def test_production_tables_from_the_configuration(centre: Centre, tmp_path: Path) -> None:
    tables = tmp_path / "utility-tables.json"
    tables.write_text(json.dumps({"s1": list(SAMPLE_TABLES.s2), "s2": list(SAMPLE_TABLES.s1),
                                  "p": list(SAMPLE_TABLES.p)}))  # fmt: skip
    with_tables = {"CARDCENTER_STS_TABLES": str(tables)}
    account = centre.json("customer", "add", "--name", "Thandi", "--keypad", "--pan", PAN,
                          *IDENTITY, env=with_tables)  # fmt: skip
    assert account["sts"]["tables"] == str(tables.resolve())
    vend = centre.json("token", "vend", "--meter", PAN, "--amount", "20")
    assert vend["tables"] == str(tables.resolve()) and len(vend["tokens"]) == 1
    sample = centre.keypad_meter(base_date=2014)
    refused = sample.enter(vend["tokens"][0]["digits"])
    assert not refused.accepted and "CRC" in refused.reason
    enter(centre.keypad_meter(base_date=2014, tables_file=tables), vend)

    broken = tmp_path / "broken.json"
    broken.write_text('{"s1": [1, 2]}')
    other = ("--name", "X", "--keypad", "--pan", "600727000000000108", *IDENTITY)
    assert "STA tables:" in centre.fails(
        "customer", "add", *other, env={"CARDCENTER_STS_TABLES": str(broken)}
    )
