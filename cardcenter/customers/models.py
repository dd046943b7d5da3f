"""Customers (with categories) and meters (card or keypad; utility).

The meter row also keeps what the centre last *learnt* from that meter
through a verified write-back (count loaded, credit, energy), which is what
the next reconciliation compares against.
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from cardcenter.core.db import Base, enum_type, utcnow


class AccountStatus(enum.StrEnum):
    ACTIVE = "active"
    CLOSED = "closed"


class MeterKind(enum.StrEnum):
    CARD = "card"
    KEYPAD = "keypad"


class MeterStatus(enum.StrEnum):
    ACTIVE = "active"
    REMOVED = "removed"


class Category(Base):
    """A customer category (residential, commercial, ...): tariffs are per category."""

    __tablename__ = "categories"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(200))


class Customer(Base):
    """An account. ``customer_no`` is the 12-digit number written on the card.

    The card parameters (alarms, limits, friendly hours) are the customer's;
    ``parameter_version`` goes up at each change and the meter has it once a
    write-back confirms a card that carried it (``Meter.parameter_version``).
    """

    __tablename__ = "customers"

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_no: Mapped[str] = mapped_column(String(12), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    address: Mapped[str] = mapped_column(String(400), default="")
    phone: Mapped[str] = mapped_column(String(40), default="")
    category_id: Mapped[int] = mapped_column(ForeignKey("categories.id"))
    tariff_id: Mapped[int | None] = mapped_column(ForeignKey("tariffs.id"), default=None)
    status: Mapped[AccountStatus] = mapped_column(
        enum_type(AccountStatus), default=AccountStatus.ACTIVE
    )
    opened_at: Mapped[datetime] = mapped_column(default=utcnow)
    closed_at: Mapped[datetime | None] = mapped_column(default=None)
    site: Mapped[str] = mapped_column(String(64), default="HQ")
    # card parameters (money in minor units; None = no limit)
    alarm1: Mapped[int] = mapped_column(default=2000)
    alarm2: Mapped[int] = mapped_column(default=1000)
    overdraft_limit: Mapped[int] = mapped_column(default=0)
    hoarding_limit: Mapped[int | None] = mapped_column(default=None)
    close_allow_threshold: Mapped[int] = mapped_column(default=0)
    load_limit: Mapped[int | None] = mapped_column(default=None)
    friendly_start_hour: Mapped[int] = mapped_column(default=0)
    friendly_end_hour: Mapped[int] = mapped_column(default=0)
    friendly_days: Mapped[int] = mapped_column(default=0)
    parameter_version: Mapped[int] = mapped_column(default=1)
    fixed_paid_through: Mapped[str | None] = mapped_column(String(7), default=None)
    """Last month (YYYY-MM) whose fixed charge was collected."""

    category: Mapped[Category] = relationship(lazy="joined")
    meters: Mapped[list[Meter]] = relationship(back_populates="customer")


class Meter(Base):
    """A meter at a customer's premises; one active meter per customer and utility."""

    __tablename__ = "meters"

    id: Mapped[int] = mapped_column(primary_key=True)
    meter_no: Mapped[str] = mapped_column(String(12), unique=True)
    kind: Mapped[MeterKind] = mapped_column(enum_type(MeterKind), default=MeterKind.CARD)
    utility: Mapped[str] = mapped_column(String(16), default="electricity")
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id"), default=None)
    status: Mapped[MeterStatus] = mapped_column(enum_type(MeterStatus), default=MeterStatus.ACTIVE)
    ct_ratio: Mapped[int] = mapped_column(default=1)
    pt_ratio: Mapped[int] = mapped_column(default=1)
    key_version: Mapped[int] = mapped_column(default=1)
    installed_at: Mapped[datetime] = mapped_column(default=utcnow)
    removed_at: Mapped[datetime | None] = mapped_column(default=None)
    # what the last verified write-back said (the reconciliation baseline)
    loaded_count: Mapped[int] = mapped_column(default=0)
    remaining: Mapped[int] = mapped_column(default=0)
    overdraft_used: Mapped[int] = mapped_column(default=0)
    illegal_card_count: Mapped[int] = mapped_column(default=0)
    cumulative_quantity: Mapped[int | None] = mapped_column(default=None)
    cumulative_used: Mapped[int | None] = mapped_column(default=None)
    last_event_at: Mapped[datetime | None] = mapped_column(default=None)
    last_write_back_at: Mapped[datetime | None] = mapped_column(default=None)
    parameter_version: Mapped[int] = mapped_column(default=0)
    tariff_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("tariff_versions.id"), default=None
    )
    """The tariff version the meter confirmed taking (None until the first write-back)."""

    # The STS identity of a keypad meter (None on card meters), as the meter holds it: the
    # centre never hears from a keypad meter, so a token counts as taken once handed over
    # and a key change moves these columns on when its tokens are issued (cardcenter/tokens).
    sts_pan: Mapped[str | None] = mapped_column(String(18), unique=True, default=None)
    """IIN (6) + DRN (11) + check digit: the number every token is made for."""
    sts_sgc: Mapped[str | None] = mapped_column(String(6), default=None)
    sts_ti: Mapped[int | None] = mapped_column(default=None)
    sts_krn: Mapped[int | None] = mapped_column(default=None)
    sts_kt: Mapped[int | None] = mapped_column(default=None)
    sts_base_date: Mapped[int | None] = mapped_column(default=None)
    """1993, 2014 or 2035: what the meter's TIDs count minutes from."""
    sts_ea: Mapped[str | None] = mapped_column(String(2), default=None)
    sts_dkga: Mapped[str | None] = mapped_column(String(2), default=None)
    sts_tables: Mapped[str | None] = mapped_column(String(400), default=None)
    """The STA production tables file of an EA07 meter (None: the standard's sample tables)."""
    sts_last_tid: Mapped[int | None] = mapped_column(default=None)
    """The last TID issued to this meter on its base date (None: none yet on that base)."""
    # A change of supply group, tariff index, key revision or key type recorded for the
    # meter and not yet sent: the next token issued is preceded by its key change tokens.
    sts_new_sgc: Mapped[str | None] = mapped_column(String(6), default=None)
    sts_new_ti: Mapped[int | None] = mapped_column(default=None)
    sts_new_krn: Mapped[int | None] = mapped_column(default=None)
    sts_new_kt: Mapped[int | None] = mapped_column(default=None)

    customer: Mapped[Customer | None] = relationship(back_populates="meters")

    @property
    def balance(self) -> int:
        """Credit on the meter as last read: remaining minus overdraft used."""
        return self.remaining - self.overdraft_used
