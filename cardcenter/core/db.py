"""The database: declarative base, engines for SQLite and PostgreSQL, migrations.

One code path for both databases. SQLite (the default, one file) is opened
in WAL mode with foreign keys on and a busy timeout, so two processes at one
service hall wait for each other instead of failing; PostgreSQL is reached
through psycopg 3. The schema is only ever made by the Alembic migrations in
``cardcenter/migrations``, never by ``create_all``, so a database made by a
test is the database a utility runs.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from sqlalchemy import (
    JSON,
    BigInteger,
    Connection,
    DateTime,
    Engine,
    Integer,
    MetaData,
    create_engine,
    event,
)
from sqlalchemy import (
    Enum as SAEnum,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.types import TypeDecorator

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """An aware datetime stored as UTC; SQLite gives it back aware too.

    SQLite has no time zone type and would hand back naive values; a naive
    datetime on the way in is a programming error (DESIGN.md 7: times are
    timezone-aware), so it is refused rather than guessed.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database: use an aware datetime")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    def result_processor(self, dialect: Any, coltype: Any) -> Any:
        """On SQLite, the stored UTC text read straight as an aware time.

        SQLAlchemy's way (parse the text, then :meth:`process_result_value`
        sets the zone) takes 0.8 us a value, most of it in ``replace``; the
        text with ``+00:00`` appended goes through ``fromisoformat`` in 0.1 us,
        to the same value. A bulk import reads three times for each meter,
        and every page and report reads many. Text of another form (none is
        written by the centre) takes SQLAlchemy's way.
        """
        slow = super().result_processor(dialect, coltype)
        if dialect.name != "sqlite" or slow is None:
            return slow
        parse = datetime.fromisoformat

        def process(value: str | None) -> datetime | None:
            if value is None:
                return None
            try:
                return parse(value + "+00:00")
            except (TypeError, ValueError):
                return slow(value)

        return process


# 64-bit integers everywhere; on SQLite plain INTEGER, which is 64-bit there and
# the only type an auto-numbered primary key may have.
BigInt = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    """Base of every model; money and energy are integers (BigInteger), never floats."""

    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {int: BigInt, datetime: UTCDateTime, dict[str, Any]: JSON}  # noqa: RUF012


def enum_type(cls: type[enum.Enum]) -> SAEnum:
    """A string column holding an enum's values, read back as the enum's members.

    Stored as VARCHAR (not a native ENUM type) so adding a member later is not
    a schema change on PostgreSQL, and the same on both databases.
    """
    return SAEnum(
        cls,
        native_enum=False,
        length=24,
        values_callable=lambda members: [m.value for m in members],
        validate_strings=True,
    )


def utcnow() -> datetime:
    """Now, aware, in UTC: the one clock of the centre's books."""
    return datetime.now(UTC)


_JSON_OPTIONS = (
    orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
)


def json_text(value: Any) -> str:
    """``value`` as the compact JSON text a JSON column stores (both databases).

    orjson rather than the standard library's encoder, which takes about ten
    times as long: a reconciliation's ``detail`` (600 characters) cost 6 us
    of the bulk import's 60 us per write-back. The text is what
    ``json.dumps(value, separators=(",", ":"), ensure_ascii=False)`` gives for
    the trees the centre stores (strings, integers, booleans, None, lists,
    dicts). Like ``json.dumps``, it takes integer keys as strings and refuses
    times and dataclasses with a ``TypeError`` naming the type (orjson would
    write those by itself): a value that is not plain JSON is a programming
    error, not something to store by a guess. orjson refuses integers
    beyond 64 bits, which no amount of money or energy on the books reaches.
    """
    return orjson.dumps(value, option=_JSON_OPTIONS).decode()


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for ``url``; SQLite files get their directory and pragmas.

    JSON columns are written by :func:`json_text` on both databases.
    """
    kwargs.setdefault("json_serializer", json_text)
    parsed = make_url(url)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed, connect_args={"timeout": 30}, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        # BEGIN by the dialect, not by a "begin" event: any listener of the
        # engine's own events makes SQLAlchemy dispatch events around every
        # statement (about 7 us each, a sale runs seven).
        engine.dialect.do_begin = _sqlite_begin  # type: ignore[method-assign]
        return engine
    engine = create_engine(parsed, **kwargs)
    ping_after_idle(engine)
    return engine


PING_AFTER_IDLE = 1.0
"""Seconds a pooled PostgreSQL connection may rest before it is tested on checkout."""


def ping_after_idle(engine: Engine, after: float = PING_AFTER_IDLE) -> None:
    """Test a pooled connection on checkout if it has rested ``after`` seconds or more.

    SQLAlchemy's ``pool_pre_ping`` tests every checkout, a round trip to
    the server each time: two of a vend's twenty. A database restarted or a
    connection cut while the centre is quiet leaves connections that rested
    in the pool for the whole outage, and those are tested and replaced
    here before a request sees them. A connection that rested less than
    ``after`` is used untested: under load that is every one, and one cut
    in that moment fails the statement that meets it, which invalidates the
    pool (:mod:`cardcenter.core.prepared` does the same for its statements)
    so that the next request gets a new connection.
    """

    def checked_in(_dbapi_connection: Any, record: Any) -> None:
        record.info[_RESTING_SINCE] = time.monotonic()

    def checked_out(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        since = record.info.pop(_RESTING_SINCE, None)
        if since is None or time.monotonic() - since < after:
            return
        try:
            alive = engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as exc:
            if not engine.dialect.is_disconnect(exc, dbapi_connection, None):
                raise
            alive = False
        if not alive:
            # The pool's documented way to say so: it discards this one and connects anew.
            raise DisconnectionError("the pooled connection was lost while it rested")

    event.listen(engine.pool, "checkin", checked_in)
    event.listen(engine.pool, "checkout", checked_out)


_RESTING_SINCE = "cardcenter_resting_since"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy issue BEGIN itself (below), so a transaction takes the
    # write lock at its start and two writers queue instead of deadlocking.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    # Up to 16 MiB of pages per connection (SQLite's default is 2 MiB): a fleet's
    # indexes (a write-back's digest, its meter, its journal accounts) are written
    # at random places, and with 2 MiB a bulk import re-read them from the file.
    cursor.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
    cursor.close()
    dbapi_connection.create_function("cc_local_day", 2, local_day_text, deterministic=True)


def local_day_text(stored: str | None, zone: str) -> str | None:
    """SQLite's ``cc_local_day(timestamp, zone)``: the day in ``zone`` of a stored UTC time.

    SQLite knows no time zones; the reports' day in the hall's zone
    (:class:`cardcenter.reports.services.local_day`) calls this on SQLite,
    as PostgreSQL's ``AT TIME ZONE`` does there. The centre stores UTC times
    as ISO text without an offset.
    """
    if stored is None:
        return None
    moment = datetime.fromisoformat(stored).replace(tzinfo=UTC)
    return moment.astimezone(ZoneInfo(zone)).date().isoformat()


_DURABLE: ContextVar[bool] = ContextVar("durable", default=True)
"""The safety level of the transaction this thread is beginning (see :func:`_beginning`)."""
_CHECKPOINTING: ContextVar[bool] = ContextVar("checkpointing", default=True)
"""Whether the SQLite transaction this thread is beginning checkpoints at its commit."""

SQLITE_CACHE_KIB = 16 * 1024
"""Each SQLite connection's page cache, at most (it grows only as pages are read)."""

WAL_AUTOCHECKPOINT = 1000
"""SQLite's own default: a commit that leaves the log at 1,000 pages or more checkpoints it."""


def _sqlite_begin(dbapi_connection: Any) -> None:
    """Open the transaction with the write lock, at the safety level it began with.

    Both statements go straight to the driver connection: through
    SQLAlchemy each would cost a full statement execution (about 25 us),
    more than SQLite takes to run it, and a sale opens two transactions.
    SQLAlchemy raises a failure here (the lock not granted within the busy
    timeout) as its own error, as any statement's.
    """
    durable = _DURABLE.get()
    checkpointing = _CHECKPOINTING.get()
    driver = dbapi_connection.driver_connection
    info = dbapi_connection.info
    # The safety level can only change between transactions: set it for this one.
    if info.get("durable", True) != durable:
        driver.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
        info["durable"] = durable
    if info.get("checkpointing", True) != checkpointing:
        driver.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT if checkpointing else 0}")
        info["checkpointing"] = checkpointing
    driver.execute("BEGIN IMMEDIATE")


@contextmanager
def _beginning(*, durable: bool, checkpointing: bool = True) -> Iterator[None]:
    """Transactions begun in this block (by this thread) are ``durable`` or not.

    Only around the begin itself: a transaction begun later, even inside a
    non-durable one's block, is durable as every transaction is by default.
    ``checkpointing=False`` likewise: see :func:`begin_writing`.
    """
    token = _DURABLE.set(durable)
    checkpoint_token = _CHECKPOINTING.set(checkpointing)
    try:
        yield
    finally:
        _DURABLE.reset(token)
        _CHECKPOINTING.reset(checkpoint_token)


def begin_writing(
    session: Session, *, durable: bool = True, checkpointing: bool = True
) -> Connection:
    """Begin ``session``'s transaction now (with SQLite's write lock); its connection.

    ``durable`` as for :func:`transaction`. ``checkpointing=False`` is for a
    long run of large transactions whose write-ahead log a
    :class:`WalCheckpoints` thread copies into the database instead: SQLite
    otherwise checkpoints inside the COMMIT that takes the log past
    :data:`WAL_AUTOCHECKPOINT` pages, and the writer waits for it (the bulk
    import waited 50 ms for every tenth batch). Both settings hold for this
    transaction only: the next one begun on the connection is durable and
    checkpoints again. ``checkpointing`` changes nothing on PostgreSQL,
    whose checkpointer is a process of its own.
    """
    with _beginning(durable=durable, checkpointing=checkpointing):
        session.begin()
        connection = session.connection()
    if not durable:
        _not_waiting_for_the_disk(connection)
    return connection


class WalCheckpoints:
    """Checkpoints of a SQLite database's write-ahead log, run in a thread beside its writer.

    A PASSIVE checkpoint copies the pages committed so far from the log
    into the database file without taking the write lock, so the writer's
    next transaction goes on meanwhile; once a checkpoint has copied the
    whole log, the writer's next transaction starts the log again from its
    beginning. The checkpoint runs on a connection of its own, straight on
    the driver (no BEGIN, so no write lock). The writer calls
    :meth:`request` after each commit and a checkpoint starts at every
    ``every``-th call, unless the last one is still running: fewer, larger
    checkpoints copy a page that several transactions rewrote once instead
    of each time. :meth:`close` waits for the running one. On PostgreSQL,
    whose checkpointer is a process of its own, both do nothing.
    """

    def __init__(self, engine: Engine, *, every: int = 1) -> None:
        self._engine = engine
        self._pool = (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="cardcenter-checkpoint")
            if engine.dialect.name == "sqlite"
            else None
        )
        self._every = max(1, every)
        self._requests = 0
        self._running: Future[None] | None = None
        self._connection: PoolProxiedConnection | None = None

    def request(self) -> None:
        """Note a commit; start a checkpoint at every ``every``-th, unless one is still running."""
        self._requests += 1
        if self._pool is None or self._requests % self._every:
            return
        if self._running is not None:
            if not self._running.done():
                return
            self._running.result()  # raise what the last one raised
        self._running = self._pool.submit(self._checkpoint)

    def _checkpoint(self) -> None:
        if self._connection is None:
            self._connection = self._engine.raw_connection()
        driver: Any = self._connection.driver_connection
        driver.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    def close(self) -> None:
        """Wait for the running checkpoint; raise what it raised."""
        if self._pool is None:
            return
        try:
            self._pool.shutdown(wait=True)
            if self._running is not None:
                self._running.result()
        finally:
            if self._connection is not None:
                self._connection.close()

    def __enter__(self) -> WalCheckpoints:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions that keep loaded values after commit (services return them)."""
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session], *, durable: bool = True) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any error.

    A commit returns once the transaction is on disk (SQLite ``synchronous
    = FULL`` in WAL mode, PostgreSQL's ``synchronous_commit``), so a power
    cut after it loses nothing. ``durable=False`` is for a transaction
    whose loss in a power cut a later one redoes from evidence held
    elsewhere: the confirmation of a card write, which the card's own purse
    proves at its next reading. It saves a disk flush (about 160 µs here);
    the transaction is still atomic and survives a crash of the program.
    """
    with factory() as session, session.begin():
        if not durable:
            with _beginning(durable=False):
                connection = session.connection()
            _not_waiting_for_the_disk(connection)
        yield session


@contextmanager
def connection_transaction(
    factory: sessionmaker[Session], *, durable: bool = True
) -> Iterator[Connection]:
    """:func:`transaction` on a plain connection, for work that loads no objects.

    The same unit of work (commit on success, roll back on any error) and
    the same promise about the disk, without the session: a session's own
    bookkeeping costs more than a whole statement, and the hot end of a
    sale (confirming the card write, posting the money) only runs
    statements.
    """
    with engine_of(factory).connect() as connection:
        with _beginning(durable=durable):
            begun = connection.begin()
        with begun:
            if not durable:
                _not_waiting_for_the_disk(connection)
            yield connection


def _not_waiting_for_the_disk(connection: Connection) -> None:
    # On SQLite the transaction began so (_beginning, _sqlite_begin).
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")


def engine_of(factory: sessionmaker[Session]) -> Engine:
    """The engine the sessions of ``factory`` are bound to."""
    bind = factory.kw.get("bind")
    if not isinstance(bind, Engine):
        raise TypeError("the session factory is not bound to an engine")
    return bind


def connection_of(books: Session | Connection) -> Connection:
    """Where a statement runs: the session's connection, or the plain connection given.

    Lets one function serve both a unit of work that loads objects (a
    session) and one that only runs statements (:func:`connection_transaction`).
    """
    return books if isinstance(books, Connection) else books.connection()


def alembic_config(url: str) -> Any:
    """The Alembic configuration of the packaged migrations for ``url``."""
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(engine: Engine) -> None:
    """Bring the schema to the newest migration (idempotent)."""
    from alembic import command

    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, "head")
