"""Reading the whole card in one logical snapshot.

A snapshot is taken in one connection (exclusive on PC/SC), so no other
program writes between its reads. Every file comes back with its state
(value, cleared, blank, torn, malformed, absent) rather than an exception,
because a reader of a damaged card needs to see everything that *is* there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from cardlayout.apdu import commands
from cardlayout.apdu.status import FileNotFoundOnCardError
from cardlayout.errors import BlankFileError, FormatError, TornFileError
from cardlayout.files import (
    ALL_FILES,
    CARD_KINDS,
    HISTORY,
    PARAMETERS,
    PURSE,
    TARIFF_SET_1,
    TARIFF_SET_2,
    WRITE_BACK,
    CardFile,
    CardType,
    History,
    Parameters,
    Purse,
    TariffSet,
    Utility,
    WriteBack,
)
from cardlayout.transport.channel import CardChannel
from cardlayout.vcard.cos import serial_from_atr

READ_CHUNK = 256


class FileStatus(StrEnum):
    """What a read found in one file."""

    OK = "ok"
    CLEARED = "cleared"
    BLANK = "blank"
    TORN = "torn"
    MALFORMED = "malformed"
    ABSENT = "absent"


@dataclass(frozen=True)
class FileState:
    """One file as read: its bytes, its state and, when it decodes, its value."""

    file: CardFile[Any]
    status: FileStatus
    raw: bytes = b""
    value: Any = None
    problem: str | None = None

    @property
    def readable(self) -> bool:
        """True when the file holds a value or a cleared frame."""
        return self.status in (FileStatus.OK, FileStatus.CLEARED)


@dataclass(frozen=True)
class CardSnapshot:
    """The card as read in one connection."""

    atr: bytes
    serial: bytes
    utility: Utility | None
    files: dict[str, FileState] = field(default_factory=dict)

    @property
    def personalised(self) -> bool:
        return self.utility is not None

    def state(self, file: CardFile[Any]) -> FileState:
        return self.files.get(file.name, FileState(file, FileStatus.ABSENT))

    def _value(self, file: CardFile[Any]) -> Any:
        st = self.state(file)
        return st.value if st.status is FileStatus.OK else None

    @property
    def parameters(self) -> Parameters | None:
        value: Parameters | None = self._value(PARAMETERS)
        return value

    @property
    def purse(self) -> Purse | None:
        value: Purse | None = self._value(PURSE)
        return value

    @property
    def tariff_sets(self) -> tuple[TariffSet | None, TariffSet | None]:
        return self._value(TARIFF_SET_1), self._value(TARIFF_SET_2)

    @property
    def write_back(self) -> WriteBack | None:
        value: WriteBack | None = self._value(WRITE_BACK)
        return value

    @property
    def history(self) -> History | None:
        value: History | None = self._value(HISTORY)
        return value

    @property
    def card_type(self) -> CardType | None:
        params = self.parameters
        return params.card_type if params is not None else None

    def problems(self) -> list[str]:
        """One sentence per file that is torn or malformed."""
        return [
            f"{st.file.name}: {st.problem}"
            for st in self.files.values()
            if st.status in (FileStatus.TORN, FileStatus.MALFORMED)
        ]


def select_application(channel: CardChannel, utility: Utility | None) -> Utility | None:
    """Select the utility's DF; with ``None`` find the first DF present."""
    candidates = [utility] if utility is not None else list(Utility)
    for candidate in candidates:
        try:
            channel.send(commands.select(candidate.df), f"SELECT of {candidate.value} DF")
        except FileNotFoundOnCardError:
            continue
        return candidate
    return None


def read_file_bytes(channel: CardChannel, file: CardFile[Any]) -> bytes:
    """Read one whole EF by its SFI: one APDU per 256 bytes."""
    data = channel.send(
        commands.read_binary(0, READ_CHUNK, sfi=file.sfi), f"READ BINARY of {file.name}"
    )
    while len(data) < file.size:
        more = channel.send(
            commands.read_binary(len(data), min(READ_CHUNK, file.size - len(data))),
            f"READ BINARY of {file.name}",
        )
        if not more:
            raise FormatError(f"{file.name} file ends after {len(data)} of its {file.size} bytes")
        data += more
    return data


def decode_state(file: CardFile[Any], raw: bytes) -> FileState:
    """Classify and decode the bytes of one file."""
    try:
        value = file.decode(raw)
    except BlankFileError as exc:
        return FileState(file, FileStatus.BLANK, raw, None, str(exc))
    except TornFileError as exc:
        return FileState(file, FileStatus.TORN, raw, None, str(exc))
    except FormatError as exc:
        return FileState(file, FileStatus.MALFORMED, raw, None, str(exc))
    status = FileStatus.CLEARED if value is None else FileStatus.OK
    return FileState(file, status, raw, value)


def read_snapshot(channel: CardChannel, utility: Utility | None = None) -> CardSnapshot:
    """Read every file of the card's application in one connection."""
    atr = channel.atr or channel.connect()
    serial = serial_from_atr(atr)
    found = select_application(channel, utility)
    files: dict[str, FileState] = {}
    if found is None:
        return CardSnapshot(atr, serial, None, files)
    # EF01 names the card kind, and the kind names its files: a tool card is
    # not asked for files it does not have.
    files[PARAMETERS.name] = _read_state(channel, PARAMETERS)
    params = (
        files[PARAMETERS.name].value if files[PARAMETERS.name].status is FileStatus.OK else None
    )
    wanted = CARD_KINDS[params.card_type].files if params is not None else ALL_FILES
    for file in wanted:
        if file.name not in files:
            files[file.name] = _read_state(channel, file)
    return CardSnapshot(atr, serial, found, files)


def _read_state(channel: CardChannel, file: CardFile[Any]) -> FileState:
    try:
        raw = read_file_bytes(channel, file)
    except FileNotFoundOnCardError:
        return FileState(file, FileStatus.ABSENT)
    except FormatError as exc:
        return FileState(file, FileStatus.MALFORMED, b"", None, str(exc))
    return decode_state(file, raw)


def reread(
    channel: CardChannel, snapshot: CardSnapshot, files: list[CardFile[Any]]
) -> CardSnapshot:
    """``snapshot`` with ``files`` read again, after writing them.

    Reading back only what was written confirms the write at the cost of one
    READ BINARY per file (two for a tariff set) instead of a whole snapshot.
    """
    updated = dict(snapshot.files)
    for file in files:
        updated[file.name] = _read_state(channel, file)
    return CardSnapshot(snapshot.atr, snapshot.serial, snapshot.utility, updated)
