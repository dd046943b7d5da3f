"""An authenticated session with the card, and the tear-safe file write.

Opening a session is GET CHALLENGE plus one MUTUAL AUTHENTICATE: the
terminal proves it holds the key (and gets update rights) and the card
proves the same in its answer, so a forged or foreign card fails here,
before anything is written. Every update then carries a secure-messaging MAC.
"""

from __future__ import annotations

import secrets
from typing import Any

from cardlayout.apdu import commands
from cardlayout.errors import SecurityError
from cardlayout.files import CardFile
from cardlayout.security import session as sm
from cardlayout.security.keys import SecretKey
from cardlayout.transport.channel import CardChannel

MAC_LEN = 8
MAX_CHUNK = 255 - MAC_LEN
FRAME_START = 0x68
TORN_START = 0x00


class CardSession:
    """Update rights on the selected application, proven by one key."""

    def __init__(self, channel: CardChannel, kid: int, messaging: sm.SecureMessaging) -> None:
        self.channel = channel
        self.kid = kid
        self.messaging = messaging

    @classmethod
    def open(cls, channel: CardChannel, kid: int, key: SecretKey, *, who: str) -> CardSession:
        """Mutually authenticate with key ``kid`` of the selected application.

        ``who`` names the key in errors ("issuer key", "meter key").
        """
        rnd_icc = channel.send(commands.get_challenge(), "GET CHALLENGE")
        rnd_ifd = secrets.token_bytes(8)
        answer = channel.send(
            commands.external_authenticate(kid, sm.external_cryptogram(key, rnd_icc, rnd_ifd)),
            f"authentication with the {who}",
        )
        expected = sm.card_cryptogram(key, rnd_ifd, rnd_icc)
        if not secrets.compare_digest(answer, expected):
            raise SecurityError(
                f"the card did not prove the {who}: it is forged or belongs to another system"
            )
        return cls(channel, kid, sm.SecureMessaging(sm.session_key(key, rnd_icc, rnd_ifd)))

    def update(self, sfi: int, offset: int, data: bytes, what: str) -> None:
        """One UPDATE BINARY with MAC (at most 247 data bytes)."""
        p1, p2 = 0x80 | sfi, offset
        mac = self.messaging.command_mac(commands.CLA_SM, commands.INS_UPDATE_BINARY, p1, p2, data)
        self.channel.send(commands.update_binary(offset, data + mac, sfi=sfi), what)

    def write_file(self, file: CardFile[Any], encoded: bytes) -> None:
        """Write one whole file so that a tear leaves it old, torn or new.

        docs/card.md 5.2: first the frame with its start byte cleared (in
        chunks), then the start byte alone. Until that last one-byte write the
        file cannot decode, so a half-written frame is never taken for a value.
        """
        if len(encoded) != file.size or encoded[0] != FRAME_START:
            raise ValueError(f"{file.name}: not an encoded frame of {file.size} bytes")
        body = bytes((TORN_START,)) + encoded[1:]
        for offset in range(0, len(body), MAX_CHUNK):
            self.update(
                file.sfi, offset, body[offset : offset + MAX_CHUNK], f"UPDATE BINARY of {file.name}"
            )
        self.update(file.sfi, 0, bytes((FRAME_START,)), f"UPDATE BINARY of {file.name}")

    def write_key(self, kid: int, key: SecretKey, version: int) -> None:
        """Load a key into the card's key file, wrapped under the session key."""
        wrapped = self.messaging.wrap_key(key, version)
        mac = self.messaging.command_mac(
            commands.CLA_PROPRIETARY_SM, commands.INS_WRITE_KEY, 0x00, kid, wrapped
        )
        self.channel.send(commands.write_key(kid, wrapped + mac), f"WRITE KEY {kid:02X}")


def prove_card(channel: CardChannel, kid: int, key: SecretKey, serial: bytes, *, who: str) -> None:
    """INTERNAL AUTHENTICATE: check the card holds ``key`` without opening a session.

    For read-only work (a reading card, a check at the counter) that must
    still refuse a forged or foreign card; writing needs :meth:`CardSession.open`,
    which proves the card as part of the mutual authentication.
    """
    rnd_ifd = secrets.token_bytes(8)
    answer = channel.send(commands.internal_authenticate(kid, rnd_ifd), "INTERNAL AUTHENTICATE")
    if not secrets.compare_digest(answer, sm.internal_auth_response(key, rnd_ifd, serial)):
        raise SecurityError(
            f"the card did not prove the {who}: it is forged or belongs to another system"
        )
