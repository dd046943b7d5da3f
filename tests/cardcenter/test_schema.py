"""The migrations make the schema the models describe, on both databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from centre_support import Database
from sqlalchemy.exc import IntegrityError

from cardcenter.core.db import Base, upgrade
from cardcenter.customers.models import Category
from cardcenter.sales.ledger import JournalEntry, balance, post


def test_migrations_match_the_models(db: Database) -> None:
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_upgrade_twice_changes_nothing(db: Database) -> None:
    upgrade(db.engine)
    with db.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []


def test_times_come_back_aware_in_utc(db: Database) -> None:
    shanghai = timezone(timedelta(hours=8))
    at = datetime(2026, 3, 1, 8, 30, tzinfo=shanghai)
    with db.sessions.begin() as session:
        session.add(JournalEntry(source="a", destination="b", amount=1, memo="t", at=at))
    with db.sessions() as session:
        entry = session.query(JournalEntry).one()
        assert entry.at == at
        assert entry.at.tzinfo is not None
        assert entry.at.utcoffset() == timedelta(0)
        assert entry.at == datetime(2026, 3, 1, 0, 30, tzinfo=UTC)


def test_a_naive_time_is_refused(db: Database) -> None:
    with pytest.raises(Exception, match="naive datetime"), db.sessions.begin() as session:
        session.add(
            JournalEntry(source="a", destination="b", amount=1, memo="t", at=datetime(2026, 1, 1))
        )
        session.flush()


def test_journal_moves_money_and_refuses_non_positive_rows(db: Database) -> None:
    with db.sessions.begin() as session:
        post(session, "till:HQ", "transit:1", 500, "sale")
        post(session, "transit:1", "till:HQ", -200, "negative goes the other way")
        assert post(session, "a", "b", 0, "nothing") is None
        assert balance(session, "transit:1") == 700
        assert balance(session, "till:HQ") == -700
    with pytest.raises(IntegrityError), db.sessions.begin() as session:
        session.add(JournalEntry(source="a", destination="b", amount=-5, memo="forged"))
        session.flush()


def test_unique_codes_are_enforced(db: Database) -> None:
    with db.sessions.begin() as session:
        session.add(Category(code="residential", name="Residential"))
    with pytest.raises(IntegrityError), db.sessions.begin() as session:
        session.add(Category(code="residential", name="again"))
        session.flush()
