"""``cardmeter`` as a user runs it, and a meter taking a card through PC/SC."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cardlayout.card.operations import PurchaseWrite, personalise, write_purchase
from cardlayout.card.snapshot import read_snapshot
from cardlayout.files import PARAMETERS, TARIFF_SET_1, CardType, Purse, UpdateFlags, UserType
from cardlayout.security.diversify import CardKeys
from cardlayout.security.keystore import init_master_keys, open_keystore
from cardlayout.transport.channel import CardChannel
from cardlayout.transport.pcsc import PcscTransport
from cardlayout.vcard.cos import VirtualCard, new_image
from cardlayout.vcard.vpcd import VpcdBridge

PASSPHRASE = "meter cli tests"
METER = "000012345678"


def cardmeter(*args: str) -> subprocess.CompletedProcess[str]:
    exe = str(Path(sys.executable).with_name("cardmeter"))
    env = {**os.environ, "CARDLAYOUT_KEYSTORE_PASSPHRASE": PASSPHRASE}
    return subprocess.run(
        [exe, *args], capture_output=True, text=True, timeout=120, env=env, check=False
    )


@pytest.fixture
def keystore(tmp_path: Path) -> str:
    path = str(tmp_path / "keys.json")
    with open_keystore(path, passphrase=PASSPHRASE, create=True, scrypt_n=2**10) as store:
        init_master_keys(store)
    return path


@pytest.fixture
def state(tmp_path: Path, keystore: str) -> str:
    path = str(tmp_path / "meter.json")
    result = cardmeter("init", path, "--meter-no", METER, "--keystore", keystore)
    assert result.returncode == 0, result.stderr
    assert set(json.loads(result.stdout)["keys"]) == {"card", "tool", "purse", "write-back"}
    return path


def test_init_refuses_bad_input_in_a_sentence(tmp_path: Path, keystore: str, state: str) -> None:
    again = cardmeter("init", state, "--meter-no", METER, "--keystore", keystore)
    assert again.returncode == 1 and "exists already" in again.stderr
    bad = cardmeter("init", str(tmp_path / "m2.json"), "--meter-no", "12AB", "--keystore", keystore)
    assert bad.returncode == 1 and "meter_no" in bad.stderr and "Traceback" not in bad.stderr
    zone = cardmeter(
        "init",
        str(tmp_path / "m3.json"),
        "--meter-no",
        METER,
        "--keystore",
        keystore,
        "--timezone",
        "Mars/Olympus",
    )
    assert zone.returncode == 1 and "time zone" in zone.stderr


def test_status_and_tamper(state: str) -> None:
    status = json.loads(cardmeter("status", state).stdout)
    assert status["meter_no"] == METER and status["remaining"] == 0
    assert len(status["key_check_values"]["card"]) == 6
    assert "keys" not in status  # check values only
    tamper = cardmeter("tamper", state, "cover-open")
    assert tamper.returncode == 0
    status = json.loads(cardmeter("status", state).stdout)
    assert status["tamper"] is True and status["events"][-1]["code"] == 1


def test_run_needs_an_opened_meter_and_a_known_profile(state: str) -> None:
    result = cardmeter("run", state, "--days", "1", "--profile", "residential", "--seed", "3")
    assert result.returncode == 1 and "opening card" in result.stderr
    assert "Traceback" not in result.stderr
    unknown = cardmeter("run", state, "--days", "1", "--profile", "nightclub")
    assert unknown.returncode == 1 and "unknown profile" in unknown.stderr


@pytest.mark.pcsc
def test_meter_takes_a_real_card_through_pcscd(state: str, keystore: str, vpcd_reader: str) -> None:
    """The centre issues an opening card through PC/SC; the meter process takes it."""
    with open_keystore(keystore, passphrase=PASSPHRASE) as store:
        keys = CardKeys(store)
        card = VirtualCard(new_image(bytes.fromhex("5A00000000000C01")))
        with VpcdBridge(card, port=35963):
            channel = CardChannel(PcscTransport(vpcd_reader))
            channel.connect()
            personalise(channel, keys)
            params = dataclasses.replace(
                PARAMETERS.examples[0].value,
                card_type=CardType.OPENING,
                meter_no=METER,
                user_type=UserType.SINGLE_RATE,
                update_flags=UpdateFlags.PARAMETERS | UpdateFlags.CURRENT_TOU,
            )
            write_purchase(
                channel,
                keys,
                read_snapshot(channel),
                PurchaseWrite(
                    parameters=params,
                    purse=Purse(amount=20000, purchase_count=1),
                    tariff_set_1=TARIFF_SET_1.examples[1].value,
                    bind_meter=True,
                ),
            )
            channel.close()
            taken = cardmeter("insert", state, "--reader", vpcd_reader, "--trace")
            assert taken.returncode == 0, taken.stderr
            outcome = json.loads(taken.stdout)
            assert outcome == {
                "accepted": True,
                "result": "loaded",
                "reason": "credit loaded",
                "loaded": 20000,
                "remaining": 20000,
                "written_back": True,
            }
            assert any(line.startswith("> ") for line in taken.stderr.splitlines())
            again = json.loads(cardmeter("insert", state, "--reader", vpcd_reader).stdout)
            assert again["result"] == "nothing_to_load" and again["remaining"] == 20000
    status = json.loads(cardmeter("status", state).stdout)
    assert status["customer_no"] == params.customer_no and status["last_purchase_count"] == 1
    # and now the meter runs on its credit
    ran = cardmeter("run", state, "--days", "2", "--profile", "residential", "--seed", "7")
    assert ran.returncode == 0, ran.stderr
    summary = json.loads(ran.stdout)
    assert summary["intervals"] == 192 and summary["energy"] > 0
    assert summary["remaining"] == 20000 - summary["charged"]
    old = Path(state).with_name("old.csv")
    old.write_text("timestamp,quantity\n2026-01-01T00:00:00+00:00,0.25\n")
    replay = cardmeter("run", state, "--days", "1", "--csv", str(old))
    assert replay.returncode == 1 and "billed twice" in replay.stderr


def test_missing_files_and_absurd_readings_are_sentences(state: str, tmp_path: Path) -> None:
    missing = cardmeter("run", state, "--days", "1", "--csv", str(tmp_path / "nope.csv"))
    assert missing.returncode == 1 and "nope.csv" in missing.stderr
    assert "Traceback" not in missing.stderr
    nowhere = cardmeter("status", str(tmp_path / "no" / "such.json"))
    assert nowhere.returncode == 1 and "Traceback" not in nowhere.stderr
    huge = tmp_path / "huge.csv"
    huge.write_text("timestamp,quantity\n2026-02-01T00:00:00+00:00,1e50000000\n")
    result = cardmeter("run", state, "--days", "1", "--csv", str(huge))
    assert result.returncode == 1 and "more than" in result.stderr
