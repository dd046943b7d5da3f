"""Whole-card operations for the billing centre, the meter and the tools.

Each operation is one connection: select the application, authenticate once,
write the files in the order that makes the purse the commit of a purchase
(docs/card.md 5.2), and nothing more. Data MACs (purse by the centre,
write-back and history by the meter) are computed here from the key store,
so a caller cannot forget one.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from cardlayout.apdu import commands
from cardlayout.apdu.status import ReferenceUnusableError, WrongParametersError
from cardlayout.card.session import CardSession
from cardlayout.card.snapshot import (
    CardSnapshot,
    FileStatus,
    read_snapshot,
    reread,
    select_application,
)
from cardlayout.codec import END, START
from cardlayout.errors import CardLayoutError, FormatError, SecurityError
from cardlayout.files import (
    CARD_KINDS,
    HISTORY,
    MAC_SIZE,
    MAX_EVENTS,
    PARAMETERS,
    PURSE,
    TARIFF_SET_1,
    TARIFF_SET_2,
    WRITE_BACK,
    CardFile,
    CardType,
    Event,
    EventCode,
    History,
    HistoryFile,
    InsertionResult,
    MeterStatus,
    Parameters,
    Purse,
    TariffSet,
    UserType,
    Utility,
    WriteBack,
    WriteBackFile,
)
from cardlayout.security.diversify import CardKeys, transport_key
from cardlayout.security.keys import Purpose, SecretKey
from cardlayout.security.mac import (
    MacLabel,
    aes_cmacs_keyed,
    check_data_macs,
    data_mac,
    data_mac_inputs,
    verify_data_mac,
    verify_data_macs,
)
from cardlayout.transport.channel import CardChannel
from cardlayout.vcard.cos import DF_TYPE, EF_TYPE, KID_ISSUER, KID_METER, KID_TRANSPORT
from cardlayout.vcard.image import MF

SW_FILE_EXISTS = 0x6A89

MeterFile = WriteBackFile | HistoryFile

_LABELS = {
    PURSE.name: MacLabel.PURSE,
    WRITE_BACK.name: MacLabel.WRITE_BACK,
    HISTORY.name: MacLabel.HISTORY,
}


class CardStateError(CardLayoutError):
    """The card is not in the state the operation needs (blank, wrong kind, ...)."""


def _file_descriptor(fid: int, size: int, sfi: int, update_keys: tuple[int, ...]) -> bytes:
    bitmap = 0
    for kid in update_keys:
        bitmap |= 1 << kid
    return (
        bytes((EF_TYPE,)) + fid.to_bytes(2, "big") + size.to_bytes(2, "big") + bytes((sfi, bitmap))
    )


def _update_keys(file_name: str) -> tuple[int, ...]:
    if file_name in (WRITE_BACK.name, HISTORY.name):
        return (KID_ISSUER, KID_METER)
    return (KID_ISSUER,)


def personalise(
    channel: CardChannel,
    keys: CardKeys,
    *,
    utility: Utility = Utility.ELECTRICITY,
    card_type: CardType = CardType.OPENING,
) -> bytes:
    """Turn a factory-blank card into a card of ``card_type`` for ``utility``.

    Authenticates with the published transport key (which also proves the
    card is a blank of this profile), creates the application and the kind's
    files, loads the issuer key diversified by the card serial, activates the
    card (which disables the transport key), and writes the cleared
    write-back and history so the first meter sees an empty write-back.

    A card pulled half way is not scrap: run again, this picks up where the
    card stopped (files that exist are kept, blank ones are written).
    Returns the card serial.
    """
    if not channel.atr:
        channel.connect()
    snapshot = read_snapshot(channel, utility)
    spec = CARD_KINDS[card_type]
    pending = [f for f in spec.files if f.name in (WRITE_BACK.name, HISTORY.name)]
    # Finished means every file the kind has and the cleared files written;
    # anything less is a personalisation cut short, which this run completes.
    if snapshot.personalised and all(snapshot.state(f).readable for f in pending):
        raise CardStateError(
            f"card {snapshot.serial.hex().upper()} is already personalised for "
            f"{snapshot.utility.value if snapshot.utility else 'another utility'}"
        )
    serial = snapshot.serial
    channel.send(commands.select(MF), "SELECT of the MF")
    try:
        session = CardSession.open(
            channel, KID_TRANSPORT, transport_key(serial), who="transport key"
        )
    except (ReferenceUnusableError, WrongParametersError):
        session = None  # activated already: only the cleared files may be missing
    if session is not None:
        _create_structure(channel, utility, spec.files)
        issuer_version = keys.version_of(Purpose.CARD_ISSUER)
        session.write_key(KID_ISSUER, keys.issuer_key(serial), issuer_version)
        channel.send(commands.activate_card(), "ACTIVATE FILE")
    elif not snapshot.personalised:
        raise CardStateError(
            f"card {serial.hex().upper()} refuses the factory transport key: "
            "it is not a blank card of this profile"
        )
    select_application(channel, utility)
    issuer = CardSession.open(channel, KID_ISSUER, keys.issuer_key(serial), who="issuer key")
    for file in pending:
        # Files made just now are blank; on a resumed run the first snapshot knows.
        if session is not None or snapshot.state(file).status is not FileStatus.CLEARED:
            issuer.write_file(file, file.encode(None))
    return serial


def _create_structure(
    channel: CardChannel, utility: Utility, files: tuple[CardFile[Any], ...]
) -> None:
    """CREATE FILE the DF and its EFs, keeping whatever a torn run made."""
    try:
        channel.send(
            commands.create_file(bytes((DF_TYPE,)) + utility.df.to_bytes(2, "big") + bytes(4)),
            f"CREATE FILE of the {utility.value} DF",
        )
    except WrongParametersError as exc:
        if exc.sw != SW_FILE_EXISTS:
            raise
        select_application(channel, utility)
    for file in files:
        try:
            channel.send(
                commands.create_file(
                    _file_descriptor(file.fid, file.size, file.sfi, _update_keys(file.name))
                ),
                f"CREATE FILE of {file.name}",
            )
        except WrongParametersError as exc:
            if exc.sw != SW_FILE_EXISTS:
                raise


def open_issuer_session(
    channel: CardChannel, keys: CardKeys, snapshot: CardSnapshot
) -> CardSession:
    """Select the application of ``snapshot`` and authenticate as the issuer."""
    if snapshot.utility is None:
        raise CardStateError(f"card {snapshot.serial.hex().upper()} is blank: personalise it first")
    select_application(channel, snapshot.utility)
    return CardSession.open(channel, KID_ISSUER, keys.issuer_key(snapshot.serial), who="issuer key")


def open_meter_session(channel: CardChannel, meter_key: SecretKey, utility: Utility) -> CardSession:
    """Authenticate as the meter the card is bound to (for the write-back)."""
    select_application(channel, utility)
    return CardSession.open(channel, KID_METER, meter_key, who="meter key")


def purse_mac(keys: CardKeys, purse: Purse, params: Parameters, serial: bytes) -> bytes:
    """The centre's MAC over a purse, for the meter to verify."""
    return data_mac(
        keys.purse_key(params.meter_no),
        MacLabel.PURSE,
        PURSE.mac_message(purse),
        params.meter_no,
        params.customer_no,
        serial,
    )


@dataclass(frozen=True)
class PurchaseWrite:
    """What one sale writes to a user card.

    ``purse`` is written without a MAC; the MAC is added here. ``bind_meter``
    loads the meter key (opening and replacement cards).
    """

    parameters: Parameters
    purse: Purse
    tariff_set_1: TariffSet | None = None
    tariff_set_2: TariffSet | None = None
    clear_write_back: bool = True
    bind_meter: bool = False


def write_purchase(
    channel: CardChannel, keys: CardKeys, snapshot: CardSnapshot, write: PurchaseWrite
) -> CardSnapshot:
    """Write a purchase: write-back clear, tariff sets, parameters, purse last.

    The purse is the commit: a card pulled before its last byte leaves the old
    purse count (or a torn purse, which no meter loads), so the meter cannot
    load a purchase whose parameters did not all arrive. Returns the card as
    read back after writing, for the caller to confirm the sale against.
    """
    if snapshot.utility is None:
        raise CardStateError("the card is blank: personalise it first")
    if write.parameters.card_type not in (
        CardType.OPENING,
        CardType.PURCHASE,
        CardType.REPLACEMENT,
    ):
        raise CardStateError(f"{write.parameters.card_type.name.lower()} is not a user card type")
    session = open_issuer_session(channel, keys, snapshot)
    if write.bind_meter:
        session.write_key(
            KID_METER,
            keys.meter_card_key(write.parameters.meter_no),
            keys.version_of(Purpose.CARD_METER),
        )
    if write.clear_write_back:
        session.write_file(WRITE_BACK, WRITE_BACK.encode(None))
    if write.tariff_set_1 is not None:
        session.write_file(TARIFF_SET_1, TARIFF_SET_1.encode(write.tariff_set_1))
    if write.tariff_set_2 is not None:
        session.write_file(TARIFF_SET_2, TARIFF_SET_2.encode(write.tariff_set_2))
    session.write_file(PARAMETERS, PARAMETERS.encode(write.parameters))
    purse = write.purse.with_mac(purse_mac(keys, write.purse, write.parameters, snapshot.serial))
    session.write_file(PURSE, PURSE.encode(purse))
    written: list[CardFile[Any]] = [WRITE_BACK] if write.clear_write_back else []
    written += [
        f for f, v in ((TARIFF_SET_1, write.tariff_set_1), (TARIFF_SET_2, write.tariff_set_2)) if v
    ]
    return reread(channel, snapshot, [*written, PARAMETERS, PURSE])


def clear_write_back(channel: CardChannel, keys: CardKeys, snapshot: CardSnapshot) -> None:
    """Mark the write-back as read and reconciled (cleared frame)."""
    session = open_issuer_session(channel, keys, snapshot)
    session.write_file(WRITE_BACK, WRITE_BACK.encode(None))


def write_tool_card(
    channel: CardChannel,
    keys: CardKeys,
    snapshot: CardSnapshot,
    parameters: Parameters,
    tariff_set_1: TariffSet | None = None,
    tariff_set_2: TariffSet | None = None,
) -> CardSnapshot:
    """Write a parameter-setting, reading or test/clear card.

    The card must have been personalised as that kind (its files differ).
    The tool card's write-back is cleared, ready for the meter's receipt, and
    its meter key is loaded: the key of the target meter, or for a card for
    any meter (meter number all zeros) the utility's tool key, which every
    meter's security module holds (docs/card.md 4.3).
    """
    kind = parameters.card_type
    spec = CARD_KINDS[kind]
    if spec.user_card:
        raise CardStateError(f"{kind.name.lower()} is a user card type, not a tool card")
    if snapshot.card_type is not None and snapshot.card_type is not kind:
        raise CardStateError(
            f"the card is a {snapshot.card_type.name.lower()} card, not {kind.name.lower()}"
        )
    present = {f.name for f in spec.files}
    if any(f.name not in snapshot.files for f in spec.files):
        raise CardStateError(f"the card was not personalised as a {kind.name.lower()} card")
    session = open_issuer_session(channel, keys, snapshot)
    # The meter authenticates the tool card with the key of its meter number,
    # or, for "any meter" (all zeros), with the utility-wide tool key.
    session.write_key(
        KID_METER, keys.meter_card_key(parameters.meter_no), keys.version_of(Purpose.CARD_METER)
    )
    session.write_file(WRITE_BACK, WRITE_BACK.encode(None))
    if tariff_set_1 is not None and TARIFF_SET_1.name in present:
        session.write_file(TARIFF_SET_1, TARIFF_SET_1.encode(tariff_set_1))
    if tariff_set_2 is not None and TARIFF_SET_2.name in present:
        session.write_file(TARIFF_SET_2, TARIFF_SET_2.encode(tariff_set_2))
    session.write_file(PARAMETERS, PARAMETERS.encode(parameters))
    written: list[CardFile[Any]] = [WRITE_BACK, PARAMETERS]
    written += [
        f
        for f, v in ((TARIFF_SET_1, tariff_set_1), (TARIFF_SET_2, tariff_set_2))
        if v and f.name in present
    ]
    return reread(channel, snapshot, written)


def verify_purse(purse: Purse, params: Parameters, serial: bytes, purse_key: SecretKey) -> None:
    """Meter side: check the centre's MAC on the purse, or raise SecurityError."""
    verify_data_mac(
        purse_key,
        MacLabel.PURSE,
        PURSE.mac_message(purse),
        params.meter_no,
        params.customer_no,
        serial,
        purse.mac,
    )


def _readable(snapshot: CardSnapshot, file: CardFile[Any]) -> Any:
    state = snapshot.state(file)
    if not state.readable:
        raise FormatError(f"the {file.name} cannot be read: {state.problem or state.status.value}")
    return state.value


def verified_write_back(keys: CardKeys, snapshot: CardSnapshot) -> WriteBack | None:
    """Centre side: the card's write-back after checking the meter's MAC.

    ``None`` means cleared (nothing new since the last sale). A write-back the
    meter did not MAC (forged or copied from another card) raises
    :class:`SecurityError`; a torn or malformed one raises :class:`FormatError`.
    """
    wb: WriteBack | None = _readable(snapshot, WRITE_BACK)
    if wb is not None:
        _check_meter_mac(keys.writeback_key(wb.meter_no), WRITE_BACK, wb, wb, snapshot.serial)
    return wb


def verified_history(keys: CardKeys, snapshot: CardSnapshot, identity: WriteBack) -> History | None:
    """Centre side: the card's history after checking the meter's MAC.

    ``identity`` is the verified write-back of the same insertion: the
    history is MAC'd over the same meter and customer numbers.
    """
    history: History | None = _readable(snapshot, HISTORY)
    if history is not None:
        key = keys.writeback_key(identity.meter_no)
        _check_meter_mac(key, HISTORY, history, identity, snapshot.serial)
    return history


def verify_meter_report(
    keys: CardKeys, serial: bytes, write_back: WriteBack, history: History | None
) -> None:
    """Centre side: check the meter's MACs on a write-back and history read elsewhere.

    For reports that did not come through a card in the centre's own reader
    (the offline card writer's stored records): the same check as
    :func:`verified_write_back` and :func:`verified_history`, over the card
    ``serial`` the record names. Raises :class:`SecurityError` if either MAC
    is wrong, so a record edited, copied to another card or made without the
    meter's key is never reconciled.
    """
    key = keys.writeback_key(write_back.meter_no)
    macs = [(MacLabel.WRITE_BACK, WRITE_BACK.mac_message(write_back), write_back.mac)]
    if history is not None:
        macs.append((MacLabel.HISTORY, HISTORY.mac_message(history), history.mac))
    verify_data_macs(key, write_back.meter_no, write_back.customer_no, serial, macs)


def verify_meter_files(
    writeback_key: SecretKey | bytes,
    serial: bytes,
    write_back: WriteBack,
    raw_write_back: bytes,
    history: History | None,
    raw_history: bytes | None,
) -> None:
    """:func:`verify_meter_report` with the meter's key at hand and the files' bytes.

    One record of :func:`verify_meter_files_many`, which a bulk import
    uses with the keys of a whole batch derived at once
    (:meth:`CardKeys.writeback_keys`). ``raw_write_back`` and
    ``raw_history`` are the whole EF05 and EF06 files that ``write_back`` and
    ``history`` were decoded from: each MAC is checked over the file's body
    without its MAC, which is what the meter MACed, instead of encoding the
    value again (that costs more than the MAC). The codecs are canonical
    (a file that decodes is the encoding of its value: "one value, one
    encoding" in tests/cardlayout/test_card_files.py), so the outcome is
    :func:`verify_meter_report`'s, the same MACs, messages and order
    (tests/cardlayout/test_meter_report_bulk.py compares the two).
    """
    record = (writeback_key, serial, write_back, raw_write_back, history, raw_history)
    outcome = verify_meter_files_many([record])[0]
    if outcome is not None:
        raise outcome


MeterFiles = tuple[SecretKey | bytes, bytes, WriteBack, bytes, History | None, bytes | None]
"""One record for :func:`verify_meter_files_many`: the meter's write-back key, the card
serial, the write-back and its file bytes, the history and its file bytes."""


def verify_meter_files_many(records: Sequence[MeterFiles]) -> list[CardLayoutError | None]:
    """:func:`verify_meter_files` of many records at once: what each would raise, or None.

    For a bulk import: the MACs of all the records, each under its meter's
    key, are computed together (:func:`aes_cmacs_keyed`), each key scheduled
    once for its meter's two MACs. Entry ``i`` is the :class:`SecurityError`
    or other :class:`CardLayoutError` (a file of the wrong size, a number
    that is not twelve digits) that ``verify_meter_files(*records[i])``
    raises, with the same message, or None where it returns;
    tests/cardlayout/test_meter_report_bulk.py compares the two. A history
    without its file bytes is a programming error and raises
    :class:`ValueError` at once, as there.
    """
    outcomes: list[CardLayoutError | None] = [None] * len(records)
    keys: list[SecretKey | bytes] = []
    messages: list[bytes] = []
    pending: list[tuple[int, list[tuple[str, bytes]]]] = []
    for index, (key, serial, write_back, raw_write_back, history, raw_history) in enumerate(
        records
    ):
        try:
            bodies = [(MacLabel.WRITE_BACK.value, _mac_message(WRITE_BACK, raw_write_back))]
            macs = [(MacLabel.WRITE_BACK.value, write_back.mac)]
            if history is not None:
                if raw_history is None:
                    raise ValueError("the history's file bytes are needed to check its MAC")
                bodies.append((MacLabel.HISTORY.value, _mac_message(HISTORY, raw_history)))
                macs.append((MacLabel.HISTORY.value, history.mac))
            inputs = data_mac_inputs(write_back.meter_no, write_back.customer_no, serial, bodies)
        except CardLayoutError as exc:
            outcomes[index] = exc
            continue
        keys += [key] * len(inputs)
        messages += inputs
        pending.append((index, macs))
    tags = iter(aes_cmacs_keyed(keys, messages))
    for index, macs in pending:
        _, serial, write_back, _, _, _ = records[index]
        try:
            check_data_macs(
                write_back.meter_no,
                write_back.customer_no,
                serial,
                macs,
                [next(tags) for _ in macs],
            )
        except SecurityError as exc:
            outcomes[index] = exc
    return outcomes


def _mac_message(file: MeterFile, raw: bytes) -> bytes:
    """The body of a whole (already decoded) file without its trailing MAC."""
    if len(raw) != file.size:
        raise FormatError(f"the {file.name} file is {len(raw)} bytes, not {file.size}")
    return raw[_FRAME_HEAD : _FRAME_HEAD + file.body_size - MAC_SIZE]


def _meter_mac(
    key: SecretKey, file: MeterFile, value: Any, identity: WriteBack, serial: bytes
) -> bytes:
    """The meter's data MAC over a write-back or history body."""
    return data_mac(
        key,
        _LABELS[file.name],
        file.mac_message(value),
        identity.meter_no,
        identity.customer_no,
        serial,
    )


def _check_meter_mac(
    key: SecretKey, file: MeterFile, value: Any, identity: WriteBack, serial: bytes
) -> None:
    verify_data_mac(
        key,
        _LABELS[file.name],
        file.mac_message(value),
        identity.meter_no,
        identity.customer_no,
        serial,
        value.mac,
    )


def seal_meter_report(
    writeback_key: SecretKey, serial: bytes, write_back: WriteBack, history: History | None
) -> tuple[WriteBack, History | None]:
    """The meter's write-back and history with their MACs (over meter, customer, serial).

    The meter model writes these to the card; the fleet simulator stores them
    as the records a card reader collects: one sealing for both.
    """
    sealed_history = None
    if history is not None:
        mac = _meter_mac(writeback_key, HISTORY, history, write_back, serial)
        sealed_history = history.with_mac(mac)
    mac = _meter_mac(writeback_key, WRITE_BACK, write_back, write_back, serial)
    return write_back.with_mac(mac), sealed_history


def write_meter_write_back(
    session: CardSession,
    writeback_key: SecretKey,
    serial: bytes,
    write_back: WriteBack,
    history: History | None,
) -> None:
    """Meter side: MAC and write the history, then the write-back.

    The write-back goes last because it is what the centre reconciles: a card
    pulled between the two leaves the old (cleared) write-back, and the meter
    writes both again at the next insertion.
    """
    sealed, sealed_history = seal_meter_report(writeback_key, serial, write_back, history)
    if sealed_history is not None:
        session.write_file(HISTORY, HISTORY.encode(sealed_history))
    session.write_file(WRITE_BACK, WRITE_BACK.encode(sealed))


# ---------------------------------------------------------------- meter files in bulk
#
# WRITE_BACK.decode and HISTORY.decode cost 20 and 30 us a file, mostly the
# generality of the field-by-field codec; a bulk import decodes two files
# for each of 100 000 meters. The two functions below read the usual file
# (framed, every field in range) straight from its bytes into the same
# values, and hand anything else to the codec, so every error, and every
# value of an unusual file, is still the codec's. The layouts are
# docs/card.md 3.4 and 3.5; tests/cardlayout/test_meter_report_bulk.py
# checks the two ways agree on the codec's examples, on random values and
# on damaged files.

_FRAME_HEAD = 4
"""Start byte, SFI, two length bytes: where a file's body begins."""
_WRITE_BACK_BODY = struct.Struct(">B3s3s6s6sIIIHBB6s9s8s")
_HISTORY_USAGES = struct.Struct(">12I")
_USER_TYPES = {int(member): member for member in UserType}
_RESULTS = {int(member): member for member in InsertionResult}
_EVENT_CODES = {int(member): member for member in EventCode}
_ALL_STATUS = sum(int(member) for member in MeterStatus)
_STATUSES = {bits: MeterStatus(bits) for bits in range(_ALL_STATUS + 1) if not bits & ~_ALL_STATUS}
_NO_RESERVED = bytes(9)
_NO_EVENTS = bytes(MAX_EVENTS * 8)


def decode_write_back(raw: bytes) -> WriteBack | None:
    """``WRITE_BACK.decode(raw)``, a good deal faster for a well-formed write-back."""
    data = bytes(raw)
    return _quick_write_back(data) or WRITE_BACK.decode(data)


def decode_history(raw: bytes) -> History | None:
    """``HISTORY.decode(raw)``, a good deal faster for a well-formed history."""
    data = bytes(raw)
    return _quick_history(data) or HISTORY.decode(data)


def _framed(raw: bytes, file: MeterFile) -> bool:
    """The frame of ``file`` around a body, checksum included (codec.frame)."""
    size = file.size
    return (
        len(raw) == size
        and raw[0] == START
        and raw[1] == file.sfi
        and raw[2] << 8 | raw[3] == file.body_size
        and raw[size - 1] == END
        and sum(raw[1 : size - 2]) & 0xFF == raw[size - 2]
    )


def _time(data: bytes) -> datetime | None:
    """A BCD ``YYMMDDhhmmss`` UTC time, or None where the codec must judge it."""
    digits = data.hex()
    if not digits.isdecimal():
        return None
    try:
        return datetime(
            2000 + int(digits[0:2]),
            int(digits[2:4]),
            int(digits[4:6]),
            int(digits[6:8]),
            int(digits[8:10]),
            int(digits[10:12]),
            tzinfo=UTC,
        )
    except ValueError:
        return None


def _quick_write_back(raw: bytes) -> WriteBack | None:
    """The write-back in ``raw`` if it is the usual one, else None (a cleared one too)."""
    if not _framed(raw, WRITE_BACK):
        return None
    (
        user_type,
        ct_ratio,
        pt_ratio,
        meter_no,
        customer_no,
        remaining,
        count,
        overdraft,
        illegal,
        status,
        result,
        written,
        reserved,
        mac,
    ) = _WRITE_BACK_BODY.unpack_from(raw, _FRAME_HEAD)
    ratios = ct_ratio.hex() + pt_ratio.hex()
    numbers = meter_no.hex() + customer_no.hex()
    if not (ratios + numbers).isdecimal():  # a nibble above 9 is not BCD
        return None
    ct, pt = int(ratios[:6]), int(ratios[6:])
    user = _USER_TYPES.get(user_type)
    meter_status = _STATUSES.get(status)
    insertion = _RESULTS.get(result)
    at = _time(written)
    if (
        user is None
        or meter_status is None
        or insertion is None
        or at is None
        or reserved != _NO_RESERVED
        or ct < 1
        or pt < 1
    ):
        return None
    return WriteBack(
        user_type=user,
        ct_ratio=ct,
        pt_ratio=pt,
        meter_no=numbers[:12],
        customer_no=numbers[12:],
        remaining_amount=remaining,
        purchase_count=count,
        overdraft_used=overdraft,
        illegal_card_count=illegal,
        meter_status=meter_status,
        insertion_result=insertion,
        written_at=at,
        mac=mac,
    )


def _quick_history(raw: bytes) -> History | None:
    """The history in ``raw`` if it is the usual one, else None (a cleared one too)."""
    if not _framed(raw, HISTORY):
        return None
    body = raw[_FRAME_HEAD : _FRAME_HEAD + HISTORY.body_size]
    status = _STATUSES.get(body[18])
    if status is None or body[17] or body[133:136] != b"\x00\x00\x00" or not any(body):
        return None
    month: date | None = None
    if body[19] or body[20]:
        digits = body[19:21].hex()
        if not digits.isdecimal() or not 1 <= int(digits[2:]) <= 12:
            return None
        month = date(2000 + int(digits[:2]), int(digits[2:]), 1)
    events: list[Event] = []
    for start in range(69, 133, 8):
        code = body[start]
        if code == 0:
            if body[start:133] != _NO_EVENTS[: 133 - start]:
                return None  # an unused slot must be zero, and so must the ones after it
            break
        kind = _EVENT_CODES.get(code)
        detail = body[start + 1]
        at = _time(body[start + 2 : start + 8])
        if (
            kind is None
            or at is None
            or (kind is EventCode.ILLEGAL_CARD and detail not in _RESULTS)
        ):
            return None
        events.append(Event(kind, detail, at))
    return History(
        cumulative_purchased=int.from_bytes(body[0:6], "big"),
        cumulative_used=int.from_bytes(body[6:12], "big"),
        cumulative_quantity=int.from_bytes(body[12:17], "big"),
        status=status,
        latest_frozen_month=month,
        monthly_usages=_HISTORY_USAGES.unpack_from(body, 21),
        events=tuple(events),
        mac=body[136:144],
    )
