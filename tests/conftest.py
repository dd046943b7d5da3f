"""Fixtures shared by every test package.

The billing centre's database fixtures: every database test runs on SQLite
and PostgreSQL (``db``). PostgreSQL is the machine's (127.0.0.1:5432,
database ``test``, or ``CARDCENTER_TEST_PG_URL``); each test run makes its
own schema, migrates it once, empties its tables before every test and drops
it at the end, so runs never see each other's rows. SQLite gets a migrated
template file that every test copies. A PostgreSQL that cannot be reached
fails the tests, never skips them.

The PC/SC tests run through the real pcscd with the vsmartcard vpcd driver
(``scripts/setup`` installs and starts both). Missing infrastructure fails
those tests rather than skipping them: a skipped end-to-end suite looks green
and proves nothing.

``scripts/test`` runs the tests in parallel, one worker per core
(pytest-xdist, ``--dist loadgroup``). The machine has one pcscd and one vpcd
reader, and a test that reads it empty, or opens whatever card is in it,
goes wrong when another worker's test has put a card there. So every test
that may reach pcscd (:func:`reaches_the_reader`) is in one group, run on one
worker one after the other; the rest share the other workers.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from centre_support import PG_URL, Database, make_keystore
from sqlalchemy import text

from cardcenter.core.db import Base, make_engine, session_factory, upgrade
from cardlayout.security.diversify import CardKeys
from cardlayout.transport.pcsc import VPCD_READER_PREFIX

READER_GROUP = "pcscd"
"""The ``xdist_group`` of the tests that may reach the machine's pcscd."""
READER_FIXTURES = frozenset({"pcscd", "vpcd_reader", "web_config"})
"""Fixtures that put a card in the vpcd reader or give an application the reader."""
READER_PACKAGES = ("web",)
"""Test packages whose tests may reach the reader without one of those fixtures
(a ``cardcenter serve`` process shows the reader on its dashboard)."""


def reaches_the_reader(item: pytest.Item) -> bool:
    """Whether ``item`` may reach pcscd: a reader fixture, the ``pcsc`` mark, a reader package."""
    fixtures = getattr(item, "fixturenames", ())
    return (
        not READER_FIXTURES.isdisjoint(fixtures)
        or item.get_closest_marker("pcsc") is not None
        or item.path.parent.name in READER_PACKAGES
    )


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups off the marks
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Put the tests that may reach pcscd in one xdist group (see the module's docstring)."""
    for item in items:
        if reaches_the_reader(item):
            item.add_marker(pytest.mark.xdist_group(READER_GROUP))


VPCD_READERS_WAIT = 5.0
VPCD_LOCK_WAIT = 120.0


@pytest.fixture(scope="session")
def pcscd() -> list[str]:
    """The vpcd reader names pcscd lists, first slot (port 35963) first.

    Fails the test, with what to do, if pcscd is not running or does not
    list both Virtual PCD readers. Waits a few seconds for them, since pcscd
    registers its readers only after it has started.
    """
    from cardlayout.errors import CardIOError
    from cardlayout.transport.pcsc import list_readers

    deadline = time.monotonic() + VPCD_READERS_WAIT
    while True:
        try:
            readers = list_readers()
        except CardIOError as exc:
            pytest.fail(f"{exc}; run scripts/setup", pytrace=False)
        virtual = sorted(name for name in readers if name.startswith(VPCD_READER_PREFIX))
        if len(virtual) >= 2:
            return virtual
        if time.monotonic() > deadline:
            pytest.fail(
                f"pcscd lists {readers!r}, not the two {VPCD_READER_PREFIX!r} readers of the "
                "vsmartcard-vpcd driver; run scripts/setup (it restarts a pcscd that was "
                "started before the driver was installed)",
                pytrace=False,
            )
        time.sleep(0.2)


@pytest.fixture
def vpcd_reader(pcscd: list[str]) -> Iterator[str]:
    """The reader a :class:`~cardlayout.vcard.vpcd.VpcdBridge` on port 35963 fills.

    pcscd names a reader's slots "<name> <reader> <slot>"; vpcd's slot 0 is
    the port of reader.conf (35963), slot 1 the next port.

    The reader is the machine's, not the test run's: two test runs at once
    (a developer's and an agent's, say) would put cards into it over each
    other and talk to the wrong one. A lock file held for the test makes
    them take turns.
    """
    first_slot = [name for name in pcscd if name.endswith(" 00")]
    with _machine_lock("cardprepay-vpcd.lock"):
        yield first_slot[0] if first_slot else pcscd[0]


class _machine_lock:
    """An exclusive ``flock`` on a file in the temp directory, with a wait limit."""

    def __init__(self, name: str) -> None:
        self.path = os.path.join(tempfile.gettempdir(), name)
        self.fd = -1

    def __enter__(self) -> None:
        self.fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o666)
        deadline = time.monotonic() + VPCD_LOCK_WAIT
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(self.fd)
                    pytest.fail(
                        f"another test run has held {self.path} for {VPCD_LOCK_WAIT:g} s",
                        pytrace=False,
                    )
                time.sleep(0.05)

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


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
    url = f"{PG_URL}{'&' if '?' in PG_URL else '?'}options=-csearch_path%3D{schema}"
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


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Iterator[Database]:
    """A fresh, migrated SQLite database, for the few tests too long to run twice."""
    url = f"sqlite:///{tmp_path / 'centre.db'}"
    engine = make_engine(url)
    upgrade(engine)
    try:
        yield Database("sqlite", url, engine, session_factory(engine))
    finally:
        engine.dispose()
