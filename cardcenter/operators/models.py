"""Operators: who sold, reversed or replaced, at which site."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from cardcenter.core.db import Base, enum_type, utcnow


class Role(enum.StrEnum):
    """What an operator may do: cashiers sell; supervisors also reverse and replace."""

    CASHIER = "cashier"
    SUPERVISOR = "supervisor"
    ADMINISTRATOR = "administrator"


class Operator(Base):
    __tablename__ = "operators"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[Role] = mapped_column(enum_type(Role))
    site: Mapped[str] = mapped_column(String(64))
    active: Mapped[bool] = mapped_column(default=True)
    password_hash: Mapped[str | None] = mapped_column(String(255), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
