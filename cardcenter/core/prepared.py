"""Statements compiled once per database and run on the driver's own connection.

The sale and the token vend each run about seven small statements, and
through SQLAlchemy each one costs about 60 us here before the database sees
it (the cache key, the parameter dictionaries, the execution context and
its result), eight times what SQLite takes to run a one-row UPDATE. A
:class:`Prepared` statement is still written with SQLAlchemy Core against
the models' tables; it is compiled once for each database it meets, and run
straight on the driver connection inside the caller's transaction. Every
value still goes through its column type's bind processor (so an enum is
stored as its value and a time in UTC, exactly as the ORM stores them), and
a database error is raised as SQLAlchemy raises it (``IntegrityError`` and
the rest), so callers cannot tell the two paths apart.

What it leaves out, and refuses at compile time rather than get wrong:
``IN`` lists (expanding parameters) and column defaults computed in Python
(an INSERT must be given every such column).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.expression import Executable

Processor = Callable[[Any], Any]


@dataclass(frozen=True, slots=True)
class _Compiled:
    """One statement for one database: its text and how to turn parameters into arguments."""

    sql: str
    names: tuple[str, ...]
    """Parameter names: in placeholder order, repeated where a name is (SQLite's ``?``),
    or each once for named placeholders (PostgreSQL's ``%(name)s``)."""
    positional: bool
    processors: tuple[tuple[str, Processor], ...]
    fixed: Mapping[str, Any]
    """Values the statement carries itself (``status = 'pending'``), already processed."""
    results: tuple[Processor | None, ...]
    """Each result column's processor for this database (a SELECT or RETURNING)."""
    processed: tuple[tuple[int, Processor], ...]
    """The columns of :attr:`results` that have a processor (most have none), by position."""

    def arguments(self, params: Mapping[str, Any]) -> Any:
        """The driver's arguments for ``params`` (a tuple, or a dictionary for named ones)."""
        values = {**params, **self.fixed} if self.fixed else dict(params)
        try:
            for name, process in self.processors:
                values[name] = process(values[name])
            if self.positional:
                return tuple([values[name] for name in self.names])
            return {name: values[name] for name in self.names}
        except KeyError as exc:
            raise TypeError(f"no value given for the statement's parameter {exc}") from None


class Prepared:
    """A Core statement run on the driver, compiled the first time each database runs it."""

    __slots__ = ("_by_dialect", "column_keys", "statement")

    def __init__(self, statement: Executable, *, column_keys: Sequence[str] | None = None) -> None:
        """``column_keys``: for an INSERT, the columns every row gives (all, when None)."""
        self.statement = statement
        self.column_keys = list(column_keys) if column_keys is not None else None
        self._by_dialect: dict[str, _Compiled] = {}

    def compiled(self, dialect: Dialect) -> _Compiled:
        """The statement for ``dialect`` (compiled once, then kept)."""
        known = self._by_dialect.get(dialect.name)
        if known is None:
            known = self._by_dialect[dialect.name] = _compile(
                self.statement, dialect, self.column_keys
            )
        return known

    def execute(self, connection: Connection, params: Mapping[str, Any] | None = None) -> Any:
        """Run once with ``params`` in ``connection``'s transaction; the driver's cursor."""
        return self._run(connection, params, begin=True)

    def _run(self, connection: Connection, params: Mapping[str, Any] | None, *, begin: bool) -> Any:
        dialect = connection.dialect
        compiled = self.compiled(dialect)
        arguments = compiled.arguments(params or {})
        try:
            if begin:
                return _driver(connection).execute(compiled.sql, arguments)
            return _alone(connection, compiled.sql, arguments)
        except dialect.loaded_dbapi.Error as exc:
            raise _wrapped(connection, compiled.sql, arguments, exc) from exc

    def execute_many(self, connection: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        """Run once per row of ``rows`` (one driver call)."""
        if not rows:
            return
        dialect = connection.dialect
        compiled = self.compiled(dialect)
        arguments = [compiled.arguments(row) for row in rows]
        driver = _driver(connection)
        try:
            cursor = driver.cursor()
            try:
                cursor.executemany(compiled.sql, arguments)
            finally:
                cursor.close()
        except dialect.loaded_dbapi.Error as exc:
            raise _wrapped(connection, compiled.sql, arguments, exc) from exc

    def rowcount(self, connection: Connection, params: Mapping[str, Any] | None = None) -> int:
        """Run an UPDATE or DELETE; the number of rows it matched."""
        count: int = self.execute(connection, params).rowcount
        return count

    def first(
        self, connection: Connection, params: Mapping[str, Any] | None = None
    ) -> tuple[Any, ...] | None:
        """Run; the first row it returns (each column through its type), or None."""
        return self._first_of(connection, self.execute(connection, params))

    def first_alone(
        self, connection: Connection, params: Mapping[str, Any] | None = None
    ) -> tuple[Any, ...] | None:
        """Run a SELECT as a statement of its own, outside any transaction: as :meth:`first`.

        For a read that one statement answers, on a connection that has
        begun nothing: on SQLite (in autocommit here, :mod:`cardcenter.core.db`)
        it then takes no write lock, which every transaction there takes at
        its start. On PostgreSQL it runs in the driver's autocommit: one round
        trip, where a transaction would add a BEGIN and the pool's ROLLBACK,
        and that ROLLBACK makes psycopg drop every statement it has prepared
        on the connection (with a ``DEALLOCATE ALL``, a third round trip).
        """
        if connection.in_transaction():
            raise RuntimeError("first_alone is for a connection that has begun no transaction")
        return self._first_of(connection, self._run(connection, params, begin=False))

    def _first_of(self, connection: Connection, cursor: Any) -> tuple[Any, ...] | None:
        row = cursor.fetchone()
        if row is None:
            return None
        compiled = self.compiled(connection.dialect)
        if not compiled.results:  # a statement whose columns SQLAlchemy does not know (text)
            return tuple(row)
        if len(row) != len(compiled.results):
            raise TypeError(f"a row of {len(row)} columns for {len(compiled.results)} types")
        if not compiled.processed:
            return tuple(row)
        values = list(row)
        for at, process in compiled.processed:
            values[at] = process(values[at])
        return tuple(values)

    def scalar(self, connection: Connection, params: Mapping[str, Any] | None = None) -> Any:
        """Run; the first column of the first row, or None when there is no row."""
        row = self.first(connection, params)
        return None if row is None else row[0]


def _driver(connection: Connection) -> Any:
    """The driver connection under ``connection``, its transaction begun.

    SQLAlchemy begins a connection's transaction at its first statement
    (autobegin); so does this, or on SQLite (whose driver connection the
    centre leaves in autocommit, :mod:`cardcenter.core.db`) the statement
    would commit on its own.
    """
    if not connection.in_transaction():
        connection.begin()
    return connection.connection.driver_connection


def _alone(connection: Connection, sql: str, arguments: Any) -> Any:
    """Run ``sql`` on ``connection``'s driver as a statement of its own (see ``first_alone``)."""
    driver: Any = connection.connection.driver_connection
    if connection.dialect.name != "postgresql":
        return driver.execute(sql, arguments)  # SQLite's is in autocommit here already
    driver.autocommit = True
    try:
        return driver.execute(sql, arguments)
    finally:
        if not driver.closed:
            driver.autocommit = False


def _compile(statement: Executable, dialect: Dialect, column_keys: list[str] | None) -> _Compiled:
    compiled = statement.compile(dialect=dialect, column_keys=column_keys)  # type: ignore[attr-defined]
    if getattr(compiled, "insert_prefetch", None) or getattr(compiled, "update_prefetch", None):
        raise TypeError(
            "a prepared INSERT or UPDATE must be given every column with a default computed "
            "in Python"
        )
    processors: dict[str, Processor] = {}
    fixed: dict[str, Any] = {}
    for bind, name in compiled.bind_names.items():
        if bind.expanding or bind.literal_execute:
            raise TypeError(f"parameter {name} is an IN list: a prepared statement takes none")
        process = bind.type.dialect_impl(dialect).bind_processor(dialect)
        if not bind.required:
            value = bind.effective_value
            fixed[name] = value if process is None else process(value)
        elif process is not None:
            processors[name] = process
    results = tuple(
        column.type.dialect_impl(dialect).result_processor(dialect, None)
        for column in getattr(statement, "exported_columns", ())
    )
    positions = compiled.positiontup
    return _Compiled(
        sql=compiled.string,
        names=tuple(
            positions if positions is not None else dict.fromkeys(compiled.bind_names.values())
        ),
        positional=positions is not None,
        processors=tuple(processors.items()),
        fixed=fixed,
        results=results,
        processed=tuple((at, process) for at, process in enumerate(results) if process),
    )


def _wrapped(connection: Connection, sql: str, arguments: Any, exc: Exception) -> BaseException:
    """The driver's error as SQLAlchemy raises it (``IntegrityError``, ``OperationalError``...).

    A lost database connection is invalidated as SQLAlchemy does, so the
    pool opens a new one instead of handing the dead one out again.
    """
    dialect = connection.dialect
    lost = dialect.is_disconnect(exc, connection.connection.dbapi_connection, None)  # type: ignore[arg-type]
    if lost:
        connection.invalidate(exc)
    return DBAPIError.instance(
        sql, arguments, exc, dialect.loaded_dbapi.Error, connection_invalidated=lost,
        dialect=dialect,
    )  # fmt: skip
