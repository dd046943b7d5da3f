"""EF06 history (docs/card.md 3.5): the meter's totals, frozen months and events.

The meter writes it with the write-back so the centre sees consumption and
tamper events without a site visit; it is MACed like the write-back
(:meth:`HistoryFile.mac_message`). A cleared history (body all zero, a new
card) decodes to ``None``; a history value whose body would be all zero is
refused, because it could not be told from a cleared one.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Self

from cardlayout.codec import (
    TimeFormat,
    decode_time,
    decode_uint,
    decode_year_month,
    encode_time,
    encode_uint,
    encode_year_month,
)
from cardlayout.errors import FormatError
from cardlayout.files.base import (
    MAC_SIZE,
    BodyReader,
    CardFile,
    Example,
    check_mac,
    decode_enum,
    decode_flags,
    encode_enum,
    encode_flags,
    expect_type,
)
from cardlayout.files.writeback import NO_STATUS, InsertionResult, MeterStatus

__all__ = [
    "HISTORY",
    "MAX_EVENTS",
    "MONTHS",
    "Event",
    "EventCode",
    "History",
    "HistoryFile",
]

NO_MAC = bytes(MAC_SIZE)
MONTHS = 12
"""Monthly frozen usages kept, newest first."""
MAX_EVENTS = 8
_EVENT = 8
_USAGE = 4


class EventCode(enum.IntEnum):
    """Kinds of meter event (code 0 marks an unused slot)."""

    COVER_OPEN = 1
    MAGNETIC_TAMPER = 2
    REVERSE_CURRENT = 3
    ILLEGAL_CARD = 4
    """``detail`` is the :class:`InsertionResult` of the refused card."""
    RELAY_TRIP = 5
    RELAY_CLOSE = 6
    LOAD_LIMIT = 7
    POWER_LOSS = 8
    FRIENDLY_HOURS_HOLD = 9


@dataclass(frozen=True)
class Event:
    """One meter event: what, a detail byte, and when (UTC)."""

    code: EventCode
    detail: int
    time: datetime


@dataclass(frozen=True, kw_only=True)
class History:
    """The content of a written EF06 (a cleared one is ``None``).

    Money in minor units, quantities in 0.01 units. ``monthly_usages`` holds
    exactly 12 entries, newest first, the newest being the month
    ``latest_frozen_month`` (the first day of it; ``None`` if none frozen yet).
    ``events`` holds up to 8, newest first.
    """

    cumulative_purchased: int = 0
    cumulative_used: int = 0
    cumulative_quantity: int = 0
    status: MeterStatus = NO_STATUS
    latest_frozen_month: date | None = None
    monthly_usages: tuple[int, ...] = (0,) * MONTHS
    events: tuple[Event, ...] = ()
    mac: bytes = NO_MAC

    def with_mac(self, mac: bytes) -> Self:
        """Return a copy carrying ``mac`` (computed over the MAC message)."""
        return dataclasses.replace(self, mac=mac)


def _encode_usages(usages: Sequence[int]) -> bytes:
    if not isinstance(usages, tuple | list) or len(usages) != MONTHS:
        raise FormatError(
            f"monthly_usages must be a tuple of exactly {MONTHS} integers", field="monthly_usages"
        )
    out = bytearray()
    for index, usage in enumerate(usages):
        try:
            out += encode_uint(usage, _USAGE, field=f"monthly_usages[{index}]")
        except FormatError as exc:
            raise FormatError(str(exc), field="monthly_usages") from exc
    return bytes(out)


def _encode_event(item: Event, index: int) -> bytes:
    name = f"events[{index}]"
    event = expect_type(item, Event, field=name)
    code = encode_enum(EventCode, event.code, field=f"{name}.code")
    if code[0] == EventCode.ILLEGAL_CARD:
        detail = encode_enum(InsertionResult, event.detail, field=f"{name}.detail")
    else:
        detail = encode_uint(event.detail, 1, field=f"{name}.detail")
    return code + detail + encode_time(event.time, TimeFormat.SECONDS, field=f"{name}.time")


def _encode_events(events: Sequence[Event]) -> bytes:
    if not isinstance(events, tuple | list) or len(events) > MAX_EVENTS:
        raise FormatError(f"events must be a tuple of at most {MAX_EVENTS} events", field="events")
    out = bytearray()
    for index, event in enumerate(events):
        try:
            out += _encode_event(event, index)
        except FormatError as exc:
            raise FormatError(str(exc), field="events") from exc
    return bytes(out) + bytes((MAX_EVENTS - len(events)) * _EVENT)


def _decode_event(data: bytes, index: int) -> Event:
    name = f"events[{index}]"
    code = decode_enum(EventCode, data[0], field=f"{name}.code")
    detail = data[1]
    if code is EventCode.ILLEGAL_CARD:
        decode_enum(InsertionResult, detail, field=f"{name}.detail")
    return Event(code, detail, decode_time(data[2:], TimeFormat.SECONDS, field=f"{name}.time"))


def _decode_events(r: BodyReader) -> tuple[Event, ...]:
    events: list[Event] = []
    unused_seen = False
    for index in range(MAX_EVENTS):
        data = r.take(_EVENT)
        try:
            if data[0] == 0:
                if any(data):
                    raise FormatError(f"events[{index}] is unused (code 0) but not zero")
                unused_seen = True
            elif unused_seen:
                raise FormatError(f"events[{index}] follows an unused slot")
            else:
                events.append(_decode_event(data, index))
        except FormatError as exc:
            raise FormatError(str(exc), field="events") from exc
    return tuple(events)


class HistoryFile(CardFile[History | None]):
    """Codec of EF06 (body 144 B); ``None`` is the cleared history."""

    def encode_body(self, value: History | None) -> bytes:
        if value is None:
            return bytes(self.body_size)
        body = self.mac_message(value) + check_mac(value.mac)
        if not any(body):
            raise FormatError(
                "every field is zero and the mac too, which reads as cleared; "
                "encode None for a cleared history, or set the mac",
                field="mac",
            )
        return body

    def mac_message(self, value: History) -> bytes:
        """The body without its trailing MAC: what the history MAC covers."""
        v = expect_type(value, History, field="history")
        status = encode_flags(MeterStatus, v.status, 1, field="status")
        return b"".join(
            [
                encode_uint(v.cumulative_purchased, 6, field="cumulative_purchased"),  # 0
                encode_uint(v.cumulative_used, 6, field="cumulative_used"),  # 6
                encode_uint(v.cumulative_quantity, 5, field="cumulative_quantity"),  # 12
                bytes(1) + status,  # 17 status word, high byte reserved
                encode_year_month(v.latest_frozen_month, field="latest_frozen_month"),  # 19
                _encode_usages(v.monthly_usages),  # 21
                _encode_events(v.events),  # 69
                bytes(3),  # 133 reserved
            ]
        )

    def decode_body(self, body: bytes) -> History | None:
        if not any(body):
            return None
        r = BodyReader(body)
        purchased = decode_uint(r.take(6), field="cumulative_purchased")
        used = decode_uint(r.take(6), field="cumulative_used")
        quantity = decode_uint(r.take(5), field="cumulative_quantity")
        r.reserved(1, field="status")
        status = decode_flags(MeterStatus, r.byte(), field="status")
        month = decode_year_month(r.take(2), field="latest_frozen_month")
        usages = tuple(decode_uint(r.take(_USAGE), field="monthly_usages") for _ in range(MONTHS))
        events = _decode_events(r)
        r.reserved(3)
        return History(
            cumulative_purchased=purchased,
            cumulative_used=used,
            cumulative_quantity=quantity,
            status=status,
            latest_frozen_month=month,
            monthly_usages=usages,
            events=events,
            mac=r.take(MAC_SIZE),
        )


HISTORY = HistoryFile(
    name="history",
    sfi=6,
    body_size=144,
    examples=(
        Example(
            History(
                cumulative_purchased=123_456,
                cumulative_used=100_000,
                cumulative_quantity=152_340,
                status=MeterStatus.ALARM1,
                latest_frozen_month=date(2025, 2, 1),
                monthly_usages=(31_050, 28_975) + (0,) * 10,
                events=(
                    Event(
                        EventCode.ILLEGAL_CARD,
                        InsertionResult.WRONG_METER,
                        datetime(2025, 3, 1, 8, 30, 0, tzinfo=UTC),
                    ),
                    Event(EventCode.COVER_OPEN, 0, datetime(2025, 2, 20, 23, 59, 59, tzinfo=UTC)),
                ),
                mac=bytes.fromhex("8899aabbccddeeff"),
            ),
            "".join(
                (
                    "68",  # start
                    "06",  # cmd = SFI 6
                    "0090",  # body length 144
                    "00000001e240",  # 0 cumulative purchased 123456 (1234.56), binary
                    "0000000186a0",  # 6 cumulative used 100000 (1000.00)
                    "0000025314",  # 12 cumulative quantity 152340 (1523.40 units)
                    "0002",  # 17 status word: b1 alarm 1
                    "2502",  # 19 latest frozen month 2025-02, BCD
                    "0000794a",  # 21 usage of 2025-02: 31050 (310.50 units)
                    "0000712f",  # 25 usage of 2025-01: 28975 (289.75 units)
                    "00000000" * 10,  # 29 usages of the ten months before
                    "0406250301083000",  # 69 illegal card (wrong meter) 2025-03-01 08:30:00
                    "0100250220235959",  # 77 cover open 2025-02-20 23:59:59
                    "0000000000000000" * 6,  # 85 events 3..8 unused
                    "000000",  # 133 reserved
                    "8899aabbccddeeff",  # 136 history MAC
                    "79",  # CS = (06 + 00 + 90 + body bytes) mod 256
                    "16",  # end
                )
            ),
            "two frozen months, two events",
        ),
        Example(
            None,
            "".join(
                (
                    "68",  # start
                    "06",  # cmd = SFI 6
                    "0090",  # body length 144
                    "00" * 144,  # body all zero: cleared
                    "96",  # CS = (06 + 00 + 90) mod 256
                    "16",  # end
                )
            ),
            "cleared (a new card)",
        ),
    ),
)
"""EF06, SFI 6, 150 bytes."""
