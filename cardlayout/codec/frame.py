"""The frame every EF holds: ``68 | cmd | len (2) | body | CS | 16``.

The frame is what lets a reader tell a written file from a blank one, a torn
one (first byte ``00``: the write protocol of docs/card.md 5.2 writes the start
byte last) and a file copied into the wrong EF (``cmd`` is the EF's SFI).
"""

from __future__ import annotations

from cardlayout.codec.binary import check_int, uint_max
from cardlayout.errors import BlankFileError, FormatError, TornFileError

__all__ = [
    "END",
    "FRAME_OVERHEAD",
    "START",
    "TORN_MARKER",
    "checksum",
    "decode_frame",
    "encode_frame",
]

START = 0x68
"""First byte of a complete frame."""
END = 0x16
"""Last byte of a frame."""
TORN_MARKER = 0x00
"""First byte while a write is in progress (the start byte is written last)."""
FRAME_OVERHEAD = 6
"""Bytes around the body: start, cmd, two length bytes, CS, end."""

_HEADER = 4
_LENGTH_BYTES = 2
_BYTE = 256


def checksum(data: bytes) -> int:
    """Return the byte sum of ``data`` modulo 256 (the frame's CS)."""
    return sum(data) % _BYTE


def encode_frame(cmd: int, body: bytes) -> bytes:
    """Wrap ``body`` in a frame for the EF whose SFI is ``cmd``."""
    check_int(cmd, field="cmd", minimum=1, maximum=_BYTE - 1)
    check_int(len(body), field="length", minimum=0, maximum=uint_max(_LENGTH_BYTES))
    covered = bytes([cmd]) + len(body).to_bytes(_LENGTH_BYTES, "big") + bytes(body)
    return bytes([START]) + covered + bytes([checksum(covered), END])


def decode_frame(cmd: int, data: bytes, *, name: str) -> bytes:
    """Return the body of the frame in ``data`` (a whole file), checking everything.

    Raises :class:`BlankFileError` for all-zero bytes, :class:`TornFileError`
    for a first byte ``00`` otherwise, and :class:`FormatError` (naming the
    file ``name`` and the frame part) for any other fault.
    """
    data = bytes(data)
    if not data:
        raise FormatError(f"{name} file: length is 0 (the file is empty)", field="length")
    if not any(data):
        raise BlankFileError(f"{name} file is blank (never written)")
    if data[0] == TORN_MARKER:
        raise TornFileError(f"{name} file is torn (a write was interrupted)")
    if data[0] != START:
        raise FormatError(
            f"{name} file: start byte is {data[0]}, not {START} (not a frame)",
            field="start",
        )
    if len(data) < FRAME_OVERHEAD:
        raise FormatError(
            f"{name} file: length is {len(data)} bytes, too short for a frame", field="length"
        )
    if data[1] != cmd:
        raise FormatError(
            f"{name} file: cmd is {data[1]}, not its SFI {cmd} (a frame copied from another file?)",
            field="cmd",
        )
    length = int.from_bytes(data[2:_HEADER], "big")
    if length != len(data) - FRAME_OVERHEAD:
        raise FormatError(
            f"{name} file: length field is {length}, but the file holds a "
            f"{len(data) - FRAME_OVERHEAD}-byte body",
            field="length",
        )
    body = data[_HEADER:-2]
    expected = checksum(data[1:-2])
    if data[-2] != expected:
        raise FormatError(
            f"{name} file: checksum is {data[-2]}, but the bytes sum to {expected}",
            field="checksum",
        )
    if data[-1] != END:
        raise FormatError(
            f"{name} file: end byte is {data[-1]}, not {END}",
            field="end",
        )
    return body
