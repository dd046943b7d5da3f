"""Keys, MACs and secure messaging for the user card (docs/card.md section 6).

- :mod:`.keys`: :class:`SecretKey` (a key value that shows only its KCV),
  :class:`Purpose`, :class:`KeyRef`, :class:`KeyInfo`, :func:`kcv`.
- :mod:`.mac`: AES-CMAC, the ISO/IEC 9797-1 retail MAC, data MACs.
- :mod:`.keystore`: the :class:`KeyStore` interface and :func:`open_keystore`;
  back ends :mod:`.keyfile` (encrypted file) and :mod:`.pkcs11store` (HSM,
  imported only when a ``pkcs11:`` store is opened).
- :mod:`.diversify`: per-card and per-meter keys, :class:`CardKeys`.
- :mod:`.session`: authentication cryptograms, session key,
  :class:`SecureMessaging` (shared by the terminal and the virtual card).

Rule of the package: key values never appear in logs, output or exception
messages; names, versions and key check values do.
"""

from cardlayout.security.diversify import (
    FACTORY_TRANSPORT_MASTER,
    CardKeys,
    diversify,
    transport_key,
)
from cardlayout.security.keys import KeyInfo, KeyRef, Purpose, SecretKey, kcv
from cardlayout.security.keystore import KeyStore, init_master_keys, open_keystore
from cardlayout.security.mac import (
    MacLabel,
    aes_cmac,
    data_mac,
    number_bcd,
    retail_mac,
    verify_data_mac,
)
from cardlayout.security.session import (
    SecureMessaging,
    card_cryptogram,
    external_cryptogram,
    internal_auth_response,
    open_external_cryptogram,
    random_challenge,
    session_key,
    verify_card_cryptogram,
    verify_internal_auth_response,
)

__all__ = [
    "FACTORY_TRANSPORT_MASTER",
    "CardKeys",
    "KeyInfo",
    "KeyRef",
    "KeyStore",
    "MacLabel",
    "Purpose",
    "SecretKey",
    "SecureMessaging",
    "aes_cmac",
    "card_cryptogram",
    "data_mac",
    "diversify",
    "external_cryptogram",
    "init_master_keys",
    "internal_auth_response",
    "kcv",
    "number_bcd",
    "open_external_cryptogram",
    "open_keystore",
    "random_challenge",
    "retail_mac",
    "session_key",
    "transport_key",
    "verify_card_cryptogram",
    "verify_data_mac",
    "verify_internal_auth_response",
]
