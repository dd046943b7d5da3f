"""The audit trail is append-only: the ORM refuses to change it, and so does the database.

On SQLite and on PostgreSQL, with the triggers the migration installs.
"""

from __future__ import annotations

import pytest
from centre_support import Database
from sqlalchemy import delete, insert, select, text, update
from sqlalchemy.exc import DBAPIError

from cardcenter.core.db import utcnow
from cardcenter.operators.models import AuditEntry, AuditTamperingError, Operator, Role


def _entry(db: Database) -> int:
    with db.sessions.begin() as session:
        operator = Operator(username="olga", name="Olga", role=Role.CASHIER, site="HQ")
        session.add(operator)
        session.flush()
        entry = AuditEntry(
            action="sale.confirm",
            subject="sale:12",
            operator_id=operator.id,
            detail={"amount": "100.00"},
            remote_addr="127.0.0.1",
        )
        session.add(entry)
        session.flush()
        return entry.id


def test_the_orm_refuses_to_change_or_delete_an_entry(db: Database) -> None:
    entry_id = _entry(db)
    with db.sessions() as session:
        entry = session.get_one(AuditEntry, entry_id)
        entry.action = "sale.void"
        with pytest.raises(AuditTamperingError, match="append-only"):
            session.flush()
        session.rollback()
        session.delete(session.get_one(AuditEntry, entry_id))
        with pytest.raises(AuditTamperingError, match="append-only"):
            session.flush()
        session.rollback()
        for statement in (
            update(AuditEntry).values(action="x"),
            delete(AuditEntry).where(AuditEntry.id == entry_id),
        ):
            with pytest.raises(AuditTamperingError, match="append-only"):
                session.execute(statement)
            session.rollback()
    with db.sessions() as session:
        entry = session.get_one(AuditEntry, entry_id)
        assert (entry.action, entry.subject, entry.detail) == (
            "sale.confirm",
            "sale:12",
            {"amount": "100.00"},
        )
        assert entry.at.tzinfo is not None


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_log SET action = 'sale.void'",
        "UPDATE audit_log SET detail = '{}' WHERE id > 0",
        "DELETE FROM audit_log",
    ],
)
def test_the_database_refuses_update_and_delete(db: Database, statement: str) -> None:
    entry_id = _entry(db)
    with pytest.raises(DBAPIError, match="append-only"), db.engine.begin() as conn:
        conn.execute(text(statement))
    with db.engine.connect() as conn:
        rows = conn.execute(select(AuditEntry.action, AuditEntry.detail)).all()
    assert [tuple(row) for row in rows] == [("sale.confirm", {"amount": "100.00"})]
    # appending is allowed, of course
    with db.engine.begin() as conn:
        conn.execute(insert(AuditEntry).values(action="login", detail={}, at=utcnow()))
    with db.engine.connect() as conn:
        assert conn.scalar(select(AuditEntry.id).order_by(AuditEntry.id.desc())) == entry_id + 1
