"""``cardmeter init --keypad`` and ``cardmeter keypad`` as a user runs them."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cardlayout.security.keystore import init_master_keys, open_keystore
from cardlayout.sts.amount import encode_amount
from cardlayout.sts.codec import encode_token
from cardlayout.sts.identity import BaseDate, EncryptionAlgorithm, KeyGeneration, MeterIdentity
from cardlayout.sts.tables import SAMPLE_TABLES
from cardlayout.sts.tid import tid_of
from cardlayout.sts.tokens import (
    ManagementSubclass,
    ManagementToken,
    Token,
    TransferSubclass,
    TransferToken,
    key_change_tokens,
)
from cardlayout.sts.vending import store_decoder_key

PASSPHRASE = "keypad cli tests"
METER = "000087654321"
IDENTITY = MeterIdentity(
    pan="600727000000000009",
    sgc="123456",
    ti=1,
    krn=1,
    kt=2,
    base_date=BaseDate.Y2014,
    ea=EncryptionAlgorithm.EA07,
    dkga=KeyGeneration.DKGA04,
)
TID = tid_of(datetime(2026, 3, 1, 12, 0, tzinfo=UTC), BaseDate.Y2014)


def cardmeter(*args: str) -> subprocess.CompletedProcess[str]:
    exe = str(Path(sys.executable).with_name("cardmeter"))
    env = {**os.environ, "CARDLAYOUT_KEYSTORE_PASSPHRASE": PASSPHRASE}
    return subprocess.run(
        [exe, *args], capture_output=True, text=True, timeout=120, env=env, check=False
    )


def identity_options(identity: MeterIdentity) -> list[str]:
    return [
        "--keypad",
        "--pan",
        identity.pan,
        "--sgc",
        identity.sgc,
        "--ti",
        f"{identity.ti:02d}",
        "--krn",
        str(identity.krn),
        "--kt",
        str(identity.kt),
        "--base-date",
        str(identity.base_date.value),
        "--ea",
        identity.ea.value,
        "--dkga",
        identity.dkga.value,
    ]


@pytest.fixture
def keystore(tmp_path: Path) -> str:
    path = str(tmp_path / "keys.json")
    with open_keystore(path, passphrase=PASSPHRASE, create=True, scrypt_n=2**10) as store:
        init_master_keys(store)
    return path


def key_of(keystore: str, identity: MeterIdentity) -> bytes:
    """The decoder key a centre on the same key store uses for ``identity``."""
    with open_keystore(keystore, passphrase=PASSPHRASE) as store:
        return store_decoder_key(store, identity)


@pytest.fixture
def state(tmp_path: Path, keystore: str) -> str:
    path = str(tmp_path / "keypad.json")
    made = cardmeter(
        "init", path, "--meter-no", METER, "--keystore", keystore, *identity_options(IDENTITY)
    )
    assert made.returncode == 0, made.stderr
    out = json.loads(made.stdout)
    assert out["keypad"] is True and out["pan"] == IDENTITY.pan
    assert len(out["decoder_key_check"]) == 6
    return path


def typed(token: Token, key: bytes, ea: EncryptionAlgorithm = EncryptionAlgorithm.EA07) -> str:
    """The token as printed on a receipt: groups of four separated by spaces and dashes."""
    digits = encode_token(token, key, ea)
    return " ".join(digits[i : i + 4] for i in range(0, 20, 4)).replace(" ", "-", 2)


def credit(tid: int, tenths: int) -> TransferToken:
    return TransferToken(TransferSubclass.ELECTRICITY, 7, tid, encode_amount(tenths)[0])


def test_a_token_vended_from_the_same_key_store_is_taken_once(state: str, keystore: str) -> None:
    key = key_of(keystore, IDENTITY)
    token = typed(credit(TID, 1234), key)
    taken = cardmeter("keypad", state, token)
    assert taken.returncode == 0, taken.stderr
    outcome = json.loads(taken.stdout)
    assert outcome["accepted"] is True and outcome["credited"] == 1234
    assert outcome["reason"] == "123.4 kWh credited" and outcome["tid"] == TID
    again = cardmeter("keypad", state, token)
    assert again.returncode == 1
    assert json.loads(again.stdout)["accepted"] is False
    assert "token refused" in again.stderr and "used already" in again.stderr
    status = json.loads(cardmeter("status", state).stdout)
    assert status["credit"] == 1234 and status["tids"] == [TID]
    assert status["identity"]["pan"] == IDENTITY.pan and status["meter_no"] == METER
    assert "decoder_key" not in status and key.hex().upper() not in json.dumps(status)


def test_refusals_name_their_reason(state: str, keystore: str) -> None:
    other = dataclasses.replace(IDENTITY, pan="600727000000000017")
    foreign = cardmeter("keypad", state, typed(credit(TID, 10), key_of(keystore, other)))
    assert foreign.returncode == 1 and "CRC does not match" in foreign.stderr
    assert json.loads(foreign.stdout)["reason"] in foreign.stderr
    short = cardmeter("keypad", state, "1234 5678")
    assert short.returncode == 1 and "20" in short.stderr and "Traceback" not in short.stderr
    assert json.loads(cardmeter("status", state).stdout)["credit"] == 0


def test_management_and_tamper(state: str, keystore: str) -> None:
    key = key_of(keystore, IDENTITY)
    assert cardmeter("tamper", state, "cover-open").returncode == 0
    assert json.loads(cardmeter("status", state).stdout)["tamper"] is True
    for i, (sub, value) in enumerate(
        [(ManagementSubclass.CLEAR_TAMPER, 0), (ManagementSubclass.SET_MAX_POWER, 4600)]
    ):
        result = cardmeter("keypad", state, typed(ManagementToken(sub, 1, TID + i, value), key))
        assert result.returncode == 0, result.stderr
    status = json.loads(cardmeter("status", state).stdout)
    assert status["tamper"] is False and status["max_power"] == 4600


def test_a_key_change_through_the_command_line(state: str, keystore: str) -> None:
    old_key = key_of(keystore, IDENTITY)
    new_identity = dataclasses.replace(IDENTITY, krn=2)
    new_key = key_of(keystore, new_identity)
    first, second = key_change_tokens(IDENTITY, new_identity, new_key, rollover=False)
    half = cardmeter("keypad", state, typed(first, old_key))
    assert half.returncode == 0, half.stderr
    assert json.loads(cardmeter("status", state).stdout)["pending_key"] == [1]
    assert cardmeter("keypad", state, typed(credit(TID, 10), old_key)).returncode == 0
    done = cardmeter("keypad", state, typed(second, old_key))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["changed"]["krn"] == {"from": 1, "to": 2}
    status = json.loads(cardmeter("status", state).stdout)
    assert status["identity"]["krn"] == 2 and status["pending_key"] == []
    assert cardmeter("keypad", state, typed(credit(TID + 1, 10), old_key)).returncode == 1
    assert cardmeter("keypad", state, typed(credit(TID + 1, 10), new_key)).returncode == 0


def test_ea11_and_production_tables(tmp_path: Path, keystore: str) -> None:
    ea11 = dataclasses.replace(IDENTITY, ea=EncryptionAlgorithm.EA11)
    path = str(tmp_path / "ea11.json")
    made = cardmeter(
        "init", path, "--meter-no", METER, "--keystore", keystore, *identity_options(ea11)
    )
    assert made.returncode == 0, made.stderr
    key = key_of(keystore, ea11)
    assert len(key) == 16
    taken = cardmeter("keypad", path, typed(credit(TID, 50), key, EncryptionAlgorithm.EA11))
    assert taken.returncode == 0, taken.stderr

    tables = tmp_path / "tables.json"
    swapped = dataclasses.replace(SAMPLE_TABLES, s1=SAMPLE_TABLES.s2, s2=SAMPLE_TABLES.s1)
    tables.write_text(json.dumps({"s1": swapped.s1, "s2": swapped.s2, "p": swapped.p}))
    prod = str(tmp_path / "prod.json")
    made = cardmeter(
        "init", prod, "--meter-no", METER, "--keystore", keystore, *identity_options(IDENTITY),
        "--tables", str(tables),
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    key = key_of(keystore, IDENTITY)
    on_sample = cardmeter("keypad", prod, typed(credit(TID, 50), key))
    assert on_sample.returncode == 1 and "CRC" in on_sample.stderr
    digits = encode_token(credit(TID, 50), key, EncryptionAlgorithm.EA07, swapped)
    assert cardmeter("keypad", prod, digits).returncode == 0
    assert json.loads(cardmeter("status", prod).stdout)["tables"] == "production"


def test_init_refuses_incomplete_or_mixed_options(tmp_path: Path, keystore: str) -> None:
    def init(*extra: str) -> subprocess.CompletedProcess[str]:
        path = str(tmp_path / "new.json")
        return cardmeter("init", path, "--meter-no", METER, "--keystore", keystore, *extra)

    missing = init("--keypad", "--pan", IDENTITY.pan)
    assert missing.returncode == 1 and "--sgc" in missing.stderr and "--krn" in missing.stderr
    card = init("--pan", IDENTITY.pan)
    assert card.returncode == 1 and "--keypad" in card.stderr
    options = identity_options(IDENTITY)
    bad_pan = init(*[("12345" if o == IDENTITY.pan else o) for o in options])
    assert bad_pan.returncode == 1 and "PAN" in bad_pan.stderr and "Traceback" not in bad_pan.stderr
    bad_krn = init(*[("x" if o == "1" else o) for o in options])
    assert bad_krn.returncode == 1 and "--" in bad_krn.stderr and "Traceback" not in bad_krn.stderr
    tables_des = init(*options[:-4], "--ea", "09", "--dkga", "04", "--tables", "t.json")
    assert tables_des.returncode == 1 and "EA07" in tables_des.stderr
    assert not (tmp_path / "new.json").exists()


def test_card_and_keypad_commands_keep_to_their_meters(
    tmp_path: Path, keystore: str, state: str
) -> None:
    card = str(tmp_path / "card.json")
    assert cardmeter("init", card, "--meter-no", METER, "--keystore", keystore).returncode == 0
    wrong = cardmeter("keypad", card, "0" * 20)
    assert wrong.returncode == 1 and "not a keypad meter" in wrong.stderr
    assert wrong.stdout == ""
    ran = cardmeter("run", state, "--days", "1")
    assert ran.returncode == 1 and "keypad meter" in ran.stderr
    assert cardmeter("status", card).returncode == 0  # card meters unchanged
    helptext = " ".join(cardmeter("keypad", "--help").stdout.split())
    assert "Exit status 0: token accepted; 1: token refused" in helptext
