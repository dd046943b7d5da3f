"""The desk's card reader as a service: a cheap status for the dashboard, a channel for a flow.

Which reader: ``CARDCENTER_READER`` when set (a name, a unique part of one,
or an index into pcscd's list); otherwise the first real PC/SC reader
pcscd lists, looked up again at every call so a USB reader plugged in while
the application runs is used from then on; and when there is none, the vpcd
virtual reader on ``CARDCENTER_VPCD_PORT``, filled from the
:class:`~cardcenter.web.vcards.VirtualCardTray`.

:meth:`ReaderService.status` only watches the reader (one
``SCardGetStatusChange`` with no wait), so a browser may poll it every
second, and it works while a sale holds the card exclusively.
:meth:`ReaderService.channel` opens the card for one flow; one flow at a
time per reader (a lock), since a desk has one reader and one card.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from cardcenter.core.errors import ConflictError
from cardcenter.web.vcards import VirtualCardTray
from cardlayout.errors import CardLayoutError, FormatError, NoCardError, NoReaderError
from cardlayout.transport.channel import CardChannel
from cardlayout.transport.pcsc import VPCD_FIRST_PORT, VPCD_READER_PREFIX, vpcd_reader_name

CARD_TIMEOUT = 10.0
"""Seconds a flow waits for the card (and for another program to let go of it)."""

BUSY_TIMEOUT = 15.0
"""Seconds a flow waits for another flow at the same reader to finish."""


class ReaderBusyError(ConflictError):
    """Another request at this desk is using the card."""


class ReaderService:
    """One desk's reader: which one it is, what is in it, and a channel to the card."""

    def __init__(
        self,
        spec: str | None,
        *,
        vpcd_port: int = VPCD_FIRST_PORT,
        tray: VirtualCardTray | None = None,
        card_timeout: float = CARD_TIMEOUT,
    ) -> None:
        self.spec = spec
        self.vpcd_port = vpcd_port
        self.tray = tray
        self.card_timeout = card_timeout
        self._lock = threading.Lock()

    def name(self) -> str:
        """The reader's full name in pcscd's list (raises :class:`NoReaderError` if none fits)."""
        from cardlayout.transport.pcsc import list_readers, resolve_reader

        names = list_readers()
        if self.spec is not None:
            spec: str | int = int(self.spec) if self.spec.isdigit() else self.spec
            return resolve_reader(spec, names)
        real = [n for n in names if not n.startswith(VPCD_READER_PREFIX)]
        if real:
            return real[0]
        virtual = vpcd_reader_name(names, self.vpcd_port)
        if virtual is not None:
            return virtual
        raise NoReaderError(
            "pcscd lists no card reader: plug one in (or run scripts/setup for the virtual one)"
        )

    def is_virtual(self, name: str) -> bool:
        """Whether ``name`` is the vpcd reader the virtual card tray fills."""
        return vpcd_reader_name([name], self.vpcd_port) == name

    def status(self) -> dict[str, Any]:
        """``{"reader", "present", "serial", "virtual", "error"}``; never raises.

        ``serial`` is the card serial from the ATR (hex), None for a card of
        another profile; ``error`` is a sentence when the reader or pcscd
        cannot be reached, else None. With the virtual reader, ``tray`` lists
        the virtual cards (``[{"serial", "inserted"}]``).
        """
        from cardlayout.transport.pcsc import wait_for_card
        from cardlayout.vcard.cos import serial_from_atr

        result: dict[str, Any] = {
            "reader": None,
            "present": False,
            "serial": None,
            "virtual": False,
            "error": None,
        }
        try:
            name = self.name()
            result["reader"] = name
            result["virtual"] = self.is_virtual(name) and self.tray is not None
            atr = wait_for_card(name, timeout=0)
            result["present"] = True
            result["serial"] = serial_from_atr(atr).hex().upper()
        except NoCardError:
            pass
        except FormatError:
            pass  # a card, but not one of this profile: present, no serial
        except CardLayoutError as exc:
            result["error"] = str(exc)
        if result["virtual"] and self.tray is not None:
            result["tray"] = [
                {"serial": card.serial, "inserted": card.inserted} for card in self.tray.cards()
            ]
        return result

    @contextmanager
    def channel(self, timeout: float | None = None) -> Iterator[CardChannel]:
        """The card in the reader, opened exclusively for one flow and closed after it.

        Waits up to ``timeout`` (default :data:`CARD_TIMEOUT`) for a card;
        raises the card layer's errors (no card, no reader, no pcscd) as
        sentences, and :class:`ReaderBusyError` when another request of this
        desk keeps the reader longer than :data:`BUSY_TIMEOUT`.
        """
        from cardlayout.transport.pcsc import PcscTransport

        if not self._lock.acquire(timeout=BUSY_TIMEOUT):
            raise ReaderBusyError(
                "the reader is busy with another request at this desk; try again in a moment"
            )
        try:
            transport = PcscTransport(
                self.name(), timeout=self.card_timeout if timeout is None else timeout
            )
            channel = CardChannel(transport)
            channel.connect()
            try:
                yield channel
            finally:
                channel.close()
        finally:
            self._lock.release()
