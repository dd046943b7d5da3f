"""Per-card and per-meter keys, diversified from the master keys (docs/card.md 6.1).

    K = AES-CMAC(master, 01 ‖ purpose (ASCII) ‖ 00 ‖ factor)

with factor = the card serial (8 bytes) for ``card-issuer`` and the meter
number (6 bytes BCD) for the other purposes. Diversifying means a key read out
of one card or one meter opens that card or meter only, never the fleet; and
the CMAC runs inside the key store, so the master never leaves it.

The leading ``01`` and the ``00`` after the purpose follow NIST SP 800-108's
counter-mode layout (counter ‖ label ‖ 00 ‖ context): the purpose in the
input means two purposes never yield the same key even from one master, and
the ``00`` keeps the label and the factor apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from cardlayout.errors import FormatError
from cardlayout.security.keys import KeyRef, Purpose, SecretKey
from cardlayout.security.keystore import KeyStore
from cardlayout.security.mac import SERIAL_SIZE, aes_cmac, number_bcd

DIVERSIFY_PREFIX: Final = b"\x01"

FACTORY_TRANSPORT_MASTER: Final = bytes(range(16))
"""The published factory master 000102..0F of blank cards.

Public on purpose, as card manufacturers publish their default keys: the
transport key only protects a blank card on its way to personalisation,
which must happen in a trusted room. It is never a master in a key store.
"""

TRANSPORT_LABEL: Final = "transport"


def diversification_input(label: str, factor: bytes) -> bytes:
    """``01 ‖ label (ASCII) ‖ 00 ‖ factor``: the message CMAC'd under the master."""
    return DIVERSIFY_PREFIX + label.encode("ascii") + b"\x00" + bytes(factor)


def diversify(store: KeyStore, ref: KeyRef, factor: bytes) -> SecretKey:
    """The key of purpose ``ref`` for ``factor``, computed inside ``store``."""
    return SecretKey(store.master_cmac(ref, diversification_input(ref.purpose.value, factor)))


def transport_key(serial: bytes) -> SecretKey:
    """The factory transport key (KID 00) of the blank card with ``serial``."""
    return SecretKey(
        aes_cmac(FACTORY_TRANSPORT_MASTER, diversification_input(TRANSPORT_LABEL, _serial(serial)))
    )


def _serial(serial: bytes) -> bytes:
    if not isinstance(serial, bytes | bytearray) or len(serial) != SERIAL_SIZE:
        size = len(serial) if isinstance(serial, bytes | bytearray) else type(serial).__name__
        raise FormatError(f"a card serial is {SERIAL_SIZE} bytes, got {size}", field="serial")
    return bytes(serial)


class CardKeys:
    """The keys the centre (or a meter's factory) needs, from one key store.

    ``versions`` pins the master key version per purpose; an unpinned purpose
    uses the store's latest version, looked up once and then kept, so every
    key one :class:`CardKeys` hands out in a sale comes from the same master.
    :meth:`ref` tells which master (and so which key version to write to a
    card with WRITE KEY) a key came from.
    """

    def __init__(self, store: KeyStore, versions: Mapping[Purpose, int] | None = None) -> None:
        self._store = store
        self._refs: dict[Purpose, KeyRef] = {}
        for purpose, version in (versions or {}).items():
            ref = KeyRef(Purpose(purpose), version)
            self._refs[ref.purpose] = ref

    @property
    def store(self) -> KeyStore:
        """The key store the keys come from."""
        return self._store

    def ref(self, purpose: Purpose) -> KeyRef:
        """The master key used for ``purpose``."""
        purpose = Purpose(purpose)
        ref = self._refs.get(purpose)
        if ref is None:
            ref = KeyRef(purpose, self._store.latest_version(purpose))
            self._refs[purpose] = ref
        return ref

    def version_of(self, purpose: Purpose) -> int:
        """The master key version used for ``purpose``."""
        return self.ref(purpose).version

    def issuer_key(self, serial: bytes) -> SecretKey:
        """The card's issuer key (KID 01): ``card-issuer`` by card serial."""
        return diversify(self._store, self.ref(Purpose.CARD_ISSUER), _serial(serial))

    def meter_card_key(self, meter_no: str) -> SecretKey:
        """The card's meter key (KID 02): ``card-meter`` by meter number."""
        return self._by_meter(Purpose.CARD_METER, meter_no)

    def purse_key(self, meter_no: str) -> SecretKey:
        """The purse MAC key: ``purse-mac`` by meter number."""
        return self._by_meter(Purpose.PURSE_MAC, meter_no)

    def writeback_key(self, meter_no: str) -> SecretKey:
        """The write-back and history MAC key: ``writeback-mac`` by meter number."""
        return self._by_meter(Purpose.WRITEBACK_MAC, meter_no)

    def _by_meter(self, purpose: Purpose, meter_no: str) -> SecretKey:
        return diversify(self._store, self.ref(purpose), number_bcd(meter_no, "meter_no"))
