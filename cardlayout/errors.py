"""The project's own exceptions for card work.

Every failure a caller can meet is one of these, with a sentence that names
what is wrong, so the CLI can print it and the centre can show it to an
operator. Messages never contain key values (only names, versions and key
check values).
"""

from __future__ import annotations


class CardLayoutError(Exception):
    """Base of every error raised by :mod:`cardlayout`."""


class FormatError(CardLayoutError, ValueError):
    """Bytes that do not decode, or a value that does not encode.

    ``field`` names the file field at fault where there is one.
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class BlankFileError(FormatError):
    """The file has never been written (all zero bytes)."""


class TornFileError(FormatError):
    """The file was being written when the card lost power (start marker 00)."""


class SecurityError(CardLayoutError):
    """A MAC, cryptogram or authentication did not verify."""


class KeyStoreError(CardLayoutError):
    """The key store cannot be opened or does not hold the requested key."""


class CardIOError(CardLayoutError):
    """Talking to the card failed below the APDU level."""


class NoServiceError(CardIOError):
    """The PC/SC service (pcscd) is not running or cannot be reached."""


class NoReaderError(CardIOError):
    """No reader, or not the one asked for."""


class NoCardError(CardIOError):
    """No card in the reader (within the time allowed)."""


class CardRemovedError(CardIOError):
    """The card was removed, or lost power, during the exchange."""
