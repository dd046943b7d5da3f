"""The journal: every movement of money has a source and a destination.

Accounts are named strings; per customer ``transit:N`` (paid, on a card, not
yet on the meter), ``meter:N`` (on the meter as last read) and
``consumed:N``; per site ``till:SITE`` (cash taken, a negative balance) and
the centre's ``tax``, ``fixed`` (fixed charges) accounts. Because every entry
moves an amount from one account to another, the sum of all balances is
always zero and, per customer,

    credit paid = balance(meter) + balance(consumed) + balance(transit)

which is DESIGN.md 7's conservation, checked by the tests against the meter
model itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import cast

from sqlalchemy import CheckConstraint, Connection, ForeignKey, String, Table, func, insert, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from cardcenter.core.db import Base, connection_of, utcnow
from cardcenter.core.prepared import Prepared

TAX = "tax"
FIXED = "fixed"


def till(site: str) -> str:
    return f"till:{site}"


def transit(customer_id: int) -> str:
    return f"transit:{customer_id}"


def meter(customer_id: int) -> str:
    return f"meter:{customer_id}"


def consumed(customer_id: int) -> str:
    return f"consumed:{customer_id}"


def unvended(customer_id: int) -> str:
    """Money paid for a keypad meter that no token carried yet (under one token step):
    the next vend adds it to its credit."""
    return f"unvended:{customer_id}"


class JournalEntry(Base):
    __tablename__ = "journal"
    __table_args__ = (CheckConstraint("amount > 0", name="amount_positive"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    source: Mapped[str] = mapped_column(String(64), index=True)
    destination: Mapped[str] = mapped_column(String(64), index=True)
    amount: Mapped[int]
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id"), default=None)
    sale_id: Mapped[int | None] = mapped_column(ForeignKey("sales.id"), default=None)
    reconciliation_id: Mapped[int | None] = mapped_column(
        ForeignKey("reconciliations.id"), default=None
    )
    operator_id: Mapped[int | None] = mapped_column(ForeignKey("operators.id"), default=None)
    memo: Mapped[str] = mapped_column(String(200), default="")


def post(
    session: Session | Connection,
    source: str,
    destination: str,
    amount: int,
    memo: str,
    **links: int | None,
) -> None:
    """Move ``amount`` from ``source`` to ``destination``.

    A negative amount is posted the other way round; zero posts nothing.
    ``links`` are the entry's ``customer_id``, ``sale_id``,
    ``reconciliation_id`` and ``operator_id``.
    """
    post_all(session, [(source, destination, amount, memo)], **links)


Movement = tuple[str, str, int, str]
"""One line of a posting: source, destination, amount, memo."""


def post_all(
    session: Session | Connection, movements: Sequence[Movement], **links: int | None
) -> None:
    """Post several movements sharing their links, as one INSERT of the rows that move money.

    The rows go straight to the table rather than through the unit of work:
    a journal entry is written once and never changed, so the ORM's change
    tracking buys nothing, and a sale posts three of them on its hot path.
    The links must name rows that are already in the database (they are ids).
    ``session`` may be a plain connection (a unit of work that loads nothing).
    """
    unknown = set(links) - set(_LINKS)
    if unknown:
        raise TypeError(f"a journal entry has no link {', '.join(sorted(unknown))}")
    rows = []
    at = utcnow()
    for source, destination, amount, memo in movements:
        if amount == 0:
            continue
        if amount < 0:
            source, destination, amount = destination, source, -amount
        rows.append(
            {
                "at": at,
                "source": source,
                "destination": destination,
                "amount": amount,
                "memo": memo,
                **{name: links.get(name) for name in _LINKS},
            }
        )
    if rows:
        _INSERT.execute_many(connection_of(session), rows)


_LINKS = ("customer_id", "sale_id", "reconciliation_id", "operator_id")
_INSERT = Prepared(
    insert(cast(Table, JournalEntry.__table__)),
    column_keys=("at", "source", "destination", "amount", "memo", *_LINKS),
)


def balance(session: Session, account: str) -> int:
    """What ``account`` holds: all it received minus all it gave."""
    session.flush()
    received = session.scalar(
        select(func.coalesce(func.sum(JournalEntry.amount), 0)).where(
            JournalEntry.destination == account
        )
    )
    given = session.scalar(
        select(func.coalesce(func.sum(JournalEntry.amount), 0)).where(
            JournalEntry.source == account
        )
    )
    return int(received or 0) - int(given or 0)
