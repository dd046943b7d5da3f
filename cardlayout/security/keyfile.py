"""The encrypted key file: the default master key store.

The file is a JSON document::

    {"format": "cardlayout-keyfile/1",
     "kdf": {"name": "scrypt", "salt": "<hex 16 B>", "n": 32768, "r": 8, "p": 1},
     "nonce": "<hex 12 B>", "ciphertext": "<hex>", "tag": "<hex 16 B>"}

``ciphertext`` and ``tag`` are AES-256-GCM, under the 32-byte scrypt key of
the passphrase, of the JSON ``{"keys": [{"purpose", "version", "value" (hex),
"created"}, ...]}``. The associated data is the canonical JSON (sorted keys,
no spaces) of ``{"format": ..., "kdf": ...}``, so the header cannot be edited
(say, to a cheaper scrypt cost) without the tag failing.

scrypt (RFC 7914) because a stolen key file is attacked offline: its memory
cost (128 * r * n = 32 MiB here, about 0.1 s) makes guessing passphrases on
GPUs expensive. GCM because it authenticates: a wrong passphrase or a damaged
file is detected, never decrypted into wrong keys.

The file is rewritten atomically (a temporary file in the same directory,
fsync, ``os.replace``, fsync of the directory) with mode 0600, under an
exclusive lock on a sibling ``.lock`` file, re-reading the file inside the
lock: two operators generating keys at once can neither lose one's key nor
leave a half-written file, and a crash leaves the old file or the new one.
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import json
import logging
import os
import stat
import sys
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from Crypto.Cipher import AES
from Crypto.Protocol.KDF import scrypt
from Crypto.Random import get_random_bytes

from cardlayout.errors import KeyStoreError
from cardlayout.fileio import atomic_write
from cardlayout.security.keys import KEY_SIZE, KeyInfo, KeyRef, Purpose, kcv
from cardlayout.security.keystore import KeyStore
from cardlayout.security.mac import aes_cmac, aes_cmacs

log = logging.getLogger(__name__)

FORMAT: Final = "cardlayout-keyfile/1"
PASSPHRASE_ENV: Final = "CARDLAYOUT_KEYSTORE_PASSPHRASE"
DEFAULT_SCRYPT_N: Final = 2**15
SCRYPT_R: Final = 8
SCRYPT_P: Final = 1
MAX_SCRYPT_N: Final = 2**20
"""Refuse files asking for more (1 GiB of memory): a planted file must not hang us."""

_SALT_SIZE: Final = 16
_NONCE_SIZE: Final = 12
_TAG_SIZE: Final = 16
_FILE_KEY_SIZE: Final = 32
_WRONG = "wrong passphrase or damaged key file"


@dataclass(frozen=True, slots=True)
class _Kdf:
    """scrypt parameters of one key file."""

    salt: bytes
    n: int
    r: int = SCRYPT_R
    p: int = SCRYPT_P

    def as_json(self) -> dict[str, Any]:
        return {"name": "scrypt", "salt": self.salt.hex(), "n": self.n, "r": self.r, "p": self.p}

    def derive(self, passphrase: str) -> bytes:
        secret = unicodedata.normalize("NFC", passphrase).encode("utf-8")
        key = scrypt(secret, self.salt, _FILE_KEY_SIZE, N=self.n, r=self.r, p=self.p)
        assert isinstance(key, bytes)
        return key


@dataclass(frozen=True, slots=True)
class _Entry:
    """One master key as held in the file (its value stays in this module)."""

    purpose: str
    version: int
    value: bytes
    created: str


def _aad(kdf: _Kdf) -> bytes:
    header = {"format": FORMAT, "kdf": kdf.as_json()}
    return json.dumps(header, sort_keys=True, separators=(",", ":")).encode("ascii")


def _is_power_of_two(n: int) -> bool:
    return n >= 2 and n & (n - 1) == 0


class KeyFileStore(KeyStore):
    """Master keys in a passphrase-encrypted JSON file (see the module text).

    Open with :meth:`open`, :meth:`create` or :meth:`open_or_create`. The
    decrypted keys and the file key (not the passphrase) stay in memory until
    :meth:`close`, so generating keys does not ask for the passphrase again.
    """

    backend = "keyfile"
    forkable = True
    """The keys are the process's memory: a forked child has the parent's copy."""

    def __init__(
        self, path: Path, kdf: _Kdf, file_key: bytes, entries: dict[tuple[str, int], _Entry]
    ) -> None:
        """Internal: use :meth:`open` or :meth:`create`."""
        self._path = path
        self._kdf = kdf
        self._file_key = file_key
        self._entries = entries
        self._closed = False

    # -- opening -----------------------------------------------------------------

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, passphrase: str | None = None) -> KeyFileStore:
        """Open an existing key file; :class:`KeyStoreError` if it is missing."""
        file = Path(path).expanduser()
        if not file.exists():
            raise KeyStoreError(
                f"no key file at {file}; create one with `cardlayout keys init --keystore {file}`"
            )
        kdf, document = _read_document(file)
        _warn_if_readable_by_others(file)
        secret = resolve_passphrase(passphrase, file, confirm=False)
        file_key = kdf.derive(secret)
        entries = _decrypt_entries(file, kdf, file_key, document)
        return cls(file, kdf, file_key, entries)

    @classmethod
    def create(
        cls,
        path: str | os.PathLike[str],
        *,
        passphrase: str | None = None,
        scrypt_n: int | None = None,
    ) -> KeyFileStore:
        """Create an empty key file; refuse to overwrite one.

        ``scrypt_n`` is the scrypt cost (a power of two, default 2**15); a
        lower one makes tests fast and keys weak, so use it for tests only.
        """
        file = Path(path).expanduser()
        n = DEFAULT_SCRYPT_N if scrypt_n is None else scrypt_n
        if not _is_power_of_two(n) or n > MAX_SCRYPT_N:
            raise KeyStoreError(f"scrypt cost {n} is not a power of two in 2..{MAX_SCRYPT_N}")
        if file.exists():
            raise KeyStoreError(f"key file {file} already exists; it is never overwritten")
        secret = resolve_passphrase(passphrase, file, confirm=True)
        try:
            file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise KeyStoreError(f"cannot create the directory of {file}: {exc.strerror}") from exc
        kdf = _Kdf(salt=get_random_bytes(_SALT_SIZE), n=n)
        store = cls(file, kdf, kdf.derive(secret), {})
        with _locked(file):
            if file.exists():
                raise KeyStoreError(f"key file {file} already exists; it is never overwritten")
            store._write({})
        log.info("created key file %s", file)
        return store

    @classmethod
    def open_or_create(
        cls,
        path: str | os.PathLike[str],
        *,
        passphrase: str | None = None,
        create: bool = False,
        scrypt_n: int | None = None,
    ) -> KeyFileStore:
        """Open ``path``; with ``create``, create it first if it is missing."""
        if create and not Path(path).expanduser().exists():
            return cls.create(path, passphrase=passphrase, scrypt_n=scrypt_n)
        return cls.open(path, passphrase=passphrase)

    # -- KeyStore ----------------------------------------------------------------

    @property
    def location(self) -> str:
        return f"key file {self._path}"

    @property
    def path(self) -> Path:
        """The key file."""
        return self._path

    def list_keys(self) -> list[KeyInfo]:
        return [
            KeyInfo(ref.purpose, ref.version, kcv(self._master(ref)), self.backend)
            for ref in self.held()
        ]

    def held(self) -> list[KeyRef]:
        """The keys decrypted at opening (or generated since), without check values."""
        self._check_open()
        order = {purpose.value: index for index, purpose in enumerate(Purpose)}
        refs = [
            KeyRef(Purpose(entry.purpose), entry.version)
            for entry in self._entries.values()
            if entry.purpose in order  # a newer program's purposes are kept, not shown
        ]
        return sorted(refs, key=lambda ref: (order[ref.purpose.value], ref.version))

    def generate(self, purpose: Purpose, version: int) -> KeyInfo:
        self._check_open()
        ref = KeyRef(purpose, version)
        with _locked(self._path):
            entries = self._reread()
            if (ref.purpose.value, ref.version) in entries:
                raise KeyStoreError(
                    f"master key {ref} already exists in {self.location}; "
                    f"master keys are never replaced: choose another version"
                )
            entry = _Entry(
                purpose=ref.purpose.value,
                version=ref.version,
                value=get_random_bytes(KEY_SIZE),
                created=datetime.now(UTC).isoformat(timespec="seconds"),
            )
            entries[(entry.purpose, entry.version)] = entry
            self._write(entries)
            self._entries = entries
        info = KeyInfo(ref.purpose, ref.version, kcv(entry.value), self.backend)
        log.info("generated master key %s in %s", info, self.location)
        return info

    def master_cmac(self, ref: KeyRef, message: bytes) -> bytes:
        return aes_cmac(self._master(ref), message)

    def master_cmac_many(self, ref: KeyRef, messages: Sequence[bytes]) -> list[bytes]:
        """All the MACs under the one master, its key scheduled once (:func:`aes_cmacs`)."""
        return aes_cmacs(self._master(ref), messages)

    def close(self) -> None:
        self.forget_derived_keys()
        self._entries = {}
        self._file_key = b""
        self._closed = True

    # -- internals ---------------------------------------------------------------

    def _master(self, ref: KeyRef) -> bytes:
        self._check_open()
        entry = self._entries.get((ref.purpose.value, ref.version))
        if entry is None:
            raise KeyStoreError(f"no master key {ref} in {self.location}")
        return entry.value

    def _check_open(self) -> None:
        if self._closed:
            raise KeyStoreError(f"{self.location} is closed")

    def _reread(self) -> dict[tuple[str, int], _Entry]:
        """The entries now on disk (another process may have added keys)."""
        kdf, document = _read_document(self._path)
        if kdf != self._kdf:
            raise KeyStoreError(f"{self.location} was replaced since it was opened; open it again")
        return _decrypt_entries(self._path, kdf, self._file_key, document)

    def _write(self, entries: dict[tuple[str, int], _Entry]) -> None:
        plain = json.dumps(
            {
                "keys": [
                    {
                        "purpose": e.purpose,
                        "version": e.version,
                        "value": e.value.hex(),
                        "created": e.created,
                    }
                    for e in sorted(entries.values(), key=lambda e: (e.purpose, e.version))
                ]
            },
            sort_keys=True,
        ).encode("utf-8")
        nonce = get_random_bytes(_NONCE_SIZE)
        cipher = AES.new(self._file_key, AES.MODE_GCM, nonce=nonce, mac_len=_TAG_SIZE)
        cipher.update(_aad(self._kdf))
        ciphertext, tag = cipher.encrypt_and_digest(plain)
        document = {
            "format": FORMAT,
            "kdf": self._kdf.as_json(),
            "nonce": nonce.hex(),
            "ciphertext": ciphertext.hex(),
            "tag": tag.hex(),
        }
        _atomic_write(self._path, (json.dumps(document, indent=2) + "\n").encode("ascii"))


def resolve_passphrase(passphrase: str | None, path: Path, *, confirm: bool) -> str:
    """The key file passphrase: argument, else environment, else a prompt.

    Order: ``passphrase``; the ``CARDLAYOUT_KEYSTORE_PASSPHRASE`` environment
    variable; a ``getpass`` prompt when stdin is a terminal (twice with
    ``confirm``, so a typo cannot lock the keys away). There is deliberately no
    command-line option: arguments are visible to every user in ``ps``.
    """
    if passphrase is None:
        passphrase = os.environ.get(PASSPHRASE_ENV)
    if passphrase is None:
        if not sys.stdin.isatty():
            raise KeyStoreError(
                f"no passphrase for key file {path}: set {PASSPHRASE_ENV} "
                f"or run from a terminal to be asked"
            )
        passphrase = getpass.getpass(f"Passphrase for key file {path}: ")
        if confirm and getpass.getpass("Repeat the passphrase: ") != passphrase:
            raise KeyStoreError("the two passphrases differ; nothing was created")
    if not passphrase:
        raise KeyStoreError(f"the passphrase for key file {path} is empty")
    return passphrase


def _read_document(path: Path) -> tuple[_Kdf, dict[str, Any]]:
    """Parse and check the outer document; the secret part is still encrypted."""

    def bad(reason: str) -> KeyStoreError:
        return KeyStoreError(f"{path} is not a {FORMAT} key file: {reason}")

    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise KeyStoreError(f"cannot read key file {path}: {exc.strerror}") from exc
    try:
        document = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise bad("not JSON") from exc
    if not isinstance(document, dict):
        raise bad("not a JSON object")
    if document.get("format") != FORMAT:
        raise bad(f"format is {document.get('format')!r}")
    params = document.get("kdf")
    if not isinstance(params, dict) or params.get("name") != "scrypt":
        raise bad("the kdf is not scrypt")
    n, r, p = params.get("n"), params.get("r"), params.get("p")
    if not (isinstance(n, int) and _is_power_of_two(n) and n <= MAX_SCRYPT_N):
        raise bad(f"scrypt n {n!r} is not a power of two up to {MAX_SCRYPT_N}")
    if not (isinstance(r, int) and 1 <= r <= 32 and isinstance(p, int) and 1 <= p <= 16):
        raise bad("scrypt r or p out of range")
    try:
        salt = bytes.fromhex(params["salt"])
        for name, size in (("nonce", _NONCE_SIZE), ("tag", _TAG_SIZE)):
            if len(bytes.fromhex(document[name])) != size:
                raise bad(f"{name} is not {size} bytes")
        bytes.fromhex(document["ciphertext"])
    except (KeyError, TypeError, ValueError) as exc:
        raise bad("salt, nonce, ciphertext or tag missing or not hex") from exc
    if len(salt) < _SALT_SIZE:
        raise bad("salt shorter than 16 bytes")
    return _Kdf(salt=salt, n=n, r=r, p=p), document


def _decrypt_entries(
    path: Path, kdf: _Kdf, file_key: bytes, document: dict[str, Any]
) -> dict[tuple[str, int], _Entry]:
    """Decrypt and check the key list; a failed tag is a wrong passphrase."""
    cipher = AES.new(
        file_key, AES.MODE_GCM, nonce=bytes.fromhex(document["nonce"]), mac_len=_TAG_SIZE
    )
    cipher.update(_aad(kdf))
    try:
        plain = cipher.decrypt_and_verify(
            bytes.fromhex(document["ciphertext"]), bytes.fromhex(document["tag"])
        )
    except ValueError:
        raise KeyStoreError(f"{_WRONG} {path}") from None
    try:
        content = json.loads(plain)
        entries: dict[tuple[str, int], _Entry] = {}
        for item in content["keys"]:
            entry = _Entry(
                purpose=str(item["purpose"]),
                version=int(item["version"]),
                value=bytes.fromhex(item["value"]),
                created=str(item.get("created", "")),
            )
            if len(entry.value) != KEY_SIZE or (entry.purpose, entry.version) in entries:
                raise ValueError("bad entry")
            entries[(entry.purpose, entry.version)] = entry
    except (KeyError, TypeError, ValueError):
        # No detail: the decrypted text holds key values, so it is never quoted.
        raise KeyStoreError(f"key file {path} decrypts but its key list is malformed") from None
    return entries


def _warn_if_readable_by_others(path: Path) -> None:
    with contextlib.suppress(OSError):
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            log.warning("key file %s has mode %04o; 0600 is expected", path, mode)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``<path>.lock`` (the key file itself is replaced, so
    it cannot carry the lock)."""
    lock_path = path.with_name(path.name + ".lock")
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise KeyStoreError(f"cannot lock key file {path}: {exc.strerror}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _atomic_write(path: Path, data: bytes) -> None:
    """Replace the key file atomically (:func:`cardlayout.fileio.atomic_write`)."""
    try:
        atomic_write(path, data)
    except OSError as exc:
        raise KeyStoreError(f"cannot write key file {path}: {exc.strerror}") from exc
