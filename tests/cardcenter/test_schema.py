"""The migrations make the schema the models describe, on both databases."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from centre_support import Database
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import DateTime, select, text
from sqlalchemy.dialects.sqlite import dialect as sqlite_dialect
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cardcenter.core.db import (
    WAL_AUTOCHECKPOINT,
    Base,
    UTCDateTime,
    WalCheckpoints,
    begin_writing,
    json_text,
    transaction,
    upgrade,
)
from cardcenter.customers.models import Category
from cardcenter.sales.ledger import JournalEntry, balance, post, post_all


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
        post(session, "a", "b", 0, "nothing")
        post_all(session, [("till:HQ", "tax", 30, "tax"), ("till:HQ", "fixed", 0, "none")])
        assert balance(session, "transit:1") == 700
        assert balance(session, "till:HQ") == -730
        assert balance(session, "a") == balance(session, "fixed") == 0
        rows = session.scalars(select(JournalEntry).order_by(JournalEntry.id)).all()
        assert [(r.source, r.destination, r.amount) for r in rows] == [
            ("till:HQ", "transit:1", 500),
            ("till:HQ", "transit:1", 200),
            ("till:HQ", "tax", 30),
        ]
        assert all(r.at.tzinfo is not None for r in rows)
        with pytest.raises(TypeError, match="no link card_id"):
            post(session, "a", "b", 1, "typo", card_id=3)
    with pytest.raises(IntegrityError), db.sessions.begin() as session:
        session.add(JournalEntry(source="a", destination="b", amount=-5, memo="forged"))
        session.flush()


def test_unique_codes_are_enforced(db: Database) -> None:
    with db.sessions.begin() as session:
        session.add(Category(code="residential", name="Residential"))
    with pytest.raises(IntegrityError), db.sessions.begin() as session:
        session.add(Category(code="residential", name="again"))
        session.flush()


def _waits_for_the_disk(session: Session) -> bool:
    if session.get_bind().dialect.name == "sqlite":
        return bool(session.execute(text("PRAGMA synchronous")).scalar_one() == 2)  # FULL
    return bool(session.execute(text("SHOW synchronous_commit")).scalar_one() == "on")


def test_commits_wait_for_the_disk_unless_the_card_proves_the_write(db: Database) -> None:
    """Every transaction is on disk when its commit returns, but one asked not to be;
    the setting is the transaction's own and does not leak to the next one."""
    for durable in (True, False, True, False, False, True):
        with transaction(db.sessions, durable=durable) as session:
            assert _waits_for_the_disk(session) is durable
            post(session, "till:HQ", "transit:1", 1, "a row to commit")
    with db.sessions.begin() as session:
        assert _waits_for_the_disk(session)
        assert balance(session, "transit:1") == 6


# ---------------------------------------------------------------- JSON columns

_JSON_TREES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.text(st.characters(exclude_categories=("Cs",))),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=8) | st.integers(-9, 9), children, max_size=4)
    ),
    max_leaves=20,
)


def test_json_text_is_compact_json_with_names_as_strings() -> None:
    tree = {"after": {"at": "2026-01-31T00:00:00+00:00", "count": 3}, "ok": True, 7: [None, "电"]}
    assert (
        json_text(tree)
        == '{"after":{"at":"2026-01-31T00:00:00+00:00","count":3},"ok":true,"7":[null,"电"]}'
    )


@given(_JSON_TREES)
def test_json_text_writes_what_the_standard_encoder_writes(tree: object) -> None:
    assert json_text(tree) == json.dumps(tree, separators=(",", ":"), ensure_ascii=False)
    assert json.loads(json_text(tree)) == json.loads(json.dumps(tree))


@pytest.mark.parametrize(
    ("value", "named"),
    [(datetime(2026, 1, 1, tzinfo=UTC), "datetime"), (Category(code="x", name="X"), "Category")],
)
def test_json_text_refuses_what_is_not_plain_json(value: object, named: str) -> None:
    with pytest.raises(TypeError, match=f"not JSON serializable: .*{named}"):
        json_text({"at": value})


# ---------------------------------------------------------------- times read from SQLite


def _sqlalchemys_way(text: str) -> datetime | None:
    """What SQLAlchemy's own SQLite DATETIME processor and ours together make of ``text``."""
    dialect = sqlite_dialect()
    parse = DateTime().dialect_impl(dialect).result_processor(dialect, None)
    return UTCDateTime().process_result_value(parse(text), dialect)


@pytest.mark.parametrize(
    "text",
    [
        "2026-03-01 00:30:00.123456",  # as the centre writes every time
        "2026-03-01 00:30:00",  # SQLite's CURRENT_TIMESTAMP
        "2026-03-01 00:30:00.000000",
        "2026-12-31 23:59:59.999999",
    ],
)
def test_sqlite_times_are_read_as_sqlalchemy_reads_them(text: str) -> None:
    dialect = sqlite_dialect()
    read = UTCDateTime().dialect_impl(dialect).result_processor(dialect, None)
    assert read(text) == _sqlalchemys_way(text)
    assert read(text).tzinfo is UTC
    assert read(None) is None


def test_sqlite_text_of_another_form_takes_sqlalchemys_way() -> None:
    dialect = sqlite_dialect()
    read = UTCDateTime().dialect_impl(dialect).result_processor(dialect, None)
    with pytest.raises(ValueError):
        datetime.fromisoformat("2026-03-01 00:30:00+08:00+00:00")  # the quick way cannot
    assert read("2026-03-01 00:30:00+08:00") == _sqlalchemys_way("2026-03-01 00:30:00+08:00")


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.datetimes(
        min_value=datetime(1970, 1, 2),
        max_value=datetime(2200, 1, 1),
        timezones=st.sampled_from([UTC, timezone(timedelta(hours=8))]),
    )
)
def test_any_time_comes_back_as_stored(db: Database, at: datetime) -> None:
    """Each example adds a row of its own to the test's database and reads it back."""
    with db.sessions.begin() as session:
        entry = JournalEntry(source="a", destination="b", amount=1, memo="t", at=at)
        session.add(entry)
        session.flush()
        key = entry.id
    with db.sessions() as session:
        back = session.get(JournalEntry, key)
        assert back is not None and back.at == at and back.at.tzinfo is UTC


# ---------------------------------------------------------------- long runs of large transactions


def _checkpoints_at_commit(session: Session) -> bool:
    return bool(session.execute(text("PRAGMA wal_autocheckpoint")).scalar_one() > 0)


def _database_file_size(db: Database) -> int:
    """The SQLite file's size: in WAL mode only a checkpoint writes pages into it."""
    return Path(str(db.engine.url.database)).stat().st_size


def test_begin_writing_sets_this_transactions_safety_and_checkpoints_only(db: Database) -> None:
    for durable, checkpointing in ((False, False), (True, False), (True, True), (False, True)):
        with db.sessions() as session:
            begin_writing(session, durable=durable, checkpointing=checkpointing)
            assert _waits_for_the_disk(session) is durable
            if db.backend == "sqlite":
                assert _checkpoints_at_commit(session) is checkpointing
            post(session, "till:HQ", "transit:1", 1, "a row to commit")
            session.commit()
    with db.sessions.begin() as session:  # the next transaction: the defaults again
        assert _waits_for_the_disk(session)
        if db.backend == "sqlite":
            assert _checkpoints_at_commit(session)
        assert balance(session, "transit:1") == 4


def test_wal_checkpoints_copy_the_log_beside_the_writer(db: Database) -> None:
    """Commits that do not checkpoint leave their pages in the log until the thread copies them."""
    if db.backend != "sqlite":
        with WalCheckpoints(db.engine) as checkpoints:
            checkpoints.request()  # nothing to do: PostgreSQL checkpoints by itself
        return
    rows = [("till:HQ", f"transit:{i}", 1, f"{i:0200d}") for i in range(15_000)]
    with db.sessions() as session:  # the control: a transaction this large checkpoints
        begin_writing(session)
        post_all(session, rows)
        session.commit()
    before = _database_file_size(db)
    assert before > WAL_AUTOCHECKPOINT * 4096
    with WalCheckpoints(db.engine, every=3) as checkpoints:
        for commit in range(1, 4):
            with db.sessions() as session:
                begin_writing(session, checkpointing=False)
                post_all(session, rows)
                session.commit()  # each over WAL_AUTOCHECKPOINT pages of log
            if commit < 3:
                checkpoints.request()  # the first and second: not yet
                assert _database_file_size(db) == before
        checkpoints.request()  # the third: a checkpoint starts in the thread
    # leaving the block waited for it: the three transactions' pages are in the file
    assert _database_file_size(db) > before + 3 * WAL_AUTOCHECKPOINT * 4096
