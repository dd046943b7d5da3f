"""Write-backs as read, their reconciliations, findings and monthly usage.

A write-back is stored once, keyed by the digest of its bytes (MAC
included), so a card read twice, or a record imported twice, is reconciled
once.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from cardcenter.core.db import Base, enum_type, utcnow


class WriteBackSource(enum.StrEnum):
    SALE = "sale"
    READ = "read"
    IMPORT = "import"


class FindingKind(enum.StrEnum):
    MISMATCH = "mismatch"
    NEGATIVE_CONSUMPTION = "negative_consumption"
    TAMPER = "tamper"
    ILLEGAL_CARDS = "illegal_cards"
    UNKNOWN_METER = "unknown_meter"


class FindingStatus(enum.StrEnum):
    OPEN = "open"
    CLOSED = "closed"


class WriteBackRecord(Base):
    __tablename__ = "write_backs"

    id: Mapped[int] = mapped_column(primary_key=True)
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    meter_id: Mapped[int] = mapped_column(ForeignKey("meters.id"), index=True)
    card_serial: Mapped[str] = mapped_column(String(16))
    source: Mapped[WriteBackSource] = mapped_column(enum_type(WriteBackSource))
    purchase_count: Mapped[int]
    remaining: Mapped[int]
    overdraft_used: Mapped[int]
    illegal_card_count: Mapped[int]
    meter_status: Mapped[int]
    insertion_result: Mapped[int]
    written_at: Mapped[datetime]
    cumulative_purchased: Mapped[int | None] = mapped_column(default=None)
    cumulative_used: Mapped[int | None] = mapped_column(default=None)
    cumulative_quantity: Mapped[int | None] = mapped_column(default=None)
    raw_write_back: Mapped[bytes] = mapped_column(LargeBinary)
    raw_history: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    read_at: Mapped[datetime] = mapped_column(default=utcnow)


class Reconciliation(Base):
    __tablename__ = "reconciliations"

    id: Mapped[int] = mapped_column(primary_key=True)
    write_back_id: Mapped[int] = mapped_column(ForeignKey("write_backs.id"), unique=True)
    meter_id: Mapped[int] = mapped_column(ForeignKey("meters.id"), index=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    period_start: Mapped[datetime | None] = mapped_column(default=None)
    period_end: Mapped[datetime]
    energy: Mapped[int | None] = mapped_column(default=None)
    """Quantity since the last write-back, 0.01 units (None without a history)."""
    delivered: Mapped[int] = mapped_column(default=0)
    """Credit of sales this write-back proves loaded."""
    consumed: Mapped[int] = mapped_column(default=0)
    """Drop in the meter's credit: previous balance + delivered - balance now."""
    implied_min: Mapped[int | None] = mapped_column(default=None)
    implied_max: Mapped[int | None] = mapped_column(default=None)
    overdraft_used: Mapped[int] = mapped_column(default=0)
    illegal_cards: Mapped[int] = mapped_column(default=0)
    """Illegal insertions since the previous write-back."""
    relay_events: Mapped[int] = mapped_column(default=0)
    tamper_events: Mapped[int] = mapped_column(default=0)
    findings: Mapped[int] = mapped_column(default=0)
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Finding(Base):
    __tablename__ = "findings"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[FindingKind] = mapped_column(enum_type(FindingKind))
    status: Mapped[FindingStatus] = mapped_column(
        enum_type(FindingStatus), default=FindingStatus.OPEN, index=True
    )
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id"), default=None)
    meter_id: Mapped[int | None] = mapped_column(ForeignKey("meters.id"), default=None)
    reconciliation_id: Mapped[int | None] = mapped_column(
        ForeignKey("reconciliations.id"), default=None
    )
    detail: Mapped[str] = mapped_column(String(400))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    closed_at: Mapped[datetime | None] = mapped_column(default=None)
    closed_by: Mapped[int | None] = mapped_column(ForeignKey("operators.id"), default=None)
    note: Mapped[str] = mapped_column(String(400), default="")


class MonthlyUsage(Base):
    """A meter's frozen usage of one month (0.01 units), from the card history."""

    __tablename__ = "monthly_usage"
    __table_args__ = (
        UniqueConstraint("meter_id", "month"),
        Index("ix_monthly_usage_month_quantity", "month", "quantity"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    meter_id: Mapped[int] = mapped_column(ForeignKey("meters.id"))
    month: Mapped[str] = mapped_column(String(7))
    quantity: Mapped[int]
