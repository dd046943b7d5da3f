"""Every STS token the centre issued, kept so a reprint gives the same 20 digits.

A token cannot be made again: it carries a random nibble and a TID that the
meter takes once, so a second token for the same request would be a second
credit. The digits are therefore stored as issued, and a repeated request or
a reprint reads them back.

Tokens are issued in batches, one per request: the key change sections a
recorded identity change needs (in entry order), then the token asked for.
``(request_id, position)`` is unique, so of two desks racing on one request
exactly one commits its batch; ``(meter_id, base_date, tid)`` is unique, so
no two tokens for one meter can ever share a TID.
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from cardcenter.core.db import Base, enum_type, utcnow


class TokenKind(enum.StrEnum):
    CREDIT = "credit"
    """A credit transfer (class 0): energy the customer paid for."""
    KEY_CHANGE = "key_change"
    """A section of a key change (class 2, subclasses 3, 4, 8, 9), under the old key."""
    ENGINEERING = "engineering"
    """A management token an operator asked for: clear credit, clear tamper, power limit."""


class TokenRecord(Base):
    """One issued token, as the customer or engineer received it."""

    __tablename__ = "tokens"
    __table_args__ = (
        UniqueConstraint("request_id", "position"),
        UniqueConstraint("meter_id", "base_date", "tid"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    request_id: Mapped[str] = mapped_column(String(64))
    position: Mapped[int]
    """Entry order within the request's batch, from 1: key change sections come first."""
    meter_id: Mapped[int] = mapped_column(ForeignKey("meters.id"))
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"))
    sale_id: Mapped[int | None] = mapped_column(ForeignKey("sales.id"), default=None, index=True)
    kind: Mapped[TokenKind] = mapped_column(enum_type(TokenKind))
    token_class: Mapped[int]
    subclass: Mapped[int]
    base_date: Mapped[int]
    """The base date of the key the token is encrypted under (and its TID counts from)."""
    tid: Mapped[int | None] = mapped_column(default=None)
    """Minutes since ``base_date``; None for key change sections, which carry none."""
    digits: Mapped[str] = mapped_column(String(20))
    amount_field: Mapped[int | None] = mapped_column(default=None)
    """The 16-bit amount (credit) or value (management) field; None for key change sections."""
    tenths: Mapped[int | None] = mapped_column(default=None)
    """Energy a credit token makes the meter credit, in 0.1 kWh; None for other tokens."""
    issued_at: Mapped[datetime] = mapped_column(default=utcnow)
    operator_id: Mapped[int] = mapped_column(ForeignKey("operators.id"))
