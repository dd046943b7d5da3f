"""The key store's names without check values, and its memory of derived decoder keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from cardlayout.errors import KeyStoreError
from cardlayout.security import keyfile
from cardlayout.security.keys import KeyRef, Purpose
from cardlayout.security.keystore import DERIVED_LIMIT, init_master_keys, open_keystore
from cardlayout.sts.identity import BaseDate, EncryptionAlgorithm, KeyGeneration, MeterIdentity
from cardlayout.sts.keys import decoder_key
from cardlayout.sts.vending import store_decoder_key, vending_key

IDENTITY = MeterIdentity("600727000000000009", "123456", 1, 1, 2, BaseDate.Y2014,
                         EncryptionAlgorithm.EA07, KeyGeneration.DKGA04)  # fmt: skip


@pytest.fixture
def store(tmp_path: Path) -> keyfile.KeyFileStore:
    opened = open_keystore(str(tmp_path / "k.json"), passphrase="pw", create=True, scrypt_n=2**10)
    init_master_keys(opened)
    assert isinstance(opened, keyfile.KeyFileStore)
    return opened


def test_latest_version_computes_no_check_value(
    store: keyfile.KeyFileStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    listed = store.list_keys()
    assert store.held() == [KeyRef(info.purpose, info.version) for info in listed]

    def no_kcv(_key: bytes) -> bytes:
        raise AssertionError("a check value was computed")

    monkeypatch.setattr(keyfile, "kcv", no_kcv)
    assert store.latest_version(Purpose.STS_VENDING) == 1
    assert store.versions(Purpose.STS_VENDING) == [1]


def test_a_decoder_key_is_derived_once_and_forgotten_on_close(
    store: keyfile.KeyFileStore,
) -> None:
    fresh = decoder_key(vending_key(store, IDENTITY), IDENTITY)
    assert store_decoder_key(store, IDENTITY) == fresh
    assert store.derived_keys() == {("sts-decoder", IDENTITY, 1): fresh}
    assert store_decoder_key(store, IDENTITY) == fresh
    other = MeterIdentity(IDENTITY.pan, IDENTITY.sgc, 1, 2, 2, BaseDate.Y2014,
                          EncryptionAlgorithm.EA07, KeyGeneration.DKGA04)  # fmt: skip
    assert store_decoder_key(store, other) != fresh

    # A new vending master key is used at once, and its keys are not the old ones.
    store.generate(Purpose.STS_VENDING, 2)
    newer = store_decoder_key(store, IDENTITY)
    assert newer != fresh and newer == decoder_key(vending_key(store, IDENTITY), IDENTITY)
    assert store_decoder_key(store, IDENTITY, version=1) == fresh

    store.close()
    assert store.derived_keys() == {}
    with pytest.raises(KeyStoreError, match="closed"):
        store_decoder_key(store, IDENTITY)
    with pytest.raises(KeyStoreError, match="closed"):
        store_decoder_key(store, IDENTITY, version=1)


def test_the_memory_of_derived_keys_is_bounded(store: keyfile.KeyFileStore) -> None:
    memo = store.derived_keys()
    memo.update({n: bytes(16) for n in range(DERIVED_LIMIT)})
    assert store.derived_keys() == {}
