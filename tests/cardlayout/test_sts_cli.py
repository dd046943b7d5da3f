"""``python -m cardlayout sts key|encode|decode`` as scripts run it (real processes)."""

from __future__ import annotations

import hashlib
import hmac
import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from Crypto.Cipher import DES

from cardlayout.sts.tables import SAMPLE_TABLES

DK = "0ABC12DEF3456789"
TOKEN = "51043465443420856213"
ENCODE = f"encode --decoder-key {DK} --ea 07"
EXAMPLE = f"{ENCODE} --class 0 --subclass 0 --rnd 11"
IDENTITY = "--pan 600727000000000009 --sgc 123456 --ti 01 --krn 1"


def sts(command: str) -> subprocess.CompletedProcess[str]:
    """Run ``cardlayout sts`` with ``command`` split as a shell would."""
    return subprocess.run(
        [sys.executable, "-m", "cardlayout", "sts", *shlex.split(command)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def ok(command: str) -> str:
    result = sts(command)
    assert result.returncode == 0, result.stderr
    return result.stdout


def fails(command: str) -> str:
    """The one-sentence error of a refused command (exit 1, no traceback)."""
    result = sts(command)
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cardlayout: ")
    return lines[0]


# -- key ---------------------------------------------------------------------------


def test_key_dkga02() -> None:
    vk = bytes.fromhex("0123456789ABCDEF")
    x = bytes.fromhex(f"{0x0072700000000000 ^ 0x2123456011FFFFFF:016X}")
    enciphered = DES.new(vk, DES.MODE_ECB).encrypt(x)
    dk = bytes(a ^ b ^ c for a, b, c in zip(enciphered, x, vk, strict=True))
    out = ok(f"key --dkga 02 --vending-key {vk.hex()} {IDENTITY} --kt 2")
    assert out == dk.hex().upper() + "\n"


def test_key_dkga04_ea11_base_2014() -> None:
    vk = bytes(range(16))
    message = (
        b"\x04\x0204\x0214\x0211\x0201\x00\x04\x06123456\x012\x011"
        + b"\x12600727000000000009"
        + (128).to_bytes(4, "big")
    )
    expected = hmac.new(vk, message, hashlib.sha256).digest()[:16].hex().upper() + "\n"
    common = f"key --dkga 04 --vending-key {vk.hex()} {IDENTITY} --kt 2 --ea 11"
    assert ok(f"{common} --base-date 2014") == expected
    assert ok(common) == expected  # 2014 is the default base date
    assert ok(f"{common} --base-date 1993") != expected


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ("--vending-key 0123 --kt 2", "DKGA02 vending key is 8 bytes, not 2"),
        ("--vending-key zz --kt 2", "--vending-key is not hex digits"),
        ("--vending-key 0123456789ABCDEF --kt 7", "key type is a number in 0..3"),
        ("--vending-key 0123456789ABCDEF --kt two", "--kt 'two' is not a whole number"),
        ("--vending-key 0123456789ABCDEF --kt 2 --ea 11", "use DKGA04"),
    ],
)
def test_key_errors(args: str, message: str) -> None:
    assert message in fails(f"key --dkga 02 {IDENTITY} {args}")


def test_key_pan_error() -> None:
    line = fails("key --dkga 02 --vending-key 00 --pan 123 --sgc 123456 --ti 1 --krn 1 --kt 0")
    assert "the PAN is 18 digits, got '123'" in line


# -- encode and decode -------------------------------------------------------------


def test_encode_the_worked_example() -> None:
    assert ok(f"{EXAMPLE} --tid 1698595 --amount 25.6") == TOKEN + "\n"
    by_time = ok(f"{EXAMPLE} --issued 1996-03-25T15:55:30+02:00 --base-date 1993 --value 256")
    assert by_time == TOKEN + "\n"


def test_encode_json() -> None:
    document = json.loads(ok(f"{EXAMPLE} --tid 1698595 --amount 25.6 --json"))
    assert document["token"] == TOKEN
    assert document["data_block"] == "0B19EB230100C207"
    assert document["amount_field"] == "0100"
    assert (document["amount"], document["unit"]) == ("25.6", "kWh")


def test_encode_rounds_a_large_amount_up() -> None:
    document = json.loads(ok(f"{EXAMPLE} --tid 1 --amount 1638.5 --json"))
    assert document["amount_field"] == "4001"
    assert document["amount"] == "1639.4"  # 16385 tenths asked, 16394 credited


def test_decode_json_with_issue_time() -> None:
    out = ok(f"decode '5104 3465 4434 2085 6213' --decoder-key {DK} --ea 07 --base-date 1993")
    assert json.loads(out) == {
        "class": 0,
        "class_name": "transfer",
        "subclass": 0,
        "subclass_name": "electricity",
        "data_block": "0B19EB230100C207",
        "rnd": 11,
        "tid": 0x19EB23,
        "issued": "1996-03-25T13:55:00+00:00",
        "amount_field": "0100",
        "amount": "25.6",
        "unit": "kWh",
    }


@pytest.mark.parametrize(("ea", "key"), [("07", DK), ("09", "133457799BBCDFF1"), ("11", "AB" * 16)])
def test_management_round_trip(ea: str, key: str) -> None:
    cipher = f"--decoder-key {key} --ea {ea}"
    token = ok(f"encode {cipher} --class 2 --subclass 1 --rnd 3 --tid 99 --value 65535").strip()
    document = json.loads(ok(f"decode {token} {cipher}"))
    assert (document["class_name"], document["subclass_name"]) == ("management", "clear-credit")
    assert (document["rnd"], document["tid"], document["value"]) == (3, 99, 65535)
    assert document["value_field"] == "FFFF"


def test_engineering_token_decodes_under_any_key() -> None:
    token = ok(f"{ENCODE} --class 1 --subclass 0 --rnd 0 --tid 5 --value 1").strip()
    document = json.loads(ok(f"decode {token} --decoder-key {'00' * 8} --ea 07"))
    assert (document["class_name"], document["subclass_name"], document["value"]) == (
        "engineering",
        "meter-test",
        1,
    )


def test_currency_token() -> None:
    token = ok(f"{ENCODE} --class 0 --subclass 5 --rnd 1 --tid 5 --amount 100").strip()
    document = json.loads(ok(f"decode {token} --decoder-key {DK} --ea 07"))
    assert (document["subclass_name"], document["amount"]) == ("currency-5", "100.0")


def test_key_change_sections() -> None:
    new_key = "00112233445566778899AABBCCDDEEFF"
    change = f"--new-key {new_key} --new-krn 2 --new-kt 1 --new-ti 7 --ken 171 --rollover"
    parts = []
    for subclass in (3, 4, 8, 9):
        token = json.loads(ok(f"{ENCODE} --class 2 --subclass {subclass} {change} --json"))["token"]
        parts.append(json.loads(ok(f"decode {token} --decoder-key {DK} --ea 07")))
    assert "".join(p["key_part"] for p in parts) == new_key
    assert [p["section"] for p in parts] == [1, 2, 3, 4]
    assert [p["ken"] for p in parts] == [0xA, 0xB, 0xA, 0xB]
    assert (parts[0]["krn"], parts[0]["kt"], parts[0]["ro"], parts[1]["ti"]) == (2, 1, True, 7)
    assert "rnd" not in parts[0]


def test_key_change_accepts_and_ignores_rnd_and_tid() -> None:
    command = f"{ENCODE} --class 2 --subclass 3 --new-key 1122334455667788 --new-krn 2"
    command += " --new-kt 2 --new-ti 1"
    assert ok(command) == ok(f"{command} --rnd 5 --tid 77")


def test_tables_file(tmp_path: Path) -> None:
    tables = tmp_path / "tables.json"
    document = {
        "s1": list(SAMPLE_TABLES.s1),
        "s2": list(SAMPLE_TABLES.s2),
        "p": list(reversed(SAMPLE_TABLES.p)),
    }
    tables.write_text(json.dumps(document))
    token = ok(f"{EXAMPLE} --tables {tables} --tid 1698595 --amount 25.6").strip()
    assert token != TOKEN
    decoded = json.loads(ok(f"decode {token} --decoder-key {DK} --ea 07 --tables {tables}"))
    assert decoded["tid"] == 1698595
    assert "CRC does not match" in fails(f"decode {token} --decoder-key {DK} --ea 07")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ("--tid 1 --amount 25.65", "more than one decimal"),
        ("--tid 1 --amount -1", "is not an amount"),
        ("--tid 1 --amount ten", "is not a decimal number"),
        ("--tid 1 --amount 1820162.5", "0..18201624 tenths"),
        ("--tid 16777216 --amount 1", "--tid 16777216 is above 16777215"),
        ("--amount 1", "give --tid N, or --issued and --base-date"),
        ("--issued 2024-01-01T00:00Z --amount 1", "--issued needs --base-date"),
        ("--issued 2024-01-01T00:00 --base-date 2014 --amount 1", "no offset"),
        ("--issued yesterday --base-date 2014 --amount 1", "not an ISO 8601"),
        ("--issued 2013-01-01T00:00Z --base-date 2014 --amount 1", "outside the 2014 base date"),
        ("--tid 1 --value 65536", "--value 65536 is above 65535"),
        ("--tid 1 --new-key 0000000000000000", "--new-key goes with --class 2"),
    ],
)
def test_encode_errors(args: str, message: str) -> None:
    assert message in fails(f"{EXAMPLE} {args}")


KEY_CHANGE = "--new-krn 1 --new-kt 1 --new-ti 1"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            "--class 3 --subclass 0 --rnd 0 --tid 0 --value 0",
            "--class is 0 (transfer), 1 (engineering) or 2 (management), not 3",
        ),
        ("--class 0 --subclass 9 --rnd 0 --tid 0 --value 0", "--subclass 9 does not exist"),
        ("--class 0 --subclass 0 --tid 0 --value 0", "give --rnd N"),
        ("--class 0 --subclass 0 --rnd 16 --tid 0 --value 0", "--rnd 16 is above 15"),
        ("--class 2 --subclass 1 --rnd 0 --tid 0 --amount 1", "--amount is for credit transfer"),
        ("--class 2 --subclass 3 --value 1", "needs --new-key"),
        ("--class 2 --subclass 3 --new-key 0000000000000000", "needs --new-krn, --new-kt"),
        (f"--class 2 --subclass 8 --new-key {'00' * 8} {KEY_CHANGE}", "is for a 128-bit key"),
        (f"--class 2 --subclass 3 --new-key {'00' * 9} {KEY_CHANGE}", "8 or 16 bytes, got 9"),
    ],
)
def test_encode_class_errors(args: str, message: str) -> None:
    assert message in fails(f"{ENCODE} {args}")


def test_encode_key_and_tables_errors(tmp_path: Path) -> None:
    example = "--class 0 --subclass 0 --rnd 11 --tid 1 --value 1"
    assert "EA09 decoder key is 8 bytes, not 16" in fails(
        f"encode --decoder-key {'00' * 16} --ea 09 {example}"
    )
    assert "--decoder-key is not hex digits" in fails(
        f"encode --decoder-key 0ABCZZ --ea 07 {example}"
    )
    bad = tmp_path / "bad.json"
    bad.write_text('{"s1": [1], "s2": [], "p": []}')
    assert "table s1 has 1 entries, not 16" in fails(f"{ENCODE} --tables {bad} {example}")
    missing = tmp_path / "none.json"
    assert "No such file" in fails(f"{ENCODE} --tables {missing} {example}")
    assert "--tables is for EA07 (STA) only" in fails(
        f"encode --decoder-key {DK} --ea 09 --tables {bad} {example}"
    )


@pytest.mark.parametrize(
    ("token", "message"),
    [
        ("5104346544342085621", "a token is 20 digits, got 19"),
        ("5104346544342085621x", "made of digits only, found 'x'"),
        ("99999999999999999999", "above 2^66 - 1"),
        ("51043465443420856214", "CRC does not match: not for this meter or mistyped"),
    ],
)
def test_decode_errors(token: str, message: str) -> None:
    assert message in fails(f"decode {token} --decoder-key {DK} --ea 07")


def test_decode_with_another_meters_key() -> None:
    line = fails(f"decode {TOKEN} --decoder-key 0ABC12DEF3456788 --ea 07")
    assert line == "cardlayout: CRC does not match: not for this meter or mistyped"
