"""The virtual card tray: blank and issued virtual cards an operator puts in the vpcd reader.

A service hall without a USB reader (the demo, the browser tests) still
runs every card flow through PC/SC: pcscd's vpcd driver is a reader, and a
:class:`~cardlayout.vcard.vpcd.VpcdBridge` connecting to it is a card in it
(as ``cardcenter demo`` does). The tray keeps each card's image as a file
(``vcards/<serial>.json`` in the data directory) that the card's operating
system saves at every write, so a card issued today is still the same card
after a restart; the dashboard lists them and inserts or removes one.

One card at a time, as in a real reader. The tray belongs to one
application (``app.extensions``) and is safe to use from waitress's threads.

Swapping cards waits for pcscd to report the reader empty before the next
card goes in (:func:`~cardlayout.transport.pcsc.wait_until_vpcd_empty`).
"""

from __future__ import annotations

import logging
import re
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path

from cardcenter.core.errors import InvalidInputError, NotFoundError
from cardlayout.transport import pcsc
from cardlayout.vcard.cos import VirtualCard, new_image
from cardlayout.vcard.image import CardImage
from cardlayout.vcard.vpcd import VpcdBridge

SERIAL_PREFIX = "5A"
"""First byte of the serials the tray makes (a card maker's prefix in this profile's demo)."""

_SERIAL = re.compile(r"^[0-9A-F]{16}$")

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrayCard:
    serial: str
    inserted: bool


class VirtualCardTray:
    """Virtual cards kept in ``directory``, put one at a time into the vpcd reader on ``port``."""

    def __init__(self, directory: Path, port: int) -> None:
        self.directory = directory
        self.port = port
        self._lock = threading.Lock()
        self._bridge: VpcdBridge | None = None
        self._serial: str | None = None

    @property
    def inserted(self) -> str | None:
        """The serial of the card in the reader (None when empty, or when pcscd dropped it)."""
        bridge = self._bridge
        if bridge is None or not bridge.is_inserted:
            return None
        return self._serial

    @property
    def card(self) -> VirtualCard | None:
        """The virtual card in the reader (tests arm a tear on it to pull it mid-write)."""
        bridge = self._bridge
        card = bridge.card if bridge is not None and bridge.is_inserted else None
        return card if isinstance(card, VirtualCard) else None

    def cards(self) -> list[TrayCard]:
        """Every card in the tray, oldest first, and which one is in the reader."""
        if not self.directory.is_dir():
            return []
        inserted = self.inserted
        files = sorted(self.directory.glob("*.json"), key=lambda p: (p.stat().st_mtime, p.name))
        return [TrayCard(p.stem, p.stem == inserted) for p in files if _SERIAL.match(p.stem)]

    def new_card(self) -> str:
        """A factory-blank card (a fresh serial) in the tray; returns its serial."""
        self.directory.mkdir(parents=True, exist_ok=True)
        while True:
            serial = SERIAL_PREFIX + secrets.token_hex(7).upper()
            path = self._path(serial)
            if not path.exists():
                break
        image = new_image(bytes.fromhex(serial), str(path))
        image.save()
        return serial

    def insert(self, serial: str) -> None:
        """Put card ``serial`` in the reader (taking out the one there first)."""
        serial = _check_serial(serial)
        path = self._path(serial)
        if not path.exists():
            raise NotFoundError(f"there is no virtual card {serial} in the tray")
        with self._lock:
            self._remove_locked()
            bridge = VpcdBridge(VirtualCard(CardImage.load(path)), port=self.port)
            bridge.insert()
            self._bridge, self._serial = bridge, serial

    def remove(self) -> None:
        """Take the card out of the reader (nothing happens when it is empty)."""
        with self._lock:
            self._remove_locked()

    def _remove_locked(self) -> None:
        bridge, self._bridge, self._serial = self._bridge, None, None
        if bridge is not None:
            bridge.remove()
            # a pcscd that has not seen the reader empty by then is logged; the swap goes on
            if pcsc.wait_until_vpcd_empty(self.port) is False:
                logger.warning("pcscd still shows a card at vpcd port %d", self.port)

    def _path(self, serial: str) -> Path:
        return self.directory / f"{serial}.json"


def _check_serial(serial: str) -> str:
    serial = serial.strip().upper()
    if not _SERIAL.match(serial):
        raise InvalidInputError("serial", "give the card's 16 hexadecimal digits")
    return serial
