"""The sale's hot path: its plain-connection transaction, its one look-up, its loaded rows."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from centre_support import Database
from sqlalchemy import Connection, insert, inspect, select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from cardcenter.cards.models import Card, CardStatus
from cardcenter.core import loaded as loaded_module
from cardcenter.core.db import connection_transaction, make_engine, transaction, utcnow
from cardcenter.core.errors import NotFoundError
from cardcenter.core.loaded import as_loaded, as_written
from cardcenter.core.prepared import Prepared
from cardcenter.customers.models import Category, Customer, Meter
from cardcenter.customers.services import open_account
from cardcenter.sales import planning
from cardcenter.sales.ledger import balance, post
from cardcenter.sales.services import (
    CARD_ROW_OF_SERIAL,
    VISIT_OBJECTS,
)
from cardcenter.tariffs.models import TariffKind
from cardcenter.tariffs.services import (
    add_tariff,
    get_or_create_category,
    next_version,
    tariff_of,
    version_at,
)

T0 = datetime(2026, 3, 1, tzinfo=UTC)
FLAT = {"rate_prices": [5283]}


def _waits_for_the_disk(connection: Connection) -> bool:
    if connection.dialect.name == "sqlite":
        return bool(connection.execute(text("PRAGMA synchronous")).scalar_one() == 2)  # FULL
    return bool(connection.execute(text("SHOW synchronous_commit")).scalar_one() == "on")


def test_a_plain_connection_transaction_keeps_the_promise_about_the_disk(db: Database) -> None:
    """As :func:`transaction`: durable unless asked, and the setting does not leak."""
    for durable in (False, True, False, False, True):
        with connection_transaction(db.sessions, durable=durable) as connection:
            assert _waits_for_the_disk(connection) is durable
            post(connection, "till:HQ", "transit:1", 1, "a row to commit")
        with transaction(db.sessions) as session:
            assert _waits_for_the_disk(session.connection())
    with db.sessions() as session:
        assert balance(session, "transit:1") == 5


def test_a_plain_connection_transaction_rolls_back_on_error(db: Database) -> None:
    with pytest.raises(RuntimeError), connection_transaction(db.sessions) as connection:
        post(connection, "till:HQ", "transit:1", 7, "never committed")
        raise RuntimeError("refused half-way")
    with db.sessions() as session:
        assert balance(session, "transit:1") == 0


def test_a_write_lock_not_granted_is_a_database_error(tmp_path: Path) -> None:
    """SQLite's BEGIN IMMEDIATE goes to the driver directly, but fails as any statement would."""
    path = tmp_path / "locked.db"
    engine = make_engine(f"sqlite:///{path}")
    with engine.begin() as connection:  # the file made, in WAL mode, and the dialect set up
        connection.exec_driver_sql("CREATE TABLE t (x INTEGER)")
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        with engine.connect() as connection:
            driver = connection.connection.driver_connection
            assert driver is not None
            driver.execute("PRAGMA busy_timeout=0")
            with pytest.raises(OperationalError, match="locked"):
                connection.begin()
        holder.execute("ROLLBACK")
        with engine.begin() as connection:  # and the next transaction goes ahead
            connection.exec_driver_sql("INSERT INTO t VALUES (1)")
    finally:
        holder.close()
        engine.dispose()


def _accounts(db: Database) -> tuple[int, int]:
    """A customer paying the category default, and one with a tariff of their own.

    The category's water tariff is older (a lower id) than its electricity
    default, so picking the default by category alone would find it.
    """
    with transaction(db.sessions) as session:
        add_tariff(
            session, "water", TariffKind.FLAT, FLAT, category="homes", active_from=T0,
            now=T0, utility="water",
        )  # fmt: skip
        for days in (0, 10, 20):
            add_tariff(
                session, "homes", TariffKind.FLAT, FLAT, category="homes" if not days else None,
                active_from=T0 + timedelta(days=days), now=T0,
            )  # fmt: skip
        own = add_tariff(
            session, "own", TariffKind.FLAT, FLAT, active_from=T0 + timedelta(days=5), now=T0
        ).tariff
        category = get_or_create_category(session, "homes")
        ids = []
        for n, tariff in enumerate((None, own)):
            customer = open_account(
                session, name=f"Customer {n}", meter_no=f"{20_000_000 + n:012d}",
                category_id=category.id, tariff=tariff, now=T0,
            )  # fmt: skip
            ids.append(customer.id)
        return ids[0], ids[1]


INSTANTS = [T0 + timedelta(days=d, seconds=s) for d in (0, 5, 10, 15, 20, 30) for s in (-1, 0, 1)]


def test_the_tariff_pick_is_the_tariff_services_answer(db: Database) -> None:
    """Standalone or as columns of the sale's statement, the same versions as
    version_at and next_version of the customer's tariff, at and around every start."""
    picked_with_the_customer = select(
        Customer.id, planning.TARIFF_IN_FORCE, planning.TARIFF_SCHEDULED
    ).where(Customer.id.in_(_accounts(db)))
    with db.sessions() as session:
        for at in INSTANTS:
            rows = session.execute(picked_with_the_customer, {"at": at}).all()
            assert len(rows) == 2
            for customer_id, in_force, scheduled in rows:
                customer = session.get_one(Customer, customer_id)
                tariff = tariff_of(session, customer)
                try:
                    expected = version_at(session, tariff, at)
                except NotFoundError as exc:
                    assert in_force is None
                    with pytest.raises(NotFoundError, match=str(exc)[:40]):
                        planning.tariffs_at(session, customer, at)
                    continue
                upcoming = next_version(session, tariff, at)
                assert (in_force, scheduled) == (
                    expected.id,
                    upcoming.id if upcoming else None,
                )
                for choice in (None, (in_force, scheduled)):
                    current, following = planning.tariffs_at(session, customer, at, {}, choice)
                    assert current is expected and following is upcoming


@pytest.fixture(params=["add_step", "public_calls"])
def holding(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Objects put into the session by ``Session.add``'s own step, or by the public calls.

    The public calls are what a SQLAlchemy without that (non-public) step
    would use; the outcome must be the same.
    """
    if request.param == "public_calls":
        monkeypatch.setattr(loaded_module, "_ADD_WITH_IDENTITY", None)
    return str(request.param)


def test_the_installed_sqlalchemy_has_the_step_add_takes() -> None:
    """The fast way is the one in use: pyproject.toml admits only releases that have it."""
    assert loaded_module._ADD_WITH_IDENTITY is Session._update_impl


def test_a_row_just_inserted_is_held_as_loaded(db: Database, holding: str) -> None:
    """as_loaded: nothing to flush for it, and a later change is tracked and written."""
    with transaction(db.sessions) as session:
        row = {"code": "homes", "name": "Homes"}
        new_id = session.execute(insert(Category).returning(Category.id), row).scalar_one()
        category = as_loaded(session, Category, id=new_id, **row)
        assert category in session and not session.dirty and not session.new
        assert session.get(Category, new_id) is category
        category.name = "Houses"
        assert category in session.dirty
    with db.sessions() as session:
        assert session.get_one(Category, new_id).name == "Houses"


def test_an_object_as_written_is_tracked_by_nothing(db: Database) -> None:
    """as_written: the values as given, no id, no session, and nothing a flush would write."""
    row = {"code": "homes", "name": "Homes"}
    category = as_written(Category, **row)
    state = inspect(category)
    assert state.transient and category.id is None
    assert (category.code, category.name) == ("homes", "Homes")
    assert not any(state.attrs[name].history.has_changes() for name in row)
    with transaction(db.sessions) as session:
        assert category not in session
        assert session.scalar(select(Category).where(Category.code == "homes")) is None


def _columns(obj: object) -> dict[str, object]:
    return {attr.key: getattr(obj, attr.key) for attr in inspect(type(obj)).column_attrs}


def test_a_cards_row_gives_the_objects_the_orm_loads(db: Database, holding: str) -> None:
    """RowObjects: every column as the ORM loads it (times, enums, JSON, NULLs), tracked as loaded.

    Cards in several states, one with a write in flight; each read both
    ways in separate sessions, then the plain row's objects used as loaded
    ones: nothing to flush, a change written, a relationship loaded. An
    object the session holds is kept, and what it has not flushed yet is
    flushed first, as the ORM's autoflush would.
    """
    customer_ids = _accounts(db)
    now = utcnow()
    with transaction(db.sessions) as session:
        serials = []
        for n, customer_id in enumerate(customer_ids):
            customer = session.get_one(Customer, customer_id)
            meter = customer.meters[0]
            card = Card(
                serial=f"C15C46840000000{n}", customer_id=customer_id, meter_id=meter.id,
                status=(CardStatus.ACTIVE, CardStatus.LOST)[n], status_changed_at=now,
                purchase_count=3 + n, purse_amount=12_345,
            )  # fmt: skip
            if n == 0:
                card.pending_action, card.pending_count, card.pending_amount = "sale", 4, 99
            customer.fixed_paid_through = "2026-02"
            session.add(card)
            serials.append(card.serial)
    by_orm = (
        select(Card, Customer, Meter)
        .join(Customer, Customer.id == Card.customer_id)
        .join(Meter, Meter.id == Card.meter_id)
    )
    look_up = Prepared(CARD_ROW_OF_SERIAL)
    for serial in serials:
        with db.sessions() as session:
            expected = [
                _columns(obj) for obj in session.execute(by_orm.where(Card.serial == serial)).one()
            ]
        with transaction(db.sessions) as session:
            loaded = VISIT_OBJECTS.load(session, look_up, {"serial": serial})
            assert loaded is not None
            objects, rest = loaded
            assert rest == ()
            assert [_columns(obj) for obj in objects] == expected
            card, customer, meter = objects
            assert all(obj in session for obj in objects)
            assert not session.dirty and not session.new
            assert session.get(Card, card.id) is card
            assert customer.category.code == "homes"  # a relationship loads as usual
            assert meter.customer is customer
            customer.phone = "555 0101"
        with db.sessions() as session:
            assert session.get_one(Customer, customer.id).phone == "555 0101"
    with transaction(db.sessions) as session:
        held = session.scalars(select(Card).where(Card.serial == serials[0])).one()
        held.purse_amount = 1
        other = session.scalars(select(Card).where(Card.serial == serials[1])).one()
        other.serial = "C15C468400000009"  # found by its new serial once flushed
        loaded = VISIT_OBJECTS.load(session, look_up, {"serial": serials[0]})
        assert loaded is not None and loaded[0][0] is held and held.purse_amount == 1
        assert VISIT_OBJECTS.load(session, look_up, {"serial": serials[1]}) is None
        again = VISIT_OBJECTS.load(session, look_up, {"serial": "C15C468400000009"})
        assert again is not None and again[0][0] is other
        session.rollback()
