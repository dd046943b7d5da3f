"""Prepared statements (cardcenter.core.prepared) store what SQLAlchemy would, on both databases.

The sale and the vend run their statements on the driver; a value stored
differently (a time not in UTC, an enum as its name) or an error raised as
the driver's own instead of SQLAlchemy's would break every reader of those
rows and every caller that maps a lost race to a conflict.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any, cast

import pytest
from centre_support import Database
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Table, bindparam, delete, insert, select, text, update
from sqlalchemy.exc import DBAPIError, IntegrityError

from cardcenter.core.db import transaction
from cardcenter.core.prepared import Prepared
from cardcenter.operators.models import Operator, Role
from cardcenter.sales.ledger import JournalEntry

JOURNAL = cast(Table, JournalEntry.__table__)
OPERATORS = cast(Table, Operator.__table__)
ROW_KEYS = ("at", "source", "destination", "amount", "memo", "customer_id", "sale_id",
            "reconciliation_id", "operator_id")  # fmt: skip
PREPARED_INSERT = Prepared(insert(JOURNAL), column_keys=ROW_KEYS)
PLAIN_INSERT = insert(JOURNAL)
LOCK = Prepared(
    update(OPERATORS)
    .where(OPERATORS.c.username == bindparam("who"), OPERATORS.c.role == Role.CASHIER)
    .values(locked_until=bindparam("until", type_=OPERATORS.c.locked_until.type), active=False)
)


def journal_row(at: datetime, amount: int = 1250, memo: str = "credit") -> dict[str, Any]:
    return {
        "at": at, "source": "till:HQ", "destination": "transit:1", "amount": amount,
        "memo": memo, "customer_id": None, "sale_id": None, "reconciliation_id": None,
        "operator_id": None,
    }  # fmt: skip


def stored(db: Database) -> list[tuple[Any, ...]]:
    """The journal as the database holds it (times as stored, not as the ORM reads them)."""
    with db.engine.connect() as conn:
        return [
            tuple(row)
            for row in conn.execute(
                text(
                    "SELECT CAST(at AS TEXT), source, destination, amount, memo FROM journal "
                    "ORDER BY id"
                )
            )
        ]


def add_operator(db: Database, username: str, role: Role) -> None:
    with transaction(db.sessions) as session:
        session.add(Operator(username=username, name=username, role=role, site="HQ"))


AWARE_TIMES = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2090, 1, 1),
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=8)), timezone(timedelta(hours=-5))]),
)  # fmt: skip


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    at=AWARE_TIMES,
    amount=st.integers(min_value=1, max_value=2**62),
    memo=st.text(st.characters(blacklist_categories=["Cs", "Cc"]), max_size=200),
)
def test_a_row_is_stored_as_sqlalchemy_stores_it(
    db: Database, at: datetime, amount: int, memo: str
) -> None:
    row = journal_row(at, amount, memo)
    with db.engine.begin() as conn:
        conn.execute(delete(JOURNAL))
    with db.engine.begin() as conn:
        conn.execute(PLAIN_INSERT, [row])
    with db.engine.begin() as conn:
        PREPARED_INSERT.execute_many(conn, [row])
    through_sqlalchemy, prepared = stored(db)
    assert prepared == through_sqlalchemy
    with db.sessions() as session:
        read = session.scalars(select(JournalEntry.at).order_by(JournalEntry.id.desc())).first()
    assert read == at and read is not None and read.utcoffset() == timedelta(0)


def test_the_values_a_statement_carries_are_processed_as_its_parameters(db: Database) -> None:
    """An enum in the WHERE clause goes as its value, a time to UTC, a fixed value as written."""
    add_operator(db, "ana", Role.CASHIER)
    add_operator(db, "bo", Role.SUPERVISOR)
    until = datetime(2026, 12, 1, 9, 30, tzinfo=timezone(timedelta(hours=8)))
    with db.engine.begin() as conn:
        assert LOCK.rowcount(conn, {"who": "ana", "until": until}) == 1
        # the role in the statement is a supervisor's, not a cashier's: no row matches
        assert LOCK.rowcount(conn, {"who": "bo", "until": until}) == 0
    with db.sessions() as session:
        ana = session.scalars(select(Operator).where(Operator.username == "ana")).one()
        bo = session.scalars(select(Operator).where(Operator.username == "bo")).one()
    assert (ana.active, ana.locked_until) == (False, datetime(2026, 12, 1, 1, 30, tzinfo=UTC))
    assert (bo.active, bo.locked_until) == (True, None)


def test_rows_come_back_through_their_column_types(db: Database) -> None:
    add_operator(db, "ana", Role.SUPERVISOR)
    with db.engine.begin() as conn:
        LOCK.rowcount(conn, {"who": "ana", "until": datetime(2026, 1, 1, tzinfo=UTC)})
    who = Prepared(
        select(OPERATORS.c.role, OPERATORS.c.created_at, OPERATORS.c.locked_until).where(
            OPERATORS.c.username == bindparam("who")
        )
    )
    with db.engine.connect() as conn:
        role, created, locked = who.first(conn, {"who": "ana"}) or ()
        assert who.first(conn, {"who": "nobody"}) is None
        assert who.scalar(conn, {"who": "nobody"}) is None
    assert role is Role.SUPERVISOR
    assert created.tzinfo is not None and created.utcoffset() == timedelta(0)
    assert locked is None


def test_a_broken_constraint_is_sqlalchemys_integrity_error(db: Database) -> None:
    """Callers turn IntegrityError into a conflict (a lost race); the driver's own would escape."""
    with db.engine.connect() as conn, pytest.raises(IntegrityError):
        PREPARED_INSERT.execute_many(conn, [journal_row(datetime.now(UTC), amount=0)])
    add_operator(db, "ana", Role.CASHIER)
    insert_operator = Prepared(
        insert(OPERATORS),
        column_keys=[c.name for c in OPERATORS.c if c.name != "id"],
    )
    values = {c.name: None for c in OPERATORS.c}
    values.update(username="ana", name="Ana", role=Role.CASHIER, site="HQ", active=True,
                  failed_logins=0, locale="en", created_at=datetime.now(UTC))  # fmt: skip
    with db.engine.connect() as conn, pytest.raises(IntegrityError):
        insert_operator.execute(conn, values)
    assert stored(db) == []


def test_what_it_cannot_do_is_refused_when_compiled(db: Database) -> None:
    dialect = db.engine.dialect
    in_list = Prepared(
        select(JOURNAL.c.id).where(JOURNAL.c.id.in_(bindparam("ids", expanding=True)))
    )
    with pytest.raises(TypeError, match="IN list"):
        in_list.compiled(dialect)
    # ``at`` and ``memo`` have defaults computed in Python, which only SQLAlchemy would apply
    short = Prepared(insert(JOURNAL), column_keys=["source", "destination", "amount"])
    with pytest.raises(TypeError, match="default computed in Python"):
        short.compiled(dialect)


def test_a_missing_parameter_is_named(db: Database) -> None:
    row = journal_row(datetime.now(UTC))
    del row["memo"]
    with db.engine.connect() as conn, pytest.raises(TypeError, match="memo"):
        PREPARED_INSERT.execute_many(conn, [row])
    with db.engine.connect() as conn, pytest.raises(TypeError, match="until"):
        LOCK.rowcount(conn, {"who": "ana"})


def test_it_runs_inside_the_callers_transaction(db: Database) -> None:
    """Rolled back with the transaction it ran in: never committed on its own."""
    with db.engine.connect() as conn:
        with conn.begin() as begun:
            PREPARED_INSERT.execute_many(conn, [journal_row(datetime.now(UTC))])
            begun.rollback()
        with conn.begin():
            PREPARED_INSERT.execute_many(conn, [journal_row(datetime.now(UTC), memo="kept")])
    assert [row[4] for row in stored(db)] == ["kept"]


def test_a_connection_not_yet_begun_is_begun_as_sqlalchemy_would(db: Database) -> None:
    """Not committed on its own: SQLite's driver connection is in autocommit here."""
    with db.engine.connect() as conn:
        PREPARED_INSERT.execute_many(conn, [journal_row(datetime.now(UTC))])
        assert conn.in_transaction()
        conn.rollback()
        LOCK.rowcount(conn, {"who": "ana", "until": datetime.now(UTC)})
        assert conn.in_transaction()
    assert stored(db) == []


def test_a_lost_connection_is_invalidated_and_the_next_one_works(db: Database) -> None:
    """As through SQLAlchemy: the pool must not hand the dead connection out again."""
    with db.engine.connect() as conn:
        conn.begin()
        if db.backend == "sqlite":
            conn.connection.driver_connection.close()  # type: ignore[union-attr]
        else:
            pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
            with db.engine.connect() as other:
                other.exec_driver_sql(f"SELECT pg_terminate_backend({int(pid or 0)})")
        with pytest.raises(DBAPIError) as raised:
            PREPARED_INSERT.execute_many(conn, [journal_row(datetime.now(UTC))])
        assert raised.value.connection_invalidated
        assert conn.invalidated
    with db.engine.begin() as conn:
        PREPARED_INSERT.execute_many(conn, [journal_row(datetime.now(UTC), memo="after")])
    assert [row[4] for row in stored(db)] == ["after"]


def test_a_text_statement_gives_its_rows_as_the_driver_does(db: Database) -> None:
    add_operator(db, "ana", Role.CASHIER)
    count = Prepared(text("SELECT count(*), max(username) FROM operators WHERE site = :site"))
    with db.engine.connect() as conn:
        assert count.first(conn, {"site": "HQ"}) == (1, "ana")
        assert count.scalar(conn, {"site": "elsewhere"}) == 0


def test_a_read_alone_begins_nothing_and_waits_for_no_writer(db: Database) -> None:
    """first_alone: a SELECT outside any transaction, so on SQLite it takes no write lock;
    it sees what is committed, not a writer's change in flight."""
    add_operator(db, "ana", Role.CASHIER)
    who = Prepared(
        select(OPERATORS.c.username, OPERATORS.c.role, OPERATORS.c.active).where(
            OPERATORS.c.username == bindparam("who")
        )
    )
    with db.engine.connect() as writer:
        assert LOCK.rowcount(writer, {"who": "ana", "until": datetime.now(UTC)}) == 1
        assert writer.in_transaction()  # holding SQLite's write lock, ana's change not committed
        with db.engine.connect() as reader:
            assert who.first_alone(reader, {"who": "ana"}) == ("ana", Role.CASHIER, True)
            assert who.first_alone(reader, {"who": "bob"}) is None
            assert not reader.in_transaction()
        writer.commit()
    with db.engine.connect() as reader:
        assert who.first_alone(reader, {"who": "ana"}) == ("ana", Role.CASHIER, False)
        reader.begin()
        with pytest.raises(RuntimeError, match="begun no transaction"):
            who.first_alone(reader, {"who": "ana"})
