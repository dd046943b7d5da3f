"""What every card file is: an identifier, a size, a codec and worked examples.

In the style of osmocom pySim, each EF of docs/card.md section 3 is declared
once as a :class:`CardFile` object; the virtual card, the centre, the meter
model, the CLI and the tests all take the file's size, SFI and codec from that
declaration, and the declaration carries worked examples (value and whole-file
bytes) so the contract can be checked by a reader and by the test suite.

A file codec is a body codec (one per file module) inside the common frame of
:mod:`cardlayout.codec.frame`. Every failure is a :class:`FormatError` whose
message names the file and the field.
"""

from __future__ import annotations

import enum
import operator
from abc import ABC, abstractmethod
from dataclasses import dataclass
from functools import reduce
from typing import Generic, TypeVar

from cardlayout.codec import FRAME_OVERHEAD, decode_frame, encode_frame
from cardlayout.errors import FormatError

__all__ = [
    "MAC_SIZE",
    "BodyReader",
    "CardFile",
    "Example",
    "check_mac",
    "decode_enum",
    "decode_flags",
    "encode_enum",
    "encode_flags",
    "expect_type",
]

T = TypeVar("T")
E = TypeVar("E", bound=enum.IntEnum)
F = TypeVar("F", bound=enum.IntFlag)

MAC_SIZE = 8
"""The data MACs of docs/card.md 6.3 are 8 bytes, at the end of the body."""


@dataclass(frozen=True)
class Example(Generic[T]):
    """A worked example: a value and the whole file (frame included) in hex."""

    value: T
    hex: str
    note: str = ""

    @property
    def data(self) -> bytes:
        """The whole file as bytes."""
        return bytes.fromhex(self.hex)


class CardFile(ABC, Generic[T]):
    """One EF of the user card: its identifiers, size and codec.

    ``encode`` gives the whole file (the frame); ``decode`` takes the whole
    file and raises :class:`~cardlayout.errors.BlankFileError` (all zero),
    :class:`~cardlayout.errors.TornFileError` (first byte ``00``) or
    :class:`~cardlayout.errors.FormatError` for anything else that is wrong.
    """

    def __init__(
        self,
        *,
        name: str,
        sfi: int,
        body_size: int,
        examples: tuple[Example[T], ...] = (),
    ) -> None:
        self.name = name
        self.sfi = sfi
        self.fid = sfi
        """EF0n has FID 000n and SFI n (docs/card.md section 3)."""
        self.body_size = body_size
        self.size = body_size + FRAME_OVERHEAD
        self.examples = examples

    def __repr__(self) -> str:
        return f"<CardFile {self.name} EF{self.fid:02X} {self.size} B>"

    @abstractmethod
    def encode_body(self, value: T) -> bytes:
        """Encode ``value`` into the body (no frame); raises FormatError naming the field."""

    @abstractmethod
    def decode_body(self, body: bytes) -> T:
        """Decode a body of ``body_size`` bytes; raises FormatError naming the field."""

    def encode(self, value: T) -> bytes:
        """Return the whole file for ``value``: the frame around the body."""
        try:
            body = self.encode_body(value)
        except FormatError as exc:
            raise FormatError(f"{self.name} file: {exc}", field=exc.field) from exc
        if len(body) != self.body_size:  # pragma: no cover - a bug in a body codec
            raise AssertionError(f"{self.name} body is {len(body)} B, not {self.body_size}")
        return encode_frame(self.sfi, body)

    def decode(self, data: bytes) -> T:
        """Decode the whole file (exactly ``size`` bytes) into its value."""
        data = bytes(data)
        if len(data) != self.size:
            raise FormatError(
                f"{self.name} file: length is {len(data)} bytes, not {self.size}", field="length"
            )
        body = decode_frame(self.sfi, data, name=self.name)
        try:
            return self.decode_body(body)
        except FormatError as exc:
            raise FormatError(f"{self.name} file: {exc}", field=exc.field) from exc


class BodyReader:
    """Walks a body field by field, so each decoder reads like the doc's table."""

    def __init__(self, body: bytes) -> None:
        self._body = body
        self._offset = 0

    @property
    def offset(self) -> int:
        """Offset of the next field in the body."""
        return self._offset

    def take(self, length: int) -> bytes:
        """Return the next ``length`` bytes."""
        chunk = self._body[self._offset : self._offset + length]
        self._offset += length
        return chunk

    def byte(self) -> int:
        """Return the next single byte as an int."""
        return self.take(1)[0]

    def reserved(self, length: int, *, field: str = "reserved") -> None:
        """Skip ``length`` reserved bytes, which must be zero."""
        start = self._offset
        if any(self.take(length)):
            raise FormatError(f"{field} bytes at offset {start} must be zero", field=field)


def expect_type(value: object, kind: type[T], *, field: str) -> T:
    """Refuse a value of the wrong type with a FormatError (not an AttributeError)."""
    if not isinstance(value, kind):
        raise FormatError(
            f"{field} must be a {kind.__name__}, not {type(value).__name__}", field=field
        )
    return value


def decode_enum(kind: type[E], value: int, *, field: str) -> E:
    """Return the member of ``kind`` coded ``value``; unknown codes are a FormatError."""
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(f"{int(m)} {m.name}" for m in kind)
        raise FormatError(f"{field} is {value}; allowed: {allowed}", field=field) from None


def encode_enum(kind: type[E], value: object, *, field: str) -> bytes:
    """Encode a member of ``kind`` (or its int code) as one byte."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise FormatError(
            f"{field} must be a {kind.__name__}, not {type(value).__name__}", field=field
        )
    return bytes([int(decode_enum(kind, value, field=field))])


def _all_bits(kind: type[F]) -> int:
    return reduce(operator.or_, (int(member) for member in kind), 0)


def decode_flags(kind: type[F], value: int, *, field: str) -> F:
    """Return ``value`` as flags of ``kind``; reserved bits set are a FormatError."""
    extra = value & ~_all_bits(kind)
    if extra:
        raise FormatError(
            f"{field} has reserved bits set ({extra} of {value}); defined bits: "
            + ", ".join(f"{m.name}={int(m)}" for m in kind),
            field=field,
        )
    return kind(value)


def encode_flags(kind: type[F], value: object, length: int, *, field: str) -> bytes:
    """Encode flags of ``kind`` in ``length`` bytes, refusing undefined bits."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise FormatError(f"{field} must be {kind.__name__} flags, not {value!r}", field=field)
    return int(decode_flags(kind, value, field=field)).to_bytes(length, "big")


def check_mac(mac: object, *, field: str = "mac") -> bytes:
    """Return ``mac`` if it is exactly :data:`MAC_SIZE` bytes."""
    if not isinstance(mac, bytes) or len(mac) != MAC_SIZE:
        raise FormatError(f"{field} must be {MAC_SIZE} bytes, not {mac!r}", field=field)
    return mac
