"""Where master keys live, and the one thing done with them.

A master key derives every card's and every meter's keys, so whoever reads one
can forge any card of the utility. The interface is therefore narrow: a store
lists key names and check values, generates a key inside itself, and computes
an AES-CMAC with a master key (:meth:`KeyStore.master_cmac`), which is all
diversification (docs/card.md 6.1) needs. There is no call that returns a
master key value, so code above this layer cannot leak one even by mistake,
and a PKCS#11 store can keep them inside the HSM.

Two back ends: an encrypted key file (:mod:`cardlayout.security.keyfile`, the
default) and PKCS#11 (:mod:`cardlayout.security.pkcs11store`, a real HSM in
production, SoftHSM2 in tests). :func:`open_keystore` picks one from a spec
string, so the CLI and the centre configuration take one ``--keystore``.
"""

from __future__ import annotations

import abc
from collections.abc import Hashable, Iterable, Sequence
from types import TracebackType
from typing import Final, Self

from cardlayout.errors import KeyStoreError
from cardlayout.security.keys import KCV_SIZE, KeyInfo, KeyRef, Purpose

PKCS11_SCHEME: Final = "pkcs11:"
DERIVED_LIMIT: Final = 4096
"""How many derived keys :meth:`KeyStore.derived_keys` keeps before it starts again."""


class KeyStore(abc.ABC):
    """A set of AES-128 master keys named by purpose and version.

    Use as a context manager, or call :meth:`close`: a PKCS#11 store holds a
    logged-in session, a key file store holds decrypted keys in memory.
    Methods raise :class:`KeyStoreError` for a missing key or a store that
    cannot be used, with a sentence that names the store and the key, never a
    key value.
    """

    backend: str = "abstract"
    """Short back-end name shown by ``keys list`` (``keyfile``, ``pkcs11``)."""

    forkable: bool = False
    """Whether a child forked from this process may go on using the store object.

    True only for a store whose keys are plain memory of the process (the
    key file): the child holds the copy the parent already has, and nothing
    secret is sent anywhere. A PKCS#11 session belongs to the process that
    opened it (the token's library must be initialised again after a fork),
    so a store that does not say otherwise is not used by a child.
    """

    @property
    @abc.abstractmethod
    def location(self) -> str:
        """Where the store is, for messages (a path, a token label; no PIN)."""

    @abc.abstractmethod
    def list_keys(self) -> list[KeyInfo]:
        """Every master key of a known purpose, by purpose then version."""

    @abc.abstractmethod
    def generate(self, purpose: Purpose, version: int) -> KeyInfo:
        """Create a fresh random master key; refuse one that already exists.

        Refusing matters: replacing a master key silently would orphan every
        card and meter keyed from the old one. A new key is a new version.
        """

    @abc.abstractmethod
    def master_cmac(self, ref: KeyRef, message: bytes) -> bytes:
        """AES-CMAC(master key ``ref``, ``message``), 16 bytes, inside the store."""

    def master_cmac_many(self, ref: KeyRef, messages: Sequence[bytes]) -> list[bytes]:
        """:meth:`master_cmac` of each message, in order, under the same master key.

        For diversifying many keys at once (a bulk import derives a key for
        each of 100 000 meters). This default asks for one MAC after the
        other, which is what a PKCS#11 token does anyway; a store holding
        its keys in memory does better in a batch.
        """
        return [self.master_cmac(ref, message) for message in messages]

    @abc.abstractmethod
    def close(self) -> None:
        """Release the store (log out, forget decrypted keys). Idempotent."""

    def held(self) -> list[KeyRef]:
        """Every master key of a known purpose, by name only (no check value).

        What :meth:`versions` and :meth:`latest_version` need, asked on every
        token vend: a check value is a MAC computed in the store for each key,
        which a back end that knows its keys' names without one should not pay
        for. This default takes them from :meth:`list_keys`.
        """
        return [KeyRef(info.purpose, info.version) for info in self.list_keys()]

    def derived_keys(self) -> dict[Hashable, bytes]:
        """Keys derived from this store's master keys, kept by everything they depend on.

        For a caller that derives the same key again and again (a keypad
        meter's decoder key, on every vend): plain memory of this object,
        never written anywhere, emptied by :meth:`close` with the rest of the
        store's secrets, and started afresh when it holds
        :data:`DERIVED_LIMIT` keys. A caller's key must name everything the
        derived key depends on, the master key version included.
        """
        memo: dict[Hashable, bytes] | None = self.__dict__.get("_derived_keys")
        if memo is None or len(memo) >= DERIVED_LIMIT:
            memo = self.__dict__["_derived_keys"] = {}
        return memo

    def forget_derived_keys(self) -> None:
        """Empty :meth:`derived_keys` (each back end's :meth:`close` calls this)."""
        self.__dict__.pop("_derived_keys", None)

    def versions(self, purpose: Purpose) -> list[int]:
        """The versions held for ``purpose``, ascending."""
        purpose = Purpose(purpose)
        return sorted(ref.version for ref in self.held() if ref.purpose is purpose)

    def latest_version(self, purpose: Purpose) -> int:
        """The highest version held for ``purpose``.

        Raises :class:`KeyStoreError` when there is none: deriving card keys
        from "no key" must stop with an instruction, not pick a default.
        """
        held = self.versions(purpose)
        if not held:
            raise KeyStoreError(
                f"no {Purpose(purpose).value} master key in {self.location}; "
                f"create the master keys with `cardlayout keys init --keystore ...`"
            )
        return held[-1]

    def check_value(self, ref: KeyRef) -> bytes:
        """The key check value of a master key (3 bytes), computed in the store.

        Same definition as :func:`cardlayout.security.keys.kcv`: the first
        3 bytes of AES-CMAC(key, 16 zero bytes).
        """
        return self.master_cmac(ref, bytes(16))[:KCV_SIZE]

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.location}>"


def init_master_keys(
    store: KeyStore, purposes: Iterable[Purpose] | None = None, version: int = 1
) -> list[KeyInfo]:
    """Generate the master key of each purpose (all of them by default) at ``version``.

    Checks first that none of them exists, so a refused run creates nothing
    rather than half a set.
    """
    wanted = list(Purpose) if purposes is None else [Purpose(p) for p in purposes]
    refs = [KeyRef(purpose, version) for purpose in wanted]  # validates version
    held = {(info.purpose, info.version) for info in store.list_keys()}
    clashes = [str(ref) for ref in refs if (ref.purpose, ref.version) in held]
    if clashes:
        raise KeyStoreError(
            f"{', '.join(clashes)} already in {store.location}; "
            f"master keys are never replaced: choose another version"
        )
    return [store.generate(ref.purpose, ref.version) for ref in refs]


def open_keystore(
    spec: str,
    *,
    passphrase: str | None = None,
    create: bool = False,
    scrypt_n: int | None = None,
) -> KeyStore:
    """Open the key store named by ``spec``.

    A ``pkcs11:`` URI (RFC 7512 subset, see
    :func:`cardlayout.security.pkcs11store.parse_pkcs11_uri`) opens a PKCS#11
    token, which must already exist (``create`` does not apply; ``passphrase``
    is ignored: the PIN comes from the URI or the environment). Anything else
    is the path of an encrypted key file; with ``create`` a missing one is
    created (the passphrase is then asked twice when prompted). ``scrypt_n``
    sets the scrypt cost of a file being created (tests use a low one).
    """
    if spec.startswith(PKCS11_SCHEME):
        from cardlayout.security.pkcs11store import Pkcs11KeyStore

        return Pkcs11KeyStore.open(spec)
    from cardlayout.security.keyfile import KeyFileStore

    return KeyFileStore.open_or_create(
        spec, passphrase=passphrase, create=create, scrypt_n=scrypt_n
    )
