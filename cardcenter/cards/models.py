"""A user card as the centre knows it.

``purchase_count`` and ``purse_amount`` are what the centre last wrote to
the card's purse and read back. A sale starts only if the card in the reader
still shows exactly that, so a stale card (a copy, or one a second operator
just wrote) can never be sold to twice. ``pending_*`` describe the purse being
written right now (recorded and committed before the first byte goes to the
card): the next reading of the card tells which purse it holds, old or new,
so the write is confirmed, cancelled or done again, never guessed.
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from cardcenter.core.db import Base, enum_type, utcnow


class CardStatus(enum.StrEnum):
    ISSUING = "issuing"
    """Recorded before the card is personalised, so a crash never leaves an unknown card."""
    ACTIVE = "active"
    LOST = "lost"
    REPLACED = "replaced"
    CLOSED = "closed"


class Card(Base):
    __tablename__ = "cards"

    id: Mapped[int] = mapped_column(primary_key=True)
    serial: Mapped[str] = mapped_column(String(16), unique=True)
    """The card serial, 16 hex digits (upper case) as in the ATR."""
    kind: Mapped[str] = mapped_column(String(20), default="user")
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"))
    meter_id: Mapped[int] = mapped_column(ForeignKey("meters.id"))
    generation: Mapped[int] = mapped_column(default=1)
    """1 for the opening card, 2 for the first replacement, ..."""
    status: Mapped[CardStatus] = mapped_column(enum_type(CardStatus), default=CardStatus.ACTIVE)
    issued_at: Mapped[datetime] = mapped_column(default=utcnow)
    status_changed_at: Mapped[datetime | None] = mapped_column(default=None)
    status_reason: Mapped[str] = mapped_column(String(200), default="")
    purchase_count: Mapped[int] = mapped_column(default=0)
    purse_amount: Mapped[int] = mapped_column(default=0)
    registered: Mapped[bool] = mapped_column(default=False)
    """True once a write-back from this card proves the meter took its serial."""
    write_type: Mapped[int] = mapped_column(default=1)
    """Card type (EF01) written until the card is registered: 1 opening, 3 replacement."""
    pending_action: Mapped[str | None] = mapped_column(String(16), default=None)
    """The write in flight: ``sale``, ``issue`` or ``reversal`` (None when none)."""
    pending_sale_id: Mapped[int | None] = mapped_column(default=None)
    pending_count: Mapped[int | None] = mapped_column(default=None)
    pending_amount: Mapped[int | None] = mapped_column(default=None)

    @property
    def serial_bytes(self) -> bytes:
        return bytes.fromhex(self.serial)
