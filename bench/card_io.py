"""APDUs and bytes for each card operation, and what they cost on a real line.

Run: ``.venv/bin/python bench/card_io.py [--pcsc]``

For personalise, full read, purchase write (with and without a tariff set)
and write-back clear it prints the APDUs exchanged, the bytes of the APDUs,
and the estimated transmission time on a T=0 line at 9600 baud: every byte
is 12 etu (start, 8 data, parity, 2 guard), so 1.25 ms; an APDU moves its
5-byte header, one procedure byte when data flows, its data, and SW1 SW2.
Card processing time (EEPROM writes: a few ms per page) is not included.
With ``--pcsc`` each operation also runs through pcscd and the vpcd
virtual reader, and the wall time is printed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cardlayout.card.operations import (
    PurchaseWrite,
    clear_write_back,
    personalise,
    write_purchase,
)
from cardlayout.card.snapshot import read_snapshot
from cardlayout.files import PARAMETERS, TARIFF_SET_1, CardType, Purse
from cardlayout.security.diversify import CardKeys
from cardlayout.security.keystore import init_master_keys, open_keystore
from cardlayout.transport.channel import CardChannel
from cardlayout.transport.inprocess import InProcessTransport
from cardlayout.vcard.cos import VirtualCard, new_image
from cardlayout.vcard.image import CardImage

ETU_PER_BYTE = 12
BAUD = 9600
SERIAL = bytes.fromhex("B0000000000000E1")


class Recorder:
    """A transport wrapper that keeps every exchange for the wire estimate."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.exchanges: list[tuple[bytes, bytes]] = []

    @property
    def name(self) -> str:
        return str(self.inner.name)

    def connect(self) -> bytes:
        return bytes(self.inner.connect())

    def transmit(self, command: bytes) -> bytes:
        answer = bytes(self.inner.transmit(command))
        self.exchanges.append((command, answer))
        return answer

    def disconnect(self) -> None:
        self.inner.disconnect()


def t0_wire_bytes(command: bytes, answer: bytes) -> int:
    """Bytes on a T=0 line for one exchange (header, procedure byte, data, SW)."""
    data_in = len(command) - 5 if len(command) > 5 else 0
    data_out = len(answer) - 2
    procedure = 1 if data_in or data_out else 0
    return 5 + procedure + data_in + data_out + 2


@dataclass
class Figures:
    apdus: int
    sent: int
    received: int
    wire_ms: float


def measure(
    image: CardImage, operation: Callable[[CardChannel], object]
) -> tuple[Figures, CardImage]:
    card = VirtualCard(image.copy())
    recorder = Recorder(InProcessTransport(card))
    channel = CardChannel(recorder)
    channel.connect()
    operation(channel)
    wire = sum(t0_wire_bytes(c, a) for c, a in recorder.exchanges)
    return (
        Figures(
            len(recorder.exchanges),
            sum(len(c) for c, _ in recorder.exchanges),
            sum(len(a) for _, a in recorder.exchanges),
            wire * ETU_PER_BYTE / BAUD * 1000,
        ),
        card.image,
    )


def pcsc_ms(image: CardImage, operation: Callable[[CardChannel], object], repeat: int) -> float:
    from cardlayout.transport.pcsc import PcscTransport
    from cardlayout.vcard.vpcd import VpcdBridge

    total = 0.0
    for _ in range(repeat):
        card = VirtualCard(image.copy())
        with VpcdBridge(card, port=35963):
            channel = CardChannel(PcscTransport(0, timeout=10))
            channel.connect()
            started = time.perf_counter()
            operation(channel)
            total += time.perf_counter() - started
            channel.close()
    return total / repeat * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pcsc", action="store_true", help="also time each operation via pcscd")
    parser.add_argument("--repeat", type=int, default=5, help="PC/SC repetitions (default 5)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        store = open_keystore(str(Path(tmp) / "k"), passphrase="bench", create=True, scrypt_n=2**10)
        init_master_keys(store)
        keys = CardKeys(store)
        params = PARAMETERS.examples[0].value
        opening = PurchaseWrite(
            parameters=params.__class__(**{**params.__dict__, "card_type": CardType.OPENING}),
            purse=Purse(amount=10000, purchase_count=1, mac=bytes(8)),
            tariff_set_1=TARIFF_SET_1.examples[0].value,
            bind_meter=True,
        )
        plain = PurchaseWrite(
            parameters=params, purse=Purse(amount=5000, purchase_count=2, mac=bytes(8))
        )
        with_tariff = PurchaseWrite(
            parameters=params,
            purse=Purse(amount=5000, purchase_count=2, mac=bytes(8)),
            tariff_set_2=TARIFF_SET_1.examples[1].value,
        )

        blank = new_image(SERIAL)
        _, personalised = measure(blank, lambda ch: personalise(ch, keys))
        _, issued = measure(
            personalised, lambda ch: write_purchase(ch, keys, read_snapshot(ch), opening)
        )
        operations: list[tuple[str, CardImage, Callable[[CardChannel], object]]] = [
            ("personalise", blank, lambda ch: personalise(ch, keys)),
            ("full read", issued, lambda ch: read_snapshot(ch)),
            (
                "purchase write",
                issued,
                lambda ch: write_purchase(ch, keys, read_snapshot(ch), plain),
            ),
            (
                "purchase write + tariff set",
                issued,
                lambda ch: write_purchase(ch, keys, read_snapshot(ch), with_tariff),
            ),
            ("write-back clear", issued, lambda ch: clear_write_back(ch, keys, read_snapshot(ch))),
        ]
        header = f"{'operation':30} {'APDUs':>6} {'sent B':>7} {'recv B':>7} {'T=0 9600 ms':>12}"
        if args.pcsc:
            header += f" {'pcscd+vpcd ms':>14}"
        print(header)
        for name, image, operation in operations:
            figures, _ = measure(image, operation)
            line = (
                f"{name:30} {figures.apdus:6d} {figures.sent:7d} {figures.received:7d} "
                f"{figures.wire_ms:12.0f}"
            )
            if args.pcsc:
                line += f" {pcsc_ms(image, operation, args.repeat):14.1f}"
            print(line, flush=True)
        print(
            "\npurchase write and write-back clear include the snapshot read that precedes them"
            " (the centre reads the card before every sale)."
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
