"""The meter's registers: everything it keeps in non-volatile memory.

One dataclass, saved as one JSON document by :mod:`cardmeter.store`.
Parameters and tariff sets are kept as the card frames they came from
(hex at this edge), decoded with the same codecs the card uses, so the meter
and the card can never disagree on a field.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from cardlayout.files import (
    PARAMETERS,
    TARIFF_SET_1,
    Event,
    EventCode,
    InsertionResult,
    Parameters,
    TariffSet,
)

RATES = 32
MONTHS = 12
EVENT_LOG_SIZE = 64
STATE_FORMAT = "cardmeter-state/1"


@dataclass
class PendingLoad:
    """A purchase the meter has accepted but not yet committed.

    Saved before the write-back goes to the card and cleared once the meter
    commits the credit (docs/meter.md 5), so a pulled card or a power loss in
    between never loads a purchase twice nor loses it.
    """

    card_serial: bytes
    purchase_count: int
    amount: int


@dataclass
class MeterState:
    """All registers of one meter."""

    meter_no: str
    utility: str = "electricity"
    timezone: str = "UTC"
    clock: datetime = field(default_factory=lambda: datetime(2026, 1, 1, tzinfo=UTC))
    # binding to a customer and a card (set by the opening card)
    customer_no: str | None = None
    card_serial: bytes | None = None
    # money (minor units); residue in 1/10000 minor units (docs/meter.md 1)
    remaining: int = 0
    residue: int = 0
    overdraft_enabled: bool = False
    cumulative_purchased: int = 0
    cumulative_used: int = 0
    last_purchase_count: int = 0
    last_purchase_amount: int = 0
    pending: PendingLoad | None = None
    # quantity (0.01 units, primary)
    cumulative_quantity: int = 0
    quantity_by_rate: list[int] = field(default_factory=lambda: [0] * RATES)
    settlement_quantity: int = 0
    last_settlement: datetime | None = None
    month_quantity: int = 0
    current_month: date | None = None
    frozen_month: date | None = None
    frozen: list[int] = field(default_factory=lambda: [0] * MONTHS)
    # parameters and tariffs, as card frames
    parameters_frame: bytes | None = None
    current_tariff_frame: bytes | None = None
    backup_tariff_frame: bytes | None = None
    # supply
    relay_closed: bool = True
    trip_reason: str | None = None
    alarm2_tripped: bool = False
    friendly_hold: bool = False
    tamper: bool = False
    illegal_card_count: int = 0
    last_insertion: InsertionResult | None = None
    holidays: list[date] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    # set while the meter works; found set at power-up, it means power was lost
    running: bool = False

    # -- decoded views -------------------------------------------------------

    @property
    def opened(self) -> bool:
        """Bound to a customer by an opening card."""
        return self.customer_no is not None

    @property
    def parameters(self) -> Parameters | None:
        return PARAMETERS.decode(self.parameters_frame) if self.parameters_frame else None

    @property
    def current_tariff(self) -> TariffSet | None:
        return _tariff(self.current_tariff_frame)

    @property
    def backup_tariff(self) -> TariffSet | None:
        return _tariff(self.backup_tariff_frame)

    @property
    def overdraft_used(self) -> int:
        return max(0, -self.remaining)

    def power_up(self) -> bool:
        """Start working; record a power loss if the last run never ended cleanly."""
        lost = self.running
        if lost:
            self.record(EventCode.POWER_LOSS, self.clock)
        self.running = True
        return lost

    def record(self, code: EventCode, when: datetime, detail: int = 0) -> None:
        """Append an event, keeping the newest :data:`EVENT_LOG_SIZE`."""
        self.events.append(Event(code=code, detail=detail, time=when.astimezone(UTC)))
        del self.events[:-EVENT_LOG_SIZE]

    # -- JSON ------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"format": STATE_FORMAT}
        for f in dataclasses.fields(self):
            doc[f.name] = _dump(getattr(self, f.name))
        return doc

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> MeterState:
        if doc.get("format") != STATE_FORMAT:
            raise ValueError(f"not a meter state (format {doc.get('format')!r})")
        kwargs: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name in doc:
                kwargs[f.name] = _load(f.name, doc[f.name])
        return cls(**kwargs)


def _tariff(frame: bytes | None) -> TariffSet | None:
    return TARIFF_SET_1.decode(frame) if frame else None


_BYTES = {"card_serial", "parameters_frame", "current_tariff_frame", "backup_tariff_frame"}
_DATETIMES = {"clock", "last_settlement"}
_DATES = {"current_month", "frozen_month"}


def _dump(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex().upper()
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, PendingLoad):
        return {
            "card_serial": value.card_serial.hex().upper(),
            "purchase_count": value.purchase_count,
            "amount": value.amount,
        }
    if isinstance(value, InsertionResult):
        return value.name.lower()
    if isinstance(value, list):
        return [_dump(v) for v in value]
    if isinstance(value, Event):
        return {
            "code": int(value.code),
            "detail": int(value.detail),
            "time": value.time.isoformat(),
        }
    return value


def _load(name: str, value: Any) -> Any:
    if value is None:
        return None
    if name in _BYTES:
        return bytes.fromhex(value)
    if name in _DATETIMES:
        return datetime.fromisoformat(value)
    if name in _DATES:
        return date.fromisoformat(value)
    if name == "holidays":
        return [date.fromisoformat(v) for v in value]
    if name == "pending":
        return PendingLoad(
            bytes.fromhex(value["card_serial"]), value["purchase_count"], value["amount"]
        )
    if name == "last_insertion":
        return InsertionResult[value.upper()]
    if name == "events":
        return [
            Event(
                code=EventCode(e["code"]),
                detail=_detail(EventCode(e["code"]), e["detail"]),
                time=datetime.fromisoformat(e["time"]),
            )
            for e in value
        ]
    return value


def _detail(code: EventCode, detail: int) -> Any:
    return InsertionResult(detail) if code is EventCode.ILLEGAL_CARD else detail
