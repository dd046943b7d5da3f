"""A payment channel's card terminal, seen from the centre: files in, a command script out.

A bank's or an agent's terminal has a plain reader and no keys. Writing a
card needs the card's issuer key (a mutual authentication, then every
UPDATE BINARY under a session MAC), and that key never leaves the centre.
So the centre runs the desk's own card code against a stand-in for the card
and hands the terminal the exact commands to relay:

1. the terminal reads the card's six files (plain READ BINARY, no key needed)
   and asks the card for a challenge (GET CHALLENGE, the last command before
   the script, since a card forgets its challenge at the next command);
2. :class:`CardOnFile` answers the centre's reads from those files, so
   :func:`cardcenter.cards.reading.read_card` checks every MAC on them
   exactly as at a desk; :class:`ScriptedCard` also answers the write the way
   the card will (the challenge the terminal brought, the card's cryptogram
   the centre can compute itself) and records every command of the write:
   EXTERNAL AUTHENTICATE, the UPDATE BINARYs with their MACs, the purse last;
3. the script ends with a READ BINARY *with MAC* of the purse: the card
   answers it under the session key, which only the card and the centre
   know. Sent back with the sale's confirmation it proves, cryptographically,
   that this card holds this purse (:func:`verify_read_back`); nothing the
   terminal could make up without the card passes. A reversal's script
   reads the write-back the same way just before: the terminal's files may
   be older than the card (read before it went into the meter), and only
   the card can show that its meter has not read it since.

The session of a script is named by the terminal's cryptogram (the
centre's RND.IFD is inside it, encrypted under the issuer key) and the
number of MACed commands before the read-back; the API signs both into the
confirmation, so the centre keeps no state between the two requests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cardlayout.apdu import commands
from cardlayout.apdu.apdu import CommandApdu, ResponseApdu
from cardlayout.card.snapshot import FileStatus, decode_state
from cardlayout.errors import FormatError, SecurityError
from cardlayout.files import ALL_FILES, PURSE, WRITE_BACK, CardFile, Purse, Utility
from cardlayout.security import session as sm
from cardlayout.security.keys import SecretKey
from cardlayout.vcard.cos import atr_for

SW_OK = 0x9000
SW_FILE_NOT_FOUND = 0x6A82
SW_NOT_SUPPORTED = 0x6D00
SW_WRONG_OFFSET = 0x6B00
MAC_LEN = 8
FILE_NAMES: dict[str, CardFile[Any]] = {f.name.replace("-", "_"): f for f in ALL_FILES}
"""The card's files as the API names them (``write_back`` for the card's ``write-back``)."""
READ_BACK = commands.read_binary(0, PURSE.size + MAC_LEN, sfi=PURSE.sfi, with_mac=True)
"""The script's last command: the purse, MACed by the card under the session key."""
WRITE_BACK_READ = commands.read_binary(
    0, WRITE_BACK.size + MAC_LEN, sfi=WRITE_BACK.sfi, with_mac=True
)
"""A reversal's script, before the purse: the write-back, MACed by the card, which shows
whether the meter has read the card since the centre last wrote it."""


class ScriptError(RuntimeError):
    """The desk's card code sent what no script may hold (a programming error)."""


@dataclass
class CardOnFile:
    """A :class:`~cardlayout.transport.base.Transport` answering reads from a terminal's files.

    SELECT of the utility's DF and READ BINARY (by SFI or of the current EF),
    as the card would answer them; any other command is refused (6D00).
    """

    serial: bytes
    utility: Utility
    files: dict[int, bytearray]
    """File contents by SFI; a file the terminal did not send is absent (6A82)."""
    _current: int | None = field(default=None, init=False)
    _selected: bool = field(default=False, init=False)

    @property
    def name(self) -> str:
        return "the payment channel's card terminal"

    def connect(self) -> bytes:
        return atr_for(self.serial)

    def disconnect(self) -> None:
        return None

    def transmit(self, command: bytes) -> bytes:
        apdu = CommandApdu.from_bytes(command)
        return self.answer(apdu).to_bytes()

    def answer(self, c: CommandApdu) -> ResponseApdu:
        if (c.cla, c.ins) == (commands.CLA_PLAIN, commands.INS_SELECT):
            self._current = None
            self._selected = c.data == self.utility.df.to_bytes(2, "big")
            return ResponseApdu.status(SW_OK if self._selected else SW_FILE_NOT_FOUND)
        if (c.cla, c.ins) == (commands.CLA_PLAIN, commands.INS_READ_BINARY):
            return self._read(c)
        return ResponseApdu.status(SW_NOT_SUPPORTED)

    def _target(self, c: CommandApdu) -> tuple[bytearray | None, int]:
        if c.p1 & 0x80:
            sfi = c.p1 & 0x1F
            data = self.files.get(sfi) if self._selected else None
            self._current = sfi if data is not None else None
            return data, c.p2
        if self._current is None:
            return None, 0
        return self.files[self._current], (c.p1 << 8) | c.p2

    def _read(self, c: CommandApdu) -> ResponseApdu:
        data, offset = self._target(c)
        if data is None:
            return ResponseApdu.status(SW_FILE_NOT_FOUND)
        if offset > len(data):
            return ResponseApdu.status(SW_WRONG_OFFSET)
        wanted = c.le if c.le is not None else 256
        return ResponseApdu(bytes(data[offset : offset + wanted]), 0x90, 0x00)


@dataclass
class ScriptedCard(CardOnFile):
    """:class:`CardOnFile` that also takes a write, recording it as the terminal's script.

    ``issuer_key`` is the card's (diversified by its serial); ``challenge`` is
    the RND.ICC the terminal got from the card just before asking.
    """

    issuer_key: SecretKey | None = None
    challenge: bytes = b""
    script: list[bytes] = field(default_factory=list)
    cryptogram: bytes = b""
    """The terminal's EXTERNAL AUTHENTICATE cryptogram (names the session)."""
    macs: int = 0
    """MACed commands in the script so far (the session's send sequence counter)."""
    _challenged: bool = field(default=False, init=False)

    def answer(self, c: CommandApdu) -> ResponseApdu:
        key = (c.cla, c.ins)
        if key == (commands.CLA_PLAIN, commands.INS_GET_CHALLENGE):
            if self._challenged:
                raise ScriptError("a script takes one challenge: the card gave it already")
            self._challenged = True
            return ResponseApdu(self.challenge, 0x90, 0x00)
        if key == (commands.CLA_PLAIN, commands.INS_EXTERNAL_AUTHENTICATE):
            return self._authenticate(c)
        if key == (commands.CLA_SM, commands.INS_UPDATE_BINARY):
            return self._update(c)
        if key == (commands.CLA_PROPRIETARY_SM, commands.INS_WRITE_KEY):
            self._record(c)
            self.macs += 1
            return ResponseApdu.status(SW_OK)
        if self._challenged and key == (commands.CLA_PLAIN, commands.INS_SELECT):
            raise ScriptError("a SELECT after the challenge would make the card forget it")
        return super().answer(c)

    def _record(self, c: CommandApdu) -> None:
        if not self._challenged:
            raise ScriptError(f"command {c.header.hex().upper()} before the challenge")
        self.script.append(c.to_bytes())

    def _authenticate(self, c: CommandApdu) -> ResponseApdu:
        if self.issuer_key is None or self.cryptogram:
            raise ScriptError("a script authenticates once, with the issuer key")
        self._record(c)
        rnd_icc, rnd_ifd = sm.open_external_cryptogram(self.issuer_key, c.data)
        if rnd_icc != self.challenge:
            raise ScriptError("the desk answered another challenge than the terminal's")
        self.cryptogram = bytes(c.data)
        return ResponseApdu(sm.card_cryptogram(self.issuer_key, rnd_ifd, rnd_icc), 0x90, 0x00)

    def _update(self, c: CommandApdu) -> ResponseApdu:
        self._record(c)
        self.macs += 1
        data, offset = self._target(c)
        if data is None:
            raise ScriptError(f"UPDATE BINARY of a file the card has not got ({c.p1:02X})")
        body = c.data[:-MAC_LEN]
        data[offset : offset + len(body)] = body
        return ResponseApdu.status(SW_OK)

    def finished_script(self, *, prove_write_back: bool = False) -> list[str]:
        """The commands to relay, in order, as hex: the write, then the read-back(s).

        ``prove_write_back`` (a reversal) reads the write-back with a MAC
        before the purse.
        """
        if not self.cryptogram:
            raise ScriptError("the write never authenticated")
        reads = [WRITE_BACK_READ, READ_BACK] if prove_write_back else [READ_BACK]
        return [raw.hex().upper() for raw in [*self.script, *(r.to_bytes() for r in reads)]]


@dataclass(frozen=True)
class ReadBack:
    """The purse as the card answered the script's last command, its MAC verified."""

    purse: Purse | None
    """None when the purse is torn (the write was cut short)."""
    write_back_clear: bool | None = None
    """Whether the card's write-back was cleared, as it answered the reversal's read of
    it (None: not asked)."""


def verify_read_back(
    issuer_key: SecretKey,
    cryptogram: bytes,
    macs: int,
    answer: bytes,
    write_back: bytes | None = None,
) -> ReadBack:
    """Check that the card of this session answered ``answer`` to the read-back.

    Rebuilds the session key from the terminal's cryptogram (the issuer key
    opens it into RND.ICC and RND.IFD) and checks the response MAC under the
    counter of the read-back command. ``write_back`` is the card's answer to
    a reversal's read of its write-back, the command before (checked the
    same way). :class:`SecurityError` when one does not verify: the answer
    is not this card's, in this session.
    """
    rnd_icc, rnd_ifd = sm.open_external_cryptogram(issuer_key, cryptogram)
    messaging = sm.SecureMessaging(sm.session_key(issuer_key, rnd_icc, rnd_ifd), ssc=macs)
    clear: bool | None = None
    if write_back is not None:
        messaging.next_command()
        raw = messaging.verify_response(write_back)
        if len(raw) != WRITE_BACK.size:
            raise SecurityError(
                f"the write-back read back is {len(raw)} bytes, not {WRITE_BACK.size}"
            )
        clear = decode_state(WRITE_BACK, raw).status is FileStatus.CLEARED
    messaging.next_command()
    data = messaging.verify_response(answer)
    if len(data) != PURSE.size:
        raise SecurityError(f"the read-back is {len(data)} bytes, not the purse's {PURSE.size}")
    try:
        purse = PURSE.decode(data)
    except FormatError:
        return ReadBack(None, clear)
    return ReadBack(purse, clear)
