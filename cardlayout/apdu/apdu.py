"""Command and response APDUs (ISO/IEC 7816-4 clause 5.1, short length only).

Every command of the card profile fits short APDUs (at most 255 data bytes and
a response of at most 256), which every reader and T=0 card supports; so
extended lengths are refused rather than half supported.
"""

from __future__ import annotations

from dataclasses import dataclass

from cardlayout.errors import FormatError

MAX_SHORT_DATA = 255
MAX_SHORT_LE = 256


@dataclass(frozen=True, slots=True)
class CommandApdu:
    """A command: header, optional data field, optional expected length.

    ``le`` is the number of response bytes expected (1..256), or ``None`` for
    a command without response data (cases 1 and 3).
    """

    cla: int
    ins: int
    p1: int
    p2: int
    data: bytes = b""
    le: int | None = None

    def __post_init__(self) -> None:
        for name in ("cla", "ins", "p1", "p2"):
            value = getattr(self, name)
            if not 0 <= value <= 0xFF:
                raise FormatError(f"APDU {name} {value} is not a byte", field=name)
        if len(self.data) > MAX_SHORT_DATA:
            raise FormatError(
                f"APDU data of {len(self.data)} bytes exceeds the short limit of 255",
                field="data",
            )
        if self.le is not None and not 1 <= self.le <= MAX_SHORT_LE:
            raise FormatError(f"APDU Le {self.le} is outside 1..256", field="le")

    @property
    def header(self) -> bytes:
        """CLA INS P1 P2."""
        return bytes((self.cla, self.ins, self.p1, self.p2))

    def to_bytes(self) -> bytes:
        """Encode as case 1, 2S, 3S or 4S."""
        out = bytearray(self.header)
        if self.data:
            out.append(len(self.data))
            out += self.data
        if self.le is not None:
            out.append(self.le & 0xFF)  # 256 is coded as 00
        return bytes(out)

    @classmethod
    def from_bytes(cls, raw: bytes) -> CommandApdu:
        """Parse a short command APDU; anything else is a :class:`FormatError`."""
        if len(raw) < 4:
            raise FormatError(f"command APDU of {len(raw)} bytes is shorter than its header")
        cla, ins, p1, p2 = raw[:4]
        body = raw[4:]
        if not body:
            return cls(cla, ins, p1, p2)
        if len(body) == 1:
            return cls(cla, ins, p1, p2, le=body[0] or 256)
        lc = body[0]
        if lc == 0:
            raise FormatError("extended-length command APDUs are not supported", field="lc")
        if len(body) == 1 + lc:
            return cls(cla, ins, p1, p2, bytes(body[1:]))
        if len(body) == 2 + lc:
            return cls(cla, ins, p1, p2, bytes(body[1 : 1 + lc]), body[1 + lc] or 256)
        raise FormatError(f"command APDU Lc {lc} does not match its {len(body) - 1} data bytes")


@dataclass(frozen=True, slots=True)
class ResponseApdu:
    """A response: data field and status word."""

    data: bytes
    sw1: int
    sw2: int

    @property
    def sw(self) -> int:
        """The status word as one 16-bit number."""
        return (self.sw1 << 8) | self.sw2

    @property
    def ok(self) -> bool:
        """True for 9000."""
        return self.sw == 0x9000

    def to_bytes(self) -> bytes:
        """Data followed by SW1 SW2."""
        return self.data + bytes((self.sw1, self.sw2))

    @classmethod
    def from_bytes(cls, raw: bytes) -> ResponseApdu:
        """Split a response into data and status word."""
        if len(raw) < 2:
            raise FormatError(f"response APDU of {len(raw)} bytes has no status word")
        return cls(bytes(raw[:-2]), raw[-2], raw[-1])

    @classmethod
    def status(cls, sw: int, data: bytes = b"") -> ResponseApdu:
        """Build a response from a 16-bit status word."""
        return cls(data, sw >> 8, sw & 0xFF)
