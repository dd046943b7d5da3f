"""The logical channel: APDU objects in, checked responses out.

pyscard hands back whatever the card said, so a T=0 card's ``61xx`` ("more
data, ask with GET RESPONSE") and ``6Cxx`` ("wrong Le, here is the right
one") would reach every caller. They are resolved here, once, for every
transport, and every exchange can be traced as ``> HEX`` / ``< HEX`` lines.
"""

from __future__ import annotations

from typing import TextIO

from cardlayout.apdu import commands
from cardlayout.apdu.apdu import CommandApdu, ResponseApdu
from cardlayout.apdu.status import check_status
from cardlayout.transport.base import Transport

MAX_GET_RESPONSE_ROUNDS = 16


class CardChannel:
    """APDU exchange with one card over any :class:`Transport`."""

    def __init__(self, transport: Transport, *, trace: TextIO | None = None) -> None:
        self.transport = transport
        self.trace = trace
        self.atr = b""
        self.apdus = 0
        self.bytes_sent = 0
        self.bytes_received = 0

    def connect(self) -> bytes:
        """Power the card; return and remember its ATR."""
        self.atr = self.transport.connect()
        return self.atr

    def close(self) -> None:
        """Release the card."""
        self.transport.disconnect()

    def __enter__(self) -> CardChannel:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _exchange(self, command: CommandApdu) -> ResponseApdu:
        raw = command.to_bytes()
        if self.trace is not None:
            print(f"> {raw.hex().upper()}", file=self.trace, flush=True)
        answer = self.transport.transmit(raw)
        if self.trace is not None:
            print(f"< {answer.hex().upper()}", file=self.trace, flush=True)
        self.apdus += 1
        self.bytes_sent += len(raw)
        self.bytes_received += len(answer)
        return ResponseApdu.from_bytes(answer)

    def transmit(self, command: CommandApdu) -> ResponseApdu:
        """Send ``command``; resolve 6Cxx once and 61xx by GET RESPONSE.

        The result carries the whole response data and the final status word,
        which may still be an error: see :meth:`send` for the checked form.
        """
        response = self._exchange(command)
        if response.sw1 == 0x6C:
            response = self._exchange(
                CommandApdu(
                    command.cla,
                    command.ins,
                    command.p1,
                    command.p2,
                    command.data,
                    response.sw2 or 256,
                )
            )
        data = response.data
        rounds = 0
        while response.sw1 == 0x61 and rounds < MAX_GET_RESPONSE_ROUNDS:
            response = self._exchange(commands.get_response(response.sw2 or 256))
            data += response.data
            rounds += 1
        return ResponseApdu(data, response.sw1, response.sw2)

    def send(self, command: CommandApdu, what: str) -> bytes:
        """Send ``command`` and return its data; an error status raises.

        ``what`` names the operation in the error ("READ BINARY of write-back").
        """
        return check_status(self.transmit(command), what).data
