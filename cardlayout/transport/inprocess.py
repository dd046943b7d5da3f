"""The virtual card in the same process, for unit tests and tear sweeps.

The same bytes go in and out as through pcscd, minus the daemon: fast enough
to tear an operation at every byte. Card I/O for people and for the
end-to-end tests goes through :mod:`cardlayout.transport.pcsc` instead.
"""

from __future__ import annotations

from cardlayout.errors import CardRemovedError, NoCardError
from cardlayout.vcard.cos import PowerLost, VirtualCard


class InProcessTransport:
    """A :class:`~cardlayout.transport.base.Transport` onto a :class:`VirtualCard`."""

    def __init__(self, card: VirtualCard, name: str = "in-process virtual card") -> None:
        self.card = card
        self._name = name
        self.inserted = True

    @property
    def name(self) -> str:
        return self._name

    def connect(self) -> bytes:
        if not self.inserted:
            raise NoCardError(f"no card in {self._name}")
        return self.card.power_on()

    def transmit(self, command: bytes) -> bytes:
        if not self.inserted or not self.card.powered:
            raise CardRemovedError(f"the card was removed from {self._name}")
        try:
            return self.card.process(command)
        except PowerLost as exc:
            self.inserted = False
            raise CardRemovedError(f"the card was pulled from {self._name} during a write") from exc

    def disconnect(self) -> None:
        if self.card.powered:
            self.card.power_off()

    def reinsert(self) -> None:
        """Put the card back (after a tear) so :meth:`connect` works again."""
        self.inserted = True
