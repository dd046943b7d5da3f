"""Vending keys from the key store: this project's STS key hierarchy.

In the field an STS key management centre issues each utility the vending
keys of its supply groups (one per SGC, key revision and key type), and the
utility loads them into its vending HSM. This project keeps one master key of
purpose ``sts-vending`` in its key store and diversifies the vending keys
from it the way every other key of the project is diversified
(:func:`cardlayout.security.diversify.diversify`, an AES-CMAC inside the
store), with the factor ``SGC (6 ASCII digits) | KRN | KT`` (one ASCII digit
each). A utility that receives vending keys from a key management centre
would import them instead; the decoder key generation does not change.

A vending key is 16 bytes; DKGA02 uses its first 8 (its DES key size),
DKGA04 all 16. The values are returned as bytes for the cryptography only:
never log or store them.
"""

from __future__ import annotations

from cardlayout.security.diversify import diversify
from cardlayout.security.keys import KeyRef, Purpose
from cardlayout.security.keystore import KeyStore
from cardlayout.sts.identity import MeterIdentity
from cardlayout.sts.keys import decoder_key

__all__ = ["store_decoder_key", "vending_factor", "vending_key"]


def vending_factor(identity: MeterIdentity) -> bytes:
    """The diversification factor of the supply group key: ``SGC | KRN | KT`` in ASCII."""
    return f"{identity.sgc}{identity.krn}{identity.kt}".encode("ascii")


def vending_key(store: KeyStore, identity: MeterIdentity, *, version: int | None = None) -> bytes:
    """The 16-byte vending key of ``identity``'s supply group, key revision and key type.

    ``version`` picks the ``sts-vending`` master key version (default: the
    store's latest).
    """
    if version is None:
        version = store.latest_version(Purpose.STS_VENDING)
    ref = KeyRef(Purpose.STS_VENDING, version)
    return diversify(store, ref, vending_factor(identity)).value


def store_decoder_key(
    store: KeyStore, identity: MeterIdentity, *, version: int | None = None
) -> bytes:
    """The meter's decoder key from the key store's vending key, by its DKGA.

    Kept in the store's memory (:meth:`KeyStore.derived_keys`) by the whole
    identity (PAN, SGC, TI, KRN, KT, base date, EA, DKGA) and the vending
    master key version: a centre vending to one meter again derives it once.
    The version is looked up first every time, so a closed store still
    refuses and a new vending master key version is used at once.
    """
    if version is None:
        version = store.latest_version(Purpose.STS_VENDING)
    memo = store.derived_keys()
    name = ("sts-decoder", identity, version)
    key = memo.get(name)
    if key is None:
        key = memo[name] = decoder_key(vending_key(store, identity, version=version), identity)
    return key
