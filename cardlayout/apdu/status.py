"""Status words (ISO/IEC 7816-4 clause 5.6) and the typed errors they become.

Every status word the card profile uses has a meaning here, and every error
status becomes a :class:`StatusError` subclass, so callers catch what they can
handle ("security status not satisfied") instead of comparing numbers, and an
operator sees a sentence instead of "6982".
"""

from __future__ import annotations

from cardlayout.apdu.apdu import ResponseApdu
from cardlayout.errors import CardLayoutError


class StatusError(CardLayoutError):
    """The card refused a command; ``sw`` is its status word."""

    def __init__(self, sw: int, command: str) -> None:
        self.sw = sw
        self.command = command
        super().__init__(f"{command} refused by the card: {status_meaning(sw)} (SW {sw:04X})")


class WrongLengthError(StatusError):
    """6700 or 6Cxx: wrong length."""


class SecurityStatusError(StatusError):
    """6982: the access condition of the file is not fulfilled."""


class AuthenticationFailedError(StatusError):
    """63Cx: a cryptogram did not verify; ``tries_left`` further attempts."""

    @property
    def tries_left(self) -> int:
        return self.sw & 0x0F


class AuthenticationBlockedError(StatusError):
    """6983: the key is blocked after too many failures."""


class SecureMessagingError(StatusError):
    """6987/6988: a secure messaging MAC was missing or wrong."""


class ReferenceUnusableError(StatusError):
    """6984: the referenced key or data is not usable (e.g. disabled)."""


class ConditionsError(StatusError):
    """6985: conditions of use not satisfied (wrong life cycle, no challenge)."""


class FileNotFoundOnCardError(StatusError):
    """6A82: no such file."""


class WrongParametersError(StatusError):
    """6A86, 6B00, 6A80, 6A84, 6A89: parameters or data not acceptable."""


class UnsupportedError(StatusError):
    """6D00 or 6E00: instruction or class not supported."""


class CardMemoryError(StatusError):
    """6581 or 6281: the card's memory failed or returned suspect data."""


MEANINGS: dict[int, str] = {
    0x9000: "success",
    0x6281: "part of the returned data may be corrupted",
    0x6282: "end of file reached before Le bytes",
    0x6581: "memory failure",
    0x6700: "wrong length",
    0x6882: "secure messaging not supported",
    0x6982: "security status not satisfied",
    0x6983: "authentication method blocked",
    0x6984: "reference data not usable",
    0x6985: "conditions of use not satisfied",
    0x6986: "command not allowed (no current EF)",
    0x6987: "expected secure messaging data objects missing",
    0x6988: "secure messaging data objects incorrect (bad MAC)",
    0x6A80: "incorrect parameters in the data field",
    0x6A82: "file or application not found",
    0x6A84: "not enough memory space in the file",
    0x6A86: "incorrect parameters P1-P2",
    0x6A88: "referenced data or key not found",
    0x6A89: "file already exists",
    0x6B00: "wrong parameters (offset outside the EF)",
    0x6D00: "instruction code not supported or invalid",
    0x6E00: "class not supported",
    0x6F00: "no precise diagnosis",
}

_ERRORS: dict[int, type[StatusError]] = {
    0x6700: WrongLengthError,
    0x6982: SecurityStatusError,
    0x6983: AuthenticationBlockedError,
    0x6984: ReferenceUnusableError,
    0x6985: ConditionsError,
    0x6987: SecureMessagingError,
    0x6988: SecureMessagingError,
    0x6A82: FileNotFoundOnCardError,
    0x6A80: WrongParametersError,
    0x6A84: WrongParametersError,
    0x6A86: WrongParametersError,
    0x6A88: WrongParametersError,
    0x6A89: WrongParametersError,
    0x6B00: WrongParametersError,
    0x6D00: UnsupportedError,
    0x6E00: UnsupportedError,
    0x6581: CardMemoryError,
    0x6281: CardMemoryError,
}


def status_meaning(sw: int) -> str:
    """A sentence for any status word, including the 61xx/6Cxx/63Cx families."""
    if sw in MEANINGS:
        return MEANINGS[sw]
    sw1, sw2 = sw >> 8, sw & 0xFF
    if sw1 == 0x61:
        return f"{sw2 or 256} response bytes still available"
    if sw1 == 0x6C:
        return f"wrong Le: {sw2 or 256} bytes available"
    if sw1 == 0x63 and sw2 & 0xF0 == 0xC0:
        return f"verification failed, {sw2 & 0x0F} tries left"
    return "unknown status word"


def error_for(sw: int, command: str) -> StatusError:
    """The typed error for an error status word."""
    sw1, sw2 = sw >> 8, sw & 0xFF
    if sw1 == 0x63 and sw2 & 0xF0 == 0xC0:
        return AuthenticationFailedError(sw, command)
    if sw1 == 0x6C:
        return WrongLengthError(sw, command)
    return _ERRORS.get(sw, StatusError)(sw, command)


def check_status(response: ResponseApdu, command: str) -> ResponseApdu:
    """Return ``response`` if it is 9000, else raise its typed error."""
    if response.ok:
        return response
    raise error_for(response.sw, command)
