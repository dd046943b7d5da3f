"""Vending keys from the key store (``sts-vending`` master, diversified by SGC, KRN, KT)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cardlayout.errors import KeyStoreError
from cardlayout.security.keys import KeyRef, Purpose
from cardlayout.security.keystore import KeyStore, init_master_keys, open_keystore
from cardlayout.sts.codec import TokenError, decode_token, encode_token
from cardlayout.sts.identity import BaseDate, EncryptionAlgorithm, KeyGeneration, MeterIdentity
from cardlayout.sts.keys import decoder_key, dkga02, dkga04
from cardlayout.sts.tokens import TransferSubclass, TransferToken
from cardlayout.sts.vending import store_decoder_key, vending_factor, vending_key


def meter(
    pan: str = "600727000000000009",
    *,
    sgc: str = "123456",
    ti: int = 1,
    krn: int = 1,
    kt: int = 2,
    ea: EncryptionAlgorithm = EncryptionAlgorithm.EA07,
    dkga: KeyGeneration = KeyGeneration.DKGA02,
) -> MeterIdentity:
    return MeterIdentity(pan, sgc, ti, krn, kt, BaseDate.Y2014, ea, dkga)


def test_purpose_exists() -> None:
    assert Purpose.STS_VENDING.value == "sts-vending"


def test_vending_key_is_the_diversified_master(keystore: KeyStore) -> None:
    assert vending_factor(meter()) == b"12345612"
    message = b"\x01" + b"sts-vending" + b"\x00" + b"12345612"
    expected = keystore.master_cmac(KeyRef(Purpose.STS_VENDING, 1), message)
    assert vending_key(keystore, meter()) == expected
    assert len(expected) == 16


def test_vending_key_is_per_supply_group_revision_and_type(keystore: KeyStore) -> None:
    base = vending_key(keystore, meter())
    assert vending_key(keystore, meter("600727000000000019", ti=7)) == base  # not per meter
    others = {
        vending_key(keystore, meter(sgc="123457")),
        vending_key(keystore, meter(krn=2)),
        vending_key(keystore, meter(kt=1)),
    }
    assert base not in others and len(others) == 3


def test_store_decoder_key_by_dkga(keystore: KeyStore) -> None:
    vk = vending_key(keystore, meter())
    assert store_decoder_key(keystore, meter()) == dkga02(vk[:8], meter())
    four = meter(dkga=KeyGeneration.DKGA04, ea=EncryptionAlgorithm.EA11)
    assert store_decoder_key(keystore, four) == dkga04(vk, four)
    assert len(store_decoder_key(keystore, four)) == 16
    assert decoder_key(vk, meter()) == store_decoder_key(keystore, meter())


def test_each_meter_has_its_own_key(keystore: KeyStore) -> None:
    first, second = meter(), meter("600727000000000019")
    token = TransferToken(TransferSubclass.ELECTRICITY, 1, 1000, 500)
    ea = EncryptionAlgorithm.EA07
    digits = encode_token(token, store_decoder_key(keystore, first), ea)
    assert decode_token(digits, store_decoder_key(keystore, first), ea) == token
    with pytest.raises(TokenError, match="CRC does not match"):
        decode_token(digits, store_decoder_key(keystore, second), ea)


def test_master_versions(tmp_path: Path) -> None:
    with open_keystore(
        str(tmp_path / "k.json"), passphrase="p", create=True, scrypt_n=2**10
    ) as store:
        with pytest.raises(KeyStoreError, match="sts-vending"):
            vending_key(store, meter())
        init_master_keys(store, [Purpose.STS_VENDING])
        init_master_keys(store, [Purpose.STS_VENDING], version=2)
        assert vending_key(store, meter()) == vending_key(store, meter(), version=2)
        assert vending_key(store, meter(), version=1) != vending_key(store, meter())
