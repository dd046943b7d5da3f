"""PostgreSQL connections in the pool: tested after a rest, and kept free of needless rollbacks.

A vend on PostgreSQL made twenty round trips, six of them spent on the pool
and not on the sale: a ping at each of two checkouts, the API client's
look-up in a transaction of its own and the pool's ROLLBACK of it, after
which psycopg sent ``DEALLOCATE ALL`` and forgot every statement it had
prepared. These tests hold the centre to what replaced that: a connection
is pinged only when it has rested (so one cut while the centre was quiet
never reaches a request), and a read alone leaves the connection with
nothing to roll back, so its prepared statements survive.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from centre_support import PG_URL
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import DBAPIError

from cardcenter.core.db import PING_AFTER_IDLE, make_engine, ping_after_idle
from cardcenter.core.prepared import Prepared

ADD_ONE = Prepared(text("SELECT CAST(:n AS integer) + 1"))


@pytest.fixture
def engine() -> Iterator[Engine]:
    """The centre's engine on the test PostgreSQL (one pooled connection, to follow it)."""
    found = make_engine(PG_URL, pool_size=1, max_overflow=0)
    try:
        yield found
    finally:
        found.dispose()


def backend_pid(engine: Engine) -> int:
    with engine.connect() as conn:
        pid: int = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
        conn.commit()
    return pid


def terminate(pid: int) -> None:
    with psycopg.connect(PG_URL, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [pid])
    deadline = time.monotonic() + 5
    with psycopg.connect(PG_URL, autocommit=True) as admin:
        while admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone():
            assert time.monotonic() < deadline, f"backend {pid} did not end"
            time.sleep(0.02)


def counting_pings(engine: Engine) -> list[int]:
    """Every ping the engine's dialect sends from now on, one entry each."""
    pings: list[int] = []
    real = engine.dialect.do_ping

    def do_ping(dbapi_connection: Any) -> bool:
        pings.append(1)
        return real(dbapi_connection)

    engine.dialect.do_ping = do_ping  # type: ignore[method-assign]
    return pings


def test_a_connection_cut_while_it_rested_is_replaced_before_a_request_sees_it(
    engine: Engine,
) -> None:
    """The database restarted while the centre was quiet: the next sale must not fail."""
    pid = backend_pid(engine)
    terminate(pid)
    time.sleep(PING_AFTER_IDLE + 0.1)
    with engine.connect() as conn:
        assert ADD_ONE.scalar(conn, {"n": 41}) == 42
        now = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
    assert now != pid


def test_a_busy_pool_does_not_ping_and_a_rested_connection_is_pinged_once() -> None:
    engine = create_engine(PG_URL.replace("postgresql://", "postgresql+psycopg://", 1), pool_size=1)
    ping_after_idle(engine, after=0.3)
    pings = counting_pings(engine)
    try:
        for _ in range(5):
            backend_pid(engine)
        assert pings == [], "a connection back in the pool a moment ago was pinged"
        time.sleep(0.35)
        backend_pid(engine)
        assert pings == [1]
        backend_pid(engine)
        assert pings == [1]
    finally:
        engine.dispose()


def test_a_connection_cut_in_a_busy_moment_fails_one_statement_and_the_pool_recovers(
    engine: Engine,
) -> None:
    """What not pinging every checkout costs: the statement that meets the cut fails
    as a lost connection (a vend's request id makes its retry safe), and the pool
    is invalidated so that the next checkout connects anew."""
    pid = backend_pid(engine)
    terminate(pid)
    with engine.connect() as conn, pytest.raises(DBAPIError) as raised:
        ADD_ONE.scalar(conn, {"n": 1})
    assert raised.value.connection_invalidated
    with engine.connect() as conn:
        assert ADD_ONE.scalar(conn, {"n": 1}) == 2


def test_a_read_alone_runs_in_autocommit_and_the_prepared_statements_survive_it(
    engine: Engine,
) -> None:
    """psycopg prepares a statement on its sixth run and forgets them all at a ROLLBACK:
    the pool's rollback of a read in a transaction threw them away on every request."""
    with engine.connect() as conn:
        for n in range(8):
            assert ADD_ONE.scalar(conn, {"n": n}) == n + 1
        conn.commit()
    with engine.connect() as conn:
        assert ADD_ONE.first_alone(conn, {"n": 1}) == (2,)
        driver: Any = conn.connection.driver_connection
        assert driver.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        assert driver.autocommit is False, "the read alone left the driver in autocommit"
    with engine.connect() as conn:
        prepared = conn.exec_driver_sql(
            "SELECT count(*) FROM pg_prepared_statements WHERE strpos(statement, '+ 1') > 0"
        ).scalar_one()
        conn.commit()
    assert prepared == 1


def test_a_read_alone_that_fails_leaves_the_driver_out_of_autocommit(engine: Engine) -> None:
    broken = Prepared(text("SELECT CAST(:n AS integer) / 0"))
    with engine.connect() as conn:
        with pytest.raises(DBAPIError, match="division by zero"):
            broken.first_alone(conn, {"n": 1})
        driver: Any = conn.connection.driver_connection
        assert driver.autocommit is False
        assert ADD_ONE.scalar(conn, {"n": 2}) == 3
        assert conn.in_transaction()
        conn.rollback()
