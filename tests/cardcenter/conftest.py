"""Fixtures for the billing centre: every database test runs on SQLite and PostgreSQL.

PostgreSQL is the machine's (127.0.0.1:5432, database ``test``, or
``CARDCENTER_TEST_PG_URL``); each test run makes its own schema, migrates it
once, empties its tables before every test and drops it at the end, so runs
never see each other's rows. SQLite gets a migrated template file that every
test copies. A PostgreSQL that cannot be reached fails the tests, never
skips them.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from centre_support import Database, make_keystore
from sqlalchemy import text

from cardcenter.core.db import Base, make_engine, session_factory, upgrade
from cardlayout.security.diversify import CardKeys

PG_URL = os.environ.get("CARDCENTER_TEST_PG_URL", "postgresql://root@127.0.0.1:5432/test")
BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(scope="session", params=BACKENDS)
def migrated(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A migrated database per backend: a template file or a fresh schema."""
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("db") / "template.db"
        engine = make_engine(f"sqlite:///{path}")
        upgrade(engine)
        engine.dispose()
        yield str(path)
        return
    schema = f"cc_test_{uuid.uuid4().hex[:12]}"
    admin = make_engine(PG_URL)
    try:
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as exc:  # pragma: no cover - infrastructure
        pytest.fail(f"PostgreSQL at {PG_URL} cannot be used: {exc}", pytrace=False)
    url = f"{PG_URL}?options=-csearch_path%3D{schema}"
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    try:
        yield url
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def db(migrated: str, tmp_path: Path) -> Iterator[Database]:
    """An empty, migrated database of the current backend."""
    if migrated.startswith("postgresql"):
        engine = make_engine(migrated)
        tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
        with engine.begin() as conn:
            conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
        database = Database("postgresql", migrated, engine, session_factory(engine))
    else:
        path = tmp_path / "centre.db"
        shutil.copyfile(migrated, path)
        url = f"sqlite:///{path}"
        engine = make_engine(url)
        database = Database("sqlite", url, engine, session_factory(engine))
    try:
        yield database
    finally:
        engine.dispose()


@pytest.fixture
def keys(tmp_path: Path) -> Iterator[CardKeys]:
    with make_keystore(tmp_path / "keys.json") as store:
        yield CardKeys(store)
