"""A sale and its life.

    pending ──card written and read back──▶ written ──write-back shows it──▶ delivered
       │                                       │
       └──card proves it never arrived──▶ void └──card proves it is not loaded──▶ reversed

``purchase_count`` is the purse count the sale travels under. Two sales can
share a count: when the previous purchase never reached the meter the centre
adds to it (DESIGN.md 3), and the card's purse then carries both amounts.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from cardcenter.core.db import Base, enum_type, utcnow


class SaleStatus(enum.StrEnum):
    PENDING = "pending"
    WRITTEN = "written"
    DELIVERED = "delivered"
    VOID = "void"
    REVERSED = "reversed"
    REFUNDED = "refunded"


class SaleKind(enum.StrEnum):
    SALE = "sale"
    OPENING = "opening"
    CARRY_OVER = "carry_over"
    TOKEN = "token"
    """Credit vended as an STS token to a keypad meter: delivered once handed over."""


# Credit that is paid for, on a card, and not yet proven on the meter. A
# pending sale is not in transit: its money has not been taken, and the desk
# confirms it (from the card's purse) before any write-back is reconciled.
IN_TRANSIT = (SaleStatus.WRITTEN,)


class Sale(Base):
    __tablename__ = "sales"

    id: Mapped[int] = mapped_column(primary_key=True)
    request_id: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[SaleKind] = mapped_column(enum_type(SaleKind), default=SaleKind.SALE)
    status: Mapped[SaleStatus] = mapped_column(enum_type(SaleStatus), default=SaleStatus.PENDING)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    meter_id: Mapped[int] = mapped_column(ForeignKey("meters.id"), index=True)
    card_id: Mapped[int | None] = mapped_column(ForeignKey("cards.id"), default=None)
    operator_id: Mapped[int] = mapped_column(ForeignKey("operators.id"))
    site: Mapped[str] = mapped_column(String(64))
    tariff_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("tariff_versions.id"), default=None
    )
    purchase_count: Mapped[int]
    tendered: Mapped[int]
    """What the customer paid, minor units."""
    fixed_charge: Mapped[int] = mapped_column(default=0)
    tax: Mapped[int] = mapped_column(default=0)
    credit: Mapped[int]
    """What reaches the meter: tendered - fixed charge - tax."""
    card_amount: Mapped[int]
    """The purse amount written with this sale (its credit plus any it was added to)."""
    parameter_version: Mapped[int] = mapped_column(default=0)
    breakdown: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    written_at: Mapped[datetime | None] = mapped_column(default=None)
    delivered_at: Mapped[datetime | None] = mapped_column(default=None)
    reversed_at: Mapped[datetime | None] = mapped_column(default=None)
    reversed_by: Mapped[int | None] = mapped_column(ForeignKey("operators.id"), default=None)
    note: Mapped[str] = mapped_column(String(400), default="")
