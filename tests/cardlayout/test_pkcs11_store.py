"""The PKCS#11 key store against a throw-away SoftHSM2 token.

Each test gets a fresh token in ``tmp_path``. SoftHSM2 reads ``SOFTHSM2_CONF``
when the library is initialised, and python-pkcs11 keeps the library loaded
for the whole process, so the fixture points the variable at the new
configuration and then re-initialises the library.

These tests never skip: without SoftHSM2 they fail, saying what to install.
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pkcs11
import pytest
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11 import exceptions as p11e

from cardlayout.cli import keys as cli_keys
from cardlayout.errors import KeyStoreError
from cardlayout.security.diversify import CardKeys, diversify
from cardlayout.security.keys import KeyRef, Purpose, SecretKey
from cardlayout.security.keystore import KeyStore, init_master_keys, open_keystore
from cardlayout.security.mac import data_mac, verify_data_mac
from cardlayout.security.pkcs11store import (
    DEFAULT_MODULE,
    MODULE_ENV,
    PIN_ENV,
    _attribute_mapper,
    parse_pkcs11_uri,
)

pytestmark = pytest.mark.pkcs11

MODULE = DEFAULT_MODULE
LABEL = "test"
PIN = "1234"
SERIAL = bytes.fromhex("0102030405060708")


@pytest.fixture
def token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh SoftHSM2 token labelled ``test`` (user PIN 1234); yields its URI."""
    tool = shutil.which("softhsm2-util")
    if tool is None or not Path(MODULE).exists():
        pytest.fail(
            "SoftHSM2 is required for the PKCS#11 tests: install the Debian package "
            f"softhsm2 (softhsm2-util and {MODULE})",
            pytrace=False,
        )
    tokens = tmp_path / "tokens"
    tokens.mkdir()
    conf = tmp_path / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n"
    )
    monkeypatch.setenv("SOFTHSM2_CONF", str(conf))
    for name in (MODULE_ENV, PIN_ENV):
        monkeypatch.delenv(name, raising=False)
    subprocess.run(
        [tool, "--init-token", "--free", "--label", LABEL, "--so-pin", "4321", "--pin", PIN],
        check=True,
        capture_output=True,
    )
    library = pkcs11.lib(MODULE)
    library.reinitialize()  # read the new SOFTHSM2_CONF
    yield f"pkcs11:token={LABEL}?module-path={MODULE}&pin-value={PIN}"
    gc.collect()
    library.finalize()


@pytest.fixture
def store(token: str) -> Iterator[KeyStore]:
    with open_keystore(token) as opened:
        init_master_keys(opened)
        yield opened


def test_generate_and_list(store: KeyStore) -> None:
    infos = store.list_keys()
    assert [(i.purpose, i.version, i.backend) for i in infos] == [(p, 1, "pkcs11") for p in Purpose]
    for info in infos:
        assert len(info.kcv) == 3
        assert store.check_value(info.ref) == info.kcv
    assert len({i.kcv for i in infos}) == len(Purpose)  # different random keys
    assert store.latest_version(Purpose.CARD_ISSUER) == 1
    info = store.generate(Purpose.CARD_ISSUER, 2)
    assert str(info).startswith("card-issuer v2 KCV ")
    assert store.latest_version(Purpose.CARD_ISSUER) == 2


def test_generate_refuses_an_existing_key(store: KeyStore) -> None:
    with pytest.raises(KeyStoreError, match="purse-mac v1 already exists in PKCS#11 token 'test'"):
        store.generate(Purpose.PURSE_MAC, 1)
    with pytest.raises(KeyStoreError, match="already in"):
        init_master_keys(store)


def test_master_cmac_is_deterministic_and_keyed(store: KeyStore) -> None:
    ref = KeyRef(Purpose.CARD_METER, 1)
    first = store.master_cmac(ref, b"message")
    assert len(first) == 16
    assert store.master_cmac(ref, b"message") == first
    assert store.master_cmac(ref, b"messagf") != first
    assert store.master_cmac(KeyRef(Purpose.PURSE_MAC, 1), b"message") != first
    assert store.check_value(ref) == store.master_cmac(ref, bytes(16))[:3]


def test_keys_persist_in_the_token(token: str) -> None:
    with open_keystore(token) as first:
        created = init_master_keys(first)
        mac = first.master_cmac(KeyRef(Purpose.CARD_ISSUER, 1), b"x")
    with open_keystore(token) as again:
        assert again.list_keys() == created
        assert again.master_cmac(KeyRef(Purpose.CARD_ISSUER, 1), b"x") == mac


def test_master_key_cannot_leave_the_token(token: str) -> None:
    with open_keystore(token) as store:
        init_master_keys(store)
    token_obj = pkcs11.lib(MODULE).get_token(token_label=LABEL)
    with token_obj.open(user_pin=PIN, attribute_mapper=_attribute_mapper()) as session:
        key = session.get_key(
            object_class=ObjectClass.SECRET_KEY, key_type=KeyType.AES, label="card-issuer.v1"
        )
        with pytest.raises(p11e.AttributeSensitive):
            key[Attribute.VALUE]
        assert key[Attribute.EXTRACTABLE] is False
        assert key[Attribute.NEVER_EXTRACTABLE] is True
        assert key[Attribute.SENSITIVE] is True
        assert key[Attribute.ALWAYS_SENSITIVE] is True
        assert key[Attribute.LOCAL] is True  # generated inside the token
        assert key[Attribute.TOKEN] is True
        assert key[Attribute.ENCRYPT] is False
        assert key[Attribute.WRAP] is False
        assert key[Attribute.ALLOWED_MECHANISMS] == [Mechanism.AES_CMAC]
        with pytest.raises(p11e.PKCS11Error):
            key[Attribute.EXTRACTABLE] = True
        with pytest.raises(p11e.PKCS11Error):  # not even another MAC mechanism
            key.sign(  # type: ignore[attr-defined]
                b"data", mechanism=Mechanism.AES_CMAC_GENERAL, mechanism_param=b"\x08" + bytes(7)
            )


def test_diversify_through_the_hsm(store: KeyStore) -> None:
    keys = CardKeys(store)
    issuer = keys.issuer_key(SERIAL)
    assert isinstance(issuer, SecretKey)
    ref = KeyRef(Purpose.CARD_ISSUER, 1)
    assert issuer == diversify(store, ref, SERIAL)
    assert issuer.value == store.master_cmac(ref, b"\x01card-issuer\x00" + SERIAL)
    assert keys.issuer_key(SERIAL[::-1]) != issuer
    meter, customer = "000012345678", "000000000042"
    assert keys.meter_card_key(meter) != keys.purse_key(meter) != keys.writeback_key(meter)
    mac = data_mac(keys.purse_key(meter), "purse", bytes(8), meter, customer, SERIAL)
    verify_data_mac(
        CardKeys(store).purse_key(meter), "purse", bytes(8), meter, customer, SERIAL, mac
    )


def test_many_macs_in_the_token_equal_one_by_one(store: KeyStore) -> None:
    ref = KeyRef(Purpose.WRITEBACK_MAC, 1)
    messages = [b"\x01writeback-mac\x00" + bytes([n]) * 6 for n in range(10)] + [b""]
    assert store.master_cmac_many(ref, messages) == [store.master_cmac(ref, m) for m in messages]
    keys = CardKeys(store)
    meters = ["000012345678", "000012345679"]
    assert [keys.writeback_keys(meters)[m] for m in meters] == [
        keys.writeback_key(m) for m in meters
    ]
    assert store.forkable is False  # a PKCS#11 session is not a fork's to use
    with pytest.raises(KeyStoreError, match="no master key writeback-mac v3 in PKCS#11 token"):
        store.master_cmac_many(KeyRef(Purpose.WRITEBACK_MAC, 3), [b""])


def test_missing_key(store: KeyStore) -> None:
    with pytest.raises(KeyStoreError, match="no master key writeback-mac v3 in PKCS#11 token"):
        store.master_cmac(KeyRef(Purpose.WRITEBACK_MAC, 3), b"")


def test_wrong_pin(token: str) -> None:
    with pytest.raises(KeyStoreError, match="wrong PIN for PKCS#11 token 'test'") as info:
        open_keystore(token.replace(f"pin-value={PIN}", "pin-value=9999"))
    assert "9999" not in str(info.value)


def test_missing_token_lists_the_tokens_found(token: str) -> None:
    with pytest.raises(KeyStoreError, match=r"no PKCS#11 token labelled 'nope'.*found: 'test'"):
        open_keystore(token.replace(f"token={LABEL}", "token=nope"))


def test_missing_module(token: str) -> None:
    with pytest.raises(KeyStoreError, match=r"PKCS#11 module /nonexistent/lib\.so not found"):
        open_keystore(f"pkcs11:token={LABEL}?module-path=/nonexistent/lib.so&pin-value={PIN}")


def test_pin_from_the_environment(token: str, monkeypatch: pytest.MonkeyPatch) -> None:
    bare = f"pkcs11:token={LABEL}?module-path={MODULE}"
    monkeypatch.setenv("MY_HSM_PIN", PIN)
    with open_keystore(bare + "&pin-source=env:MY_HSM_PIN") as store:
        assert store.list_keys() == []
    monkeypatch.setenv(PIN_ENV, PIN)
    monkeypatch.setenv(MODULE_ENV, MODULE)
    with open_keystore(f"pkcs11:token={LABEL}") as store:
        assert store.location == "PKCS#11 token 'test'"
    monkeypatch.delenv(PIN_ENV)
    monkeypatch.setattr("sys.stdin", io.StringIO())
    with pytest.raises(KeyStoreError, match=f"no PIN.*{PIN_ENV}"):
        open_keystore(bare)
    with pytest.raises(KeyStoreError, match="UNSET_VARIABLE"):
        open_keystore(bare + "&pin-source=env:UNSET_VARIABLE")


def test_two_stores_share_the_login(token: str) -> None:
    first = open_keystore(token)
    second = open_keystore(token)
    init_master_keys(first)
    with pytest.raises(KeyStoreError, match="wrong PIN"):
        open_keystore(token.replace(f"pin-value={PIN}", "pin-value=0000"))
    first.close()  # must not log the second one out
    assert len(second.list_keys()) == len(Purpose)
    second.close()
    with pytest.raises(KeyStoreError, match="closed"):
        second.list_keys()


def test_cli_on_the_token(token: str) -> None:
    parser = argparse.ArgumentParser()
    cli_keys.register(parser.add_subparsers(dest="command", required=True))
    out = io.StringIO()
    args = parser.parse_args(["keys", "init", "--keystore", token])
    assert args.handler(args, out) == 0
    assert len(out.getvalue().splitlines()) == len(Purpose)
    out = io.StringIO()
    args = parser.parse_args(["keys", "list", "--keystore", token, "--json"])
    assert args.handler(args, out) == 0
    assert {item["backend"] for item in json.loads(out.getvalue())} == {"pkcs11"}


# -- URI parsing (no token needed, kept here with the store) ------------------------


def test_uri_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MODULE_ENV, raising=False)
    uri = parse_pkcs11_uri("pkcs11:token=My%20HSM;serial=abc?pin-source=file:/run/pin")
    assert (uri.token, uri.serial, uri.module_path, uri.pin_source) == (
        "My HSM",
        "abc",
        DEFAULT_MODULE,
        "file:/run/pin",
    )
    assert "1234" not in repr(parse_pkcs11_uri("pkcs11:token=t?pin-value=1234"))
    monkeypatch.setenv(MODULE_ENV, "/opt/hsm.so")
    assert parse_pkcs11_uri("pkcs11:token=t").module_path == "/opt/hsm.so"
    for bad, reason in [
        ("pkcs11:serial=1", "needs token"),
        ("pkcs11:token=t;object=k", "'object' is not supported"),
        ("pkcs11:token=t?pin-value=1&pin-source=env:X", "not both"),
        ("pkcs11:token=t?module-path", "has no value"),
        ("pkcs11:token=a;token=b", "given twice"),
    ]:
        with pytest.raises(KeyStoreError, match=reason):
            parse_pkcs11_uri(bad)


def test_pin_file(tmp_path: Path) -> None:
    pin_file = tmp_path / "pin"
    pin_file.write_text("5678\n")
    assert parse_pkcs11_uri(f"pkcs11:token=t?pin-source=file:{pin_file}").pin() == "5678"
    assert parse_pkcs11_uri(f"pkcs11:token=t?pin-source={pin_file}").pin() == "5678"
