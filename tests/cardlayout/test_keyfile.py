"""The encrypted key file store, and ``cardlayout keys`` on it.

The file is decrypted here independently (scrypt + AES-GCM from pycryptodome,
following the format in :mod:`cardlayout.security.keyfile`), both to check
the documented format and to learn the key values, which must then never
appear in any output, message or log.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import stat
import sys
from pathlib import Path
from typing import Any

import pytest
from Crypto.Cipher import AES
from Crypto.Hash import CMAC
from Crypto.Protocol.KDF import scrypt

from cardlayout.cli import keys as cli_keys
from cardlayout.errors import KeyStoreError
from cardlayout.security import keyfile
from cardlayout.security.diversify import CardKeys
from cardlayout.security.keyfile import KeyFileStore
from cardlayout.security.keys import KeyRef, Purpose
from cardlayout.security.keystore import init_master_keys, open_keystore

PASS = "correct horse battery staple"
FAST = 2**10  # scrypt cost for tests only


@pytest.fixture(autouse=True)
def _no_ambient_passphrase(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(keyfile.PASSPHRASE_ENV, raising=False)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "keys" / "master.json"


def make_store(path: Path) -> KeyFileStore:
    store = KeyFileStore.create(path, passphrase=PASS, scrypt_n=FAST)
    init_master_keys(store)
    return store


def decrypt_independently(path: Path, passphrase: str) -> dict[tuple[str, int], bytes]:
    document = json.loads(path.read_text())
    assert document["format"] == "cardlayout-keyfile/1"
    kdf = document["kdf"]
    assert kdf["name"] == "scrypt" and (kdf["r"], kdf["p"]) == (8, 1)
    file_key = scrypt(
        passphrase.encode(), bytes.fromhex(kdf["salt"]), 32, N=kdf["n"], r=kdf["r"], p=kdf["p"]
    )
    assert isinstance(file_key, bytes)
    cipher = AES.new(file_key, AES.MODE_GCM, nonce=bytes.fromhex(document["nonce"]))
    header = {"format": document["format"], "kdf": kdf}
    cipher.update(json.dumps(header, sort_keys=True, separators=(",", ":")).encode())
    plain = cipher.decrypt_and_verify(
        bytes.fromhex(document["ciphertext"]), bytes.fromhex(document["tag"])
    )
    return {
        (item["purpose"], item["version"]): bytes.fromhex(item["value"])
        for item in json.loads(plain)["keys"]
    }


def assert_no_key_in(text: str, values: dict[tuple[str, int], bytes]) -> None:
    lowered = text.lower()
    for value in values.values():
        assert value.hex() not in lowered
        assert value.hex()[:16] not in lowered  # not even half of one


# -- create, open, list -------------------------------------------------------------


def test_create_generate_reopen_list(path: Path) -> None:
    with make_store(path) as store:
        created = store.list_keys()
    assert [(i.purpose, i.version, i.backend) for i in created] == [
        (p, 1, "keyfile") for p in Purpose
    ]
    assert all(len(i.kcv) == 3 for i in created)
    with KeyFileStore.open(path, passphrase=PASS) as store:
        assert store.list_keys() == created
        store.generate(Purpose.PURSE_MAC, 2)
        assert store.latest_version(Purpose.PURSE_MAC) == 2
        assert store.versions(Purpose.PURSE_MAC) == [1, 2]
    with open_keystore(str(path), passphrase=PASS) as store:
        assert len(store.list_keys()) == len(Purpose) + 1


def test_master_cmac_and_kcv_use_the_stored_key(path: Path) -> None:
    with make_store(path) as store:
        values = decrypt_independently(path, PASS)
        ref = KeyRef(Purpose.CARD_ISSUER, 1)
        master = values[("card-issuer", 1)]
        assert store.master_cmac(ref, b"abc") == CMAC.new(master, b"abc", ciphermod=AES).digest()
        assert store.check_value(ref) == CMAC.new(master, bytes(16), ciphermod=AES).digest()[:3]
        assert len(set(values.values())) == len(Purpose)  # fresh random keys


def test_generate_refuses_an_existing_key(path: Path) -> None:
    with make_store(path) as store:
        before = path.read_bytes()
        with pytest.raises(KeyStoreError, match="card-meter v1 already exists"):
            store.generate(Purpose.CARD_METER, 1)
        with pytest.raises(KeyStoreError, match="already in"):
            init_master_keys(store)
        assert path.read_bytes() == before
        assert [i.version for i in init_master_keys(store, version=2)] == [2] * len(Purpose)


def test_missing_key_and_missing_file(path: Path, tmp_path: Path) -> None:
    with (
        make_store(path) as store,
        pytest.raises(KeyStoreError, match="no master key purse-mac v7"),
    ):
        store.master_cmac(KeyRef(Purpose.PURSE_MAC, 7), b"")
    with pytest.raises(KeyStoreError, match="cardlayout keys init"):
        open_keystore(str(tmp_path / "nothing.json"), passphrase=PASS)
    with pytest.raises(KeyStoreError, match="already exists"):
        KeyFileStore.create(path, passphrase=PASS, scrypt_n=FAST)


def test_closed_store_refuses(path: Path) -> None:
    store = make_store(path)
    store.close()
    store.close()
    with pytest.raises(KeyStoreError, match="closed"):
        store.list_keys()


def test_two_stores_do_not_lose_each_others_keys(path: Path) -> None:
    make_store(path).close()
    first = KeyFileStore.open(path, passphrase=PASS)
    second = KeyFileStore.open(path, passphrase=PASS)
    first.generate(Purpose.PURSE_MAC, 2)
    second.generate(Purpose.WRITEBACK_MAC, 2)  # re-reads: keeps purse-mac v2
    with pytest.raises(KeyStoreError, match="already exists"):
        second.generate(Purpose.PURSE_MAC, 2)
    held = set(decrypt_independently(path, PASS))
    assert {("purse-mac", 2), ("writeback-mac", 2)} <= held


# -- passphrase ---------------------------------------------------------------------


def test_wrong_passphrase(path: Path) -> None:
    make_store(path).close()
    with pytest.raises(KeyStoreError, match="wrong passphrase or damaged key file") as info:
        KeyFileStore.open(path, passphrase="Correct horse battery staple")
    assert PASS not in str(info.value)


@pytest.mark.parametrize("field", ["ciphertext", "tag", "nonce", "salt"])
def test_damaged_file(path: Path, field: str) -> None:
    make_store(path).close()
    document = json.loads(path.read_text())
    target = document["kdf"] if field == "salt" else document
    target[field] = ("1" if target[field][0] == "0" else "0") + target[field][1:]
    path.write_text(json.dumps(document))
    with pytest.raises(KeyStoreError, match="wrong passphrase or damaged key file"):
        KeyFileStore.open(path, passphrase=PASS)


def test_header_cannot_be_downgraded(path: Path) -> None:
    make_store(path).close()
    document = json.loads(path.read_text())
    document["kdf"]["n"] = 2
    path.write_text(json.dumps(document))
    with pytest.raises(KeyStoreError, match="wrong passphrase or damaged key file"):
        KeyFileStore.open(path, passphrase=PASS)
    document["kdf"]["n"] = 2**30
    path.write_text(json.dumps(document))
    with pytest.raises(KeyStoreError, match="not a power of two up to"):
        KeyFileStore.open(path, passphrase=PASS)


def test_not_a_key_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    for content in ("not json", "[]", '{"format": "other"}'):
        bad.write_text(content)
        with pytest.raises(KeyStoreError, match="is not a cardlayout-keyfile/1 key file"):
            KeyFileStore.open(bad, passphrase=PASS)


def test_passphrase_from_environment(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(keyfile.PASSPHRASE_ENV, PASS)
    make_store(path).close()
    KeyFileStore.open(path).close()
    monkeypatch.setenv(keyfile.PASSPHRASE_ENV, "")
    with pytest.raises(KeyStoreError, match="is empty"):
        KeyFileStore.open(path)


def test_no_passphrase_without_a_terminal(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO())
    with pytest.raises(KeyStoreError, match=keyfile.PASSPHRASE_ENV):
        KeyFileStore.create(path, scrypt_n=FAST)
    assert not path.exists()


class FakeTty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_prompt_on_a_terminal(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    answers: list[str] = []
    prompts: list[str] = []

    def fake_getpass(prompt: str = "") -> str:
        prompts.append(prompt)
        return answers.pop(0)

    monkeypatch.setattr(sys, "stdin", FakeTty())
    monkeypatch.setattr("getpass.getpass", fake_getpass)
    answers[:] = [PASS, "typo"]
    with pytest.raises(KeyStoreError, match="differ"):
        KeyFileStore.create(path, scrypt_n=FAST)
    assert not path.exists()
    answers[:] = [PASS, PASS]
    KeyFileStore.create(path, scrypt_n=FAST).close()
    assert len(prompts) == 4
    answers[:] = [PASS]
    KeyFileStore.open(path).close()
    assert len(prompts) == 5 and str(path) in prompts[-1]


# -- writing ---------------------------------------------------------------------


def test_file_mode_and_no_leftovers(path: Path) -> None:
    make_store(path).close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert sorted(p.name for p in path.parent.iterdir()) == ["master.json", "master.json.lock"]


def test_write_is_atomic(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = make_store(path)
    before = path.read_bytes()
    calls: list[tuple[str, Any]] = []
    real_replace, real_fsync = os.replace, os.fsync

    def failing_replace(src: Any, dst: Any) -> None:
        calls.append(("replace", (Path(src), Path(dst))))
        raise OSError(28, "No space left on device")

    def recording_fsync(fd: int) -> None:
        calls.append(("fsync", stat.S_ISDIR(os.fstat(fd).st_mode)))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(KeyStoreError, match="No space left"):
        store.generate(Purpose.PURSE_MAC, 2)
    assert path.read_bytes() == before  # the old file, whole
    assert sorted(p.name for p in path.parent.iterdir()) == ["master.json", "master.json.lock"]
    (_, file_fsynced), (_, (src, dst)) = calls
    assert file_fsynced is False and src.parent == dst.parent == path.parent
    assert store.latest_version(Purpose.PURSE_MAC) == 1  # memory matches the file

    calls.clear()
    monkeypatch.setattr(os, "replace", real_replace)
    store.generate(Purpose.PURSE_MAC, 2)
    assert calls == [("fsync", False), ("fsync", True)]  # the file, then its directory
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert ("purse-mac", 2) in decrypt_independently(path, PASS)


# -- key values never shown -------------------------------------------------------


def test_key_values_never_shown(
    path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    store = make_store(path)
    values = decrypt_independently(path, PASS)
    texts = [repr(store), str(store.list_keys()), *map(str, store.list_keys())]
    for attempt in (
        lambda: store.generate(Purpose.CARD_ISSUER, 1),
        lambda: store.master_cmac(KeyRef(Purpose.CARD_ISSUER, 9), b""),
        lambda: KeyFileStore.open(path, passphrase="wrong"),
    ):
        with pytest.raises(KeyStoreError) as info:
            attempt()
        texts += [str(info.value), repr(info.value)]
    derived = CardKeys(store).issuer_key(bytes(8))
    texts += [repr(derived), str(derived), f"{derived}"]
    texts += [record.getMessage() for record in caplog.records]
    texts.append(path.read_text())  # the file itself holds them encrypted only
    store.close()
    for text in texts:
        assert_no_key_in(text, values)
    assert derived.value.hex() not in " ".join(texts).lower()


# -- CLI --------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cardlayout")
    cli_keys.register(p.add_subparsers(dest="command", required=True))
    return p


def run(argv: list[str]) -> tuple[int, str]:
    args = parser().parse_args(argv)
    out = io.StringIO()
    status = args.handler(args, out)
    return status, out.getvalue()


def test_cli_init_and_list(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(keyfile.PASSPHRASE_ENV, PASS)
    status, init_out = run(["keys", "init", "--keystore", str(path)])
    assert status == 0
    lines = init_out.splitlines()
    assert [line.split()[0] for line in lines] == [p.value for p in Purpose]
    for line in lines:
        _purpose, version, word, value = line.split()
        assert (version, word, len(value)) == ("v1", "KCV", 6)
        int(value, 16)

    status, list_out = run(["keys", "list", "--keystore", str(path)])
    assert status == 0
    assert [line.split()[:4] for line in list_out.splitlines()] == [
        [line.split()[0], "v1", "KCV", line.split()[3]] for line in lines
    ]
    assert all(line.split()[4] == "keyfile" for line in list_out.splitlines())

    status, json_out = run(["keys", "list", "--keystore", str(path), "--json"])
    listed = json.loads(json_out)
    assert listed[0] == {
        "purpose": "card-issuer",
        "version": 1,
        "kcv": lines[0].split()[3],
        "backend": "keyfile",
    }

    with pytest.raises(KeyStoreError, match="already in"):
        run(["keys", "init", "--keystore", str(path)])
    status, v2_out = run(["keys", "init", "--keystore", str(path), "--version", "2"])
    assert status == 0 and v2_out.count(" v2 KCV ") == len(Purpose)

    values = decrypt_independently(path, PASS)
    for text in (init_out, list_out, json_out, v2_out):
        assert_no_key_in(text, values)


def test_cli_rejects_bad_versions(capsys: pytest.CaptureFixture[str]) -> None:
    for bad in ("0", "256", "x"):
        with pytest.raises(SystemExit):
            parser().parse_args(["keys", "init", "--keystore", "k.json", "--version", bad])
    assert "version" in capsys.readouterr().err


def test_cli_list_of_missing_file_fails(tmp_path: Path) -> None:
    with pytest.raises(KeyStoreError, match="no key file"):
        run(["keys", "list", "--keystore", str(tmp_path / "missing.json")])


def test_cli_main_end_to_end(
    path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from cardlayout.cli import main

    monkeypatch.setenv(keyfile.PASSPHRASE_ENV, PASS)
    assert main(["keys", "init", "--keystore", str(path)]) == 0
    assert main(["keys", "list", "--keystore", str(path)]) == 0
    assert main(["keys", "init", "--keystore", str(path)]) == 1  # refused, one sentence
    out, err = capsys.readouterr()
    assert err.startswith("cardlayout: card-issuer v1, card-meter v1") and "Traceback" not in err
    assert_no_key_in(out + err, decrypt_independently(path, PASS))
