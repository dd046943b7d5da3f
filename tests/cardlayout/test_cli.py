"""The ``cardlayout`` command line as a user runs it: real processes, real pcscd."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cardlayout.vcard.image import CardImage

# The console script pip installed, as a user runs it.
CLI = [str(Path(sys.executable).with_name("cardlayout"))]
SERIAL = "C11C000000000042"


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=60, env=env, check=False
    )


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "CARDLAYOUT_KEYSTORE_PASSPHRASE": "cli test passphrase"}


@pytest.fixture
def keystore(tmp_path: Path, env: dict[str, str]) -> str:
    path = str(tmp_path / "keys.json")
    result = run("keys", "init", "--keystore", path, env=env)
    assert result.returncode == 0, result.stderr
    return path


def test_keys_init_and_list_show_check_values_never_keys(
    keystore: str, env: dict[str, str]
) -> None:
    listed = run("keys", "list", "--keystore", keystore, "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    keys = json.loads(listed.stdout)
    purposes = {k["purpose"] for k in keys}
    assert purposes >= {"card-issuer", "card-meter", "purse-mac", "writeback-mac"}
    assert all(re.fullmatch(r"[0-9A-F]{6}", k["kcv"]) for k in keys)
    text = run("keys", "list", "--keystore", keystore, env=env).stdout
    assert re.search(r"card-issuer\s+v1\s.*[0-9A-F]{6}", text)
    assert not re.search(r"[0-9A-Fa-f]{32}", text + listed.stdout)  # no 16-byte key value


def test_wrong_passphrase_is_a_sentence_not_a_traceback(keystore: str, env: dict[str, str]) -> None:
    result = run(
        "keys",
        "list",
        "--keystore",
        keystore,
        env={**env, "CARDLAYOUT_KEYSTORE_PASSPHRASE": "wrong"},
    )
    assert result.returncode == 1
    assert result.stderr.startswith("cardlayout: ")
    assert "Traceback" not in result.stderr and "passphrase" in result.stderr


def test_vcard_new_refuses_a_bad_serial_and_an_existing_image(tmp_path: Path) -> None:
    image = str(tmp_path / "card.json")
    bad = run("vcard", "new", image, "--serial", "XYZ")
    assert bad.returncode == 1 and "16 hex digits" in bad.stderr and "Traceback" not in bad.stderr
    assert run("vcard", "new", image, "--serial", SERIAL).returncode == 0
    again = run("vcard", "new", image, "--serial", SERIAL)
    assert again.returncode == 1 and "--force" in again.stderr
    assert CardImage.load(image).serial.hex().upper() == SERIAL


@pytest.fixture
def attached(tmp_path: Path, vpcd_reader: str) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    image = str(tmp_path / "card.json")
    assert run("vcard", "new", image, "--serial", SERIAL).returncode == 0
    proc = subprocess.Popen(
        [*CLI, "vcard", "attach", image, "--port", "35963"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield image, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=10)


@pytest.mark.pcsc
def test_walk_through_attach_personalise_dump(
    attached: tuple[str, subprocess.Popen[str]],
    keystore: str,
    env: dict[str, str],
    vpcd_reader: str,
) -> None:
    image, proc = attached
    readers = run("readers", "--json")
    assert readers.returncode == 0 and vpcd_reader in json.loads(readers.stdout)

    init = run("card", "init", "--reader", vpcd_reader, "--keystore", keystore, "--trace", env=env)
    assert init.returncode == 0, init.stderr
    assert SERIAL in init.stdout
    trace = init.stderr.splitlines()
    assert trace and all(re.fullmatch(r"[<>] [0-9A-F]+", line) for line in trace)
    assert trace[0].startswith("> ") and trace[1].startswith("< ")

    dump = run("dump", "--reader", vpcd_reader)
    assert dump.returncode == 0, dump.stderr
    card = json.loads(dump.stdout)
    assert card["serial"] == SERIAL and card["personalised"] and card["utility"] == "electricity"
    assert card["files"]["write-back"]["status"] == "cleared"
    assert card["files"]["purse"]["status"] == "blank"

    def write_purchase(amount: str) -> subprocess.CompletedProcess[str]:
        return run(
            *("card", "write-purchase", "--reader", vpcd_reader, "--keystore", keystore),
            *("--meter-no", "000012345678", "--customer-no", "310101000042"),
            *("--amount", amount),
            env=env,
        )

    bad = write_purchase("1.005")
    assert bad.returncode == 1 and "more than 2 decimal places" in bad.stderr
    sold = write_purchase("200.00")
    assert sold.returncode == 0, sold.stderr
    card = json.loads(run("dump", "--reader", vpcd_reader).stdout)
    purse = card["files"]["purse"]["value"]
    assert (purse["amount"], purse["purchase_count"]) == (20000, 1)
    assert card["card_type"] == "opening"

    again = run("card", "init", "--reader", vpcd_reader, "--keystore", keystore, env=env)
    assert again.returncode == 1 and "already personalised" in again.stderr

    proc.send_signal(signal.SIGTERM)  # pull the card
    assert proc.wait(timeout=10) == 0
    assert CardImage.load(image).life_cycle == "operational"  # every write kept in IMAGE
    time.sleep(0.5)
    gone = run("dump", "--reader", vpcd_reader, "--timeout", "0.5")
    assert gone.returncode == 1 and "no card" in gone.stderr


@pytest.mark.pcsc
def test_unknown_reader_is_named_in_the_error(vpcd_reader: str) -> None:
    result = run("dump", "--reader", "No Such Reader 99")
    assert result.returncode == 1
    assert "No Such Reader 99" in result.stderr and vpcd_reader in result.stderr
    assert "Traceback" not in result.stderr


def test_a_missing_directory_is_a_sentence(tmp_path: Path) -> None:
    result = run("vcard", "new", str(tmp_path / "no" / "card.json"), "--serial", SERIAL)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("cardlayout: ")
