"""Master keys in a PKCS#11 token (an HSM; SoftHSM2 in tests).

Each master key is an AES-128 secret key object generated inside the token
(C_GenerateKey), labelled ``<purpose>.v<version>``, with these attributes:
token object, private, sensitive, not extractable, not modifiable, sign and
verify only, and ``CKA_ALLOWED_MECHANISMS = {CKM_AES_CMAC}``. So the value can
neither be read out nor wrapped, and the key cannot be used for anything but a
CMAC; :meth:`Pkcs11KeyStore.master_cmac` is C_Sign with CKM_AES_CMAC, which
SoftHSM2 2.6 and the usual HSMs implement.

The store is named by an RFC 7512 URI (a subset)::

    pkcs11:token=LABEL[;serial=SERIAL]?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=env:VAR

Path attributes ``token`` (required) and ``serial``; query attributes
``module-path`` (default ``$CARDLAYOUT_PKCS11_MODULE``, else SoftHSM2's),
``pin-value`` (the PIN itself: visible in ``ps``, for tests), ``pin-source``
(``env:NAME``, or ``file:PATH`` / a path whose first line is the PIN). With
neither, the PIN is ``$CARDLAYOUT_PKCS11_PIN``, else asked on a terminal.

PKCS#11 login state belongs to the whole process, not to a session: a second
C_Login fails and any C_Logout logs every session out. So stores opened on one
token in one process share a single logged-in session (reference counted, its
calls serialised by a lock), and the last one to close logs out.
"""

from __future__ import annotations

import getpass
import hmac
import os
import re
import struct
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Final, TypeVar
from urllib.parse import unquote

import pkcs11
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11 import exceptions as p11e
from pkcs11.attributes import AttributeMapper

from cardlayout.errors import KeyStoreError
from cardlayout.security.keys import KEY_SIZE, KeyInfo, KeyRef, Purpose
from cardlayout.security.keystore import PKCS11_SCHEME, KeyStore

MODULE_ENV: Final = "CARDLAYOUT_PKCS11_MODULE"
PIN_ENV: Final = "CARDLAYOUT_PKCS11_PIN"
DEFAULT_MODULE: Final = "/usr/lib/softhsm/libsofthsm2.so"

_PATH_ATTRIBUTES: Final = frozenset({"token", "serial"})
_QUERY_ATTRIBUTES: Final = frozenset({"module-path", "pin-value", "pin-source"})
_LABEL = re.compile(r"^(?P<purpose>[a-z0-9-]+)\.v(?P<version>[0-9]{1,3})$")

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Pkcs11Uri:
    """The parts of a ``pkcs11:`` key store URI that this store uses."""

    token: str
    module_path: str
    serial: str | None = None
    pin_value: str | None = field(default=None, repr=False)
    pin_source: str | None = None

    def pin(self) -> str:
        """The user PIN: ``pin-value``, ``pin-source``, ``$CARDLAYOUT_PKCS11_PIN``, prompt."""
        if self.pin_value is not None:
            return self.pin_value
        if self.pin_source is not None:
            return _read_pin_source(self.pin_source)
        from_env = os.environ.get(PIN_ENV)
        if from_env is not None:
            return from_env
        if sys.stdin.isatty():
            return getpass.getpass(f"PIN for PKCS#11 token {self.token!r}: ")
        raise KeyStoreError(
            f"no PIN for PKCS#11 token {self.token!r}: add pin-source=env:VARIABLE to the URI, "
            f"set {PIN_ENV}, or run from a terminal to be asked"
        )


def parse_pkcs11_uri(uri: str) -> Pkcs11Uri:
    """Parse a key store URI (see the module text); :class:`KeyStoreError` if unusable."""
    if not uri.startswith(PKCS11_SCHEME):
        raise KeyStoreError(f"not a PKCS#11 URI (it starts with {PKCS11_SCHEME!r})")
    path_part, _, query_part = uri[len(PKCS11_SCHEME) :].partition("?")
    path = _attributes(path_part, ";", _PATH_ATTRIBUTES, "path")
    query = _attributes(query_part, "&", _QUERY_ATTRIBUTES, "query")
    token = path.get("token")
    if not token:
        raise KeyStoreError("a PKCS#11 key store URI needs token=LABEL")
    if "pin-value" in query and "pin-source" in query:
        raise KeyStoreError("a PKCS#11 URI takes pin-value or pin-source, not both")
    module = query.get("module-path") or os.environ.get(MODULE_ENV) or DEFAULT_MODULE
    return Pkcs11Uri(
        token=token,
        module_path=module,
        serial=path.get("serial"),
        pin_value=query.get("pin-value"),
        pin_source=query.get("pin-source"),
    )


def _attributes(text: str, separator: str, allowed: frozenset[str], kind: str) -> dict[str, str]:
    result: dict[str, str] = {}
    if not text:
        return result
    for item in text.split(separator):
        name, equals, value = item.partition("=")
        if not equals:
            raise KeyStoreError(f"PKCS#11 URI {kind} attribute {name!r} has no value")
        if name not in allowed:
            raise KeyStoreError(
                f"PKCS#11 URI {kind} attribute {name!r} is not supported "
                f"(supported: {', '.join(sorted(allowed))})"
            )
        if name in result:
            raise KeyStoreError(f"PKCS#11 URI attribute {name!r} is given twice")
        result[name] = unquote(value)
    return result


def _read_pin_source(source: str) -> str:
    if source.startswith("env:"):
        name = source[4:]
        value = os.environ.get(name)
        if value is None:
            raise KeyStoreError(f"pin-source names environment variable {name}, which is not set")
        return value
    file = Path(source[5:] if source.startswith("file:") else source)
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise KeyStoreError(f"cannot read the PIN file {file}: {exc.strerror}") from exc
    if not lines or not lines[0]:
        raise KeyStoreError(f"the PIN file {file} is empty")
    return lines[0]


def _attribute_mapper() -> AttributeMapper:
    """python-pkcs11's mapper plus CKA_ALLOWED_MECHANISMS (a CK_ULONG array)."""
    mapper = AttributeMapper()
    mapper.register_handler(
        Attribute.ALLOWED_MECHANISMS,
        lambda mechanisms: b"".join(struct.pack("L", int(m)) for m in mechanisms),
        lambda raw: [Mechanism(m) for (m,) in struct.iter_unpack("L", raw)],
    )
    return mapper


class _SharedSession:
    """One logged-in session per token per process, shared by its stores."""

    _registry: ClassVar[dict[tuple[str, bytes], _SharedSession]] = {}
    _registry_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, key: tuple[str, bytes], session: Any, pin: str) -> None:
        self.key = key
        self.session = session
        self.pin = pin
        self.users = 0
        self.lock = threading.RLock()

    @classmethod
    def acquire(cls, module: str, token: Any, pin: str) -> _SharedSession:
        key = (module, bytes(token.serial))
        with cls._registry_lock:
            shared = cls._registry.get(key)
            if shared is not None:
                # The token is already logged in: check the PIN here, since
                # the token will not be asked again.
                if not hmac.compare_digest(shared.pin.encode(), pin.encode()):
                    raise KeyStoreError(f"wrong PIN for PKCS#11 token {token.label!r}")
            else:
                shared = cls(key, _login(token, pin), pin)
                cls._registry[key] = shared
            shared.users += 1
            return shared

    def release(self) -> None:
        with self._registry_lock:
            self.users -= 1
            if self.users > 0:
                return
            if self._registry.get(self.key) is self:
                del self._registry[self.key]
        # A session already gone (token removed, library finalised) needs no release.
        with self.lock, suppress(p11e.PKCS11Error):
            self.session.close()


def _login(token: Any, pin: str) -> Any:
    label = token.label
    try:
        return token.open(user_pin=pin, rw=True, attribute_mapper=_attribute_mapper())
    except (p11e.PinIncorrect, p11e.PinLenRange):
        raise KeyStoreError(f"wrong PIN for PKCS#11 token {label!r}") from None
    except p11e.PinLocked:
        raise KeyStoreError(f"the PIN of PKCS#11 token {label!r} is locked") from None
    except p11e.PinExpired:
        raise KeyStoreError(f"the PIN of PKCS#11 token {label!r} has expired") from None
    except p11e.PKCS11Error as exc:
        raise KeyStoreError(
            f"cannot log in to PKCS#11 token {label!r}: {type(exc).__name__}"
        ) from None


class Pkcs11KeyStore(KeyStore):
    """Master keys as non-extractable AES secret keys in a PKCS#11 token."""

    backend = "pkcs11"

    def __init__(self, token_label: str, module: str, shared: _SharedSession) -> None:
        """Internal: use :meth:`open`."""
        self._token_label = token_label
        self._module = module
        self._shared: _SharedSession | None = shared

    @classmethod
    def open(cls, uri: str) -> Pkcs11KeyStore:
        """Load the module, find the token, log in."""
        parsed = parse_pkcs11_uri(uri)
        module = parsed.module_path
        if not Path(module).exists():
            raise KeyStoreError(
                f"PKCS#11 module {module} not found: install it (SoftHSM2: Debian package "
                f"softhsm2) or give module-path= in the URI or {MODULE_ENV}"
            )
        try:
            library = pkcs11.lib(module)
            tokens = list(library.get_tokens())
        except p11e.PKCS11Error as exc:
            raise KeyStoreError(f"cannot load PKCS#11 module {module}: {exc}") from None
        matches = [
            token
            for token in tokens
            if token.label == parsed.token
            and (parsed.serial is None or _serial_text(token.serial) == parsed.serial)
        ]
        if not matches:
            found = ", ".join(repr(t.label) for t in tokens if t.label) or "none"
            raise KeyStoreError(
                f"no PKCS#11 token labelled {parsed.token!r} in {module}; tokens found: {found}"
            )
        if len(matches) > 1:
            raise KeyStoreError(
                f"{len(matches)} PKCS#11 tokens are labelled {parsed.token!r}; "
                f"add serial= to the URI"
            )
        token = matches[0]
        shared = _SharedSession.acquire(module, token, parsed.pin())
        return cls(parsed.token, module, shared)

    @property
    def location(self) -> str:
        return f"PKCS#11 token {self._token_label!r}"

    def list_keys(self) -> list[KeyInfo]:
        return [
            KeyInfo(ref.purpose, ref.version, self.check_value(ref), self.backend)
            for ref in self.held()
        ]

    def held(self) -> list[KeyRef]:
        """The token's master keys by label: one search, no MAC computed in the token."""
        order = {purpose.value: index for index, purpose in enumerate(Purpose)}
        refs: list[KeyRef] = []

        def find(session: Any) -> None:
            for obj in session.get_objects(
                {Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.KEY_TYPE: KeyType.AES}
            ):
                match = _LABEL.match(obj.label or "")
                if match and match["purpose"] in order and 1 <= int(match["version"]) <= 255:
                    refs.append(KeyRef(Purpose(match["purpose"]), int(match["version"])))

        self._call(find, "list the keys")
        return sorted(set(refs), key=lambda ref: (order[ref.purpose.value], ref.version))

    def generate(self, purpose: Purpose, version: int) -> KeyInfo:
        ref = KeyRef(purpose, version)

        def create(session: Any) -> None:
            if self._find(session, ref) is not None:
                raise KeyStoreError(
                    f"master key {ref} already exists in {self.location}; "
                    f"master keys are never replaced: choose another version"
                )
            session.generate_key(
                KeyType.AES,
                KEY_SIZE * 8,
                label=ref.label,
                id=ref.label.encode("ascii"),
                store=True,
                template={
                    Attribute.TOKEN: True,
                    Attribute.PRIVATE: True,
                    Attribute.SENSITIVE: True,
                    Attribute.EXTRACTABLE: False,
                    Attribute.MODIFIABLE: False,
                    Attribute.SIGN: True,
                    Attribute.VERIFY: True,
                    Attribute.ENCRYPT: False,
                    Attribute.DECRYPT: False,
                    Attribute.WRAP: False,
                    Attribute.UNWRAP: False,
                    Attribute.DERIVE: False,
                    Attribute.ALLOWED_MECHANISMS: [Mechanism.AES_CMAC],
                },
            )

        self._call(create, f"generate master key {ref}")
        return KeyInfo(ref.purpose, ref.version, self.check_value(ref), self.backend)

    def master_cmac(self, ref: KeyRef, message: bytes) -> bytes:
        def sign(session: Any) -> bytes:
            key = self._find(session, ref)
            if key is None:
                raise KeyStoreError(f"no master key {ref} in {self.location}")
            mac = key.sign(bytes(message), mechanism=Mechanism.AES_CMAC)
            return bytes(mac)

        result = self._call(sign, f"compute a CMAC with master key {ref}")
        if len(result) != 16:
            raise KeyStoreError(f"{self.location} returned a {len(result)}-byte AES-CMAC")
        return result

    def master_cmac_many(self, ref: KeyRef, messages: Sequence[bytes]) -> list[bytes]:
        """One C_Sign per message inside the token, with the key found once and the
        session held for all of them (the token has no batch operation)."""

        def sign_all(session: Any) -> list[bytes]:
            key = self._find(session, ref)
            if key is None:
                raise KeyStoreError(f"no master key {ref} in {self.location}")
            return [
                bytes(key.sign(bytes(message), mechanism=Mechanism.AES_CMAC))
                for message in messages
            ]

        results = self._call(sign_all, f"compute CMACs with master key {ref}")
        if any(len(result) != 16 for result in results):
            raise KeyStoreError(f"{self.location} returned an AES-CMAC that is not 16 bytes")
        return results

    def close(self) -> None:
        self.forget_derived_keys()
        shared, self._shared = self._shared, None
        if shared is not None:
            shared.release()

    def _find(self, session: Any, ref: KeyRef) -> Any:
        try:
            return session.get_key(
                object_class=ObjectClass.SECRET_KEY, key_type=KeyType.AES, label=ref.label
            )
        except p11e.NoSuchKey:
            return None
        except p11e.MultipleObjectsReturned:
            raise KeyStoreError(
                f"{self.location} holds several keys labelled {ref.label!r}; remove the extra ones"
            ) from None

    def _call(self, operation: Callable[[Any], T], what: str) -> T:
        """Run ``operation(session)`` under the session lock, mapping PKCS#11 errors."""
        with self._session() as session:
            try:
                return operation(session)
            except p11e.PKCS11Error as exc:
                raise KeyStoreError(
                    f"{self.location} cannot {what}: {type(exc).__name__} {exc}".rstrip()
                ) from None

    @contextmanager
    def _session(self) -> Iterator[Any]:
        shared = self._shared
        if shared is None:
            raise KeyStoreError(f"{self.location} is closed")
        with shared.lock:
            yield shared.session


def _serial_text(serial: bytes | str) -> str:
    text = serial.decode("ascii", "replace") if isinstance(serial, bytes) else serial
    return text.strip()
