"""Builders for the commands of the card profile (docs/card.md section 4.4).

Each builder names the clause it implements. Secure-messaging variants take
the data *with* its MAC already appended; computing the MAC belongs to the
session (:mod:`cardlayout.security.session`), not to the byte layout.
"""

from __future__ import annotations

from cardlayout.apdu.apdu import CommandApdu
from cardlayout.errors import FormatError

CLA_PLAIN = 0x00
CLA_SM = 0x04  # ISO/IEC 7816-4 5.4.1: b3 set, proprietary secure messaging
CLA_PROPRIETARY = 0x80
CLA_PROPRIETARY_SM = 0x84

INS_SELECT = 0xA4
INS_READ_BINARY = 0xB0
INS_UPDATE_BINARY = 0xD6
INS_GET_CHALLENGE = 0x84
INS_INTERNAL_AUTHENTICATE = 0x88
INS_EXTERNAL_AUTHENTICATE = 0x82
INS_GET_RESPONSE = 0xC0
INS_CREATE_FILE = 0xE0
INS_WRITE_KEY = 0xD4
INS_ACTIVATE_FILE = 0x44

MAX_OFFSET_WITH_SFI = 0xFF
MAX_OFFSET = 0x7FFF


def select(fid: int, *, with_fcp: bool = False) -> CommandApdu:
    """SELECT by file identifier (ISO/IEC 7816-4 11.2.2, P1=00).

    P2=0C asks for no response data, which saves the FCP bytes on every
    select; P2=04 returns the FCP template.
    """
    _check_fid(fid)
    if with_fcp:
        return CommandApdu(CLA_PLAIN, INS_SELECT, 0x00, 0x04, fid.to_bytes(2, "big"), le=256)
    return CommandApdu(CLA_PLAIN, INS_SELECT, 0x00, 0x0C, fid.to_bytes(2, "big"))


def read_binary(
    offset: int, length: int, *, sfi: int | None = None, with_mac: bool = False
) -> CommandApdu:
    """READ BINARY (ISO/IEC 7816-4 11.3.3).

    With ``sfi`` the file is named in P1 (b8=1, b5..b1 = SFI) and the offset
    in P2 (0..255), which spares a SELECT; the file then becomes the current
    EF, so a following read past offset 255 may use the 15-bit offset form.
    ``length`` 256 is coded as Le=00.
    """
    p1, p2 = _binary_p1p2(offset, sfi)
    return CommandApdu(CLA_SM if with_mac else CLA_PLAIN, INS_READ_BINARY, p1, p2, le=length)


def update_binary(
    offset: int, data_with_mac: bytes, *, sfi: int | None = None, with_mac: bool = True
) -> CommandApdu:
    """UPDATE BINARY (ISO/IEC 7816-4 11.3.5), by default with secure messaging.

    With ``with_mac`` the last 8 bytes of ``data_with_mac`` are the MAC.
    """
    p1, p2 = _binary_p1p2(offset, sfi)
    return CommandApdu(CLA_SM if with_mac else CLA_PLAIN, INS_UPDATE_BINARY, p1, p2, data_with_mac)


def get_challenge(length: int = 8) -> CommandApdu:
    """GET CHALLENGE (ISO/IEC 7816-4 11.5.3)."""
    return CommandApdu(CLA_PLAIN, INS_GET_CHALLENGE, 0x00, 0x00, le=length)


def internal_authenticate(kid: int, rnd_ifd: bytes) -> CommandApdu:
    """INTERNAL AUTHENTICATE (ISO/IEC 7816-4 11.5.2): the card proves its key."""
    return CommandApdu(CLA_PLAIN, INS_INTERNAL_AUTHENTICATE, 0x00, kid, rnd_ifd, le=16)


def external_authenticate(kid: int, cryptogram: bytes, *, mutual: bool = True) -> CommandApdu:
    """EXTERNAL / MUTUAL AUTHENTICATE (ISO/IEC 7816-4 11.5.4).

    With ``mutual`` Le asks the card for its own cryptogram in the same
    exchange, which saves a separate INTERNAL AUTHENTICATE.
    """
    return CommandApdu(
        CLA_PLAIN, INS_EXTERNAL_AUTHENTICATE, 0x00, kid, cryptogram, le=16 if mutual else None
    )


def get_response(length: int) -> CommandApdu:
    """GET RESPONSE (ISO/IEC 7816-4 11.7.1), after a 61xx."""
    return CommandApdu(CLA_PLAIN, INS_GET_RESPONSE, 0x00, 0x00, le=length)


def create_file(descriptor: bytes) -> CommandApdu:
    """CREATE FILE (ISO/IEC 7816-9 INS E0, proprietary descriptor, docs/card.md 4.5)."""
    return CommandApdu(CLA_PROPRIETARY, INS_CREATE_FILE, 0x00, 0x00, descriptor)


def write_key(kid: int, wrapped_with_mac: bytes) -> CommandApdu:
    """WRITE KEY (proprietary, CLA 84): wrapped key block and its MAC."""
    return CommandApdu(CLA_PROPRIETARY_SM, INS_WRITE_KEY, 0x00, kid, wrapped_with_mac)


def activate_card() -> CommandApdu:
    """ACTIVATE FILE on the MF (ISO/IEC 7816-9): initialisation to operational."""
    return CommandApdu(CLA_PLAIN, INS_ACTIVATE_FILE, 0x00, 0x00)


def _check_fid(fid: int) -> None:
    if not 0 <= fid <= 0xFFFF:
        raise FormatError(f"file identifier {fid} is not two bytes", field="fid")


def _binary_p1p2(offset: int, sfi: int | None) -> tuple[int, int]:
    if sfi is not None:
        if not 1 <= sfi <= 30:
            raise FormatError(f"short file identifier {sfi} is outside 1..30", field="sfi")
        if not 0 <= offset <= MAX_OFFSET_WITH_SFI:
            raise FormatError(
                f"offset {offset} does not fit P2 when the file is named by SFI", field="offset"
            )
        return 0x80 | sfi, offset
    if not 0 <= offset <= MAX_OFFSET:
        raise FormatError(f"offset {offset} is outside 0..32767", field="offset")
    return offset >> 8, offset & 0xFF
