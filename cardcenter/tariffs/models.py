"""Tariffs and their versions.

A tariff is a name (and, optionally, the default of a customer category); a
version is one price structure with the time it comes into force. Prices are
integers in 0.0001 currency per unit and thresholds in 0.01 units, as on the
card (docs/card.md 3.3), so a version turns into a card tariff set without
any rounding.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from cardcenter.core.db import Base, enum_type, utcnow


class TariffKind(enum.StrEnum):
    """The four kinds of the card's user type (EF01): flat, TOU, stepped, both."""

    FLAT = "flat"
    TOU = "tou"
    STEPPED = "stepped"
    TOU_STEPPED = "tou_stepped"


class Tariff(Base):
    __tablename__ = "tariffs"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    utility: Mapped[str] = mapped_column(String(16), default="electricity")
    category_id: Mapped[int | None] = mapped_column(ForeignKey("categories.id"), default=None)
    """The category whose customers get this tariff unless they have their own."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    versions: Mapped[list[TariffVersion]] = relationship(
        back_populates="tariff", order_by="TariffVersion.active_from"
    )


class TariffVersion(Base):
    """One price structure of a tariff, in force from ``active_from``.

    ``structure`` holds ``rate_prices`` (list of int), ``periods`` (list of
    ``[hour, minute, rate]``), ``tier_thresholds`` and ``tier_prices`` (lists
    of int) and ``settlement_dates`` (list of ``[month or null, day, hour]``).
    """

    __tablename__ = "tariff_versions"
    __table_args__ = (UniqueConstraint("tariff_id", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tariff_id: Mapped[int] = mapped_column(ForeignKey("tariffs.id"))
    version: Mapped[int]
    kind: Mapped[TariffKind] = mapped_column(enum_type(TariffKind))
    active_from: Mapped[datetime]
    structure: Mapped[dict[str, Any]]
    tax_rate: Mapped[int] = mapped_column(default=0)
    """Tax included in what the customer pays, in basis points (1300 = 13 %)."""
    fixed_monthly: Mapped[int] = mapped_column(default=0)
    """Fixed charge per calendar month, minor units, collected at the next sale."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    tariff: Mapped[Tariff] = relationship(back_populates="versions", lazy="joined")
