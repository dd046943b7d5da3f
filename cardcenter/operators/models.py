"""Operators, their shifts, the API clients of the payment channels, and the audit trail.

Who sold, reversed or replaced, at which site, and under which log-in: an
operator is a person at a desk (the command line runs as one named operator,
the web application logs them in with a password); an API client is a bank,
an online shop or an agent reaching the same sales through the JSON API.

The audit trail (:class:`AuditEntry`) is append-only three times over: the
application never updates or deletes a row, a ``before_flush`` guard refuses
a changed or deleted entry in any ORM session, and the migration installs
database triggers that refuse ``UPDATE`` and ``DELETE`` on ``audit_log`` on
SQLite and PostgreSQL alike, so not even a hand-written statement through
the application's own connection can rewrite history.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, event, text
from sqlalchemy.orm import Mapped, ORMExecuteState, Session, UOWTransaction, mapped_column

from cardcenter.core.db import Base, enum_type, utcnow


class Role(enum.StrEnum):
    """What an operator may do: cashiers sell; supervisors also reverse and replace;
    administrators also manage operators, API clients and keys."""

    CASHIER = "cashier"
    SUPERVISOR = "supervisor"
    ADMINISTRATOR = "administrator"


LOCALES = ("en", "zh_Hans_CN")
"""The languages of the service-hall application, as Babel names them."""


class Operator(Base):
    __tablename__ = "operators"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[Role] = mapped_column(enum_type(Role))
    site: Mapped[str] = mapped_column(String(64))
    active: Mapped[bool] = mapped_column(default=True)
    password_hash: Mapped[str | None] = mapped_column(String(255), default=None)
    """werkzeug's scrypt hash; None for an operator who only ever uses the command line."""
    failed_logins: Mapped[int] = mapped_column(default=0)
    """Failed log-ins since the last successful one (or unlock)."""
    locked_until: Mapped[datetime | None] = mapped_column(default=None)
    """Log-in refused until then, after too many failures; an administrator can unlock."""
    locale: Mapped[str] = mapped_column(String(16), default="en")
    """The operator's language in the web application: one of :data:`LOCALES`."""
    password_changed_at: Mapped[datetime | None] = mapped_column(default=None)
    """When the password was last set: web sessions logged in before it are ended."""
    sessions_ended_at: Mapped[datetime | None] = mapped_column(default=None)
    """When the operator logged out or was disabled: web sessions logged in before it are
    ended, a copied cookie and a session idle through a disable and re-enable included."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Shift(Base):
    """A cashier's shift: opened with a float, closed with a counted cash-up.

    ``expected_cash`` is the float plus the cash the books say was taken in
    the shift; ``difference`` is counted minus expected (negative: short).
    At most one shift per operator is open at a time (a partial unique index),
    so two tabs racing to open one cannot both win.
    """

    __tablename__ = "shifts"
    __table_args__ = (
        Index(
            "uq_shifts_open_operator",
            "operator_id",
            unique=True,
            sqlite_where=text("closed_at IS NULL"),
            postgresql_where=text("closed_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    operator_id: Mapped[int] = mapped_column(ForeignKey("operators.id"), index=True)
    site: Mapped[str] = mapped_column(String(64))
    opened_at: Mapped[datetime] = mapped_column(default=utcnow)
    opening_float: Mapped[int] = mapped_column(default=0)
    closed_at: Mapped[datetime | None] = mapped_column(default=None)
    counted_cash: Mapped[int | None] = mapped_column(default=None)
    expected_cash: Mapped[int | None] = mapped_column(default=None)
    difference: Mapped[int | None] = mapped_column(default=None)
    note: Mapped[str] = mapped_column(String(400), default="")


class ApiClient(Base):
    """A payment channel's credentials for the JSON API.

    ``key_id`` is public (it names the client in every request and in the
    audit trail); the secret is shown once when the client is created and
    only its hash is kept (:func:`cardcenter.operators.services.hash_api_secret`).
    """

    __tablename__ = "api_clients"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    key_id: Mapped[str] = mapped_column(String(64), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[Role] = mapped_column(enum_type(Role), default=Role.CASHIER)
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AuditEntry(Base):
    """One thing an operator or an API client did: who, when, what, to what, from where.

    ``action`` is a short dotted code (``login``, ``login.failed``,
    ``operator.add``, ``sale.confirm``); ``subject`` names what it was done
    to (``operator:7``, ``sale:12``); ``detail`` holds the rest as JSON.
    """

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    operator_id: Mapped[int | None] = mapped_column(
        ForeignKey("operators.id"), default=None, index=True
    )
    api_client_id: Mapped[int | None] = mapped_column(ForeignKey("api_clients.id"), default=None)
    action: Mapped[str] = mapped_column(String(64), index=True)
    subject: Mapped[str | None] = mapped_column(String(64), default=None, index=True)
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    remote_addr: Mapped[str | None] = mapped_column(String(64), default=None)


class AuditTamperingError(RuntimeError):
    """Code tried to change or delete an audit entry: a programming error, never allowed."""


@event.listens_for(Session, "before_flush")
def _refuse_audit_changes(session: Session, _flush: UOWTransaction, _instances: Any) -> None:
    """Refuse, in every ORM session, a flush that would change or delete an audit entry."""
    for instance in (*session.dirty, *session.deleted):
        if isinstance(instance, AuditEntry):
            raise AuditTamperingError(
                f"audit entry {instance.id} cannot be changed or deleted: the audit log "
                "is append-only"
            )


@event.listens_for(Session, "do_orm_execute")
def _refuse_audit_bulk_changes(state: ORMExecuteState) -> None:
    """Refuse ORM ``update(AuditEntry)`` and ``delete(AuditEntry)``, which skip the flush."""
    mapper = state.bind_mapper
    if (state.is_update or state.is_delete) and mapper is not None and mapper.class_ is AuditEntry:
        raise AuditTamperingError("the audit log is append-only: no UPDATE or DELETE")
