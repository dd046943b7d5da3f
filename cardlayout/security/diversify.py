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

from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Final, NoReturn, final

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

    def writeback_keys(self, meter_nos: Iterable[str]) -> MeterKeys:
        """:meth:`writeback_key` of many meters at once (a bulk import's).

        Equal to asking one by one, in one request to the store
        (:meth:`KeyStore.master_cmac_many`); a meter named twice is derived once.
        """
        return self._many_by_meter(Purpose.WRITEBACK_MAC, meter_nos)

    def _by_meter(self, purpose: Purpose, meter_no: str) -> SecretKey:
        return diversify(self._store, self.ref(purpose), number_bcd(meter_no, "meter_no"))

    def _many_by_meter(self, purpose: Purpose, meter_nos: Iterable[str]) -> MeterKeys:
        ref = self.ref(purpose)
        unique = list(dict.fromkeys(meter_nos))
        prefix = diversification_input(ref.purpose.value, b"")  # the factor comes last
        messages = [prefix + number_bcd(meter_no, "meter_no") for meter_no in unique]
        values = self._store.master_cmac_many(ref, messages)
        return MeterKeys(ref, dict(zip(unique, values, strict=True)))


@final
class MeterKeys(Mapping[str, SecretKey]):
    """Keys of one purpose for many meters, by meter number (:meth:`CardKeys.writeback_keys`).

    Wrapped as :class:`SecretKey` is, for the same reasons: ``repr`` names
    the master and the count, never a value, and the object refuses to be
    pickled. Looking a meter up gives a :class:`SecretKey`, which computes
    its check value (a CMAC) on creation; :meth:`value` gives the bytes for
    cryptography without that cost, which is what a bulk check of thousands
    of MACs wants.
    """

    __slots__ = ("_ref", "_values")

    def __init__(self, ref: KeyRef, values: dict[str, bytes]) -> None:
        self._ref = ref
        self._values = values

    @property
    def ref(self) -> KeyRef:
        """The master key the keys come from."""
        return self._ref

    def value(self, meter_no: str) -> bytes:
        """The 16 key bytes of ``meter_no``. Use them for cryptography only, never for output."""
        return self._values[meter_no]

    def __getitem__(self, meter_no: str) -> SecretKey:
        return SecretKey(self._values[meter_no])

    def __contains__(self, meter_no: object) -> bool:
        return meter_no in self._values

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"MeterKeys({self._ref}, {len(self._values)} meters)"

    __str__ = __repr__

    def __copy__(self) -> MeterKeys:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> MeterKeys:
        return self

    def __reduce_ex__(self, protocol: Any) -> NoReturn:
        raise TypeError("MeterKeys cannot be pickled: key values are never stored")
