"""The transport interface every card connection implements."""

from __future__ import annotations

from typing import Protocol


class Transport(Protocol):
    """A connection to one card that moves raw APDU bytes.

    A transport knows nothing of status words: 61xx and 6Cxx are handled once,
    in :class:`cardlayout.transport.channel.CardChannel`, above every
    transport. Failures are :class:`cardlayout.errors.CardIOError` subclasses
    (no service, no reader, no card, card removed).
    """

    @property
    def name(self) -> str:
        """Human-readable name of the reader or virtual slot."""
        ...

    def connect(self) -> bytes:
        """Power the card and return its ATR."""
        ...

    def transmit(self, command: bytes) -> bytes:
        """Send one command APDU and return the response APDU (data + SW)."""
        ...

    def disconnect(self) -> None:
        """Release the card; safe to call twice."""
        ...
