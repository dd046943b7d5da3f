"""A card operating system in Python: the virtual CPU card.

It implements the command set of docs/card.md section 4 over a
:class:`~cardlayout.vcard.image.CardImage`, behaving as a T=0 card (``61xx``
for case-4 answers, ``6Cxx`` for a wrong Le) so the channel layer above is
exercised the way a real card exercises it.

Writes land in the image byte by byte, like EEPROM without anti-tearing; a
tear armed with :meth:`VirtualCard.arm_tear` stops a write after any byte,
saves what was written and raises :class:`PowerLost`, after which the card is
gone until powered again. The card API above must survive that, and the tests
check that it does for every byte of every write.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass

from cardlayout.apdu import commands as cmd
from cardlayout.apdu.apdu import CommandApdu, ResponseApdu
from cardlayout.errors import FormatError, SecurityError
from cardlayout.security import session as sm
from cardlayout.security.diversify import transport_key
from cardlayout.security.keys import SecretKey
from cardlayout.vcard.image import (
    LIFE_INITIALISATION,
    LIFE_OPERATIONAL,
    MF,
    CardImage,
    DedicatedFile,
    ElementaryFile,
    KeyRecord,
)

KID_TRANSPORT = 0x00
KID_ISSUER = 0x01
KID_METER = 0x02
KEY_TRIES = 7
DF_TYPE = 0x38
EF_TYPE = 0x01
MAC_LEN = 8


class PowerLost(Exception):
    """The card lost power in the middle of a command (an armed tear)."""


class _Refuse(Exception):
    """Answer the current command with a status word."""

    def __init__(self, sw: int) -> None:
        super().__init__(f"{sw:04X}")
        self.sw = sw


def atr_for(serial: bytes) -> bytes:
    """ATR of docs/card.md 4.1: T=0, historical bytes 80 68 + serial."""
    return bytes((0x3B, 0x0A, 0x80, 0x68)) + serial


def serial_from_atr(atr: bytes) -> bytes:
    """The card serial carried in the ATR's compact-TLV pre-issuing data."""
    if len(atr) != 12 or atr[:4] != bytes((0x3B, 0x0A, 0x80, 0x68)):
        raise FormatError(f"ATR {atr.hex().upper()} is not a card of this profile")
    return atr[4:]


def new_image(serial: bytes, path: str | None = None) -> CardImage:
    """A factory-blank card: MF only, the published transport key."""
    if len(serial) != 8:
        raise FormatError(f"card serial must be 8 bytes, not {len(serial)}", field="serial")
    from pathlib import Path

    image = CardImage(serial=serial, path=Path(path) if path else None)
    image.keys[KID_TRANSPORT] = KeyRecord(transport_key(serial).value, 0, KEY_TRIES)
    return image


@dataclass
class _Volatile:
    """What a card forgets when it loses power (RAM)."""

    current_df: int = MF
    current_ef: int | None = None
    challenge: bytes | None = None
    authenticated: int | None = None
    messaging: sm.SecureMessaging | None = None
    pending: bytes = b""


class VirtualCard:
    """The card operating system over one image."""

    def __init__(self, image: CardImage) -> None:
        self.image = image
        self.powered = False
        self._ram = _Volatile()
        self._tear_after: int | None = None
        self.bytes_written = 0
        self.on_write: Callable[[int], None] | None = None

    # -- power and tearing -------------------------------------------------

    @property
    def atr(self) -> bytes:
        return atr_for(self.image.serial)

    def power_on(self) -> bytes:
        """Cold reset: RAM cleared, ATR returned."""
        self.powered = True
        self._ram = _Volatile()
        return self.atr

    def power_off(self) -> None:
        self.powered = False
        self._ram = _Volatile()

    def arm_tear(self, after_bytes: int) -> None:
        """Lose power once ``after_bytes`` more bytes have reached memory.

        Bytes are counted across every write from now on (UPDATE BINARY data
        byte by byte; a WRITE KEY, which the card commits atomically, as one),
        so a sweep over 0..N tears a multi-command operation at every byte.
        """
        if after_bytes < 0:
            raise ValueError("a tear needs a byte count of 0 or more")
        self._tear_after = after_bytes

    def disarm_tear(self) -> None:
        self._tear_after = None

    def _write_unit(self) -> None:
        """Count one unit of memory write, tearing first if armed to."""
        if self._tear_after is not None:
            if self._tear_after == 0:
                self._tear_after = None
                self.image.save()
                self.power_off()
                raise PowerLost("card torn during a write")
            self._tear_after -= 1
        self.bytes_written += 1

    # -- dispatch ------------------------------------------------------------

    def process(self, raw: bytes) -> bytes:
        """Answer one command APDU; raises :class:`PowerLost` on a tear."""
        if not self.powered:
            raise PowerLost("card is not powered")
        try:
            command = CommandApdu.from_bytes(raw)
        except FormatError:
            return ResponseApdu.status(0x6700).to_bytes()
        try:
            return self._dispatch(command).to_bytes()
        except _Refuse as refusal:
            return ResponseApdu.status(refusal.sw).to_bytes()

    def _dispatch(self, c: CommandApdu) -> ResponseApdu:
        handlers: dict[tuple[int, int], Callable[[CommandApdu], ResponseApdu]] = {
            (cmd.CLA_PLAIN, cmd.INS_SELECT): self._select,
            (cmd.CLA_PLAIN, cmd.INS_READ_BINARY): self._read_binary,
            (cmd.CLA_SM, cmd.INS_READ_BINARY): self._read_binary,
            (cmd.CLA_PLAIN, cmd.INS_UPDATE_BINARY): self._update_binary,
            (cmd.CLA_SM, cmd.INS_UPDATE_BINARY): self._update_binary,
            (cmd.CLA_PLAIN, cmd.INS_GET_CHALLENGE): self._get_challenge,
            (cmd.CLA_PLAIN, cmd.INS_INTERNAL_AUTHENTICATE): self._internal_authenticate,
            (cmd.CLA_PLAIN, cmd.INS_EXTERNAL_AUTHENTICATE): self._external_authenticate,
            (cmd.CLA_PLAIN, cmd.INS_GET_RESPONSE): self._get_response,
            (cmd.CLA_PROPRIETARY, cmd.INS_CREATE_FILE): self._create_file,
            (cmd.CLA_PROPRIETARY_SM, cmd.INS_WRITE_KEY): self._write_key,
            (cmd.CLA_PLAIN, cmd.INS_ACTIVATE_FILE): self._activate,
        }
        handler = handlers.get((c.cla, c.ins))
        if handler is None:
            known_cla = {cla for cla, _ in handlers}
            raise _Refuse(0x6D00 if c.cla in known_cla else 0x6E00)
        if c.ins != cmd.INS_GET_RESPONSE:
            self._ram.pending = b""
        if c.ins not in (cmd.INS_EXTERNAL_AUTHENTICATE, cmd.INS_GET_CHALLENGE):
            self._ram.challenge = None  # a challenge is good for the next command only
        return handler(c)

    def _case4(self, data: bytes) -> ResponseApdu:
        """T=0: response data of a command that also sent data waits for GET RESPONSE."""
        self._ram.pending = data
        return ResponseApdu.status(0x6100 | (len(data) & 0xFF))

    def _reset_security(self) -> None:
        self._ram.authenticated = None
        self._ram.messaging = None

    # -- files -----------------------------------------------------------------

    def _df(self) -> DedicatedFile | None:
        return self.image.dfs.get(self._ram.current_df)

    def _select(self, c: CommandApdu) -> ResponseApdu:
        if c.p1 != 0x00 or c.p2 not in (0x0C, 0x04, 0x00) or len(c.data) != 2:
            raise _Refuse(0x6A86 if c.p1 or c.p2 not in (0x0C, 0x04, 0x00) else 0x6700)
        fid = int.from_bytes(c.data, "big")
        size: int
        sfi = 0
        if fid == MF or fid in self.image.dfs:
            # Keys live in the MF, so the security status they give is card-wide
            # and survives selecting another DF (docs/card.md 4.2).
            self._ram.current_df = fid
            self._ram.current_ef = None
            size = 0
            descriptor = DF_TYPE
        else:
            df = self._df()
            if df is None or fid not in df.efs:
                raise _Refuse(0x6A82)
            self._ram.current_ef = fid
            size = len(df.efs[fid].data)
            sfi = df.efs[fid].sfi
            descriptor = EF_TYPE
        if c.p2 == 0x0C:
            return ResponseApdu.status(0x9000)
        fcp = (
            bytes((0x80, 2))
            + size.to_bytes(2, "big")
            + bytes((0x82, 1, descriptor, 0x83, 2))
            + fid.to_bytes(2, "big")
            + bytes((0x88, 1, sfi))
        )
        return self._case4(bytes((0x62, len(fcp))) + fcp)

    def _target_ef(self, c: CommandApdu) -> tuple[ElementaryFile, int]:
        df = self._df()
        if c.p1 & 0x80:
            if c.p1 & 0x60:
                raise _Refuse(0x6A86)
            ef = df.by_sfi(c.p1 & 0x1F) if df is not None else None
            if ef is None:
                raise _Refuse(0x6A82)
            self._ram.current_ef = ef.fid
            return ef, c.p2
        if df is None or self._ram.current_ef is None:
            raise _Refuse(0x6986)
        return df.efs[self._ram.current_ef], (c.p1 << 8) | c.p2

    def _read_binary(self, c: CommandApdu) -> ResponseApdu:
        if c.data:
            raise _Refuse(0x6700)
        ef, offset = self._target_ef(c)
        if offset > len(ef.data):
            raise _Refuse(0x6B00)
        available = len(ef.data) - offset
        wanted = c.le if c.le is not None else 256
        if c.cla == cmd.CLA_SM:
            messaging = self._ram.messaging
            if messaging is None:
                raise _Refuse(0x6982)
            if wanted != 256 and wanted != min(available, 256 - MAC_LEN) + MAC_LEN:
                raise _Refuse(0x6C00 | ((min(available, 256 - MAC_LEN) + MAC_LEN) & 0xFF))
            chunk = bytes(ef.data[offset : offset + min(available, 256 - MAC_LEN)])
            messaging.next_command()
            return ResponseApdu(chunk + messaging.response_mac(chunk), 0x90, 0x00)
        if wanted != 256 and wanted > available:
            raise _Refuse(0x6C00 | (available & 0xFF))
        count = min(wanted, available)
        return ResponseApdu(bytes(ef.data[offset : offset + count]), 0x90, 0x00)

    def _update_binary(self, c: CommandApdu) -> ResponseApdu:
        if c.le is not None or not c.data:
            raise _Refuse(0x6700)
        ef, offset = self._target_ef(c)
        if c.cla != cmd.CLA_SM:
            raise _Refuse(0x6982)
        if self._ram.authenticated not in ef.update_keys or self._ram.messaging is None:
            raise _Refuse(0x6982)
        if len(c.data) <= MAC_LEN:
            raise _Refuse(0x6700)
        try:
            data = self._ram.messaging.verify_command_mac(c.cla, c.ins, c.p1, c.p2, c.data)
        except SecurityError:
            self._reset_security()
            raise _Refuse(0x6988) from None
        if offset + len(data) > len(ef.data):
            raise _Refuse(0x6B00 if offset > len(ef.data) else 0x6700)
        for i, byte in enumerate(data):
            self._write_unit()
            ef.data[offset + i] = byte
        self.image.save()
        return ResponseApdu.status(0x9000)

    # -- authentication ----------------------------------------------------------

    def _key(self, kid: int) -> KeyRecord:
        record = self.image.keys.get(kid)
        if record is None:
            raise _Refuse(0x6A88)
        if kid == KID_TRANSPORT and self.image.life_cycle != LIFE_INITIALISATION:
            raise _Refuse(0x6984)
        if record.tries_left == 0:
            raise _Refuse(0x6983)
        return record

    def _get_challenge(self, c: CommandApdu) -> ResponseApdu:
        if c.le != 8 or c.data:
            raise _Refuse(0x6700 if c.le != 8 else 0x6A86)
        self._ram.challenge = secrets.token_bytes(8)
        return ResponseApdu(self._ram.challenge, 0x90, 0x00)

    def _internal_authenticate(self, c: CommandApdu) -> ResponseApdu:
        if len(c.data) != 8:
            raise _Refuse(0x6700)
        record = self._key(c.p2)
        key = SecretKey(record.value)
        return self._case4(sm.internal_auth_response(key, c.data, self.image.serial))

    def _external_authenticate(self, c: CommandApdu) -> ResponseApdu:
        challenge, self._ram.challenge = self._ram.challenge, None
        self._reset_security()  # whatever follows, the old status ends here
        if len(c.data) != 16:
            raise _Refuse(0x6700)
        record = self._key(c.p2)
        if challenge is None:
            raise _Refuse(0x6985)
        key = SecretKey(record.value)
        rnd_icc, rnd_ifd = sm.open_external_cryptogram(key, c.data)
        if not secrets.compare_digest(rnd_icc, challenge):
            self._write_unit()
            record.tries_left -= 1
            self.image.save()
            raise _Refuse(0x6983 if record.tries_left == 0 else 0x63C0 | record.tries_left)
        if record.tries_left != KEY_TRIES:
            self._write_unit()
            record.tries_left = KEY_TRIES
            self.image.save()
        self._ram.authenticated = c.p2
        self._ram.messaging = sm.SecureMessaging(sm.session_key(key, rnd_icc, rnd_ifd))
        if c.le is None:
            return ResponseApdu.status(0x9000)
        return self._case4(sm.card_cryptogram(key, rnd_ifd, rnd_icc))

    def _get_response(self, c: CommandApdu) -> ResponseApdu:
        pending = self._ram.pending
        if not pending:
            raise _Refuse(0x6985)
        wanted = c.le if c.le is not None else 256
        if wanted > len(pending):
            raise _Refuse(0x6C00 | (len(pending) & 0xFF))
        self._ram.pending = pending[wanted:]
        rest = len(self._ram.pending)
        if rest:
            return ResponseApdu(pending[:wanted], 0x61, rest & 0xFF)
        return ResponseApdu(pending[:wanted], 0x90, 0x00)

    # -- personalisation -----------------------------------------------------------

    def _create_file(self, c: CommandApdu) -> ResponseApdu:
        if self.image.life_cycle != LIFE_INITIALISATION:
            raise _Refuse(0x6985)
        if self._ram.authenticated != KID_TRANSPORT:
            raise _Refuse(0x6982)
        d = c.data
        if len(d) != 7:
            raise _Refuse(0x6700)
        kind, fid, size, sfi, bitmap = (
            d[0],
            int.from_bytes(d[1:3], "big"),
            d[3] << 8 | d[4],
            d[5],
            d[6],
        )
        if kind == DF_TYPE:
            if fid in self.image.dfs or fid == MF:
                raise _Refuse(0x6A89)
            self._write_unit()
            self.image.dfs[fid] = DedicatedFile(fid)
            self._ram.current_df = fid
            self._ram.current_ef = None
        elif kind == EF_TYPE:
            df = self._df()
            if df is None:
                raise _Refuse(0x6986)
            if fid in df.efs or (sfi and df.by_sfi(sfi) is not None):
                raise _Refuse(0x6A89)
            if not 1 <= size <= 0x7FFF or not 1 <= sfi <= 30 or bitmap & ~0x07:
                raise _Refuse(0x6A80)
            self._write_unit()
            keys = frozenset(k for k in (KID_TRANSPORT, KID_ISSUER, KID_METER) if bitmap >> k & 1)
            df.efs[fid] = ElementaryFile(fid, sfi, bytearray(size), keys)
        else:
            raise _Refuse(0x6A80)
        self.image.save()
        return ResponseApdu.status(0x9000)

    def _write_key(self, c: CommandApdu) -> ResponseApdu:
        allowed = KID_TRANSPORT if self.image.life_cycle == LIFE_INITIALISATION else KID_ISSUER
        if self._ram.authenticated != allowed or self._ram.messaging is None:
            raise _Refuse(0x6982)
        if c.p2 not in (KID_ISSUER, KID_METER):
            raise _Refuse(0x6A86)
        if len(c.data) != 32 + MAC_LEN:
            raise _Refuse(0x6700)
        try:
            wrapped = self._ram.messaging.verify_command_mac(c.cla, c.ins, c.p1, c.p2, c.data)
            key, version = self._ram.messaging.unwrap_key(wrapped)
        except SecurityError:
            self._reset_security()
            raise _Refuse(0x6988) from None
        self._write_unit()
        self.image.keys[c.p2] = KeyRecord(key.value, version, KEY_TRIES)
        self.image.save()
        return ResponseApdu.status(0x9000)

    def _activate(self, c: CommandApdu) -> ResponseApdu:
        if c.p1 or c.p2 or c.data:
            raise _Refuse(0x6A86)
        if self.image.life_cycle != LIFE_INITIALISATION:
            raise _Refuse(0x6985)
        if self._ram.authenticated != KID_TRANSPORT:
            raise _Refuse(0x6982)
        if KID_ISSUER not in self.image.keys:
            raise _Refuse(0x6985)
        self._write_unit()
        self.image.life_cycle = LIFE_OPERATIONAL
        del self.image.keys[KID_TRANSPORT]
        self._reset_security()
        self.image.save()
        return ResponseApdu.status(0x9000)
